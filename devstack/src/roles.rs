//! The services' login users: one per least-privilege group role of `sql/` (see
//! `sql/migrations/V3__roles.sql` and `V4__least_privilege.sql`), so that tests and `make run`
//! connect each service exactly as a deployment should, never as the superuser.
//!
//! Roles are cluster-wide and test processes share one cluster, so creating them tolerates
//! another process having just done it. Each login is created together with its membership, in
//! one statement, and never altered afterwards (concurrent `ALTER ROLE`s of one role fail).

use url::Url;

use crate::HarnessError;

/// The password of every harness login. The harness cluster trusts loopback connections, so it
/// only matters on a server named by `DATABASE_URL` that asks for passwords; it protects nothing
/// and must never be used outside a development machine.
pub const DEV_PASSWORD: &str = "myhealth-dev-only";

/// A service's login, member of one group role of `sql/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceLogin {
    /// The ingest API: member of `myhealth_ingest`.
    Ingest,
    /// The CDC daemon: member of `myhealth_replication`, with the `REPLICATION` attribute
    /// (which PostgreSQL never passes on through membership).
    Replication,
    /// Support tools: member of `myhealth_readonly`.
    Readonly,
}

impl ServiceLogin {
    /// Every login.
    pub const ALL: [ServiceLogin; 3] = [
        ServiceLogin::Ingest,
        ServiceLogin::Replication,
        ServiceLogin::Readonly,
    ];

    /// The login's user name.
    pub fn user(self) -> &'static str {
        match self {
            ServiceLogin::Ingest => "myhealth_ingest_api",
            ServiceLogin::Replication => "myhealth_cdc_daemon",
            ServiceLogin::Readonly => "myhealth_support",
        }
    }

    /// The group role the login is a member of.
    pub fn group(self) -> &'static str {
        match self {
            ServiceLogin::Ingest => source_schema::INGEST_ROLE,
            ServiceLogin::Replication => source_schema::REPLICATION_ROLE,
            ServiceLogin::Readonly => source_schema::READONLY_ROLE,
        }
    }

    fn attributes(self) -> &'static str {
        match self {
            ServiceLogin::Replication => "LOGIN REPLICATION",
            ServiceLogin::Ingest | ServiceLogin::Readonly => "LOGIN",
        }
    }
}

/// Creates the logins that do not exist yet. The group roles must exist, i.e. some database of
/// the cluster is migrated; `admin` must be allowed to create roles (a superuser, for
/// `REPLICATION`).
pub async fn create_logins(admin: &tokio_postgres::Client) -> Result<(), HarnessError> {
    for login in ServiceLogin::ALL {
        // Identifiers and the password are constants of this module, never outside input.
        let statement = format!(
            "DO $$ BEGIN \
                 CREATE ROLE {user} {attributes} PASSWORD '{DEV_PASSWORD}' IN ROLE {group}; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
             END $$",
            user = login.user(),
            attributes = login.attributes(),
            group = login.group(),
        );
        admin
            .batch_execute(&statement)
            .await
            .map_err(|source| HarnessError::Postgres {
                action: format!("failed to create the login {}", login.user()),
                source,
            })?;
    }
    Ok(())
}

/// `url` (a database URL of the harness server) with `login`'s user and password.
pub fn url_as(url: &str, login: ServiceLogin) -> Result<String, HarnessError> {
    let bad_url = |detail: String| HarnessError::BadUrl {
        name: "database URL",
        detail,
    };
    let mut parsed = Url::parse(url).map_err(|error| bad_url(error.to_string()))?;
    parsed
        .set_username(login.user())
        .and_then(|()| parsed.set_password(Some(DEV_PASSWORD)))
        .map_err(|()| bad_url("it cannot carry a user name".to_string()))?;
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn url_as_replaces_user_and_password_and_keeps_the_rest() {
        let url = url_as(
            "postgres://postgres:secret@127.0.0.1:5433/t_1?sslmode=disable",
            ServiceLogin::Replication,
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://myhealth_cdc_daemon:myhealth-dev-only@127.0.0.1:5433/t_1?sslmode=disable"
        );
    }
}
