-- The source of truth for health checkups. Client-generated ids (checkups, reports, uploads,
-- patients) are UUIDs so that a retried upload names the same rows again.

CREATE TABLE clinics (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A clinic tablet. Only the SHA-256 of its bearer token is stored; revoking sets revoked_at.
CREATE TABLE devices (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clinic_id     uuid NOT NULL REFERENCES clinics (id),
    label         text NOT NULL CHECK (label <> ''),
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    UNIQUE (clinic_id, label)
);

CREATE TABLE patients (
    id            uuid PRIMARY KEY,
    external_ref  text NOT NULL CHECK (external_ref <> ''),
    full_name     text NOT NULL CHECK (full_name <> ''),
    birth_date    date NOT NULL,
    sex           text NOT NULL CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    phone         text,
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_external_ref_idx ON patients (external_ref);

-- A visit: one patient seen at one clinic with one tablet.
CREATE TABLE checkups (
    id            uuid PRIMARY KEY,
    patient_id    uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    clinic_id     uuid NOT NULL REFERENCES clinics (id),
    device_id     uuid NOT NULL REFERENCES devices (id),
    started_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (completed_at IS NULL OR completed_at >= started_at),
    -- The replica identity: a DELETE in the WAL names the patient whose documents it touches.
    CONSTRAINT checkups_id_patient_key UNIQUE (id, patient_id)
);
ALTER TABLE checkups REPLICA IDENTITY USING INDEX checkups_id_patient_key;
CREATE INDEX checkups_patient_idx ON checkups (patient_id);

-- One instrument reading. patient_id repeats the checkup's patient so that every change,
-- deletes included, can be routed to the patient's documents without a lookup.
CREATE TABLE reports (
    id                 uuid PRIMARY KEY,
    checkup_id         uuid NOT NULL,
    patient_id         uuid NOT NULL,
    instrument_type    text NOT NULL CHECK (instrument_type IN (
                           'blood_pressure', 'pulse_oximeter', 'thermometer', 'scale',
                           'height_meter', 'glucometer', 'ecg')),
    instrument_serial  text NOT NULL CHECK (instrument_serial <> ''),
    taken_at           timestamptz NOT NULL,
    status             text NOT NULL DEFAULT 'final'
                           CHECK (status IN ('final', 'amended', 'entered-in-error')),
    notes              text,
    raw                jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(raw) = 'object'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (checkup_id, patient_id) REFERENCES checkups (id, patient_id) ON DELETE CASCADE,
    CONSTRAINT reports_id_patient_key UNIQUE (id, patient_id)
);
ALTER TABLE reports REPLICA IDENTITY USING INDEX reports_id_patient_key;
CREATE INDEX reports_checkup_idx ON reports (checkup_id);
CREATE INDEX reports_patient_taken_idx ON reports (patient_id, taken_at DESC);

-- One value of a report, e.g. LOINC 8480-6 (systolic) = 120 mm[Hg]. The primary key
-- (report_id, code) is the replica identity, so a DELETE names its report document.
CREATE TABLE measurements (
    report_id       uuid NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    code            text NOT NULL CHECK (code <> ''),
    display_name    text NOT NULL,
    value           numeric NOT NULL,
    unit            text NOT NULL,
    reference_low   numeric,
    reference_high  numeric,
    flag            text CHECK (flag IN ('L', 'N', 'H')),
    PRIMARY KEY (report_id, code)
);

-- The idempotency ledger of the ingest API: one row per accepted upload.
CREATE TABLE uploads (
    id           uuid PRIMARY KEY,
    device_id    uuid NOT NULL REFERENCES devices (id),
    body_sha256  bytea NOT NULL CHECK (length(body_sha256) = 32),
    result       jsonb NOT NULL,
    commit_lsn   pg_lsn,
    created_at   timestamptz NOT NULL DEFAULT now()
);
