//! The clinical catalogue: which instruments exist, which measurement codes each may report,
//! each code's display name, required UCUM unit, physically possible range and adult reference
//! range.
//!
//! The ingest API validates uploads against it and computes reference ranges and flags from it;
//! the reports API lists a report's measurements in its order.

/// A kind of connected instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstrumentType {
    /// Blood pressure monitor.
    BloodPressure,
    /// Pulse oximeter.
    PulseOximeter,
    /// Thermometer.
    Thermometer,
    /// Scale (weight, BMI).
    Scale,
    /// Stadiometer.
    HeightMeter,
    /// Blood glucose meter.
    Glucometer,
    /// Electrocardiograph.
    Ecg,
}

impl InstrumentType {
    /// Every instrument type, in the order the API documents them.
    pub const ALL: [InstrumentType; 7] = [
        InstrumentType::BloodPressure,
        InstrumentType::PulseOximeter,
        InstrumentType::Thermometer,
        InstrumentType::Scale,
        InstrumentType::HeightMeter,
        InstrumentType::Glucometer,
        InstrumentType::Ecg,
    ];

    /// The wire and database name, e.g. `blood_pressure`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentType::BloodPressure => "blood_pressure",
            InstrumentType::PulseOximeter => "pulse_oximeter",
            InstrumentType::Thermometer => "thermometer",
            InstrumentType::Scale => "scale",
            InstrumentType::HeightMeter => "height_meter",
            InstrumentType::Glucometer => "glucometer",
            InstrumentType::Ecg => "ecg",
        }
    }

    /// The instrument type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<InstrumentType> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Whether a value is below, within or above its reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Below the reference range.
    Low,
    /// Within it.
    Normal,
    /// Above it.
    High,
}

impl Flag {
    /// The stored one-letter form: `L`, `N` or `H`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Low => "L",
            Flag::Normal => "N",
            Flag::High => "H",
        }
    }
}

/// A closed range of values, in the code's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Lowest value in the range.
    pub low: f64,
    /// Highest value in the range.
    pub high: f64,
}

impl Range {
    /// Whether `value` lies within the range, ends included.
    pub fn contains(self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// One measurement code of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Code {
    /// The LOINC code, e.g. `8480-6`.
    pub code: &'static str,
    /// Display name, e.g. `Systolic blood pressure`.
    pub display: &'static str,
    /// The only UCUM unit accepted, e.g. `mm[Hg]`.
    pub unit: &'static str,
    /// Values outside this range cannot come from a working instrument on a living patient.
    pub possible: Range,
    /// The adult reference range, where one is meaningful.
    pub reference: Option<Range>,
    /// The instruments that may report this code.
    pub instruments: &'static [InstrumentType],
}

impl Code {
    /// The flag of `value` against the reference range, if the code has one.
    pub fn flag(&self, value: f64) -> Option<Flag> {
        let reference = self.reference?;
        Some(if value < reference.low {
            Flag::Low
        } else if value > reference.high {
            Flag::High
        } else {
            Flag::Normal
        })
    }

    /// Whether `instrument` may report this code.
    pub fn reported_by(&self, instrument: InstrumentType) -> bool {
        self.instruments.contains(&instrument)
    }
}

const fn range(low: f64, high: f64) -> Range {
    Range { low, high }
}

/// Every code, in catalogue order (the order reports list their measurements in).
pub const CODES: &[Code] = {
    use InstrumentType::{
        BloodPressure, Ecg, Glucometer, HeightMeter, PulseOximeter, Scale, Thermometer,
    };
    &[
        Code {
            code: "8480-6",
            display: "Systolic blood pressure",
            unit: "mm[Hg]",
            possible: range(30.0, 300.0),
            reference: Some(range(90.0, 120.0)),
            instruments: &[BloodPressure],
        },
        Code {
            code: "8462-4",
            display: "Diastolic blood pressure",
            unit: "mm[Hg]",
            possible: range(10.0, 200.0),
            reference: Some(range(60.0, 80.0)),
            instruments: &[BloodPressure],
        },
        Code {
            code: "8867-4",
            display: "Heart rate",
            unit: "/min",
            possible: range(20.0, 300.0),
            reference: Some(range(60.0, 100.0)),
            instruments: &[BloodPressure, PulseOximeter, Ecg],
        },
        Code {
            code: "2708-6",
            display: "Oxygen saturation in arterial blood",
            unit: "%",
            possible: range(50.0, 100.0),
            reference: Some(range(95.0, 100.0)),
            instruments: &[PulseOximeter],
        },
        Code {
            code: "8310-5",
            display: "Body temperature",
            unit: "Cel",
            possible: range(25.0, 45.0),
            reference: Some(range(36.1, 37.2)),
            instruments: &[Thermometer],
        },
        Code {
            code: "29463-7",
            display: "Body weight",
            unit: "kg",
            possible: range(0.2, 650.0),
            reference: None,
            instruments: &[Scale],
        },
        Code {
            code: "8302-2",
            display: "Body height",
            unit: "cm",
            possible: range(20.0, 280.0),
            reference: None,
            instruments: &[HeightMeter, Scale],
        },
        Code {
            code: "39156-5",
            display: "Body mass index",
            unit: "kg/m2",
            possible: range(5.0, 200.0),
            reference: Some(range(18.5, 24.9)),
            instruments: &[Scale],
        },
        Code {
            code: "2339-0",
            display: "Glucose in blood",
            unit: "mg/dL",
            possible: range(5.0, 2000.0),
            reference: Some(range(70.0, 99.0)),
            instruments: &[Glucometer],
        },
        Code {
            code: "8633-0",
            display: "QRS duration",
            unit: "ms",
            possible: range(20.0, 400.0),
            reference: Some(range(70.0, 110.0)),
            instruments: &[Ecg],
        },
        Code {
            code: "8634-8",
            display: "QT interval",
            unit: "ms",
            possible: range(150.0, 800.0),
            reference: Some(range(350.0, 450.0)),
            instruments: &[Ecg],
        },
    ]
};

/// The catalogue entry of `code`, if the code is known.
pub fn lookup(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|entry| entry.code == code)
}

/// The position of `code` in catalogue order; unknown codes sort last.
pub fn order(code: &str) -> usize {
    CODES
        .iter()
        .position(|entry| entry.code == code)
        .unwrap_or(CODES.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instrument_reports_at_least_one_code() {
        for kind in InstrumentType::ALL {
            assert!(CODES.iter().any(|code| code.reported_by(kind)), "{kind:?}");
            assert_eq!(InstrumentType::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn reference_ranges_lie_inside_possible_ranges() {
        for code in CODES {
            if let Some(reference) = code.reference {
                assert!(code.possible.contains(reference.low), "{}", code.code);
                assert!(code.possible.contains(reference.high), "{}", code.code);
            }
        }
    }

    #[test]
    fn flags_follow_the_reference_range() {
        let systolic = lookup("8480-6").expect("systolic is catalogued");
        assert_eq!(systolic.flag(85.0), Some(Flag::Low));
        assert_eq!(systolic.flag(90.0), Some(Flag::Normal));
        assert_eq!(systolic.flag(120.0), Some(Flag::Normal));
        assert_eq!(systolic.flag(121.0), Some(Flag::High));
        assert_eq!(lookup("29463-7").and_then(|weight| weight.flag(70.0)), None);
    }

    #[test]
    fn codes_are_unique_and_ordered() {
        for (index, code) in CODES.iter().enumerate() {
            assert_eq!(order(code.code), index);
        }
        assert_eq!(order("0000-0"), CODES.len());
    }
}
