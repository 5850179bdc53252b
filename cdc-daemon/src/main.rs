//! The `cdc-daemon` binary: streams (the default), or verifies the store against the source.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use service_plumbing::shutdown::Shutdown;

/// Change-data-capture daemon: PostgreSQL logical replication into MongoDB.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `MYHEALTH_*` environment variables override its values.
    #[arg(long, env = "MYHEALTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream changes into the store until SIGTERM or SIGINT (what runs without a command).
    Run,
    /// Compare the store with PostgreSQL; print each difference; exit 1 if there is any.
    Verify {
        /// How long to wait for the daemon's checkpoint to reach the source's position first.
        #[arg(long, default_value = "30")]
        wait_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = service_plumbing::telemetry::init_tracing(cdc_daemon::SERVICE_NAME) {
        eprintln!("{error:#}");
        return ExitCode::FAILURE;
    }
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            // Logged rather than returned so that the failure is a JSON line like the others.
            tracing::error!(error = format!("{error:#}"), "cdc-daemon failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config: cdc_daemon::Config = service_plumbing::config::load(cli.config.as_deref())
        .context("failed to load configuration")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let shutdown = Shutdown::listen_for_signals()?;
            let app = cdc_daemon::build(config, shutdown).await?;
            tracing::info!(address = %app.local_addr(), "listening");
            app.run_until_stopped().await?;
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { wait_seconds } => verify(config, Duration::from_secs(wait_seconds)).await,
    }
}

async fn verify(config: cdc_daemon::Config, wait: Duration) -> anyhow::Result<ExitCode> {
    let (source, connection) =
        tokio_postgres::connect(config.database_url.expose_secret(), tokio_postgres::NoTls)
            .await
            .context("failed to connect to the source")?;
    tokio::spawn(connection);
    let client = mongodb::Client::with_uri_str(config.mongodb_uri.expose_secret())
        .await
        .context("failed to create the store client")?;
    let store = client.database(&config.mongodb_database);
    let differences = cdc_daemon::verify::verify(&source, &store, &config.slot, wait).await?;
    let mut stdout = std::io::stdout().lock();
    for difference in &differences {
        std::io::Write::write_fmt(&mut stdout, format_args!("{difference}\n"))
            .context("failed to print")?;
    }
    tracing::info!(differences = differences.len(), "verify finished");
    Ok(if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
