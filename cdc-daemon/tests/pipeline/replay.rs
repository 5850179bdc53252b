//! Replaying converges: for random workloads (inserts, renames, amendments, reports moved to
//! another patient, deletes of every table), a store that already holds the final state and then receives the whole change
//! stream again — stopped after a random prefix, then resumed — ends with the same documents.
//! This is what a crash between a write and its checkpoint does, taken to the extreme.

use std::time::Duration;

use uuid::Uuid;

use crate::support::{Rig, Source};

/// A small deterministic generator (xorshift), so a failing seed can be rerun.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Runs `steps` random transactions against the source (updates of rows a cascade already
/// deleted are no-ops, as they would be for any client).
async fn workload(source: &Source, seed: u64, steps: usize) {
    let mut random = Random(seed.max(1));
    let mut patients: Vec<Uuid> = Vec::new();
    let mut reports: Vec<Uuid> = Vec::new();
    for step in 0..steps {
        let sql = match random.below(10) {
            _ if patients.is_empty() => None,
            0 | 1 => {
                let patient = patients[random.below(patients.len())];
                reports.extend(source.checkup(patient, 1 + random.below(3)).await);
                None
            }
            2 => Some(format!(
                "UPDATE patients SET full_name = 'Renamed {step}' WHERE id = '{}'",
                patients[random.below(patients.len())]
            )),
            3 if !reports.is_empty() => Some(format!(
                "UPDATE measurements SET value = value + 1 WHERE report_id = '{}'",
                reports[random.below(reports.len())]
            )),
            4 if !reports.is_empty() => Some(format!(
                "UPDATE reports SET status = 'entered-in-error' WHERE id = '{}'",
                reports[random.below(reports.len())]
            )),
            5 if !reports.is_empty() => Some(format!(
                "DELETE FROM measurements WHERE report_id = '{}' AND code = '8462-4'",
                reports[random.below(reports.len())]
            )),
            6 if !reports.is_empty() => {
                let report = reports.swap_remove(random.below(reports.len()));
                Some(format!("DELETE FROM reports WHERE id = '{report}'"))
            }
            8 if !reports.is_empty() => Some(format!(
                "UPDATE patient_clinics SET external_ref = 'N-{step}' WHERE patient_id = \
                 (SELECT patient_id FROM reports WHERE id = '{}')",
                reports[random.below(reports.len())]
            )),
            // A report moved to another patient (with one of that patient's checkups).
            9 if !reports.is_empty() => Some(format!(
                "UPDATE reports SET patient_id = c.patient_id, checkup_id = c.id \
                 FROM (SELECT id, patient_id FROM checkups WHERE patient_id <> \
                       (SELECT patient_id FROM reports WHERE id = '{report}') LIMIT 1) c \
                 WHERE reports.id = '{report}'",
                report = reports[random.below(reports.len())]
            )),
            7 if patients.len() > 2 => {
                let patient = patients.swap_remove(random.below(patients.len()));
                Some(format!("DELETE FROM patients WHERE id = '{patient}'"))
            }
            _ => Some(format!(
                "UPDATE clinics SET name = 'North Clinic {step}' WHERE id = '{}'",
                source.clinic
            )),
        };
        match sql {
            Some(sql) => source.client.batch_execute(&sql).await.unwrap(),
            None => patients.push(source.patient(&format!("Patient {step}")).await),
        }
    }
}

async fn replay_converges(seed: u64) {
    let rig = Rig::new().await;
    let first = rig.start().await;
    let source = Source::new(&rig).await;
    // A second slot that sees the same stream, consumed only once the first daemon is done.
    let again = format!("{}_again", rig.slot);
    let start: String = source
        .client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&again],
        )
        .await
        .unwrap()
        .get(0);
    workload(&source, seed, 80).await;
    rig.assert_verified().await;
    first.stop().await;

    // The whole stream again, from before its first change, over the final state: a
    // checkpoint at the slot's start means "no snapshot, stream from here".
    read_model::checkpoint::save(
        &rig.store,
        &again,
        read_model::checkpoint::Checkpoint {
            lsn: read_model::lsn::parse(&start).unwrap(),
            commit_time_millis: 0,
        },
    )
    .await
    .unwrap();
    // Small batches, and a memory budget so small that the caches turn at nearly every batch
    // end: the replay then reads most parents back from the store.
    let settings = [
        ("MYHEALTH_SLOT", again.as_str()),
        ("MYHEALTH_BATCH_MAX_CHANGES", "7"),
        ("MYHEALTH_BATCH_MAX_BYTES", "8192"),
        ("MYHEALTH_MEMORY_BUDGET_BYTES", "32768"),
    ];
    // A random prefix, then a stop...
    let prefix = rig.start_with(&settings).await;
    tokio::time::sleep(Duration::from_millis(50 * (seed % 7))).await;
    prefix.stop().await;
    // ...and the rest.
    let rest = rig.start_with(&settings).await;
    rig.assert_verified_by(&again, Duration::from_secs(120))
        .await;
    rest.stop().await;
    // Every write replayed over a newer document was skipped as stale, none refused (a report
    // since moved to another patient included).
    let letters = rig.count(read_model::DEAD_LETTERS).await;
    assert_eq!(letters, 0, "seed {seed}: dead letters after the replay");
}

#[tokio::test]
async fn replaying_the_stream_or_a_prefix_of_it_again_converges() {
    for seed in [3, 17, 42, 99, 2026] {
        replay_converges(seed).await;
    }
}
