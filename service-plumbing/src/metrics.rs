//! The Prometheus registry of a service and its text exposition.
//!
//! [`Metrics`] owns one `prometheus::Registry` with the process collector (resident memory, CPU
//! seconds, open file descriptors, …) already registered. Code that defines a metric registers
//! it here and keeps the metric's name as a constant next to its definition; the HTTP server's
//! own metrics live in [`crate::http`].

use prometheus::process_collector::ProcessCollector;
use prometheus::{Registry, TextEncoder};

/// `Content-Type` of the Prometheus text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a metric could not be registered or the registry could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Registering a collector failed (for example, a duplicate metric name).
    #[error("failed to register metric collector")]
    Register(#[source] prometheus::Error),
    /// Encoding the gathered metrics failed.
    #[error("failed to encode metrics")]
    Encode(#[source] prometheus::Error),
}

/// A service's metric registry. Cloning is cheap and shares the registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry holding the process metrics of this process.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        registry
            .register(Box::new(ProcessCollector::for_self()))
            .map_err(MetricsError::Register)?;
        Ok(Self { registry })
    }

    /// The underlying registry, for registering a service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers `collector` (a counter, histogram, … or a custom collector).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), MetricsError> {
        self.registry
            .register(collector)
            .map_err(MetricsError::Register)
    }

    /// Every registered metric in the text exposition format ([`TEXT_CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut text)
            .map_err(MetricsError::Encode)?;
        Ok(text)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encoded_metrics_include_process_metrics() {
        let metrics = Metrics::new().unwrap();
        let text = metrics.encode().unwrap();
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn registering_the_same_metric_twice_is_an_error() {
        let metrics = Metrics::new().unwrap();
        let counter = prometheus::IntCounter::new("things_total", "things").unwrap();
        metrics.register(Box::new(counter.clone())).unwrap();
        let result = metrics.register(Box::new(counter));
        assert!(matches!(result, Err(MetricsError::Register(_))));
    }
}
