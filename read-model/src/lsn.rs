//! PostgreSQL WAL positions (LSNs): 64-bit numbers written `XXXXXXXX/XXXXXXXX` in hex.

/// An LSN given as text that is not `hex/hex`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an LSN (expected two hex numbers separated by '/', like 0/16B3748)")]
pub struct BadLsn(pub String);

/// Parses `0/16B3748`.
pub fn parse(text: &str) -> Result<u64, BadLsn> {
    let bad = || BadLsn(text.chars().take(40).collect());
    let (high, low) = text.split_once('/').ok_or_else(bad)?;
    let valid = |part: &str| !part.is_empty() && part.len() <= 8;
    if !valid(high) || !valid(low) {
        return Err(bad());
    }
    let high = u32::from_str_radix(high, 16).map_err(|_| bad())?;
    let low = u32::from_str_radix(low, 16).map_err(|_| bad())?;
    Ok((u64::from(high) << 32) | u64::from(low))
}

/// Formats like PostgreSQL does: `0/16B3748`.
pub fn format(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The LSN as a number the store compares (`_cdc.position`, a checkpoint's `position`): a
/// 64-bit signed integer, which WAL positions stay far below the top of.
pub fn to_position(lsn: u64) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_through_text() {
        for lsn in [0, 0x16B_3748, 0x1_0000_0000, u64::MAX] {
            assert_eq!(parse(&format(lsn)), Ok(lsn));
        }
        assert_eq!(format(0x16B_3748), "0/16B3748");
        assert_eq!(parse("A/0"), Ok(10 << 32));
    }

    #[test]
    fn malformed_lsns_are_refused() {
        for text in [
            "",
            "0",
            "/1",
            "1/",
            "g/1",
            "1/2/3",
            "123456789/0",
            "{\"$gt\":\"\"}",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
