//! The SRE view against the running services: every metric the alert rules and dashboards query
//! is exported, and the console dashboard served by a real Prometheus scraping them shows the
//! replication lag with data (checked in the rendered DOM and in a headless Chromium screenshot).
//!
//! The three services run in this process on free ports, on the test's own PostgreSQL and
//! MongoDB databases; a simulated tablet posts uploads through the ingest API and a patient reads
//! them through the reports API, so the labelled counters exist before they are looked for.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use deploy_checks::{console_expressions, deploy_dir, grafana_expressions, metric_names};
use devstack::TestContext;
use devstack::in_process::InProcessStack;
use devstack::prometheus::{Prometheus, ScrapeTarget};
use devstack::tablet::{Patient, Tablet};
use serde_json::Value;

const SECRET: &str = "test-secret-of-the-deploy-checks-0123456789";

/// The three services on one test's databases, a tablet and a patient token.
struct Services {
    /// The services and the test's databases, dropped with its slot at the end.
    stack: InProcessStack,
    /// `(job, base URL)` of each service.
    urls: Vec<(&'static str, String)>,
    tablet: Tablet,
    minter: reports_api::auth::Minter,
}

impl Services {
    async fn start() -> Services {
        let ctx = TestContext::new().await.unwrap();
        let stack = InProcessStack::start(ctx, SECRET, "SRE Clinic")
            .await
            .unwrap();
        let auth: reports_api::auth::AuthConfig = serde_json::from_value(
            serde_json::json!({"algorithm": "HS256", "hs256_secret": SECRET}),
        )
        .unwrap();
        Services {
            urls: vec![
                ("ingest-api", stack.ingest.url.clone()),
                ("reports-api", stack.reports.url.clone()),
                ("cdc-daemon", stack.daemon.url.clone()),
            ],
            tablet: Tablet::new(&stack.ingest.url, &stack.device_token, 11),
            minter: reports_api::auth::Minter::new(&auth).unwrap(),
            stack,
        }
    }

    fn url(&self, job: &str) -> &str {
        &self.urls.iter().find(|(name, _)| *name == job).unwrap().1
    }

    /// Posts `count` uploads for a new patient; returns the patient and the last commit LSN.
    async fn upload(&mut self, count: usize) -> (Patient, String) {
        let patient = self.tablet.patient();
        let mut commit_lsn = String::new();
        for day in 0..count {
            let at = time::OffsetDateTime::now_utc() - time::Duration::days(day as i64);
            let upload = self.tablet.upload(&patient, at);
            let result = self.tablet.post(&upload).await.unwrap();
            commit_lsn = result["commit_lsn"].as_str().unwrap().to_string();
        }
        (patient, commit_lsn)
    }

    /// Reads the patient's reports and summary once they include `commit_lsn`.
    async fn read_reports(&self, patient: &Patient, commit_lsn: &str) {
        let token = self
            .minter
            .mint(patient.id, Duration::from_secs(600))
            .unwrap();
        let http = reqwest::Client::new();
        for path in [
            format!("/v1/me/reports?min_lsn={commit_lsn}&wait_ms=5000"),
            "/v1/me/summary".to_string(),
        ] {
            let response = http
                .get(format!("{}{path}", self.url("reports-api")))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "GET {path}");
        }
    }

    /// Writes a measurement whose code cannot be a MongoDB key straight into the source (as a
    /// faulty tool could) and waits until the daemon has recorded it as a dead letter.
    async fn record_dead_letter(&self) {
        let client = self.stack.ctx.postgres().await.unwrap();
        client
            .execute(
                "INSERT INTO measurements (report_id, code, display_name, value, unit) \
                 SELECT id, 'bad.code', 'written by hand', 1, '1' FROM reports LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        let metrics = format!("{}/metrics", self.url("cdc-daemon"));
        for _ in 0..200 {
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            if text.contains("cdc_dead_letters_total{") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the daemon recorded no dead letter for an unmappable measurement");
    }

    fn scrape_targets(&self) -> Vec<ScrapeTarget> {
        self.urls
            .iter()
            .map(|(job, url)| ScrapeTarget {
                job: job.to_string(),
                address: url.trim_start_matches("http://").to_string(),
            })
            .collect()
    }
}

/// Every service metric family the rules, the console templates and the Grafana dashboards
/// query, with the files that use it.
fn metrics_used() -> Vec<(String, String)> {
    let deploy = deploy_dir();
    let mut used = Vec::new();
    let mut add = |file: &Path, exprs: Vec<String>| {
        for expr in exprs {
            for name in metric_names(&expr) {
                used.push((name, file.display().to_string()));
            }
        }
    };
    for file in files(&deploy.join("prometheus/rules"), "yml") {
        let rules: Value = serde_norway::from_str(&read(&file)).unwrap();
        let exprs = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| group["rules"].as_array().unwrap())
            .map(|rule| rule["expr"].as_str().unwrap().to_string())
            .collect();
        add(&file, exprs);
    }
    for dir in ["prometheus/consoles", "prometheus/console_libraries"] {
        for file in files(&deploy.join(dir), "") {
            add(&file, console_expressions(&read(&file)));
        }
    }
    for file in files(&deploy.join("grafana/dashboards"), "json") {
        let dashboard: Value = serde_json::from_str(&read(&file)).unwrap();
        add(&file, grafana_expressions(&dashboard));
    }
    used
}

fn files(dir: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(extension))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Whether the exposition `text` has the family `name`: its `# TYPE` line or a sample.
fn exported(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|family| family == name)
            || line
                .split(['{', ' '])
                .next()
                .is_some_and(|series| metric_names(series).contains(name))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_rules_and_dashboards_query_is_exported_by_the_services() {
    let mut services = Services::start().await;
    let (patient, commit_lsn) = services.upload(3).await;
    services.read_reports(&patient, &commit_lsn).await;
    services.record_dead_letter().await;

    let mut exposition = String::new();
    for (_, url) in &services.urls {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        exposition.push_str(&text);
    }

    let used = metrics_used();
    let families: BTreeSet<&str> = used.iter().map(|(name, _)| name.as_str()).collect();
    // The files query the replication, ingest and HTTP metrics; an extraction that found few
    // names would make this test pass for nothing.
    assert!(families.len() >= 12, "only {families:?} found in deploy/");
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported(&exposition, name))
        .map(|(name, file)| format!("{name} (used in {file})"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        missing.is_empty(),
        "metrics queried but not exported by the services:\n  {}",
        missing.join("\n  ")
    );
}

/// The points of `expr` over the last `range` seconds, per series.
async fn query_range(prometheus: &str, expr: &str, range: i64) -> Vec<usize> {
    let end = time::OffsetDateTime::now_utc().unix_timestamp();
    let response: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query_range"))
        .query(&[
            ("query", expr.to_string()),
            ("start", (end - range).to_string()),
            ("end", end.to_string()),
            ("step", "1".to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["status"], "success", "{expr}: {response}");
    response["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| series["values"].as_array().unwrap().len())
        .collect()
}

/// Runs headless Chromium on `url`; with `screenshot` it writes a PNG there, else it returns
/// the DOM after the page's scripts have run.
async fn chromium(url: &str, screenshot: Option<&Path>) -> String {
    let mut command = tokio::process::Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1400,1800",
        // Lets the graphs' query_range requests finish before the page is captured.
        "--virtual-time-budget=10000",
    ]);
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        command.arg(url).kill_on_drop(true).output(),
    )
    .await
    .expect("chromium did not finish within 2 minutes")
    .expect("failed to run chromium (Debian package `chromium`)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `<div id="…">` element's text up to the next panel, from a dumped DOM.
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the rendered page"));
    let rest = &dom[start..];
    let end = rest.find("class=\"myhealth-panel\"").unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test(flavor = "multi_thread")]
async fn console_dashboard_shows_replication_lag_with_data_after_uploads() {
    let mut services = Services::start().await;
    let prometheus = Prometheus::start(&services.scrape_targets(), None, Duration::from_secs(1))
        .await
        .unwrap();
    // Uploads over a few seconds once the services are scraped, so that several scrapes see
    // the daemon at work (and the rate and latency panels have increases to show).
    let url = prometheus.url();
    let started = Instant::now();
    while query_range(&url, "up == 1", 60).await.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus does not scrape the services"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut last = None;
    for _ in 0..4 {
        last = Some(services.upload(2).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (patient, commit_lsn) = last.unwrap();
    services.read_reports(&patient, &commit_lsn).await;

    let started = Instant::now();
    loop {
        let lag = query_range(&url, "cdc_lag_seconds{job='cdc-daemon'}", 120).await;
        let applied = query_range(&url, "cdc_transactions_total{job='cdc-daemon'} > 0", 120).await;
        if lag.first().is_some_and(|points| *points >= 10) && !applied.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus has no lag series after a minute (points per series: {lag:?}, \
             transactions: {applied:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The table on top is rendered by Prometheus itself.
    let page = reqwest::get(prometheus.dashboard_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for cell in [
        "current-lag-seconds",
        "current-lag-bytes",
        "current-transactions",
    ] {
        let html = element(&page, cell);
        let value = html.split("</a>").next().unwrap();
        assert!(!value.ends_with("no data"), "{cell} shows no data: {html}");
    }

    // The graphs are drawn by the browser: the lag panels must hold a plotted line.
    let view = format!(
        "{}#pctc{}",
        prometheus.dashboard_url(),
        "%7B%22duration%22%3A30%2C%22endTime%22%3A0%7D"
    );
    let dom = chromium(&view, None).await;
    for graph in ["graph-lag-seconds", "graph-lag-bytes", "graph-changes"] {
        let html = element(&dom, graph);
        let line = html
            .split("<path")
            .skip(1)
            .find_map(|path| path.split("d=\"").nth(1))
            .unwrap_or_else(|| panic!("{graph} has no plotted path: {html}"));
        let points = line.split('"').next().unwrap().matches('L').count();
        assert!(points >= 3, "{graph} plots only {points} segments: {html}");
    }

    let dir = tempfile::tempdir().unwrap();
    let screenshot = dir.path().join("replication.png");
    chromium(&view, Some(&screenshot)).await;
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1400, 1800));
    let colours: BTreeSet<&[u8]> = pixels[..frame.buffer_size()]
        .chunks(frame.color_type.samples())
        .collect();
    assert!(
        colours.len() > 50,
        "the screenshot is nearly blank ({} colours)",
        colours.len()
    );
    if let Some(keep) = std::env::var_os("DEPLOY_CHECKS_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
}
