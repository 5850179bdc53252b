//! The service started in-process from environment-style settings, with MongoDB unreachable
//! (nothing listens on port 1), so no database is needed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use devstack::in_process::vars;
use service_plumbing::shutdown::Shutdown;

#[tokio::test]
async fn the_service_is_alive_but_not_ready_without_mongodb() {
    let config: reports_api::Config = service_plumbing::config::load_from_vars(
        None,
        vars(&[
            ("MYHEALTH_HTTP__LISTEN", "127.0.0.1:0"),
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
        ]),
    )
    .unwrap();
    assert_eq!(config.mongodb_database, "myhealth");
    assert!(!format!("{config:?}").contains("hunter2"));

    let app = reports_api::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["errors"][0]["pointer"], "#/dependencies/mongodb");
    assert!(!body.to_string().contains("hunter2"), "{body}");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
