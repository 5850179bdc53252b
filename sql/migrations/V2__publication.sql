-- Exactly the tables the CDC daemon consumes. Devices are published without their token hash:
-- the read model needs a tablet's label, never its credential.
CREATE PUBLICATION myhealth_cdc FOR TABLE
    clinics,
    devices (id, clinic_id, label, created_at, revoked_at),
    patients,
    checkups,
    reports,
    measurements;
