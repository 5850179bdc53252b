//! The daemon's own replicated state, for joins: clinic names, device labels, checkups, patient
//! snapshots and what a measurement needs to know about its report. Held in bounded in-memory
//! caches backed by documents in the store (the lookup collections, patient and report
//! documents), so a restarted daemon denormalizes new rows without querying the source.

use std::collections::HashMap;

use mongodb::bson::{DateTime, Document, doc};
use read_model::{LOOKUP_CHECKUPS, LOOKUP_CLINICS, LOOKUP_DEVICES, PATIENTS, REPORTS};

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

/// Bounded caches over a [`LookupStore`].
#[derive(Debug)]
pub struct Lookups<S> {
    store: S,
    capacity: usize,
    clinics: HashMap<String, String>,
    devices: HashMap<String, String>,
    checkups: HashMap<String, Document>,
    patients: HashMap<String, Document>,
    reports: HashMap<String, ReportInfo>,
}

impl<S: LookupStore> Lookups<S> {
    /// Caches of at most about `capacity` entries each over `store`.
    pub fn new(store: S, capacity: usize) -> Self {
        Lookups {
            store,
            capacity,
            clinics: HashMap::new(),
            devices: HashMap::new(),
            checkups: HashMap::new(),
            patients: HashMap::new(),
            reports: HashMap::new(),
        }
    }

    /// Empties caches that outgrew the capacity. Called between batches only, so everything a
    /// batch wrote stays cached until the store has it.
    pub fn trim(&mut self) {
        let capacity = self.capacity;
        fn trim<V>(map: &mut HashMap<String, V>, capacity: usize) {
            if map.len() > capacity {
                map.clear();
            }
        }
        trim(&mut self.clinics, capacity);
        trim(&mut self.devices, capacity);
        trim(&mut self.checkups, capacity);
        trim(&mut self.patients, capacity);
        trim(&mut self.reports, capacity);
    }

    /// Forgets everything (after a reconnect, the stream replays from the checkpoint).
    pub fn clear(&mut self) {
        self.clinics.clear();
        self.devices.clear();
        self.checkups.clear();
        self.patients.clear();
        self.reports.clear();
    }

    /// A clinic's name.
    pub async fn clinic_name(&mut self, id: &str) -> Result<Option<String>, mongodb::error::Error> {
        if let Some(name) = self.clinics.get(id) {
            return Ok(Some(name.clone()));
        }
        let found = self.store.find(LOOKUP_CLINICS, id).await?;
        let name = found.and_then(|d| d.get_str("name").ok().map(str::to_string));
        if let Some(name) = &name {
            self.clinics.insert(id.to_string(), name.clone());
        }
        Ok(name)
    }

    /// Records a clinic's name; returns the name it had, if known.
    pub fn set_clinic(&mut self, id: &str, name: &str) -> Option<String> {
        self.clinics.insert(id.to_string(), name.to_string())
    }

    /// A device's label.
    pub async fn device_label(
        &mut self,
        id: &str,
    ) -> Result<Option<String>, mongodb::error::Error> {
        if let Some(label) = self.devices.get(id) {
            return Ok(Some(label.clone()));
        }
        let found = self.store.find(LOOKUP_DEVICES, id).await?;
        let label = found.and_then(|d| d.get_str("label").ok().map(str::to_string));
        if let Some(label) = &label {
            self.devices.insert(id.to_string(), label.clone());
        }
        Ok(label)
    }

    /// Records a device's label; returns the label it had, if known.
    pub fn set_device(&mut self, id: &str, label: &str) -> Option<String> {
        self.devices.insert(id.to_string(), label.to_string())
    }

    /// A checkup's lookup document.
    pub async fn checkup(&mut self, id: &str) -> Result<Option<Document>, mongodb::error::Error> {
        if let Some(checkup) = self.checkups.get(id) {
            return Ok(Some(checkup.clone()));
        }
        let found = self.store.find(LOOKUP_CHECKUPS, id).await?;
        if let Some(checkup) = &found {
            self.checkups.insert(id.to_string(), checkup.clone());
        }
        Ok(found)
    }

    /// Records a checkup's lookup document.
    pub fn set_checkup(&mut self, id: &str, checkup: Document) {
        self.checkups.insert(id.to_string(), checkup);
    }

    /// A patient's snapshot (as embedded in reports).
    pub async fn patient(&mut self, id: &str) -> Result<Option<Document>, mongodb::error::Error> {
        if let Some(snapshot) = self.patients.get(id) {
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
        self.patients.insert(id.to_string(), snapshot.clone());
        Ok(Some(snapshot))
    }

    /// Records a patient's snapshot; returns the one it replaces, if known.
    pub fn set_patient(&mut self, id: &str, snapshot: Document) -> Option<Document> {
        self.patients.insert(id.to_string(), snapshot)
    }

    /// What measurement changes need to know about a report.
    pub async fn report(&mut self, id: &str) -> Result<Option<ReportInfo>, mongodb::error::Error> {
        if let Some(info) = self.reports.get(id) {
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
        self.reports.insert(id.to_string(), info.clone());
        Ok(Some(info))
    }

    /// Records what is known about a report; returns what it replaces.
    pub fn set_report(&mut self, id: &str, info: ReportInfo) -> Option<ReportInfo> {
        self.reports.insert(id.to_string(), info)
    }

    /// Forgets one entry of every kind keyed by `id` (after a delete).
    pub fn forget(&mut self, id: &str) {
        self.clinics.remove(id);
        self.devices.remove(id);
        self.checkups.remove(id);
        self.patients.remove(id);
        self.reports.remove(id);
    }
}
