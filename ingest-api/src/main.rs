//! The `ingest-api` binary: serves the API (the default), or runs an operator command on
//! devices. Parses the command line, starts logging, loads the configuration.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use service_plumbing::shutdown::Shutdown;

/// Tablet-facing upload API.
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
    /// Manage clinic tablets.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Inspect patients.
    #[command(subcommand)]
    Patient(PatientCommand),
}

#[derive(Debug, Subcommand)]
enum PatientCommand {
    /// Print a patient's audit trail, oldest first, one JSON object a line: when, what
    /// (`created`, `linked`, `updated`), which clinic and tablet, the upload, and the old and new
    /// values of the fields it touched. Prints nothing for a patient without history.
    History {
        /// The patient's id.
        #[arg(long)]
        patient: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Create a device (and its clinic if needed); prints its token alone on stdout. Only the
    /// token's hash is stored: this is the one time it can be seen.
    Add {
        /// The clinic's name.
        #[arg(long)]
        clinic: String,
        /// A label unique within the clinic, e.g. "tablet-3".
        #[arg(long)]
        label: String,
    },
    /// Revoke a device: its token stops working at once.
    Revoke {
        /// The clinic's name.
        #[arg(long)]
        clinic: String,
        /// The device's label.
        #[arg(long)]
        label: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service_plumbing::telemetry::run_binary(ingest_api::SERVICE_NAME, async {
        run(cli).await.map(|()| ExitCode::SUCCESS)
    })
    .await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config: ingest_api::Config = service_plumbing::config::load(cli.config.as_deref())
        .context("failed to load configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Device(command) => device(config, command).await,
        Command::Patient(command) => patient(config, command).await,
    }
}

async fn serve(config: ingest_api::Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::listen_for_signals()?;
    let app = ingest_api::build(config).await?;
    tracing::info!(address = %app.local_addr(), "listening");
    app.run_until_stopped(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn connect(config: &ingest_api::Config) -> anyhow::Result<tokio_postgres::Client> {
    service_plumbing::postgres::connect(config.database_url.expose_secret())
        .await
        .context("failed to connect to the database")
}

async fn patient(config: ingest_api::Config, command: PatientCommand) -> anyhow::Result<()> {
    let client = connect(&config).await?;
    let PatientCommand::History { patient } = command;
    let changes = ingest_api::store::patients::history(&client, patient)
        .await
        .with_context(|| format!("failed to read the history of patient {patient}"))?;
    let mut stdout = std::io::stdout().lock();
    for change in changes {
        let changed_at = change
            .changed_at
            .format(&time::format_description::well_known::Rfc3339)
            .context("failed to format a change time")?;
        let line = serde_json::json!({
            "changed_at": changed_at,
            "action": change.action,
            "clinic": change.clinic,
            "device": change.device,
            "upload_id": change.upload_id,
            "old": change.old_values,
            "new": change.new_values,
        });
        writeln!(stdout, "{line}").context("failed to print the history")?;
    }
    Ok(())
}

async fn device(config: ingest_api::Config, command: DeviceCommand) -> anyhow::Result<()> {
    let mut client = connect(&config).await?;
    match command {
        DeviceCommand::Add { clinic, label } => {
            let (id, token) = ingest_api::store::devices::add(&mut client, &clinic, &label).await?;
            tracing::info!(device = %id, %clinic, %label, "device added");
            writeln!(std::io::stdout(), "{token}").context("failed to print the token")?;
        }
        DeviceCommand::Revoke { clinic, label } => {
            let id = ingest_api::store::devices::revoke(&client, &clinic, &label).await?;
            tracing::info!(device = %id, %clinic, %label, "device revoked");
        }
    }
    Ok(())
}
