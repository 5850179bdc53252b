//! `devstack`: the command behind `make run` and `make test`.
//!
//! - `devstack run` starts PostgreSQL and FerretDB (or uses `DATABASE_URL`/`MONGODB_URI`),
//!   migrates the `myhealth` database, starts every service binary built next to it, waits until
//!   each is ready, starts Prometheus scraping them (rules and dashboard from
//!   `deploy/prometheus/`), prints the URLs and writes them to `target/devstack/env`, and stops
//!   everything on Ctrl-C or SIGTERM.
//! - `devstack test -- COMMAND...` starts one PostgreSQL and one FerretDB for a whole test run,
//!   runs COMMAND with `DATABASE_URL` and `MONGODB_URI` pointing at them, then fails the run if
//!   any test left a replication slot behind.

mod run;

use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use devstack::Stack;
use devstack::postgres::{ClusterOptions, connect};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

#[derive(Debug, Parser)]
#[command(about = "Local stack and test harness of the MyHealth reports pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack locally until Ctrl-C.
    Run(run::RunArgs),
    /// Run a test command against one shared PostgreSQL and store, then check for leaked slots.
    Test {
        /// The command to run, e.g. `cargo test --workspace`.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Test { command } => test(command).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("devstack: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` against a shared stack and checks that it left no replication slot.
#[expect(
    clippy::print_stdout,
    reason = "the closing count line belongs with the test output"
)]
async fn test(command: Vec<String>) -> Result<ExitCode> {
    let stack = Stack::from_env_or_start(ClusterOptions::default(), None)
        .await
        .context("failed to start the test stack")?;
    let (program, args) = command.split_first().context("no test command given")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("DATABASE_URL", stack.postgres.admin_url())
        .env("MONGODB_URI", stack.store.uri())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {program}"))?;
    let stdout = child
        .stdout
        .take()
        .context("the test command has no stdout")?;
    let totals = pass_through_counting_results(stdout).await?;
    let status = child.wait().await.context("failed to wait for the tests")?;

    let admin = connect(stack.postgres.admin_url()).await?;
    let leaked = admin
        .query(
            "SELECT slot_name, database FROM pg_replication_slots WHERE database LIKE 't\\_%'",
            &[],
        )
        .await
        .context("failed to list replication slots after the tests")?;
    if !leaked.is_empty() {
        for row in &leaked {
            let (slot, database): (String, String) = (row.get(0), row.get(1));
            eprintln!("devstack: test left replication slot {slot} in database {database}");
        }
        return Ok(ExitCode::FAILURE);
    }
    eprintln!("devstack: no replication slot left behind by the tests");
    // One closing line for the whole run, whatever order the test binaries ran in.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Test counts summed over every `test result:` line of libtest's output.
#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

/// Copies the test command's output to ours, adding up its `test result:` lines.
#[expect(
    clippy::print_stdout,
    reason = "the test output is passed through to stdout"
)]
async fn pass_through_counting_results(output: impl AsyncRead + Unpin) -> Result<Totals> {
    let mut totals = Totals::default();
    let mut lines = BufReader::new(output).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .context("failed to read test output")?
    {
        println!("{line}");
        // "test result: ok. 8 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; ..."
        if let Some(summary) = line.strip_prefix("test result: ") {
            for part in summary.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(kind), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let count: u64 = count.parse().unwrap_or(0);
                match kind {
                    "passed" => totals.passed += count,
                    "failed" => totals.failed += count,
                    _ => {}
                }
            }
        }
    }
    Ok(totals)
}
