//! The README's shell commands, run as written against a local stack started the way
//! `devstack run` starts it, so that a command that stops working fails the test.
//!
//! Which blocks run: every ```sh block after the heading "The local stack", minus its `make …`
//! lines (they start a stack of their own or the whole suite). Each block runs in a fresh bash
//! (`set -eo pipefail`), with a clean environment and the env file sourced first, as in a
//! terminal where the reader sourced it once; its working directory holds `target/devstack/env`
//! of this stack and `target/debug` (the built binaries), so paths in the README resolve as in a
//! checkout. A block passes when it exits 0, no JSON line it prints is a problem (`status` ≥
//! 400), and what it prints is what the README says it does (see `EXPECTED`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use devstack::local::{LocalStack, Options, app_sign_in_url};
use devstack::process::free_loopback_port;
use serde_json::Value;

/// A command each of these blocks contains, and what its output must hold. Every needle must
/// match a block, so that a README edit cannot silently drop what is tested.
const EXPECTED: &[(&str, &str)] = &[
    ("psql", "patients"),
    ("/readyz", "\"ready\""),
    (
        "/v1/uploads",
        "\"upload_id\":\"0b6f4a57-3c1e-4e8e-9a55-8d1f0c2b7a10\"",
    ),
    ("device add", "\n"),
    ("/v1/me/reports?limit=5", "\"items\""),
    ("reports-api token", "\"measurements\""),
    ("dead-letters list", ""),
    ("cdc-daemon verify", ""),
];

/// The runnable blocks: `(first line number, commands)`.
fn runnable_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut after_local_stack = false;
    let mut current: Option<(usize, String)> = None;
    for (index, line) in readme.lines().enumerate() {
        if let Some((start, mut text)) = current.take() {
            if line.starts_with("```") {
                if after_local_stack && !text.trim().is_empty() {
                    blocks.push((start, text));
                }
            } else {
                if !runs_make(line) {
                    text.push_str(line);
                    text.push('\n');
                }
                current = Some((start, text));
            }
            continue;
        }
        if line.starts_with("## The local stack") {
            after_local_stack = true;
        } else if line == "```sh" {
            current = Some((index + 2, String::new()));
        }
    }
    blocks
}

/// The JSON values a block printed: curl prints bodies without a newline, so a line may hold
/// several; lines of other text (psql's table) hold none.
fn json_values(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .flat_map(|line| {
            serde_json::Deserializer::from_str(line)
                .into_iter::<Value>()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn run_block(dir: &Path, commands: &str) -> std::process::Output {
    let script = format!("set -eo pipefail\nset -a; . target/devstack/env; set +a\n{commands}");
    std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_readme_command_works_against_the_local_stack() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_devstack"))
        .parent()
        .unwrap()
        .to_path_buf();
    for service in ["ingest-api", "reports-api", "cdc-daemon"] {
        devstack::services::binary(&bin_dir, service).unwrap();
    }
    let readme = std::fs::read_to_string(devstack::workspace::root().join("README.md")).unwrap();
    let blocks = runnable_blocks(&readme);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("target")).unwrap();
    std::os::unix::fs::symlink(&bin_dir, dir.path().join("target/debug")).unwrap();
    let name = format!("readme_{}", uuid::Uuid::new_v4().simple());
    let options = Options {
        ingest_port: free_loopback_port().unwrap(),
        reports_port: free_loopback_port().unwrap(),
        cdc_port: free_loopback_port().unwrap(),
        prometheus_port: free_loopback_port().unwrap(),
        database: name.clone(),
        slot: name.clone(),
        bin_dir,
        log_dir: dir.path().join("logs"),
        env_file: dir.path().join("target/devstack/env"),
    };
    let mut stack = LocalStack::start(&options).await.unwrap();
    let admin_url = stack.stack.postgres.admin_url().to_string();
    let mongodb_uri = stack.stack.store.uri().to_string();

    // A reader pastes a command after the previous one answered; by then what it wrote has
    // reached the store. The test waits for that explicitly.
    let reports = stack.var("REPORTS_URL").unwrap().to_string();
    let token = stack.var("PATIENT_TOKEN").unwrap().to_string();
    let mut last_lsn = stack.demo_commit_lsn().to_string();
    let mut failures = sign_in_link_failures(&stack, &reports, &token).await;
    let mut outputs = Vec::new();
    for (line, commands) in &blocks {
        wait_for_store(&reports, &token, &last_lsn).await;
        let output = run_block(dir.path(), commands);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            failures.push(format!(
                "README.md:{line}: exit {}\n{commands}\nstdout: {stdout}\nstderr: {stderr}",
                output.status
            ));
        }
        for json in json_values(&stdout) {
            if json["status"].as_u64().is_some_and(|status| status >= 400) {
                failures.push(format!("README.md:{line}: answered a problem: {json}"));
            }
            if let Some(lsn) = json["commit_lsn"].as_str() {
                last_lsn = lsn.to_string();
            }
        }
        outputs.push((*line, commands.clone(), stdout));
    }
    for (needle, expected) in EXPECTED {
        let matching: Vec<_> = outputs
            .iter()
            .filter(|(_, commands, _)| commands.contains(needle))
            .collect();
        if matching.is_empty() {
            failures.push(format!("no runnable README block runs `{needle}`"));
        }
        for (line, _, stdout) in matching {
            if !stdout.contains(expected) {
                failures.push(format!(
                    "README.md:{line}: `{needle}` printed no `{}`: {stdout}",
                    expected.escape_default()
                ));
            }
        }
    }

    stack.stop_services().await;
    devstack::test_context::drop_databases(&name, &admin_url, &mongodb_uri)
        .await
        .unwrap();
    assert!(
        blocks.len() >= EXPECTED.len() - 1,
        "blocks found: {blocks:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What is wrong with the app's sign-in link of `make run`: it must be in the summary the stack
/// prints, be the link devstack builds for the demo patient's token, and serve the app (the
/// fragment stays in the client, as in a browser) with the app's policy.
async fn sign_in_link_failures(stack: &LocalStack, reports: &str, token: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let link = app_sign_in_url(reports, token);
    if stack.var("APP_SIGN_IN_URL") != Some(link.as_str()) {
        failures.push(format!(
            "APP_SIGN_IN_URL is {:?}, not {link}",
            stack.var("APP_SIGN_IN_URL")
        ));
    }
    let summary = stack.summary();
    if !summary.lines().any(|line| line.trim() == link) {
        failures.push(format!(
            "the printed summary has no line with the sign-in link {link}:\n{summary}"
        ));
    }
    let response = reqwest::get(&link).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    if status != 200
        || headers["content-type"] != "text/html; charset=utf-8"
        || headers
            .get("content-security-policy")
            .map(|value| value.as_bytes())
            != Some(reports_api::app::CONTENT_SECURITY_POLICY_VALUE.as_bytes())
        || !body.contains("app.js")
    {
        failures.push(format!(
            "GET {link} is not the app: {status} {headers:?}\n{body}"
        ));
    }
    failures
}

/// Waits until the reports API serves data at or after `lsn`.
async fn wait_for_store(reports: &str, token: &str, lsn: &str) {
    let url = format!("{reports}/v1/me/summary?min_lsn={lsn}&wait_ms=5000");
    let http = reqwest::Client::new();
    for _ in 0..12 {
        let answer = http.get(&url).bearer_auth(token).send().await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the store did not reach {lsn}");
}

#[test]
fn json_values_are_found_side_by_side_and_among_other_text() {
    let values = json_values("{\"a\":1}{\"b\":2}\n List of relations\n[3]\n");
    assert_eq!(
        values,
        vec![
            serde_json::json!({"a": 1}),
            serde_json::json!({"b": 2}),
            serde_json::json!([3])
        ]
    );
}

/// Whether `line` runs `make` (after any `VAR=value` prefixes): a `make run` does not return.
fn runs_make(line: &str) -> bool {
    line.split_whitespace()
        .find(|word| !word.contains('='))
        .is_some_and(|command| command == "make")
}

#[test]
fn blocks_are_found_after_the_local_stack_heading_without_make_lines() {
    let readme = "```sh\nmake run\n```\n## The local stack\n```sh\nmake run\nX=1 make run\necho a\n```\n\
                  text\n```json\n{}\n```\n```sh\necho b\n```\n";
    assert_eq!(
        runnable_blocks(readme),
        vec![(6, "echo a\n".to_string()), (15, "echo b\n".to_string())]
    );
}
