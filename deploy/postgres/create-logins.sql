-- The services' PostgreSQL logins for deploy/docker-compose.yml, one per group role of the
-- migrations (sql/migrations/V3__roles.sql, V4__least_privilege.sql). Run with psql 15 or later
-- as the database owner after the migrations; safe to re-run: a missing login is created, and
-- every run sets the passwords from INGEST_DB_PASSWORD and CDC_DB_PASSWORD (read with \getenv,
-- so they never appear on a command line).
\set ON_ERROR_STOP on
\getenv ingest_password INGEST_DB_PASSWORD
\getenv cdc_password CDC_DB_PASSWORD

-- ingest-api: what the ingest API runs, nothing more.
SELECT 'CREATE ROLE myhealth_ingest_api LOGIN IN ROLE myhealth_ingest'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'myhealth_ingest_api') \gexec
ALTER ROLE myhealth_ingest_api LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'ingest_password';

-- cdc-daemon: REPLICATION is never passed on through membership, so the login carries it.
SELECT 'CREATE ROLE myhealth_cdc_daemon LOGIN REPLICATION IN ROLE myhealth_replication'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'myhealth_cdc_daemon') \gexec
ALTER ROLE myhealth_cdc_daemon LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'cdc_password';
