//! `myhealth-migrate`: applies the source schema migrations to the database in
//! `MYHEALTH_DATABASE_URL` and exits; the one-shot step of a deployment (the compose `migrate`
//! service, the Kubernetes `myhealth-migrate` Job) before the services start. Idempotent.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match migrate().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("myhealth-migrate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate() -> Result<()> {
    let url = std::env::var("MYHEALTH_DATABASE_URL")
        .context("MYHEALTH_DATABASE_URL is not set (the migrating user needs CREATEROLE)")?;
    let mut client = service_plumbing::postgres::connect(&url)
        .await
        .context("failed to connect to PostgreSQL")?;
    let applied = source_schema::migrate(&mut client).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "myhealth-migrate: {} migrations applied",
        applied.len()
    )
    .context("failed to write to stdout")?;
    for name in applied {
        writeln!(stdout, "  {name}").context("failed to write to stdout")?;
    }
    Ok(())
}
