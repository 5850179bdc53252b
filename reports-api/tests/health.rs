//! The service started in-process from environment-style settings, with MongoDB unreachable
//! (nothing listens on port 1), so no database is needed.

#![allow(clippy::unwrap_used)]

use devstack::in_process::{self, vars};

const SETTINGS: &[(&str, &str)] = &[
    ("MYHEALTH_HTTP__READINESS_TIMEOUT_MS", "300"),
    ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
    (
        "MYHEALTH_AUTH__HS256_SECRET",
        "a-local-secret-of-at-least-32-bytes!",
    ),
    (
        "MYHEALTH_MONGODB_URI",
        "mongodb://app:hunter2@127.0.0.1:1/?directConnection=true",
    ),
];

#[tokio::test]
async fn the_service_is_alive_but_not_ready_without_mongodb() {
    let config: reports_api::Config =
        service_plumbing::config::load_from_vars(None, vars(SETTINGS)).unwrap();
    assert_eq!(config.mongodb_database, "myhealth");
    assert!(!format!("{config:?}").contains("hunter2"));

    let running = in_process::reports(SETTINGS).await.unwrap();
    let probes = devstack::services::probe(&running.url).await.unwrap();
    assert_eq!(probes.alive, 200);
    assert_eq!(probes.ready, 503);
    let body = &probes.readiness;
    assert_eq!(body["errors"][0]["pointer"], "#/dependencies/mongodb");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    running.stop().await.unwrap();
}
