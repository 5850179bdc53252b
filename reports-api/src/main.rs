//! The `reports-api` binary: serves the API (the default), or mints a patient token for local
//! runs and tests.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use service_plumbing::shutdown::Shutdown;

/// Patient-facing reports API.
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
    /// Serve the API until SIGTERM or SIGINT (what runs without a command).
    Serve,
    /// Print a token for a patient, signed with the configured local key (refused when only a
    /// public key is configured: production tokens come from the identity provider).
    Token {
        /// The patient id (the token's `sub`).
        #[arg(long)]
        patient: uuid::Uuid,
        /// Lifetime: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 1h"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service_plumbing::telemetry::run_binary(reports_api::SERVICE_NAME, async {
        run(cli).await.map(|()| ExitCode::SUCCESS)
    })
    .await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config: reports_api::Config = service_plumbing::config::load(cli.config.as_deref())
        .context("failed to load configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let shutdown = Shutdown::listen_for_signals()?;
            let app = reports_api::build(config).await?;
            tracing::info!(address = %app.local_addr(), "listening");
            app.run_until_stopped(shutdown).await?;
            tracing::info!("stopped");
        }
        Command::Token { patient, ttl } => {
            let minter = reports_api::auth::Minter::new(&config.auth)?;
            let token = minter.mint(patient, ttl)?;
            writeln!(std::io::stdout(), "{token}").context("failed to print the token")?;
        }
    }
    Ok(())
}
