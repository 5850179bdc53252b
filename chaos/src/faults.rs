//! The fault schedule: which fault happens when, drawn from the seed, and how each is injected.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::rng::Rng;
use crate::stack::{Service, Stack};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL the daemon, start it again.
    KillDaemon,
    /// Stop PostgreSQL (fast shutdown), start it again.
    RestartPostgres,
    /// Stop the store (FerretDB, then its backend's cluster), start it again (the cluster
    /// first).
    RestartStore,
    /// `pg_terminate_backend` on the walsender the daemon streams from.
    TerminateWalsender,
    /// Stop the ingest API (SIGKILL or SIGINT, drawn), start it again.
    RestartIngest,
}

impl Fault {
    /// Every kind, in the order a schedule round shuffles them.
    pub const ALL: [Fault; 5] = [
        Fault::KillDaemon,
        Fault::RestartPostgres,
        Fault::RestartStore,
        Fault::TerminateWalsender,
        Fault::RestartIngest,
    ];

    /// A short name for the summary.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillDaemon => "daemon SIGKILL + restart",
            Fault::RestartPostgres => "PostgreSQL restart",
            Fault::RestartStore => "store stop + restart",
            Fault::TerminateWalsender => "walsender terminated",
            Fault::RestartIngest => "ingest API restart",
        }
    }
}

/// `count` faults spread over `window`: each round of five has every kind once, in an order drawn
/// from `rng`; the gaps are drawn around the mean gap.
pub fn schedule(rng: &mut Rng, count: usize, window: Duration) -> Vec<(Duration, Fault)> {
    let mean_gap = window.as_secs_f64() / (count.max(1) as f64);
    let mut kinds = Vec::with_capacity(count);
    while kinds.len() < count {
        let mut round = Fault::ALL.to_vec();
        for index in (1..round.len()).rev() {
            let other = rng.below(index as u64 + 1) as usize;
            round.swap(index, other);
        }
        kinds.extend(round);
    }
    kinds.truncate(count);
    kinds
        .into_iter()
        .map(|fault| {
            let gap = mean_gap * (0.5 + rng.below(1000) as f64 / 1000.0);
            (Duration::from_secs_f64(gap), fault)
        })
        .collect()
}

/// Injects `fault`; how long the component stays down is drawn from `rng` (up to 2 s).
pub async fn inject(stack: &mut Stack, fault: Fault, rng: &mut Rng) -> Result<()> {
    let pause = Duration::from_millis(rng.below(2000));
    match fault {
        Fault::KillDaemon => stack.restart(Service::Daemon, true, pause).await,
        Fault::RestartIngest => {
            let crash = rng.below(2) == 0;
            stack.restart(Service::Ingest, crash, pause).await
        }
        Fault::RestartPostgres => {
            stack.postgres.stop().await?;
            tokio::time::sleep(pause).await;
            stack.postgres.restart().await?;
            Ok(())
        }
        Fault::RestartStore => {
            stack.store.stop().await?;
            tokio::time::sleep(pause).await;
            stack.store.restart().await?;
            Ok(())
        }
        Fault::TerminateWalsender => {
            let admin = devstack::postgres::connect(&stack.admin_url).await?;
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_replication",
                    &[],
                )
                .await
                .context("failed to terminate the walsender")?;
            Ok(())
        }
    }
}
