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
use devstack::local::app_sign_in_url;
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

    /// Posts `upload` and waits until the reports API serves it, asking again while it answers
    /// that the store has not reached the upload yet (`503`, "retry shortly"): on two shared
    /// cores the daemon can take longer than one request's longest wait.
    async fn post_and_wait(&self, upload: &Value, patient: &Patient) {
        let result = self.tablet.post(upload).await.unwrap();
        let lsn = result["commit_lsn"].as_str().unwrap();
        let url = format!("{}/v1/me/summary?min_lsn={lsn}&wait_ms=5000", self.reports);
        for attempt in 1.. {
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(token(patient.id))
                .send()
                .await
                .unwrap();
            let status = response.status();
            if status == 200 {
                return;
            }
            let body = response.text().await.unwrap();
            assert!(status == 503 && attempt < 6, "{status} {body}");
        }
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

/// Pixels of a rectangle of a screenshot within a small distance of `colour` (antialiased
/// edges blend into the background, the middle of a line does not).
fn pixels_of(
    shot: &(u32, u32, Vec<u8>),
    (x, y, width, height): (u32, u32, u32, u32),
    colour: [u8; 3],
) -> usize {
    let (shot_width, shot_height, pixels) = shot;
    let mut count = 0;
    for row in y..(y + height).min(*shot_height) {
        for column in x..(x + width).min(*shot_width) {
            let at = ((row * shot_width + column) * 4) as usize;
            let near = pixels[at..at + 3]
                .iter()
                .zip(colour)
                .all(|(have, want)| have.abs_diff(want) <= 24);
            count += usize::from(near);
        }
    }
    count
}

/// `#rrggbb` as bytes.
fn hex_colour(text: &str) -> [u8; 3] {
    let hex = text.strip_prefix('#').unwrap_or_else(|| panic!("{text}"));
    let byte = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).unwrap();
    [byte(0), byte(2), byte(4)]
}

/// A rectangle of `getBoundingClientRect()` in whole screenshot pixels.
fn rect(value: &Value) -> (u32, u32, u32, u32) {
    let number = |name: &str| value[name].as_f64().unwrap().max(0.0) as u32;
    (number("x"), number("y"), number("width"), number("height"))
}

/// The app took `token` from the sign-in link as the README promises: the address (and so the
/// history entry) no longer holds it, the tab's `sessionStorage` does, and nothing that outlives
/// the tab (`localStorage`) does.
async fn assert_signed_in_with_token_out_of_the_url(browser: &mut Browser, token: &str) {
    let state = browser
        .eval(
            "({ href: location.href, hash: location.hash, \
             session: sessionStorage.getItem('myhealth.token'), \
             local: Object.keys(localStorage).map((key) => key + '=' + localStorage.getItem(key)) })",
        )
        .await;
    let href = state["href"].as_str().unwrap();
    assert!(
        !href.contains(token) && !href.contains("token="),
        "the token stays in the address bar: {href}"
    );
    assert_eq!(state["hash"], "#/", "{state}");
    assert_eq!(state["session"], json!(token), "{state}");
    assert!(
        state["local"]
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| !entry.as_str().unwrap().contains(token)),
        "the token is kept in localStorage: {state}"
    );
}

/// The home screen shows every latest value of `summary` (the API's answer) with its flag as a
/// word, not only a colour, and nothing else.
async fn assert_home_shows(browser: &mut Browser, summary: &Value) {
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
}

/// The blood pressure chart on screen (route `#/trends/8480-6`) as uPlot holds it: one x per
/// reading, oldest first, and the systolic and diastolic values the API answered for `token`
/// as two series; both series' stroke colours are distinct and drawn in the plot area of the
/// screenshot `name`. Returns what the page said of the chart.
async fn assert_blood_pressure_chart(
    browser: &mut Browser,
    stack: &Stack,
    token: &str,
    name: &str,
) -> Value {
    let chart = browser
        .eval(
            "(() => { const f = document.querySelector('figure.chart'); const u = f.uplot; \
             const c = f.querySelector('canvas').getBoundingClientRect(); \
             const p = u.over.getBoundingClientRect(); \
             const box = (r) => ({ x: r.x, y: r.y, width: r.width, height: r.height }); \
             return { codes: f.dataset.codes, points: Number(f.dataset.points), \
             data: u.data.map((column) => Array.from(column)), \
             xs: Array.from(u.data[0], (x) => u.valToPos(x, 'x')), \
             strokes: u.series.slice(1).map((s, i) => \
               typeof s.stroke === 'function' ? s.stroke(u, i + 1) : s.stroke), \
             rows: document.querySelectorAll('table.points tbody tr').length, \
             legend: [...f.querySelectorAll('.u-legend .u-label')].map((l) => l.textContent), \
             canvas: box(c), plot: box(p) }; })()",
        )
        .await;
    assert_eq!(chart["codes"], "8480-6 8462-4");
    let data = chart["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "x and two series: {chart}");
    let mut readings = 0;
    for (column, code) in data[1..].iter().zip(["8480-6", "8462-4"]) {
        let trend = stack
            .api(token, &format!("/v1/me/trends?code={code}&limit=500"))
            .await;
        let expected: Vec<f64> = trend["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point["value"].as_f64().unwrap())
            .collect();
        let plotted: Vec<f64> = column
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_f64().unwrap())
            .collect();
        assert_eq!(plotted, expected, "{code}: {chart}");
        readings = expected.len();
    }
    let times: Vec<f64> = data[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|time| time.as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), readings, "one x per reading: {chart}");
    assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "{chart}");
    assert_eq!(chart["points"], json!(2 * readings), "{chart}");
    assert_eq!(chart["rows"], json!(readings), "{chart}");
    let legend = chart["legend"].to_string();
    assert!(
        legend.contains("Systolic") && legend.contains("Diastolic"),
        "{legend}"
    );

    // Every reading inside the plot; a lone one away from its edges.
    let plot_width = chart["plot"]["width"].as_f64().unwrap();
    let xs: Vec<f64> = chart["xs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let inner = if readings > 1 { 0.0 } else { plot_width / 4.0 };
    assert!(
        xs.iter().all(|x| (inner..=plot_width - inner).contains(x)),
        "readings outside the plot: {chart}"
    );

    let shot = browser.screenshot(name).await;
    let plot = rect(&chart["plot"]);
    assert!(plot.2 >= 200 && plot.3 >= 100, "a small plot area: {chart}");
    assert!(
        colours(&shot, plot.0, plot.1, plot.2, plot.3) > 10,
        "a blank plot: {chart}"
    );
    let strokes: Vec<[u8; 3]> = chart["strokes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stroke| hex_colour(stroke.as_str().unwrap()))
        .collect();
    assert_eq!(strokes.len(), 2, "{chart}");
    assert_ne!(
        strokes[0], strokes[1],
        "one colour for both series: {chart}"
    );
    // A line across the plot, or the ring of a lone point.
    let wanted = if readings > 1 { 100 } else { 8 };
    for stroke in strokes {
        let drawn = pixels_of(&shot, plot, stroke);
        assert!(
            drawn >= wanted,
            "{stroke:?} drawn in {drawn} pixels: {chart}"
        );
    }
    chart
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
    // Sign in as a user of `make run` does: through the link devstack prints.
    browser
        .navigate(&app_sign_in_url(&stack.reports, &ada_token))
        .await;
    browser.rendered("#/").await;
    assert_signed_in_with_token_out_of_the_url(&mut browser, &ada_token).await;

    let text = browser.text().await;
    assert!(text.contains(ada.full_name.as_str()), "{text}");
    assert_home_shows(&mut browser, &summary).await;
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
    let chart =
        assert_blood_pressure_chart(&mut browser, &stack, &ada_token, "app-phone-trend.png").await;
    assert_eq!(chart["points"], json!(2 * CHECKUPS), "{chart}");
    let width = chart["canvas"]["width"].as_f64().unwrap();
    assert!(width >= 280.0 && width <= f64::from(PHONE.0), "{chart}");

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
    let cards = browser
        .eval(
            "[...document.querySelectorAll('li.value')].map((li) => li.getBoundingClientRect()) \
             .filter((r) => r.bottom <= window.innerHeight) \
             .map((r) => ({ x: r.x, y: r.y, width: r.width, height: r.height }))",
        )
        .await;
    let shot = browser.screenshot("app-desktop-home.png").await;
    assert_eq!((shot.0, shot.1), DESKTOP);
    assert!(colours(&shot, 0, 0, DESKTOP.0, DESKTOP.1) > 30);
    // Every value on screen is drawn: its name, reading and flag, not an empty box.
    let cards = cards.as_array().unwrap();
    assert!(cards.len() >= 3, "{cards:?}");
    for card in cards {
        let (x, y, width, height) = rect(card);
        assert!(width >= 120 && height >= 60, "{card}");
        assert!(
            colours(&shot, x, y, width, height) > 10,
            "a blank value: {card}"
        );
    }
    browser.eval("location.hash = '#/trends/8480-6'").await;
    browser.rendered("#/trends/8480-6").await;
    let chart =
        assert_blood_pressure_chart(&mut browser, &stack, &ada_token, "app-desktop-trend.png")
            .await;
    assert!(
        chart["canvas"]["width"].as_f64().unwrap() > f64::from(PHONE.0),
        "the chart does not use a desktop's width: {chart}"
    );

    // Another patient signing in on the same tab sees only their own data.
    let grace_token = token(grace.id);
    browser
        .navigate(&app_sign_in_url(&stack.reports, &grace_token))
        .await;
    browser.rendered("#/").await;
    assert_signed_in_with_token_out_of_the_url(&mut browser, &grace_token).await;
    let text = browser.text().await;
    assert!(text.contains(grace.full_name.as_str()), "{text}");
    assert!(!text.contains(ada.full_name.as_str()), "{text}");
    assert_home_shows(
        &mut browser,
        &stack.api(&grace_token, "/v1/me/summary").await,
    )
    .await;
    let page = browser.eval("document.documentElement.outerHTML").await;
    let page = page.as_str().unwrap();
    assert!(
        expected.iter().all(|id| !page.contains(id.as_str())),
        "the first patient's report ids on the second one's home screen"
    );
    browser.eval("location.hash = '#/trends/8480-6'").await;
    browser.rendered("#/trends/8480-6").await;
    let chart = assert_blood_pressure_chart(
        &mut browser,
        &stack,
        &grace_token,
        "app-desktop-trend-second-patient.png",
    )
    .await;
    assert_eq!(chart["points"], json!(2), "{chart}");
    let page = browser.eval("document.documentElement.outerHTML").await;
    let page = page.as_str().unwrap();
    assert!(expected.iter().all(|id| !page.contains(id.as_str())));
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
    // The first patient's report, opened by its address: not found, as any unknown id.
    browser
        .navigate(&format!("{}/app/#/reports/{id}", stack.reports))
        .await;
    browser.rendered(&format!("#/reports/{id}")).await;
    let text = browser.text().await;
    assert!(!text.contains(NOTES), "another patient's report is shown");
    assert_eq!(
        browser
            .eval("document.getElementById('main').dataset.view")
            .await,
        "missing",
        "{text}"
    );
    assert!(text.contains("Not found"), "{text}");
    assert_eq!(
        browser
            .eval("document.querySelectorAll('table.measurements').length")
            .await,
        json!(0)
    );

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
        .navigate(&app_sign_in_url(&stack.reports, "not-a-token"))
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
