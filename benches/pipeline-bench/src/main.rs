//! `pipeline-bench`: runs the end-to-end benchmark (see the library docs) and writes
//! `docs/benchmarks.md` and `docs/benchmarks.json`. `make bench` runs it on release builds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pipeline_bench::Settings;

/// Measures the pipeline against its references on this machine.
#[derive(Debug, Parser)]
struct Args {
    /// Uploads of the large workload (about 18.6 row changes each, so about 400,000 row changes
    /// by default): source limit, discard sink, backlog memory.
    #[arg(long, default_value_t = 21_500)]
    uploads: usize,
    /// Uploads of the store workload: daemon into the store, store capacity, freshness,
    /// reports API. FerretDB's writes slow down as collections grow (on its PostgreSQL backend,
    /// the default, far less than on SQLite, where 500 was the most that ran in time).
    #[arg(long, default_value_t = 5_000)]
    store_uploads: usize,
    /// Uploads of the lanes workload: the daemon and the store reference into an empty store
    /// with 1, 2, 4 and 8 write lanes (eight drains of it in all).
    #[arg(long, default_value_t = 1_000)]
    lanes_uploads: usize,
    /// Seconds of each timed load (freshness, ingest API, reports API).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent clients of the HTTP loads and of pgbench.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Where the service binaries are; default: next to this binary.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The markdown report (its generated section is replaced).
    #[arg(long, default_value = "docs/benchmarks.md")]
    markdown: PathBuf,
    /// The JSON report.
    #[arg(long, default_value = "docs/benchmarks.json")]
    json: PathBuf,
    /// Logs and scratch files.
    #[arg(long, default_value = "target/pipeline-bench")]
    work_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pipeline-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("failed to locate this binary")?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf(),
    };
    let settings = Settings {
        bin_dir,
        uploads: args.uploads,
        store_uploads: args.store_uploads,
        lanes_uploads: args.lanes_uploads,
        seconds: args.seconds,
        clients: args.clients,
        work_dir: args.work_dir,
    };
    let report = pipeline_bench::run(&settings).await?;
    for path in [&args.markdown, &args.json] {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
    }
    report.write(&args.markdown, &args.json)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", report.markdown()).context("failed to write to stdout")?;
    Ok(())
}
