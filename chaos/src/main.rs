//! `chaos` (`make chaos`): the whole pipeline under faults, then proof that nothing was lost.
//!
//! 1. `stack`: starts a PostgreSQL cluster and a store of its own (FerretDB and its cluster), migrates, creates the
//!    services' logins and a tablet, and runs `ingest-api`, `cdc-daemon` and `reports-api` from
//!    the build directory;
//! 2. `load`: tablets post uploads, amendments, deletes and patient renames for `--seconds`;
//! 3. `faults`: meanwhile a schedule drawn from `--seed` kills and restarts the daemon,
//!    PostgreSQL, the store, the walsender and the ingest API (`--faults` of them);
//! 4. `checks`: after the load stops, waits for the daemon to converge, then checks that every
//!    acknowledged upload is in PostgreSQL, `cdc-daemon verify` finds no difference, there is no
//!    dead letter, and the slot retains (almost) no WAL.
//!
//! It prints a summary and exits 1 if any check failed. Services' logs are in `target/chaos/`.

mod checks;
mod faults;
mod load;
mod rng;
mod stack;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use crate::faults::Fault;
use crate::rng::Rng;
use crate::stack::{Service, Stack};

/// Runs the pipeline under load and faults, then checks it lost nothing.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Seed of the fault schedule and of the load; a random one when unset (it is printed).
    #[arg(long, env = "CHAOS_SEED")]
    seed: Option<u64>,
    /// How long the load runs; the faults happen in its first 90%.
    #[arg(long, env = "CHAOS_SECONDS", default_value_t = 60)]
    seconds: u64,
    /// How many faults to inject.
    #[arg(long, env = "CHAOS_FAULTS", default_value_t = 10)]
    faults: usize,
    /// Operations per second of the load generator (FerretDB scans a collection on every
    /// update, so a long run with a high rate mostly measures FerretDB).
    #[arg(long, env = "CHAOS_RATE", default_value_t = 4.0)]
    rate: f64,
    /// How long the system may take to converge after the load stops.
    #[arg(long, default_value_t = 300)]
    converge_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        let bytes = *uuid::Uuid::new_v4().as_bytes();
        u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) % 1_000_000
    });
    eprintln!(
        "chaos: seed {seed}, {} s of load, {} faults (CHAOS_SEED={seed} repeats the schedule)",
        args.seconds, args.faults
    );
    let started = Instant::now();
    let mut stack = Stack::start().await.context("failed to start the stack")?;
    eprintln!("chaos: stack ready; logs in {}", stack.log_dir.display());

    let mut rng = Rng::new(seed);
    let window = Duration::from_secs(args.seconds).mul_f64(0.9);
    let plan = faults::schedule(&mut rng, args.faults, window);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::run(
        stack.base(Service::Ingest),
        stack.device_token.clone(),
        seed,
        2,
        args.rate,
        stop.clone(),
    ));

    let load_started = Instant::now();
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut fault_errors = Vec::new();
    for (gap, fault) in plan {
        tokio::time::sleep(gap).await;
        eprintln!(
            "chaos: {:>6.1} s  {}",
            load_started.elapsed().as_secs_f64(),
            fault.name()
        );
        match faults::inject(&mut stack, fault, &mut rng).await {
            Ok(()) => *injected.entry(fault).or_default() += 1,
            Err(error) => fault_errors.push(format!("{}: {error:#}", fault.name())),
        }
    }
    let remaining = Duration::from_secs(args.seconds).saturating_sub(load_started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::Relaxed);
    let ledger = load.await.context("the load generator failed")?;
    let load_seconds = load_started.elapsed().as_secs_f64();

    eprintln!("chaos: load stopped; waiting for the pipeline to converge");
    let converged = checks::converge(&stack, Duration::from_secs(args.converge_seconds)).await;
    let mut results = vec![match &converged {
        Ok(took) => checks::Check {
            line: format!(
                "converged {:.1} s after the load stopped",
                took.as_secs_f64()
            ),
            passed: true,
        },
        Err(error) => checks::Check {
            line: format!("did not converge: {error:#}"),
            passed: false,
        },
    }];
    results.push(checks::acknowledged_writes(&stack, &ledger).await?);
    results.push(checks::verify(&stack).await?);
    results.push(checks::dead_letters(&stack).await?);
    results.push(checks::retained_wal(&stack, Duration::from_secs(60)).await?);
    results.push(checks::Check {
        line: format!(
            "unexpected answers: {}{}",
            ledger.unexpected.len(),
            ledger
                .unexpected
                .iter()
                .take(5)
                .map(|line| format!("\n    {line}"))
                .collect::<String>()
        ),
        passed: ledger.unexpected.is_empty(),
    });
    results.push(checks::Check {
        line: format!(
            "faults that could not be injected: {}{}",
            fault_errors.len(),
            fault_errors
                .iter()
                .map(|line| format!("\n    {line}"))
                .collect::<String>()
        ),
        passed: fault_errors.is_empty(),
    });

    let passed = results.iter().all(|result| result.passed);
    let mut summary = format!(
        "chaos summary: {}\n  seed {seed}, load {load_seconds:.0} s at {} ops/s, total {:.0} s\n",
        if passed { "PASSED" } else { "FAILED" },
        args.rate,
        started.elapsed().as_secs_f64()
    );
    let total: usize = injected.values().sum();
    summary.push_str(&format!("  faults injected: {total}\n"));
    for (fault, count) in &injected {
        summary.push_str(&format!("    {:<28} {count}\n", fault.name()));
    }
    summary.push_str(&format!(
        "  uploads acknowledged: {} ({} replays of a lost answer), renames {}, amendments {}, \
         deletes {}, requests retried {}\n",
        ledger.uploads.len(),
        ledger.replays,
        ledger.renames,
        ledger.amendments(),
        ledger.deleted.len(),
        ledger.retries
    ));
    for result in &results {
        let mark = if result.passed { "ok  " } else { "FAIL" };
        summary.push_str(&format!("  {mark} {}\n", result.line));
    }
    std::io::stdout()
        .write_all(summary.as_bytes())
        .context("failed to print the summary")?;
    Ok(passed)
}
