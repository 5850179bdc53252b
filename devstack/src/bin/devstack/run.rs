//! `devstack run`: the whole stack on this machine, for as long as the developer wants it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use devstack::local::{LocalStack, Options};
use devstack::workspace;
use tokio::signal::unix::{SignalKind, signal};

/// Options of `devstack run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Port of the ingest API.
    #[arg(long, default_value_t = 8080)]
    ingest_port: u16,
    /// Port of the reports API.
    #[arg(long, default_value_t = 8081)]
    reports_port: u16,
    /// Port of the CDC daemon's metrics and health endpoints.
    #[arg(long, default_value_t = 9187)]
    cdc_port: u16,
    /// Port of Prometheus (the replication dashboard is at /consoles/replication.html).
    #[arg(long, default_value_t = 9090)]
    prometheus_port: u16,
    /// Name of the source database and of the MongoDB database.
    #[arg(long, env = "MYHEALTH_DATABASE", default_value = "myhealth")]
    database: String,
}

/// Starts everything, waits for Ctrl-C or SIGTERM (or a service dying), stops everything.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let bin_dir = std::env::current_exe()
        .context("failed to locate the devstack binary")?
        .parent()
        .map(Path::to_path_buf)
        .context("the devstack binary has no directory")?;
    let options = Options {
        ingest_port: args.ingest_port,
        reports_port: args.reports_port,
        cdc_port: args.cdc_port,
        prometheus_port: args.prometheus_port,
        database: args.database,
        slot: read_model::DEFAULT_SLOT.to_string(),
        bin_dir,
        log_dir: workspace::devstack_dir().join("logs"),
        env_file: workspace::devstack_dir().join("env"),
    };
    let mut stack = LocalStack::start(&options)
        .await
        .context("failed to start the local stack")?;
    eprint!("{}", stack.summary());

    let mut terminate = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = terminate.recv() => ExitCode::SUCCESS,
        name = stack.first_exit() => {
            eprintln!("devstack: {name} exited unexpectedly; see its log; stopping the stack");
            ExitCode::FAILURE
        }
    };
    eprintln!("devstack: stopping");
    stack.stop_services().await;
    drop(stack);
    eprintln!("devstack: stopped");
    Ok(code)
}
