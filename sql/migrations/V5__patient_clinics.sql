-- Patients belong to clinics.
--
-- patient_clinics records which clinics a patient is registered at, with each clinic's own
-- record number (a medical record number is per clinic, not global). The ingest API lets a
-- tablet change a patient's demographics only when its clinic is linked; an unlinked clinic
-- naming an existing patient must send the same full name and birth date, which links it and
-- changes nothing else (see ingest-api/src/store/patients.rs).
--
-- patients.external_ref stays, for compatibility: the record number the patient was registered
-- with (set by the upload that created the patient, not changed afterwards; a clinic's later
-- record number changes go to its link). Dropping it would break the patient document and the reports API, and a
-- running daemon that still expects the column. Each report's checkup shows the record number
-- of its own clinic from patient_clinics instead.
CREATE TABLE patient_clinics (
    patient_id    uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    clinic_id     uuid NOT NULL REFERENCES clinics (id),
    external_ref  text NOT NULL CHECK (external_ref <> ''),
    linked_at     timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Also the replica identity: a DELETE in the WAL names the patient and the clinic.
    PRIMARY KEY (patient_id, clinic_id)
);
CREATE INDEX patient_clinics_clinic_idx ON patient_clinics (clinic_id);

-- Back-fill: every clinic that has a checkup of a patient is linked to it, since its first
-- checkup, with the one record number stored so far. Idempotent and safe to run on a live
-- database: it only inserts.
INSERT INTO patient_clinics (patient_id, clinic_id, external_ref, linked_at, updated_at)
SELECT c.patient_id, c.clinic_id, p.external_ref, min(c.created_at), min(c.created_at)
FROM checkups c
JOIN patients p ON p.id = c.patient_id
GROUP BY c.patient_id, c.clinic_id, p.external_ref
ON CONFLICT (patient_id, clinic_id) DO NOTHING;

-- The audit trail of patient identity: one row per patient an upload created, linked or
-- changed, with the uploading device and clinic and, as JSON objects keyed by field, the old
-- and new values of the fields that changed (every field for a creation, the clinic's record
-- number for a link). Not published: it never leaves PostgreSQL.
CREATE TABLE patient_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    clinic_id   uuid NOT NULL REFERENCES clinics (id),
    device_id   uuid NOT NULL REFERENCES devices (id),
    upload_id   uuid NOT NULL,
    action      text NOT NULL CHECK (action IN ('created', 'linked', 'updated')),
    old_values  jsonb NOT NULL CHECK (jsonb_typeof(old_values) = 'object'),
    new_values  jsonb NOT NULL CHECK (jsonb_typeof(new_values) = 'object'),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patient_changes_patient_idx ON patient_changes (patient_id, id);

ALTER PUBLICATION myhealth_cdc ADD TABLE patient_clinics;

-- ingest-api: links are made and their record number kept current, never removed; audit rows
-- are appended and read (the `patient history` command), never rewritten or deleted.
GRANT SELECT, INSERT, UPDATE ON patient_clinics TO myhealth_ingest;
GRANT SELECT, INSERT ON patient_changes TO myhealth_ingest;

-- cdc-daemon: reads the links for the snapshot, resync and verify; never the audit trail.
GRANT SELECT ON patient_clinics TO myhealth_replication;

GRANT SELECT ON patient_clinics, patient_changes TO myhealth_readonly;
