//! The `cdc-daemon` binary: streams (the default); verifies the store against the source; asks
//! the running daemon to resync a patient or replay dead letters; lists dead letters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use cdc_daemon::support_requests::Request;
use clap::{Parser, Subcommand};
use mongodb::bson::Document;
use secrecy::ExposeSecret;
use service_plumbing::shutdown::Shutdown;

/// mimalloc rather than glibc's allocator: mapping makes many small documents that live for
/// one batch, and with glibc about 40 % of the mapping's CPU went to `malloc`/`free`; the
/// mapping micro bench runs about 40 % faster with mimalloc (docs/benchmarks.md). Its v2 line
/// (the crate's `v2` feature), not v3: v2 returns freed pages 10 ms after a batch is dropped
/// where v3 waits 1 s, and under a backlog v3 kept about 20 MiB more resident (a peak of 71.5
/// against 49.8 MiB) and mapped about a fifth fewer changes per second.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Ask the running daemon to rebuild one patient's documents from PostgreSQL.
    Resync {
        /// The patient's id.
        #[arg(long)]
        patient: uuid::Uuid,
        /// How long to wait for the daemon to carry it out.
        #[arg(long, default_value = "60")]
        wait_seconds: u64,
    },
    /// List or replay the changes the daemon could not map.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// Print the dead letters not replayed yet, one JSON object per line (oldest first, relaxed
    /// Extended JSON, the recorded change inlined).
    List {
        /// Include the letters already replayed.
        #[arg(long)]
        all: bool,
    },
    /// Ask the running daemon to rebuild what the unreplayed dead letters touch from
    /// PostgreSQL (after the cause was fixed), then mark them replayed.
    Replay {
        /// How long to wait for the daemon to carry it out.
        #[arg(long, default_value = "60")]
        wait_seconds: u64,
    },
}

/// One thread runs every task: the mapping is one thread's work in any case (a stream in
/// order), and the tasks beside it (the batch being written, the replication reader, the driver)
/// mostly wait for the network. On two worker threads they woke each other across threads for
/// every few messages, and each batch was freed on another thread than the one that built it:
/// about a quarter of the daemon's CPU under a backlog (futex wake-ups, mimalloc's cross-thread
/// frees). On one thread the discard-sink benchmark moved 80,000 row changes per second where
/// it moved 61,000–72,000 on two (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service_plumbing::telemetry::run_binary(cdc_daemon::SERVICE_NAME, run(cli)).await
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
        Command::Resync {
            patient,
            wait_seconds,
        } => {
            let request = Request::ResyncPatient {
                patient_id: patient,
            };
            send(&config, &request, Duration::from_secs(wait_seconds)).await?;
            tracing::info!(%patient, "patient resynced");
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters {
            command: DeadLetterCommand::List { all },
        } => {
            let (_, store) = connect(&config).await?;
            let letters = if all {
                cdc_daemon::support_requests::dead_letters(&store, Document::new()).await?
            } else {
                cdc_daemon::support_requests::unresolved(&store).await?
            };
            let count = letters.len();
            let mut stdout = std::io::stdout().lock();
            for letter in letters {
                // The change's Extended JSON text inlined, so that it reads as JSON.
                let json = cdc_daemon::apply::letter_json(letter);
                writeln!(stdout, "{json}").context("failed to print")?;
            }
            tracing::info!(letters = count, "dead letters listed");
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters {
            command: DeadLetterCommand::Replay { wait_seconds },
        } => {
            send(
                &config,
                &Request::ReplayDeadLetters,
                Duration::from_secs(wait_seconds),
            )
            .await?;
            let (_, store) = connect(&config).await?;
            let left = cdc_daemon::support_requests::unresolved(&store)
                .await?
                .len();
            tracing::info!(left, "dead letters replayed");
            Ok(if left == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The source and the store, for the commands that are not the daemon itself.
async fn connect(
    config: &cdc_daemon::Config,
) -> anyhow::Result<(tokio_postgres::Client, mongodb::Database)> {
    let source = service_plumbing::postgres::connect(config.database_url.expose_secret())
        .await
        .context("failed to connect to the source")?;
    // An operator waits for an answer: a store that cannot be reached fails the command after
    // ten seconds rather than the driver's thirty.
    let store = service_plumbing::mongo::database(
        &config.mongodb_uri,
        &config.mongodb_database,
        cdc_daemon::SERVICE_NAME,
        Duration::from_secs(10),
    )
    .await
    .context("failed to create the store client")?;
    Ok((source, store))
}

/// Sends `request` to the daemon through the WAL and waits until it was carried out.
async fn send(
    config: &cdc_daemon::Config,
    request: &Request,
    wait: Duration,
) -> anyhow::Result<()> {
    let (source, store) = connect(config).await?;
    let lsn = cdc_daemon::support_requests::send(&source, request)
        .await
        .context("failed to send the request")?;
    cdc_daemon::support_requests::wait_applied(&store, &config.slot, lsn, wait).await
}

async fn verify(config: cdc_daemon::Config, wait: Duration) -> anyhow::Result<ExitCode> {
    let (source, store) = connect(&config).await?;
    let differences = cdc_daemon::verify::verify(&source, &store, &config.slot, wait).await?;
    let mut stdout = std::io::stdout().lock();
    for difference in &differences {
        writeln!(stdout, "{difference}").context("failed to print")?;
    }
    tracing::info!(differences = differences.len(), "verify finished");
    Ok(if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
