//! The daemon's own replicated state, for joins: clinic names, device labels, checkups, patient
//! snapshots, patients' record numbers per clinic and what a measurement needs to know about its
//! report. Held in in-memory caches under one byte budget ([`super::cache`]), backed by
//! documents in the store (the lookup collections, patient and report documents), so a
//! restarted daemon denormalizes new rows without querying the source.

use std::collections::HashMap;

use mongodb::bson::{DateTime, Document, doc};
use read_model::{
    LOOKUP_CHECKUPS, LOOKUP_CLINICS, LOOKUP_DEVICES, LOOKUP_PATIENT_CLINICS, PATIENTS, REPORTS,
};

use super::cache::{Budget, Cache};
use crate::resident::Resident;

/// Where cache misses are read from: the store, or a [`MemoryStore`].
pub trait LookupStore {
    /// The document `id` of `collection`, if there is one.
    fn find(
        &self,
        collection: &'static str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Document>, mongodb::error::Error>> + Send;
}

impl LookupStore for mongodb::Database {
    async fn find(
        &self,
        collection: &'static str,
        id: &str,
    ) -> Result<Option<Document>, mongodb::error::Error> {
        self.collection::<Document>(collection)
            .find_one(doc! { "_id": id })
            .await
    }
}

/// Lookup documents held in memory: for the mapper's unit tests (documents a daemon would find
/// in the store after a restart) and for benchmarks that time the mapping without a store.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    documents: HashMap<(&'static str, String), Document>,
}

impl MemoryStore {
    /// Stores `document` as document `id` of `collection`, replacing any.
    pub fn insert(&mut self, collection: &'static str, id: &str, document: Document) {
        self.documents
            .insert((collection, id.to_string()), document);
    }
}

impl LookupStore for MemoryStore {
    async fn find(
        &self,
        collection: &'static str,
        id: &str,
    ) -> Result<Option<Document>, mongodb::error::Error> {
        Ok(self.documents.get(&(collection, id.to_string())).cloned())
    }
}

/// What a measurement change needs to know about its report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportInfo {
    /// The report's patient.
    pub patient_id: String,
    /// When the report was taken.
    pub taken_at: DateTime,
    /// Whether it was entered in error.
    pub entered_in_error: bool,
}

impl Resident for ReportInfo {
    fn heap_bytes(&self) -> usize {
        self.patient_id.heap_bytes()
    }
}

/// Caches over a [`LookupStore`], sharing one byte budget.
#[derive(Debug)]
pub struct Lookups<S> {
    store: S,
    budget: Budget,
    clinics: Cache<String>,
    devices: Cache<String>,
    checkups: Cache<Document>,
    patients: Cache<Document>,
    /// Record numbers by [`link_key`].
    record_numbers: Cache<String>,
    reports: Cache<ReportInfo>,
}

/// The `_id` of the lookup document of the link between a patient and a clinic.
pub fn link_key(patient_id: &str, clinic_id: &str) -> String {
    format!("{patient_id}/{clinic_id}")
}

impl<S: LookupStore> Lookups<S> {
    /// Caches over `store` keeping about `budget_bytes` resident together.
    pub fn new(store: S, budget_bytes: usize) -> Self {
        Lookups {
            store,
            budget: Budget::new(budget_bytes),
            clinics: Cache::default(),
            devices: Cache::default(),
            checkups: Cache::default(),
            patients: Cache::default(),
            record_numbers: Cache::default(),
            reports: Cache::default(),
        }
    }

    /// Turns every cache once they spent half the budget (see [`super::cache`]). Called
    /// between batches only, so everything a batch wrote stays cached until the store has it.
    pub fn trim(&mut self) {
        if !self.budget.is_spent() {
            return;
        }
        self.clinics.turn();
        self.devices.turn();
        self.checkups.turn();
        self.patients.turn();
        self.record_numbers.turn();
        self.reports.turn();
        self.budget.turned();
    }

    /// Forgets everything (after a reconnect, the stream replays from the checkpoint).
    pub fn clear(&mut self) {
        self.clinics.clear();
        self.devices.clear();
        self.checkups.clear();
        self.patients.clear();
        self.record_numbers.clear();
        self.reports.clear();
        self.budget.turned();
    }

    /// A clinic's name.
    pub async fn clinic_name(&mut self, id: &str) -> Result<Option<String>, mongodb::error::Error> {
        if let Some(name) = self.clinics.get(id, &mut self.budget) {
            return Ok(Some(name.clone()));
        }
        let found = self.store.find(LOOKUP_CLINICS, id).await?;
        let name = found.and_then(|d| d.get_str("name").ok().map(str::to_string));
        if let Some(name) = &name {
            self.clinics.insert(id, name.clone(), &mut self.budget);
        }
        Ok(name)
    }

    /// Records a clinic's name; returns the name it had, if known.
    pub fn set_clinic(&mut self, id: &str, name: &str) -> Option<String> {
        self.clinics.insert(id, name.to_string(), &mut self.budget)
    }

    /// A device's label.
    pub async fn device_label(
        &mut self,
        id: &str,
    ) -> Result<Option<String>, mongodb::error::Error> {
        if let Some(label) = self.devices.get(id, &mut self.budget) {
            return Ok(Some(label.clone()));
        }
        let found = self.store.find(LOOKUP_DEVICES, id).await?;
        let label = found.and_then(|d| d.get_str("label").ok().map(str::to_string));
        if let Some(label) = &label {
            self.devices.insert(id, label.clone(), &mut self.budget);
        }
        Ok(label)
    }

    /// Records a device's label; returns the label it had, if known.
    pub fn set_device(&mut self, id: &str, label: &str) -> Option<String> {
        self.devices.insert(id, label.to_string(), &mut self.budget)
    }

    /// A checkup's lookup document.
    pub async fn checkup(&mut self, id: &str) -> Result<Option<Document>, mongodb::error::Error> {
        if let Some(checkup) = self.checkups.get(id, &mut self.budget) {
            return Ok(Some(checkup.clone()));
        }
        let found = self.store.find(LOOKUP_CHECKUPS, id).await?;
        if let Some(checkup) = &found {
            self.checkups.insert(id, checkup.clone(), &mut self.budget);
        }
        Ok(found)
    }

    /// Records a checkup's lookup document.
    pub fn set_checkup(&mut self, id: &str, checkup: Document) {
        self.checkups.insert(id, checkup, &mut self.budget);
    }

    /// A patient's snapshot (as embedded in reports).
    pub async fn patient(&mut self, id: &str) -> Result<Option<Document>, mongodb::error::Error> {
        if let Some(snapshot) = self.patients.get(id, &mut self.budget) {
            return Ok(Some(snapshot.clone()));
        }
        let Some(stored) = self.store.find(PATIENTS, id).await? else {
            return Ok(None);
        };
        let mut snapshot = doc! { "id": id };
        for field in ["external_ref", "full_name", "birth_date", "sex"] {
            if let Some(value) = stored.get(field) {
                snapshot.insert(field, value.clone());
            }
        }
        self.patients.insert(id, snapshot.clone(), &mut self.budget);
        Ok(Some(snapshot))
    }

    /// Records a patient's snapshot; returns the one it replaces, if known.
    pub fn set_patient(&mut self, id: &str, snapshot: Document) -> Option<Document> {
        self.patients.insert(id, snapshot, &mut self.budget)
    }

    /// The record number of the link `key` ([`link_key`]), if the patient and clinic are linked.
    pub async fn record_number(
        &mut self,
        key: &str,
    ) -> Result<Option<String>, mongodb::error::Error> {
        if let Some(number) = self.record_numbers.get(key, &mut self.budget) {
            return Ok(Some(number.clone()));
        }
        let found = self.store.find(LOOKUP_PATIENT_CLINICS, key).await?;
        let number = found.and_then(|d| d.get_str("external_ref").ok().map(str::to_string));
        if let Some(number) = &number {
            self.record_numbers
                .insert(key, number.clone(), &mut self.budget);
        }
        Ok(number)
    }

    /// Records the record number of the link `key`; returns the one it had, if known.
    pub fn set_record_number(&mut self, key: &str, number: &str) -> Option<String> {
        self.record_numbers
            .insert(key, number.to_string(), &mut self.budget)
    }

    /// What measurement changes need to know about a report.
    pub async fn report(&mut self, id: &str) -> Result<Option<ReportInfo>, mongodb::error::Error> {
        if let Some(info) = self.reports.get(id, &mut self.budget) {
            return Ok(Some(info.clone()));
        }
        let Some(stored) = self.store.find(REPORTS, id).await? else {
            return Ok(None);
        };
        let (Ok(patient_id), Ok(taken_at)) = (
            stored.get_str("patient_id"),
            stored.get_datetime("taken_at"),
        ) else {
            return Ok(None);
        };
        let info = ReportInfo {
            patient_id: patient_id.to_string(),
            taken_at: *taken_at,
            entered_in_error: stored
                .get_str("status")
                .is_ok_and(|status| status == "entered-in-error"),
        };
        self.reports.insert(id, info.clone(), &mut self.budget);
        Ok(Some(info))
    }

    /// Records what is known about a report; returns what it replaces.
    pub fn set_report(&mut self, id: &str, info: ReportInfo) -> Option<ReportInfo> {
        self.reports.insert(id, info, &mut self.budget)
    }

    /// Forgets one entry of every kind keyed by `id` (after a delete).
    pub fn forget(&mut self, id: &str) {
        self.clinics.remove(id);
        self.devices.remove(id);
        self.checkups.remove(id);
        self.patients.remove(id);
        self.record_numbers.remove(id);
        self.reports.remove(id);
    }
}
