//! The end of a run: wait for the daemon to converge, then hold the system to what the API
//! acknowledged. Each check gives a line of the summary and whether it passed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mongodb::bson::Document;
use uuid::Uuid;

use crate::load::Ledger;
use crate::stack::{DATABASE, SLOT, Service, Stack};

/// Retained WAL that counts as "back near zero": less than one WAL segment.
const RETAINED_WAL_LIMIT: i64 = 16 * 1024 * 1024;

/// One check's outcome.
#[derive(Debug)]
pub struct Check {
    /// What was checked and what was found.
    pub line: String,
    /// Whether it passed.
    pub passed: bool,
}

fn check(passed: bool, line: String) -> Check {
    Check { line, passed }
}

/// Waits until every service is ready and the daemon's checkpoint has reached the source's
/// current WAL position; returns how long that took.
pub async fn converge(stack: &Stack, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    for service in [Service::Ingest, Service::Daemon, Service::Reports] {
        stack.wait_ready(service, timeout).await?;
    }
    let admin = devstack::postgres::connect(&stack.admin_url).await?;
    let target: String = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .context("failed to read the WAL position")?
        .get(0);
    let target = read_model::lsn::parse(&target).context("unreadable WAL position")?;
    let store = mongodb::Client::with_uri_str(stack.store.uri())
        .await
        .context("failed to connect to the store")?
        .database(DATABASE);
    loop {
        let checkpoint = read_model::checkpoint::load(&store, SLOT)
            .await
            .ok()
            .flatten();
        if checkpoint.is_some_and(|checkpoint| checkpoint.lsn >= target) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "the daemon's checkpoint did not reach {} within {} s",
                read_model::lsn::format(target),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged upload is in PostgreSQL exactly once with its reports, minus the reports
/// deleted; every acknowledged amendment's notes are stored.
pub async fn acknowledged_writes(stack: &Stack, ledger: &Ledger) -> Result<Check> {
    let admin = devstack::postgres::connect(&stack.admin_url).await?;
    let upload_ids: Vec<Uuid> = ledger.uploads.keys().copied().collect();
    let stored_uploads: i64 = admin
        .query_one(
            "SELECT count(*) FROM uploads WHERE id = ANY($1)",
            &[&upload_ids],
        )
        .await
        .context("failed to count uploads")?
        .get(0);
    let expected: Vec<Uuid> = ledger
        .uploads
        .values()
        .flatten()
        .filter(|report| !ledger.deleted.contains(report))
        .copied()
        .collect();
    let deleted: Vec<Uuid> = ledger.deleted.iter().copied().collect();
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM reports WHERE id = ANY($1)), \
                    (SELECT count(*) FROM reports WHERE id = ANY($2))",
            &[&expected, &deleted],
        )
        .await
        .context("failed to count reports")?;
    let (present, resurrected): (i64, i64) = (row.get(0), row.get(1));
    let mut wrong_notes = 0;
    for (report, notes) in &ledger.amended {
        if ledger.deleted.contains(report) {
            continue;
        }
        let stored: Option<String> = admin
            .query_opt("SELECT notes FROM reports WHERE id = $1", &[report])
            .await
            .context("failed to read an amended report")?
            .and_then(|row| row.get(0));
        wrong_notes += usize::from(stored.as_deref() != Some(notes.as_str()));
    }
    let passed = stored_uploads == upload_ids.len() as i64
        && present == expected.len() as i64
        && resurrected == 0
        && wrong_notes == 0;
    Ok(check(
        passed,
        format!(
            "acknowledged uploads in PostgreSQL: {stored_uploads}/{} (each upload id is the \
             ledger's primary key: at most once); reports {present}/{}; deleted reports back: \
             {resurrected}; amendments not stored: {wrong_notes}",
            upload_ids.len(),
            expected.len()
        ),
    ))
}

/// `cdc-daemon verify` (the binary, as the daemon's login) finds no difference.
pub async fn verify(stack: &Stack) -> Result<Check> {
    let output = tokio::process::Command::new(stack.bin_dir.join("cdc-daemon"))
        .args(["verify", "--wait-seconds", "120"])
        .env("MYHEALTH_DATABASE_URL", &stack.replication_url)
        .env("MYHEALTH_MONGODB_URI", stack.store.uri())
        .env("MYHEALTH_MONGODB_DATABASE", DATABASE)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .context("failed to run cdc-daemon verify")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let saved = stack.log_dir.join("verify.txt");
    std::fs::write(&saved, stdout.as_bytes())
        .with_context(|| format!("failed to write {}", saved.display()))?;
    let differences: Vec<&str> = stdout.lines().filter(|line| !line.is_empty()).collect();
    let shown: Vec<&str> = differences.iter().take(5).copied().collect();
    Ok(check(
        output.status.success(),
        format!(
            "cdc-daemon verify: exit {}, {} difference lines (all in {}){}{}",
            output.status.code().unwrap_or(-1),
            differences.len(),
            saved.display(),
            if shown.is_empty() { "" } else { ":\n    " },
            shown.join("\n    ")
        ),
    ))
}

/// The store holds no dead letter.
pub async fn dead_letters(stack: &Stack) -> Result<Check> {
    let count = mongodb::Client::with_uri_str(stack.store.uri())
        .await
        .context("failed to connect to the store")?
        .database(DATABASE)
        .collection::<Document>(read_model::DEAD_LETTERS)
        .count_documents(Document::new())
        .await
        .context("failed to count dead letters")?;
    Ok(check(count == 0, format!("dead letters: {count}")))
}

/// The slot's retained WAL falls under [`RETAINED_WAL_LIMIT`] (waiting up to `timeout` for the
/// daemon to confirm its position on an idle stream).
pub async fn retained_wal(stack: &Stack, timeout: Duration) -> Result<Check> {
    let admin = devstack::postgres::connect(&stack.admin_url).await?;
    let started = Instant::now();
    loop {
        let retained: Option<i64> = admin
            .query_one(
                "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&SLOT],
            )
            .await
            .context("failed to read the slot")?
            .get(0);
        let retained = retained.unwrap_or(i64::MAX);
        if retained < 1024 * 1024 || started.elapsed() > timeout {
            return Ok(check(
                retained < RETAINED_WAL_LIMIT,
                format!(
                    "WAL retained by the slot: {retained} bytes after {:.0} s idle (limit {RETAINED_WAL_LIMIT})",
                    started.elapsed().as_secs_f64()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
