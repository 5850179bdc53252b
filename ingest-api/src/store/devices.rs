//! Clinic tablets: bearer tokens are random, shown once, and only their SHA-256 is stored.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::StoreError;

/// Prefix of device tokens, so that secret scanners and humans recognise a leaked one.
pub const TOKEN_PREFIX: &str = "mhd_";

/// An authenticated tablet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// The device id.
    pub id: Uuid,
    /// The clinic it belongs to; every checkup it uploads is at this clinic.
    pub clinic_id: Uuid,
}

/// The SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Length of a token: the prefix and 64 hex digits.
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 64;

/// Whether `token` has the shape of a token [`new_token`] makes (the prefix, then 64 lowercase
/// hex digits): anything else cannot belong to a device and is refused before hashing and
/// looking it up.
pub fn is_token_shaped(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random token: the prefix and 256 random bits in hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let hex: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{TOKEN_PREFIX}{hex}"))
}

/// The active (not revoked) device whose token this is, if any.
pub async fn authenticate(
    client: &tokio_postgres::Client,
    token: &str,
) -> Result<Option<Device>, StoreError> {
    let hash = token_hash(token);
    let row = client
        .query_opt(
            // A SECURITY DEFINER function (sql/migrations/V4): the ingest role cannot read
            // the token hashes of other devices, only look up the one presented.
            "SELECT id, clinic_id, token_sha256 FROM device_by_token_sha256($1)",
            &[&hash.as_slice()],
        )
        .await
        .map_err(|error| StoreError::from_postgres("authenticating a device", error))?;
    Ok(row.and_then(|row| {
        let stored: &[u8] = row.get(2);
        // The index lookup already matched (the function returns the caller's own hash);
        // compare again in constant time so that no code path of ours compares token material
        // with an early exit.
        bool::from(stored.ct_eq(&hash)).then(|| Device {
            id: row.get(0),
            clinic_id: row.get(1),
        })
    }))
}

/// Why an operator command on devices failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceCommandError {
    /// The label is taken in that clinic.
    #[error("clinic {clinic:?} already has a device labelled {label:?}; choose another label")]
    LabelTaken {
        /// The clinic name.
        clinic: String,
        /// The label.
        label: String,
    },
    /// No active device has that label.
    #[error("clinic {clinic:?} has no active device labelled {label:?}")]
    NotFound {
        /// The clinic name.
        clinic: String,
        /// The label.
        label: String,
    },
    /// The random generator failed.
    #[error("failed to generate a token")]
    Random(#[source] getrandom::Error),
    /// The database refused.
    #[error("failed to {action}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Creates the clinic if needed and a device in it; returns the device id and its token, which
/// is not stored and cannot be shown again.
pub async fn add(
    client: &mut tokio_postgres::Client,
    clinic: &str,
    label: &str,
) -> Result<(Uuid, String), DeviceCommandError> {
    let database = |action| move |source| DeviceCommandError::Database { action, source };
    let token = new_token().map_err(DeviceCommandError::Random)?;
    let transaction = client
        .transaction()
        .await
        .map_err(database("begin a transaction"))?;
    transaction
        .execute(
            "INSERT INTO clinics (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&clinic],
        )
        .await
        .map_err(database("create the clinic"))?;
    let inserted = transaction
        .query_opt(
            "INSERT INTO devices (clinic_id, label, token_sha256) \
             SELECT id, $2, $3 FROM clinics WHERE name = $1 \
             ON CONFLICT (clinic_id, label) DO NOTHING RETURNING id",
            &[&clinic, &label, &token_hash(&token).as_slice()],
        )
        .await
        .map_err(database("create the device"))?;
    let Some(row) = inserted else {
        return Err(DeviceCommandError::LabelTaken {
            clinic: clinic.to_string(),
            label: label.to_string(),
        });
    };
    transaction.commit().await.map_err(database("commit"))?;
    Ok((row.get(0), token))
}

/// Revokes the active device `label` of `clinic`: its token stops working at once for new
/// lookups, and within `device_cache_seconds` on an ingest API that authenticated it just
/// before (see [`crate::auth::DeviceCache`]).
pub async fn revoke(
    client: &tokio_postgres::Client,
    clinic: &str,
    label: &str,
) -> Result<Uuid, DeviceCommandError> {
    let row = client
        .query_opt(
            "UPDATE devices SET revoked_at = now() \
             WHERE clinic_id = (SELECT id FROM clinics WHERE name = $1) \
               AND label = $2 AND revoked_at IS NULL RETURNING id",
            &[&clinic, &label],
        )
        .await
        .map_err(|source| DeviceCommandError::Database {
            action: "revoke the device",
            source,
        })?;
    row.map(|row| row.get(0))
        .ok_or_else(|| DeviceCommandError::NotFound {
            clinic: clinic.to_string(),
            label: label.to_string(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
