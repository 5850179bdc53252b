//! The daemon started in-process from environment-style settings, with PostgreSQL and MongoDB
//! unreachable (nothing listens on port 1), so no database is needed.

#![allow(clippy::unwrap_used)]

use devstack::in_process::{self, vars};

const SETTINGS: &[(&str, &str)] = &[
    ("MYHEALTH_HTTP__READINESS_TIMEOUT_MS", "300"),
    (
        "MYHEALTH_DATABASE_URL",
        "postgres://cdc:hunter2@127.0.0.1:1/myhealth",
    ),
    (
        "MYHEALTH_MONGODB_URI",
        "mongodb://cdc:hunter3@127.0.0.1:1/?directConnection=true",
    ),
    ("MYHEALTH_MONGODB_DATABASE", "t_cdc"),
];

#[tokio::test]
async fn the_daemon_is_alive_but_reports_both_stores_unready() {
    let config: cdc_daemon::Config =
        service_plumbing::config::load_from_vars(None, vars(SETTINGS)).unwrap();
    assert_eq!(config.mongodb_database, "t_cdc");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("hunter3"),
        "{debug}"
    );

    let running = in_process::daemon(SETTINGS).await.unwrap();
    let probes = devstack::services::probe(&running.url).await.unwrap();
    assert_eq!(probes.alive, 200);
    assert_eq!(probes.ready, 503);
    let body = &probes.readiness;
    assert_eq!(body["errors"][0]["pointer"], "#/dependencies/postgres");
    assert_eq!(body["errors"][1]["pointer"], "#/dependencies/mongodb");
    assert!(
        !body.to_string().contains("hunter2") && !body.to_string().contains("hunter3"),
        "{body}"
    );
    running.stop().await.unwrap();
}
