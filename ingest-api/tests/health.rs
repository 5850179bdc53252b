//! The service started in-process from environment-style settings, with PostgreSQL unreachable
//! (nothing listens on port 1), so no database is needed.

#![allow(clippy::unwrap_used)]

use devstack::in_process::{self, vars};

const SETTINGS: &[(&str, &str)] = &[
    (
        "MYHEALTH_DATABASE_URL",
        "postgres://app:hunter2@127.0.0.1:1/myhealth",
    ),
    ("MYHEALTH_DATABASE_POOL_SIZE", "2"),
];

#[tokio::test]
async fn the_service_is_alive_but_not_ready_without_postgres() {
    let config: ingest_api::Config =
        service_plumbing::config::load_from_vars(None, vars(SETTINGS)).unwrap();
    assert_eq!(config.database_pool_size, 2);
    assert!(!format!("{config:?}").contains("hunter2"));

    let running = in_process::ingest(SETTINGS).await.unwrap();
    let probes = devstack::services::probe(&running.url).await.unwrap();
    assert_eq!(probes.alive, 200);
    assert_eq!(probes.ready, 503);
    let body = &probes.readiness;
    assert_eq!(body["errors"][0]["pointer"], "#/dependencies/postgres");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    running.stop().await.unwrap();
}
