//! Slow clients, load shedding and metrics.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Api, expect_status, upload};

async fn api_with(settings: &[(&str, &str)]) -> Api {
    Api::start_on(devstack::TestContext::new().await.unwrap(), settings).await
}

/// Everything the server sends until it closes the connection (or 10 s pass).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept a slow connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let api = api_with(&[
        ("MYHEALTH_HTTP__HEADER_READ_TIMEOUT_MS", "300"),
        ("MYHEALTH_HTTP__BODY_READ_TIMEOUT_MS", "300"),
    ])
    .await;
    let token = api.device("Slow Clinic").await;
    let address = api.base.trim_start_matches("http://").to_string();

    let mut headers_never_end = TcpStream::connect(&address).await.unwrap();
    headers_never_end
        .write_all(b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut headers_never_end).await;

    let mut body_never_ends = TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"upload_id\""
    );
    body_never_ends.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut body_never_ends).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(api.count("uploads").await, 0);
}

#[tokio::test]
async fn uploads_beyond_the_concurrency_limit_are_shed_with_retry_after() {
    let api = api_with(&[
        ("MYHEALTH_MAX_CONCURRENT_UPLOADS", "1"),
        ("MYHEALTH_HTTP__BODY_READ_TIMEOUT_MS", "5000"),
    ])
    .await;
    let token = api.device("Busy Clinic").await;
    let address = api.base.trim_start_matches("http://").to_string();

    // An upload whose body is still arriving holds the only permit.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shed = api.post(&token, &upload()).await;
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    drop(slow);

    let mut status = 0;
    for _ in 0..50 {
        status = api.post(&token, &upload()).await.status().as_u16();
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 201,
        "the permit came back after the slow client left"
    );
}

#[tokio::test]
async fn uploads_are_counted_by_outcome_and_rows_by_table() {
    let api = Api::start().await;
    let token = api.device("Counted Clinic").await;
    let body = upload();
    expect_status(api.post(&token, &body).await, 201).await;
    expect_status(api.post(&token, &body).await, 200).await;
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"ingest_uploads_total{outcome="created"} 1"#,
        r#"ingest_uploads_total{outcome="replayed"} 1"#,
        r#"ingest_rows_written_total{table="reports"} 2"#,
        r#"ingest_rows_written_total{table="measurements"} 4"#,
        r#"http_requests_total{method="POST",route="/v1/uploads",status="201"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
}
