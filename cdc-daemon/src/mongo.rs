//! The MongoDB read-store connection and its readiness check.

use anyhow::Context;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use secrecy::{ExposeSecret, SecretString};

/// A client for `uri` and its database `name`. Parses the URI (resolving DNS for
/// `mongodb+srv://`) but does not connect: the driver connects in the background.
pub(crate) async fn database(uri: &SecretString, name: &str) -> anyhow::Result<Database> {
    // The driver's parse errors redact the URI's credentials.
    let mut options = ClientOptions::parse(uri.expose_secret())
        .await
        .context("failed to parse mongodb_uri")?;
    options.app_name = Some(crate::SERVICE_NAME.to_owned());
    // Fail a command within seconds while the store is down, instead of the driver's 30 s: the
    // pipeline retries on its own, and must notice a shutdown in between.
    options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
    let client = Client::with_options(options).context("failed to create the mongodb client")?;
    Ok(client.database(name))
}

/// Readiness: the database answers `ping`.
///
/// The readiness runner spawns this on its own task and times out the task's handle, never
/// this future: a driver operation dropped mid-flight can leave its connection unusable.
pub(crate) async fn check(database: Database) -> Result<(), String> {
    database
        .run_command(doc! { "ping": 1 })
        .await
        .map(|_reply| ())
        .map_err(|error| format!("ping failed: {error}"))
}
