//! Layered service configuration: serde defaults < optional TOML file < environment.
//!
//! Environment variables start with `MYHEALTH_`; a double underscore nests, so
//! `MYHEALTH_DATABASE_URL` sets `database_url` and `MYHEALTH_HTTP__LISTEN` sets `http.listen`.
//! The three services share one environment, so keys a service does not know are ignored (serde
//! ignores unknown fields; do not put `deny_unknown_fields` on a config struct). An empty
//! variable counts as unset.
//!
//! Secrets (database URLs, which can carry passwords) are `secrecy::SecretString` fields, so the
//! `Debug` output of a config struct never shows them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

/// Prefix of the environment variables read by [`load`], without its trailing `_`.
pub const ENV_PREFIX: &str = "MYHEALTH";

/// Separator of nested keys in environment variable names (`MYHEALTH_HTTP__LISTEN`).
pub const ENV_NESTING_SEPARATOR: &str = "__";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("failed to read configuration file {path}")]
    ReadFile {
        /// The file given to [`load`].
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A layer could not be parsed (TOML syntax, non-Unicode environment variable).
    #[error("failed to parse configuration")]
    Parse(#[source] config::ConfigError),
    /// The merged layers do not fit the configuration struct (missing or mistyped key).
    #[error("invalid configuration")]
    Invalid(#[source] config::ConfigError),
}

/// Loads a `T` from its serde defaults, then `file` (TOML) if given, then `MYHEALTH_*`
/// environment variables, each layer overriding the one before.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_layers(file, environment())
}

/// Like [`load`], but reads the environment layer from `vars` (full names such as
/// `MYHEALTH_HTTP__LISTEN`) instead of the process environment.
///
/// Tests use it to configure a service without mutating the process environment, which is
/// `unsafe` in edition 2024 and races with other tests.
pub fn load_from_vars<T: DeserializeOwned>(
    file: Option<&Path>,
    vars: HashMap<String, String>,
) -> Result<T, ConfigError> {
    load_layers(file, environment().source(Some(vars)))
}

/// The environment layer: `MYHEALTH_` prefix, `__` between nested keys.
fn environment() -> Environment {
    Environment::with_prefix(ENV_PREFIX)
        // Without this the prefix separator would default to `__` too (`MYHEALTH__…`).
        .prefix_separator("_")
        .separator(ENV_NESTING_SEPARATOR)
        .ignore_empty(true)
}

fn load_layers<T: DeserializeOwned>(
    file: Option<&Path>,
    environment: Environment,
) -> Result<T, ConfigError> {
    let mut builder = Config::builder();
    if let Some(path) = file {
        // Read the file ourselves so that a missing file is reported with its path.
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let merged = builder
        .add_source(environment)
        .build()
        .map_err(ConfigError::Parse)?;
    merged.try_deserialize().map_err(ConfigError::Invalid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use secrecy::{ExposeSecret, SecretString};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct TestConfig {
        #[serde(default)]
        http: TestHttp,
        database_url: SecretString,
        #[serde(default = "default_pool_size")]
        pool_size: usize,
    }

    #[derive(Debug, Default, Deserialize)]
    struct TestHttp {
        #[serde(default)]
        listen: Option<String>,
        #[serde(default)]
        timeout_ms: u64,
    }

    fn default_pool_size() -> usize {
        16
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn serde_defaults_apply_when_no_layer_sets_a_key() {
        let config: TestConfig =
            load_from_vars(None, vars(&[("MYHEALTH_DATABASE_URL", "postgres://x")])).unwrap();
        assert_eq!(config.pool_size, 16);
        assert_eq!(config.http.listen, None);
        assert_eq!(config.database_url.expose_secret(), "postgres://x");
    }

    #[test]
    fn environment_overrides_file_and_file_overrides_defaults() {
        let file = toml_file(
            "database_url = \"postgres://from-file\"\npool_size = 4\n\
             [http]\nlisten = \"127.0.0.1:1\"\ntimeout_ms = 10\n",
        );
        let config: TestConfig = load_from_vars(
            Some(file.path()),
            vars(&[
                ("MYHEALTH_HTTP__LISTEN", "127.0.0.1:2"),
                ("MYHEALTH_DATABASE_URL", "postgres://from-env"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(config.http.timeout_ms, 10);
        assert_eq!(config.pool_size, 4);
        assert_eq!(config.database_url.expose_secret(), "postgres://from-env");
    }

    #[test]
    fn numbers_from_the_environment_are_parsed() {
        let config: TestConfig = load_from_vars(
            None,
            vars(&[
                ("MYHEALTH_DATABASE_URL", "postgres://x"),
                ("MYHEALTH_POOL_SIZE", "3"),
                ("MYHEALTH_HTTP__TIMEOUT_MS", "250"),
            ]),
        )
        .unwrap();
        assert_eq!(config.pool_size, 3);
        assert_eq!(config.http.timeout_ms, 250);
    }

    #[test]
    fn unknown_and_unprefixed_environment_keys_are_ignored() {
        let config: TestConfig = load_from_vars(
            None,
            vars(&[
                ("MYHEALTH_DATABASE_URL", "postgres://x"),
                ("MYHEALTH_MONGODB_URI", "mongodb://someone-elses"),
                ("MYHEALTH_CONFIG", "/etc/myhealth.toml"),
                ("POOL_SIZE", "99"),
            ]),
        )
        .unwrap();
        assert_eq!(config.pool_size, 16);
    }

    #[test]
    fn a_missing_required_key_is_an_error() {
        let result: Result<TestConfig, _> = load_from_vars(None, HashMap::new());
        assert!(matches!(result, Err(ConfigError::Invalid(_))), "{result:?}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent/myhealth.toml");
        let result: Result<TestConfig, _> = load_from_vars(Some(path), HashMap::new());
        let error = result.unwrap_err();
        assert!(matches!(error, ConfigError::ReadFile { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/myhealth.toml"));
    }

    #[test]
    fn debug_output_of_a_config_redacts_secrets() {
        let config: TestConfig = load_from_vars(
            None,
            vars(&[(
                "MYHEALTH_DATABASE_URL",
                "postgres://app:hunter2@db.internal/myhealth",
            )]),
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("db.internal"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }
}
