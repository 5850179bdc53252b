-- Tightens the ingest role to what the ingest API runs (ingest-api/src/store/):
--
-- * Tablets authenticate through a SECURITY DEFINER function that takes the SHA-256 of the
--   presented token and returns the one active device it belongs to. The role no longer reads the
--   token_sha256 column, so a compromised ingest API cannot list every clinic's token hashes.
-- * The API never deletes patients, checkups or ledger rows and never updates checkups: those
--   rights go (reports and measurements keep DELETE for `DELETE /v1/reports/{id}` and amendments;
--   the cascade to measurements runs with the table owner's rights).
--
-- Everything else the API uses is open to every role by default: pg_current_wal_insert_lsn(),
-- pg_advisory_xact_lock() and the pg_replication_slots view (for `replicated`).

CREATE FUNCTION device_by_token_sha256(presented bytea)
RETURNS TABLE (id uuid, clinic_id uuid, token_sha256 bytea)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.id, d.clinic_id, d.token_sha256 FROM public.devices d
    WHERE d.token_sha256 = presented AND d.revoked_at IS NULL
$$;
REVOKE ALL ON FUNCTION device_by_token_sha256(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION device_by_token_sha256(bytea) TO myhealth_ingest;

REVOKE SELECT ON devices FROM myhealth_ingest;
GRANT SELECT (id, clinic_id, label, created_at, revoked_at) ON devices TO myhealth_ingest;

REVOKE DELETE ON patients, checkups, uploads FROM myhealth_ingest;
REVOKE UPDATE ON checkups FROM myhealth_ingest;
