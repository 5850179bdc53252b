//! TLS on every connection, against PostgreSQL with `ssl=on` and a `pg_hba.conf` of `hostssl`
//! lines alone, and FerretDB with its TLS listener alone, each with a throwaway CA of this
//! process whose certificate names `localhost` only.
//!
//! libpq's `sslmode` meanings hold on the plain connections (the shared connector of
//! `service_plumbing::postgres`) and on the replication connection: a wrong CA and a wrong host
//! name fail verification, plaintext is refused, and the whole pipeline (upload → daemon →
//! reports API, `verify`) runs over TLS to both servers.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use devstack::certs::{ServerTls, TestCa};
use devstack::ferretdb::Store;
use devstack::in_process::InProcessStack;
use devstack::postgres::{ClusterOptions, PostgresServer};
use devstack::roles::ServiceLogin;
use devstack::tablet::Tablet;
use devstack::{Stack, TestContext};
use jsonwebtoken::{EncodingKey, Header, encode};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

const SECRET: &str = "test-secret-of-the-reports-api-0123456789";

/// The TLS-only servers this process shares, and a CA file of a CA that signed neither.
struct TlsServers {
    stack: Stack,
    other_ca: PathBuf,
    _files: tempfile::TempDir,
}

static SERVERS: OnceCell<TlsServers> = OnceCell::const_new();

async fn servers() -> &'static TlsServers {
    SERVERS
        .get_or_init(|| async {
            let postgres_tls = ServerTls::for_host("localhost").unwrap();
            let store_tls = ServerTls::for_host("localhost").unwrap();
            let options = ClusterOptions {
                tls: Some(postgres_tls),
                ..ClusterOptions::default()
            };
            let (postgres, store) = tokio::join!(
                PostgresServer::start(options),
                Store::start_ferretdb_tls(&store_tls)
            );
            let files = tempfile::tempdir().unwrap();
            let other_ca = files.path().join("other-ca.pem");
            std::fs::write(&other_ca, TestCa::new("another CA").unwrap().cert_pem()).unwrap();
            TlsServers {
                stack: Stack {
                    postgres: postgres.unwrap(),
                    store: store.unwrap(),
                },
                other_ca,
                _files: files,
            }
        })
        .await
}

/// `url` (a harness URL: `…@localhost:port/db?sslmode=verify-full&sslrootcert=…`) with another
/// host and TLS query.
fn variant(url: &str, host: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    let base = base.replacen("@localhost:", &format!("@{host}:"), 1);
    format!("{base}?{query}")
}

/// The harness URL's `sslrootcert`.
fn root_cert(url: &str) -> String {
    url.split("sslrootcert=").nth(1).unwrap().to_string()
}

/// Whether the session behind `client` is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn plain_connections_verify_as_libpq_does_and_plaintext_is_refused() {
    let servers = servers().await;
    let admin = servers.stack.postgres.admin_url();
    let ca = root_cert(admin);
    let other = servers.other_ca.display().to_string();
    let connect = |url: String| async move { service_plumbing::postgres::connect(&url).await };

    // verify-full to the certificate's name with its CA: encrypted.
    let client = connect(admin.to_string()).await.unwrap();
    assert!(encrypted(&client).await);

    // The same modes libpq accepts, each encrypted.
    for (host, query) in [
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("127.0.0.1", format!("sslmode=require&sslrootcert={ca}")),
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", "sslmode=prefer".to_string()),
        ("127.0.0.1", String::new()),
    ] {
        let client = connect(variant(admin, host, &query)).await;
        let client = client.unwrap_or_else(|error| panic!("{host} {query}: {error}"));
        assert!(encrypted(&client).await, "{host} {query}");
    }

    // A certificate from another CA, or for another name, fails verification.
    for (host, query, expected) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other}"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other}"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "not valid for name",
        ),
    ] {
        let error = connect(variant(admin, host, &query)).await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "{host} {query}: expected {expected}, got {message}"
        );
    }

    // Plaintext: the hostssl-only server refuses it.
    let error = connect(variant(admin, "127.0.0.1", "sslmode=disable"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no encryption"), "{error}");

    // The pool the services use goes through the same connector.
    let secret = |url: String| SecretString::from(url);
    let pool = service_plumbing::postgres::pool(&secret(admin.to_string()), 1, "tls-test").unwrap();
    service_plumbing::postgres::check(&pool).await.unwrap();
    let wrong = variant(
        admin,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let pool = service_plumbing::postgres::pool(&secret(wrong), 1, "tls-test").unwrap();
    let error = service_plumbing::postgres::check(&pool).await.unwrap_err();
    assert!(error.contains("not valid for name"), "{error}");
}

#[tokio::test]
async fn the_replication_connection_verifies_the_same_way() {
    let servers = servers().await;
    let ctx = TestContext::on(&servers.stack).await.unwrap();
    let url = ctx.url_as(ServiceLogin::Replication);
    let ca = root_cert(&url);
    let other = servers.other_ca.display().to_string();
    let admin = ctx.postgres().await.unwrap();
    let source = |url: String| cdc_daemon::replication::Source {
        url: SecretString::from(url),
        slot: ctx.unique_name("slot"),
        publication: source_schema::PUBLICATION.to_string(),
    };

    for (host, query) in [
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        ("localhost", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", "sslmode=prefer".to_string()),
    ] {
        let connected =
            cdc_daemon::replication::connect(&source(variant(&url, host, &query)), 0).await;
        let _held = connected.unwrap_or_else(|error| panic!("{host} {query}: {error}"));
        // While it is held, the server sees this database's walsender session encrypted.
        let row = admin
            .query_one(
                "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a USING (pid) \
                 WHERE a.backend_type = 'walsender' AND a.datname = $1",
                &[&ctx.database],
            )
            .await
            .unwrap();
        let (sessions, all_encrypted): (i64, bool) = (row.get(0), row.get(1));
        assert!(sessions >= 1, "{host} {query}: no walsender");
        assert!(all_encrypted, "{host} {query}");
    }
    for (host, query, expected) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other}"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other}"),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "not valid for name",
        ),
        // Stricter than libpq, never weaker: pgwire-replication 0.5 checks the host name in
        // verify-ca too (see `replication_tls` in cdc-daemon).
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            "not valid for name",
        ),
        ("127.0.0.1", "sslmode=disable".to_string(), "no encryption"),
    ] {
        let connected =
            cdc_daemon::replication::connect(&source(variant(&url, host, &query)), 0).await;
        let message = match connected {
            Ok(_) => panic!("{host} {query}: connected"),
            Err(error) => error.to_string(),
        };
        assert!(
            message.contains(expected),
            "{host} {query}: expected {expected}, got {message}"
        );
    }
}

#[tokio::test]
async fn the_store_driver_verifies_its_tls_and_plaintext_is_refused() {
    let servers = servers().await;
    let uri = servers.stack.store.uri();
    let ping = |uri: String| async move {
        let client = mongodb::Client::with_uri_str(&uri).await?;
        client
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await
    };
    ping(uri.to_string()).await.unwrap();

    let quick = "serverSelectionTimeoutMS=1500&connectTimeoutMS=1500";
    let other = servers.other_ca.display().to_string();
    let wrong_ca = format!("{}&{quick}", uri.replace(&root_cert_of_uri(uri), &other));
    let wrong_host = format!("{}&{quick}", uri.replacen("localhost", "127.0.0.1", 1));
    let plaintext = format!(
        "{}/?directConnection=true&{quick}",
        uri.split("/?").next().unwrap()
    );
    let (wrong_ca, wrong_host, plaintext) =
        tokio::join!(ping(wrong_ca), ping(wrong_host), ping(plaintext));
    // The driver reports each as a server selection timeout naming the cause.
    for (what, result, expected) in [
        ("another CA", wrong_ca, "UnknownIssuer"),
        ("another host name", wrong_host, "not valid for name"),
        // The TLS listener hangs up on a plaintext hello.
        ("plaintext", plaintext, "unexpected end of file"),
    ] {
        let error = result.expect_err(what).to_string();
        assert!(error.contains(expected), "{what}: {error}");
    }
}

/// The store URI's `tlsCAFile`.
fn root_cert_of_uri(uri: &str) -> String {
    uri.split("tlsCAFile=").nth(1).unwrap().to_string()
}

#[tokio::test]
async fn the_pipeline_and_verify_run_over_tls() {
    let servers = servers().await;
    let ctx = TestContext::on(&servers.stack).await.unwrap();
    assert!(ctx.database_url.contains("sslmode=verify-full"));
    assert!(ctx.mongodb_uri.contains("tls=true"));
    let stack = InProcessStack::start(ctx, SECRET, "TLS Clinic")
        .await
        .unwrap();
    for url in [&stack.daemon.url, &stack.ingest.url, &stack.reports.url] {
        let status = reqwest::get(format!("{url}/readyz"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{url}/readyz");
    }
    let reports_url = &stack.reports.url;
    let ctx = &stack.ctx;

    let mut tablet = Tablet::new(&stack.ingest.url, &stack.device_token, 11);
    let patient = tablet.patient();
    let upload = tablet.upload(
        &patient,
        OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let result = tablet.post(&upload).await.unwrap();
    let reports_sent = result["reports"].as_u64().unwrap();
    assert!(reports_sent > 0);

    let now = OffsetDateTime::now_utc().unix_timestamp();
    let token = encode(
        &Header::default(),
        &json!({ "sub": patient.id, "iss": "myhealth-local", "aud": "myhealth-reports-api",
                 "iat": now, "nbf": now, "exp": now + 600 }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let response = reqwest::Client::new()
        .get(format!(
            "{reports_url}/v1/me/reports?limit=100&min_lsn={}&wait_ms=5000",
            result["commit_lsn"].as_str().unwrap()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len() as u64,
        reports_sent,
        "{page}"
    );

    // `cdc-daemon verify`'s connections: the support login over TLS, the store over TLS.
    let source = service_plumbing::postgres::connect(&ctx.url_as(ServiceLogin::Readonly))
        .await
        .unwrap();
    assert!(encrypted(&source).await);
    let store = mongodb::Client::with_uri_str(&ctx.mongodb_uri)
        .await
        .unwrap()
        .database(&ctx.database);
    let differences =
        cdc_daemon::verify::verify(&source, &store, &stack.slot, Duration::from_secs(10))
            .await
            .unwrap();
    assert!(differences.is_empty(), "{differences:?}");
}
