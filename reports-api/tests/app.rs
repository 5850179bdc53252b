//! The patient web app in a real browser: headless Chromium, driven over the DevTools protocol,
//! against the real reports API reading what the real daemon wrote from uploads posted through
//! the real ingest API.
//!
//! The DevTools protocol runs over `--remote-debugging-pipe` (JSON messages ended by a NUL byte
//! on file descriptors 3 and 4), so no websocket client is needed: `sh` maps the child's stdin
//! and stdout onto those descriptors.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use devstack::TestContext;
use devstack::in_process::InProcessStack;
use devstack::tablet::{Patient, Tablet};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use uuid::Uuid;

const SECRET: &str = "test-secret-of-the-reports-api-0123456789";
const CHECKUPS: i64 = 12;
const PAGE_SIZE: usize = 10;
/// A phone (portrait) and a laptop screen, in CSS pixels.
const PHONE: (u32, u32) = (390, 844);
const DESKTOP: (u32, u32) = (1280, 900);
/// Where to keep the screenshots (the README's come from here), if set.
const SCREENSHOT_DIR: &str = "REPORTS_APP_SCREENSHOT_DIR";

/// Ingest API, daemon and reports API on one test's databases, and a tablet of their clinic.
struct Stack {
    reports: String,
    tablet: Tablet,
    /// Kept alive for the test: dropping it stops the services, then drops the databases and slot.
    _services: InProcessStack,
}

impl Stack {
    async fn start() -> Stack {
        let ctx = TestContext::new().await.unwrap();
        let services = InProcessStack::start(ctx, SECRET, "App Clinic")
            .await
            .unwrap();
        Stack {
            reports: services.reports.url.clone(),
            tablet: Tablet::new(&services.ingest.url, &services.device_token, 11),
            _services: services,
        }
    }

    /// Posts `upload` and waits until the reports API serves it.
    async fn post_and_wait(&self, upload: &Value, patient: &Patient) {
        let result = self.tablet.post(upload).await.unwrap();
        let lsn = result["commit_lsn"].as_str().unwrap();
        let response = reqwest::Client::new()
            .get(format!(
                "{}/v1/me/summary?min_lsn={lsn}&wait_ms=5000",
                self.reports
            ))
            .bearer_auth(token(patient.id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn api(&self, token: &str, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.reports))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }
}

fn token(patient: Uuid) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    encode(
        &Header::default(),
        &json!({ "sub": patient, "iss": "myhealth-local", "aud": "myhealth-reports-api",
                 "iat": now, "nbf": now, "exp": now + 600 }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    child: Child,
    commands: ChildStdin,
    events: BufReader<ChildStdout>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("failed to run chromium (Debian package `chromium`)");
        let mut browser = Browser {
            commands: child.stdin.take().unwrap(),
            events: BufReader::new(child.stdout.take().unwrap()),
            child,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .send("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .send(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.send("Page.enable", json!({})).await;
        // Injected by the protocol, so the page's policy does not apply to it: it records
        // every Content-Security-Policy violation the app causes.
        browser
            .send(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": "window.cspViolations = []; document.addEventListener(\
                    'securitypolicyviolation', (e) => window.cspViolations.push(\
                    e.violatedDirective + ' ' + e.blockedURI));" }),
            )
            .await;
        browser
    }

    /// Sends one command to the page (the browser itself before a page is attached) and
    /// returns its result, skipping the events in between.
    async fn send(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params.clone())
            .await
            .unwrap_or_else(|error| panic!("{method} {params}: {error}"))
    }

    /// [`Browser::send`], with the protocol's error as an `Err`.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).await.unwrap();
        self.commands.flush().await.unwrap();
        let deadline = Duration::from_secs(60);
        tokio::time::timeout(deadline, async {
            loop {
                let mut frame = Vec::new();
                let read = self.events.read_until(0, &mut frame).await.unwrap();
                assert!(read > 0, "chromium closed the DevTools pipe");
                frame.pop();
                let reply: Value = serde_json::from_slice(&frame).unwrap();
                if reply["id"] == id {
                    return match reply.get("error") {
                        Some(error) => Err(error.clone()),
                        None => Ok(reply["result"].clone()),
                    };
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer from chromium"))
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .send(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    async fn viewport(&mut self, (width, height): (u32, u32)) {
        self.send(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600 }),
        )
        .await;
    }

    async fn navigate(&mut self, url: &str) {
        self.send("Page.navigate", json!({ "url": url })).await;
    }

    /// Waits until the app has rendered the route `hash` (`#/reports`, say).
    async fn rendered(&mut self, hash: &str) {
        let check = format!(
            "(() => {{ const m = document.getElementById('main'); \
             return !!m && m.dataset.ready === 'true' && m.dataset.route === {}; }})()",
            json!(hash)
        );
        let started = Instant::now();
        loop {
            // While a page loads, its context may be gone or not yet there: try again.
            let done = self
                .call(
                    "Runtime.evaluate",
                    json!({ "expression": check, "returnByValue": true }),
                )
                .await
                .is_ok_and(|result| result["result"]["value"] == json!(true));
            if done {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the app never rendered {hash}; it shows: {}",
                self.eval("document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&mut self) -> String {
        self.eval("document.getElementById('main').innerText")
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A screenshot of the viewport, decoded: (width, height, RGBA rows).
    async fn screenshot(&mut self, name: &str) -> (u32, u32, Vec<u8>) {
        let shot = self
            .send("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        if let Some(dir) = std::env::var_os(SCREENSHOT_DIR) {
            std::fs::write(std::path::Path::new(&dir).join(name), &png).unwrap();
        }
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        let samples = frame.color_type.samples();
        let rgba = pixels[..frame.buffer_size()]
            .chunks(samples)
            .flat_map(|pixel| [pixel[0], pixel[1], pixel[2], 255])
            .collect();
        (frame.width, frame.height, rgba)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Distinct colours in a rectangle of a screenshot.
fn colours(shot: &(u32, u32, Vec<u8>), x: u32, y: u32, width: u32, height: u32) -> usize {
    let (shot_width, shot_height, pixels) = shot;
    let mut seen = BTreeSet::new();
    for row in y..(y + height).min(*shot_height) {
        for column in x..(x + width).min(*shot_width) {
            let at = ((row * shot_width + column) * 4) as usize;
            seen.insert(&pixels[at..at + 3]);
        }
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_signs_in_and_sees_values_trends_and_reports_in_a_browser() {
    let mut stack = Stack::start().await;
    let ada = stack.tablet.patient();
    let grace = stack.tablet.patient();
    let now = OffsetDateTime::now_utc();
    // Monthly checkups, the newest first in the list; its blood pressure report gets notes
    // that would be markup if the app rendered text as HTML.
    const NOTES: &str = "<img src=x id=injected onerror=alert(1)> left arm & seated";
    let mut newest = Value::Null;
    for month in (0..CHECKUPS).rev() {
        let mut upload = stack
            .tablet
            .upload(&ada, now - time::Duration::days(30 * month + 1));
        if month == 0 {
            upload["checkups"][0]["reports"][0]["notes"] = json!(NOTES);
            newest = upload["checkups"][0]["reports"][0].clone();
        }
        stack.post_and_wait(&upload, &ada).await;
    }
    let graces = stack.tablet.upload(&grace, now);
    stack.post_and_wait(&graces, &grace).await;
    let ada_token = token(ada.id);
    let summary = stack.api(&ada_token, "/v1/me/summary").await;

    // The app's files carry the policy; the data carries no-store.
    let page = reqwest::get(format!("{}/app/", stack.reports))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-security-policy"],
        reports_api::app::CONTENT_SECURITY_POLICY_VALUE
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    for (file, media_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    ] {
        let response = reqwest::get(format!("{}/app/{file}", stack.reports))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(response.headers()["content-type"], media_type, "{file}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(response.headers().contains_key("content-security-policy"));
    }
    // Only the app's files: not the licence next to them, not the sources.
    for file in ["vendor/uPlot.LICENSE", "app.rs", "%2e%2e/Cargo.toml"] {
        let response = reqwest::get(format!("{}/app/{file}", stack.reports))
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{file}");
    }
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/app", stack.reports))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/app/");

    let mut browser = Browser::start().await;
    browser.viewport(PHONE).await;
    browser
        .navigate(&format!("{}/app/#token={ada_token}", stack.reports))
        .await;
    browser.rendered("#/").await;
    let href = browser.eval("location.href").await;
    assert!(
        !href.as_str().unwrap().contains("token"),
        "the token stays in the address bar: {href}"
    );
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('myhealth.token')")
            .await,
        json!(ada_token)
    );

    // Home: every latest value with its flag as a word, not only a colour.
    let text = browser.text().await;
    assert!(text.contains(ada.full_name.as_str()), "{text}");
    let shown = browser
        .eval(
            "[...document.querySelectorAll('li.value')].map((li) => ({ code: li.dataset.code, \
             reading: li.querySelector('.reading').textContent, \
             flag: li.querySelector('.flag').textContent }))",
        )
        .await;
    let latest = summary["latest"].as_array().unwrap();
    assert_eq!(shown.as_array().unwrap().len(), latest.len(), "{shown}");
    for (entry, shown) in latest.iter().zip(shown.as_array().unwrap()) {
        assert_eq!(shown["code"], entry["code"]);
        let reading = shown["reading"].as_str().unwrap();
        let value = entry["value"].as_f64().unwrap();
        assert_eq!(
            reading,
            format!("{value} {}", entry["unit"].as_str().unwrap()),
            "{entry}"
        );
        let word = match entry["flag"].as_str() {
            Some("H") => "High",
            Some("L") => "Low",
            Some("N") => "Normal",
            _ => "No range",
        };
        assert!(
            shown["flag"].as_str().unwrap().contains(word),
            "{entry} {shown}"
        );
    }
    assert_eq!(
        browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true),
        "the home screen is wider than a phone"
    );
    let shot = browser.screenshot("app-phone-home.png").await;
    assert_eq!((shot.0, shot.1), PHONE);
    assert!(
        colours(&shot, 0, 0, PHONE.0, PHONE.1) > 30,
        "a blank phone screenshot"
    );

    // Blood pressure: both codes on one chart with one point per checkup each.
    browser.eval("location.hash = '#/trends/8480-6'").await;
    browser.rendered("#/trends/8480-6").await;
    let chart = browser
        .eval(
            "(() => { const f = document.querySelector('figure.chart'); \
             const c = f.querySelector('canvas'); const r = c.getBoundingClientRect(); \
             return { codes: f.dataset.codes, points: Number(f.dataset.points), \
             rows: document.querySelectorAll('table.points tbody tr').length, \
             legend: [...f.querySelectorAll('.u-legend .u-label')].map((l) => l.textContent), \
             x: r.x, y: r.y, width: r.width, height: r.height }; })()",
        )
        .await;
    assert_eq!(chart["codes"], "8480-6 8462-4");
    assert_eq!(chart["points"], json!(2 * CHECKUPS), "{chart}");
    assert_eq!(chart["rows"], json!(CHECKUPS), "{chart}");
    let legend = chart["legend"].to_string();
    assert!(
        legend.contains("Systolic") && legend.contains("Diastolic"),
        "{legend}"
    );
    let shot = browser.screenshot("app-phone-trend.png").await;
    let (x, y) = (chart["x"].as_f64().unwrap(), chart["y"].as_f64().unwrap());
    let (width, height) = (
        chart["width"].as_f64().unwrap(),
        chart["height"].as_f64().unwrap(),
    );
    assert!(width >= 280.0 && width <= f64::from(PHONE.0), "{chart}");
    assert!(
        colours(&shot, x as u32, y as u32, width as u32, height as u32) > 10,
        "the chart area is blank: {chart}"
    );

    // Reports: pages of ten, walked with the keyboard, until the oldest.
    browser.eval("location.hash = '#/reports'").await;
    browser.rendered("#/reports").await;
    let mut seen = Vec::new();
    loop {
        let ids = browser
            .eval("[...document.querySelectorAll('li.report')].map((li) => li.dataset.report)")
            .await;
        let ids: Vec<String> = serde_json::from_value(ids).unwrap();
        assert!(ids.len() <= PAGE_SIZE);
        seen.extend(ids);
        let older = browser
            .eval("(() => { const a = document.querySelector('a.older'); return a && a.getAttribute('href'); })()")
            .await;
        let Some(older) = older.as_str() else { break };
        browser
            .eval("document.querySelector('a.older').focus()")
            .await;
        for kind in ["keyDown", "keyUp"] {
            browser
                .send(
                    "Input.dispatchKeyEvent",
                    json!({ "type": kind, "key": "Enter", "code": "Enter",
                            "windowsVirtualKeyCode": 13, "text": "\r" }),
                )
                .await;
        }
        browser.rendered(older).await;
    }
    let everything = stack.api(&ada_token, "/v1/me/reports?limit=100").await;
    let expected: Vec<String> = everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected.len(), 5 * CHECKUPS as usize);
    assert_eq!(seen, expected, "the pages, newest first, without gaps");

    // One report: its measurements and its notes, as text.
    let id = newest["id"].as_str().unwrap();
    browser
        .eval(&format!("location.hash = '#/reports/{id}'"))
        .await;
    browser.rendered(&format!("#/reports/{id}")).await;
    let detail = browser
        .eval(
            "({ notes: document.querySelector('.notes').textContent, \
             injected: document.getElementById('injected') !== null, \
             codes: [...document.querySelectorAll('table.measurements tbody tr')].map((r) => r.dataset.code) })",
        )
        .await;
    assert_eq!(detail["notes"], NOTES);
    assert_eq!(detail["injected"], json!(false));
    assert_eq!(detail["codes"], json!(["8480-6", "8462-4", "8867-4"]));

    // Desktop width: the same home screen, values side by side.
    browser.viewport(DESKTOP).await;
    browser.eval("location.hash = '#/'").await;
    browser.rendered("#/").await;
    let columns = browser
        .eval(
            "new Set([...document.querySelectorAll('li.value')].map((li) => li.getBoundingClientRect().x)).size",
        )
        .await;
    assert!(
        columns.as_u64().unwrap() >= 3,
        "{columns} columns on a desktop"
    );
    let shot = browser.screenshot("app-desktop-home.png").await;
    assert_eq!((shot.0, shot.1), DESKTOP);
    assert!(colours(&shot, 0, 0, DESKTOP.0, DESKTOP.1) > 30);
    browser.eval("location.hash = '#/trends/8480-6'").await;
    browser.rendered("#/trends/8480-6").await;
    browser.screenshot("app-desktop-trend.png").await;

    // Another patient signing in on the same tab sees only their own data.
    browser
        .navigate(&format!("{}/app/#token={}", stack.reports, token(grace.id)))
        .await;
    browser.rendered("#/").await;
    let text = browser.text().await;
    assert!(text.contains(grace.full_name.as_str()), "{text}");
    assert!(!text.contains(ada.full_name.as_str()), "{text}");
    browser.eval("location.hash = '#/reports'").await;
    browser.rendered("#/reports").await;
    let ids: Vec<String> = serde_json::from_value(
        browser
            .eval("[...document.querySelectorAll('li.report')].map((li) => li.dataset.report)")
            .await,
    )
    .unwrap();
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|id| !expected.contains(id)), "{ids:?}");
    browser
        .eval(&format!("location.hash = '#/reports/{id}'"))
        .await;
    browser.rendered(&format!("#/reports/{id}")).await;
    let text = browser.text().await;
    assert!(!text.contains(NOTES), "another patient's report is shown");

    // Signing out forgets the token; a bad token is refused and forgotten too.
    browser
        .eval("document.getElementById('sign-out').click()")
        .await;
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('myhealth.token')")
            .await,
        Value::Null
    );
    browser
        .navigate(&format!("{}/app/#token=not-a-token", stack.reports))
        .await;
    browser.rendered("#/").await;
    assert!(browser.text().await.contains("signed out"));
    // The app itself broke no rule of its policy, and the policy is enforced: an image from
    // elsewhere is refused.
    assert_eq!(browser.eval("window.cspViolations").await, json!([]));
    browser
        .eval(
            "new Promise((done) => { const img = document.createElement('img'); \
             img.onerror = done; img.src = 'http://192.0.2.1/x.png'; document.body.append(img); })",
        )
        .await;
    let started = Instant::now();
    let mut violations = browser.eval("window.cspViolations").await;
    while violations == json!([]) && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        violations = browser.eval("window.cspViolations").await;
    }
    assert_eq!(violations, json!(["img-src http://192.0.2.1/x.png"]));
}
