//! JSON logs on stderr, one object per line, each carrying the service name.
//!
//! The level filter comes from `RUST_LOG` (default `info`), except that statement parameters
//! are never logged. The service name is written as a top-level `"service"` field by a small
//! wrapper around the JSON formatter, because a span entered in `main` would not follow work
//! spawned onto other tasks.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::TryInitError;

/// Why logging could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber was already installed (logging was started twice).
    #[error("failed to install the tracing subscriber")]
    Install(#[from] TryInitError),
}

/// tokio-postgres logs every statement's parameters at `debug`: patient names, birth dates,
/// token hashes. That level stays off whatever `RUST_LOG` asks for, so that turning on debug
/// logs to chase a problem never copies health data into the logs.
const QUIET_STATEMENT_PARAMETERS: &str = "tokio_postgres::query=info";

/// Installs the global tracing subscriber: JSON lines on stderr with a `"service"` field,
/// filtered by `RUST_LOG` (default `info`) but never below `info` for statement parameters.
pub fn init_tracing(service: &'static str) -> Result<(), TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = match QUIET_STATEMENT_PARAMETERS.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(json_layer(service, std::io::stderr))
        .try_init()?;
    Ok(())
}

/// A service binary's `main` after parsing its command line: installs tracing, awaits `run`,
/// and turns a failure into a JSON log line (like every other line of the service, rather than
/// Rust's `Debug` dump of a returned error) and a failing exit code.
pub async fn run_binary<E: fmt::Display>(
    service: &'static str,
    run: impl Future<Output = Result<std::process::ExitCode, E>>,
) -> std::process::ExitCode {
    if let Err(error) = init_tracing(service) {
        eprintln!("{error:#}");
        return std::process::ExitCode::FAILURE;
    }
    match run.await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{service} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The formatting layer of [`init_tracing`], writing to `writer`.
fn json_layer<S, W>(service: &str, writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = ServiceJson {
        service_json: json_string(service),
        // The current span is enough: request spans are not nested.
        inner: tracing_subscriber::fmt::format()
            .json()
            .with_span_list(false),
    };
    tracing_subscriber::fmt::layer()
        .json()
        .event_format(format)
        .with_writer(writer)
}

/// The JSON event format with `"service":"<name>"` spliced in as the first field.
struct ServiceJson {
    /// The service name, already encoded as a JSON string (quotes included).
    service_json: String,
    inner: Format<Json>,
}

impl<S, N> FormatEvent<S, N> for ServiceJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    Format<Json>: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"service\":{},{rest}", self.service_json),
            None => writer.write_str(&line),
        }
    }
}

/// `value` as a JSON string literal.
fn json_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects everything the layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn every_log_line_is_json_with_the_service_name() {
        let captured = Captured::default();
        let subscriber =
            tracing_subscriber::registry().with(json_layer("test-\"svc\"", captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "abc");
            let _entered = span.enter();
            tracing::info!(status = 200, "request completed");
            tracing::warn!("second line");
        });
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = output
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{output}");
        for line in &lines {
            assert_eq!(line["service"], "test-\"svc\"", "{line}");
        }
        assert_eq!(lines[0]["fields"]["message"], "request completed");
        assert_eq!(lines[0]["fields"]["status"], 200);
        assert_eq!(lines[0]["span"]["request_id"], "abc");
    }
}
