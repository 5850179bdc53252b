-- Least-privilege group roles (NOLOGIN). Roles are cluster-wide, so creating them tolerates
-- another database of the same cluster having created them first. Deployments create login
-- roles that are members of these (see the README); the replication login additionally needs
-- the REPLICATION attribute, which PostgreSQL never passes on through membership.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['myhealth_ingest', 'myhealth_replication', 'myhealth_readonly']
    LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- ingest-api: reads devices to authenticate tablets and writes checkups, reports and uploads.
GRANT SELECT ON clinics, devices TO myhealth_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON patients, checkups, reports, measurements, uploads
    TO myhealth_ingest;

-- cdc-daemon: reads what is published (for the initial snapshot, resync and verify), never the
-- token hashes and never writes.
GRANT SELECT ON clinics, patients, checkups, reports, measurements TO myhealth_replication;
GRANT SELECT (id, clinic_id, label, created_at, revoked_at) ON devices TO myhealth_replication;

-- support and reporting tools.
GRANT SELECT ON clinics, patients, checkups, reports, measurements, uploads TO myhealth_readonly;
GRANT SELECT (id, clinic_id, label, created_at, revoked_at) ON devices TO myhealth_readonly;
