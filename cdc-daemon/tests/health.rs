//! The daemon started in-process from environment-style settings, with PostgreSQL and MongoDB
//! unreachable (nothing listens on port 1), so no database is needed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use devstack::in_process::vars;
use service_plumbing::shutdown::Shutdown;

#[tokio::test]
async fn the_daemon_is_alive_but_reports_both_stores_unready() {
    let config: cdc_daemon::Config = service_plumbing::config::load_from_vars(
        None,
        vars(&[
            ("MYHEALTH_HTTP__LISTEN", "127.0.0.1:0"),
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
        ]),
    )
    .unwrap();
    assert_eq!(config.mongodb_database, "t_cdc");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("hunter3"),
        "{debug}"
    );

    let shutdown = Shutdown::new();
    let app = cdc_daemon::build(config, shutdown.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let running = tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["errors"][0]["pointer"], "#/dependencies/postgres");
    assert_eq!(body["errors"][1]["pointer"], "#/dependencies/mongodb");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
