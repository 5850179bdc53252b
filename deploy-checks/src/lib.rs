//! What the tests of `deploy/` share: where the files are, and which metric names the alert
//! rules, the console dashboard and the Grafana dashboard query.
//!
//! Metric names are read from the PromQL expressions only (rule `expr` fields, console `expr:`
//! values and `args "…"` queries, Grafana `targets[].expr`), never from prose, and kept when
//! they belong to the project's services (`cdc_`, `http_`, `ingest_`, `reports_`, `process_`).
//! Histogram series (`_bucket`, `_sum`, `_count`) are reported under their family name.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Prefixes of the metric families the services export.
const SERVICE_PREFIXES: [&str; 5] = ["cdc_", "http_", "ingest_", "reports_", "process_"];

/// The repository's `deploy/` folder.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The service metric families a PromQL expression reads.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            SERVICE_PREFIXES
                .iter()
                .any(|prefix| word.starts_with(prefix))
        })
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_string()
        })
        .collect()
}

/// The PromQL expressions of a console template: each `expr:` value given to
/// `PromConsole.Graph` (a JSON string or list of strings) and each `(args "…")` query.
pub fn console_expressions(template: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    for (index, _) in template.match_indices("expr:") {
        let rest = template[index + "expr:".len()..].trim_start();
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match values.next() {
            Some(Ok(serde_json::Value::String(expr))) => exprs.push(expr),
            Some(Ok(serde_json::Value::Array(items))) => exprs.extend(
                items
                    .into_iter()
                    .filter_map(|item| item.as_str().map(str::to_string)),
            ),
            _ => {}
        }
    }
    for (index, _) in template.match_indices("(args \"") {
        let rest = &template[index + "(args \"".len()..];
        if let Some(end) = rest.find('"') {
            exprs.push(rest[..end].to_string());
        }
    }
    exprs
}

/// The PromQL expressions of a Grafana dashboard: every panel target's `expr`.
pub fn grafana_expressions(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_skip_functions_labels_and_keep_histogram_families() {
        let names = metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(cdc_commit_to_store_seconds_bucket\
             {job='cdc-daemon', route=~'/v1/.*'}[1m]))) / up + ingest_uploads_total",
        );
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            ["cdc_commit_to_store_seconds", "ingest_uploads_total"]
        );
    }

    #[test]
    fn console_expressions_read_graph_lists_and_args() {
        let template = r#"{{ template "x" (args "max(cdc_lag_seconds)" "humanize") }}
            new PromConsole.Graph({ expr: ["a(cdc_lag_bytes)", "b"], name: "[[ job ]]" });
            new PromConsole.Graph({ expr: "cdc_connected" });"#;
        assert_eq!(
            console_expressions(template),
            [
                "a(cdc_lag_bytes)",
                "b",
                "cdc_connected",
                "max(cdc_lag_seconds)"
            ]
        );
    }
}
