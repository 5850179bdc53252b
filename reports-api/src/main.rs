//! The `reports-api` binary: parses the command line, starts logging, loads the configuration
//! and serves until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use service_plumbing::shutdown::Shutdown;

/// Patient-facing reports API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `MYHEALTH_*` environment variables override its values.
    #[arg(long, env = "MYHEALTH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = service_plumbing::telemetry::init_tracing(reports_api::SERVICE_NAME) {
        eprintln!("{error:#}");
        return ExitCode::FAILURE;
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Logged rather than returned so that the failure is a JSON line like the others.
            tracing::error!(error = format!("{error:#}"), "reports-api failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config: reports_api::Config = service_plumbing::config::load(cli.config.as_deref())
        .context("failed to load configuration")?;
    let shutdown = Shutdown::listen_for_signals()?;
    let app = reports_api::build(config).await?;
    tracing::info!(address = %app.local_addr(), "listening");
    app.run_until_stopped(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
