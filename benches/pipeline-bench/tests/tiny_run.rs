//! The pipeline benchmark in miniature, so that it cannot rot: every stage runs on a few
//! uploads for a second each, against the binaries `cargo test --workspace` built next to this
//! test, and the report must come out with every figure present and sane.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn a_tiny_run_writes_a_complete_report() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_pipeline-bench"))
        .parent()
        .unwrap()
        .to_path_buf();
    for service in ["cdc-daemon", "ingest-api", "reports-api"] {
        assert!(
            bin_dir.join(service).is_file(),
            "{service} is not built in {}; run `cargo build --workspace --bins` first",
            bin_dir.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (markdown, json) = (dir.path().join("bench.md"), dir.path().join("bench.json"));
    let status = Command::new(env!("CARGO_BIN_EXE_pipeline-bench"))
        .args([
            "--uploads",
            "40",
            "--store-uploads",
            "20",
            "--lanes-uploads",
            "10",
            "--seconds",
            "1",
            "--clients",
            "2",
        ])
        .arg("--markdown")
        .arg(&markdown)
        .arg("--json")
        .arg(&json)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .status()
        .unwrap();
    assert!(status.success(), "pipeline-bench failed: {status}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let table = report["table"].as_array().unwrap();
    assert_eq!(table.len(), 7, "a line per figure: {table:?}");
    for line in table {
        if let Some(ratio) = line["ratio"].as_f64() {
            assert!(
                ratio.is_finite() && ratio > 0.0,
                "a ratio is not sane: {line}"
            );
        }
    }
    let report = &report["report"];
    assert_eq!(report["large"]["uploads"], 40);
    // 40 uploads of a new checkup with 5 reports and 12 measurements each, at least.
    assert!(report["discard"]["changes"].as_f64().unwrap() >= 40.0 * 18.0);
    assert_eq!(
        report["store"]["changes"].as_f64().unwrap(),
        report["store_reference_changes"].as_f64().unwrap(),
        "the store reference wrote the daemon's changes"
    );
    for rss in [
        &report["discard"]["peak_rss_bytes"],
        &report["store"]["peak_rss_bytes"],
        &report["streaming_peak_rss_bytes"],
    ] {
        let rss = rss.as_f64().unwrap();
        assert!(rss > 1e6 && rss < 1e9, "peak RSS {rss} is not sane");
    }
    let by_lanes = report["by_lanes"].as_array().unwrap();
    let lanes: Vec<u64> = by_lanes
        .iter()
        .map(|run| run["lanes"].as_u64().unwrap())
        .collect();
    assert_eq!(lanes, [1, 2, 4, 8]);
    for run in by_lanes {
        // 10 uploads of at least 18 row changes each.
        let changes = run["daemon"]["changes"].as_f64().unwrap();
        assert!(changes >= 10.0 * 18.0, "{run}");
        assert_eq!(
            changes,
            run["reference_changes"].as_f64().unwrap(),
            "the store reference wrote the daemon's changes: {run}"
        );
        assert!(run["reference_seconds"].as_f64().unwrap() > 0.0, "{run}");
    }
    assert!(report["ingest"]["requests"].as_u64().unwrap() > 0);
    assert!(report["pgbench_tps"].as_f64().unwrap() > 0.0);
    assert!(report["reports"]["requests"].as_u64().unwrap() > 0);
    assert!(report["reports_driver"]["requests"].as_u64().unwrap() > 0);
    let text = std::fs::read_to_string(&markdown).unwrap();
    assert!(text.contains("| figure | value | reference | ratio | target | met |"));
    assert!(text.contains("| lanes | c, daemon, rows/s |"), "{text}");
}
