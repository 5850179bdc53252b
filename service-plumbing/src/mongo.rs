//! The MongoDB read-store client of the services that use the store (`reports-api`, the daemon)
//! and its readiness check, so that both parse, name and time out their client the same way.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use secrecy::{ExposeSecret, SecretString};

/// Why no client could be made for the configured URI.
#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    /// The URI is not a MongoDB connection string (the driver's message redacts credentials),
    /// or its `mongodb+srv://` DNS records could not be resolved.
    #[error("failed to parse mongodb_uri")]
    Parse(#[source] mongodb::error::Error),
    /// The driver refused the parsed options.
    #[error("failed to create the mongodb client")]
    Client(#[source] mongodb::error::Error),
}

/// A client for `uri`, announced to the server as `app_name`, and its database `name`. Parses
/// the URI (resolving DNS for `mongodb+srv://`) but does not connect: the driver connects in the
/// background. A command fails after `selection_timeout` without a reachable server, instead of
/// the driver's 30 s, so callers can answer or retry within seconds while the store is down.
pub async fn database(
    uri: &SecretString,
    name: &str,
    app_name: &str,
    selection_timeout: Duration,
) -> Result<Database, MongoError> {
    let mut options = ClientOptions::parse(uri.expose_secret())
        .await
        .map_err(MongoError::Parse)?;
    options.app_name = Some(app_name.to_owned());
    options.server_selection_timeout = Some(selection_timeout);
    let client = Client::with_options(options).map_err(MongoError::Client)?;
    Ok(client.database(name))
}

/// Readiness: the database answers `ping`.
///
/// The readiness runner spawns this on its own task and times out the task's handle, never this
/// future: dropping a driver operation mid-flight can leave its connection in an unknown state.
pub async fn check(database: Database) -> Result<(), String> {
    database
        .run_command(doc! { "ping": 1 })
        .await
        .map(|_reply| ())
        .map_err(|error| format!("ping failed: {error}"))
}
