//! Device authentication: `Authorization: Bearer <device token>`, with the devices found
//! remembered for a short time ([`DeviceCache`]) so that an upload costs no round trip to look
//! its device up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use service_plumbing::http::BearerError;
use service_plumbing::problem::Problem;

use crate::store::devices::{self, Device};
use crate::store::{StoreError, connection};

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No usable credentials, or credentials of no active device: 401.
    Unauthorized(Rejection),
    /// The database could not be asked.
    Store(StoreError),
}

/// What is wrong with a request's credentials; each says its problem detail and picks its
/// RFC 6750 challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header: the challenge names the realm only.
    Missing,
    /// The header is not `Bearer <token>`.
    NotBearer,
    /// The token is no active device's.
    UnknownToken,
}

impl Rejection {
    /// The problem's detail.
    pub fn detail(self) -> &'static str {
        match self {
            Rejection::Missing => "an Authorization: Bearer <device token> header is required",
            Rejection::NotBearer => "the Authorization header must be `Bearer <token>`",
            Rejection::UnknownToken => "the device token is unknown or revoked",
        }
    }

    /// The `WWW-Authenticate` challenge: without credentials only the realm, with unusable
    /// ones also `error="invalid_token"`.
    fn challenge(self) -> &'static str {
        match self {
            Rejection::Missing => r#"Bearer realm="ingest-api""#,
            Rejection::NotBearer | Rejection::UnknownToken => {
                r#"Bearer realm="ingest-api", error="invalid_token""#
            }
        }
    }
}

/// The device whose token the request carries: from `cache` if it was found there less than
/// the cache's time to live ago, else from the database. A token that cannot be one the service
/// issued is refused without asking either ([`shaped_token`]).
pub async fn authenticate(
    pool: &Pool,
    cache: &DeviceCache,
    headers: &HeaderMap,
) -> Result<Device, AuthError> {
    let token = shaped_token(headers)?;
    let hash = devices::token_hash(token);
    if let Some(device) = cache.get(&hash, Instant::now()) {
        return Ok(device);
    }
    let client = connection(pool).await.map_err(AuthError::Store)?;
    let device = devices::authenticate(&client, token)
        .await
        .map_err(AuthError::Store)?
        .ok_or(AuthError::Unauthorized(Rejection::UnknownToken))?;
    cache.insert(hash, device, Instant::now());
    Ok(device)
}

/// Active devices found recently, by the SHA-256 of their token, each for `ttl` after it was
/// looked up (`device_cache_seconds`; zero turns the cache off). A device revoked meanwhile
/// keeps being accepted until its entry expires, so revocation takes effect within `ttl`. Only
/// devices found are remembered: an unknown or revoked token is looked up every time.
///
/// Entries are keyed by the token's hash (what the database stores), never by the token; a map
/// lookup compares hashes with an early exit, which tells a caller nothing about the token of
/// any device, as choosing a token does not choose its hash.
#[derive(Debug)]
pub struct DeviceCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Device, Instant)>>,
}

/// Most devices remembered at once; when full, expired entries are dropped, and if none has
/// expired, all of them (tablets are counted in hundreds, not thousands).
const MAX_CACHED_DEVICES: usize = 10_000;

impl DeviceCache {
    /// A cache that keeps each device for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The device of `hash` if it was looked up less than `ttl` before `now`.
    fn get(&self, hash: &[u8; 32], now: Instant) -> Option<Device> {
        let entries = self.entries.lock().ok()?;
        let (device, found_at) = entries.get(hash)?;
        (now.saturating_duration_since(*found_at) < self.ttl).then_some(*device)
    }

    /// Remembers that `hash` was `device`'s token at `now`.
    fn insert(&self, hash: [u8; 32], device: Device, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_CACHED_DEVICES {
            entries.retain(|_, (_, found_at)| now.saturating_duration_since(*found_at) < self.ttl);
            if entries.len() >= MAX_CACHED_DEVICES {
                entries.clear();
            }
        }
        entries.insert(hash, (device, now));
    }
}

/// The bearer token, if it has the shape of a token the service issues
/// ([`devices::is_token_shaped`]): a cheap check, made before any database round trip and
/// before an upload takes one of its permits.
pub fn shaped_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let token = bearer_token(headers)?;
    if devices::is_token_shaped(token) {
        Ok(token)
    } else {
        Err(AuthError::Unauthorized(Rejection::UnknownToken))
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    service_plumbing::http::bearer_token(headers).map_err(|error| {
        AuthError::Unauthorized(match error {
            BearerError::Missing => Rejection::Missing,
            BearerError::NotBearer | BearerError::Malformed => Rejection::NotBearer,
        })
    })
}

/// The 401 problem of `rejection`, with the challenge RFC 6750 asks for.
pub fn unauthorized(rejection: Rejection) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, rejection.detail()).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(rejection.challenge()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::header::AUTHORIZATION;
    use secrecy::SecretString;

    use super::*;

    /// A pool whose every connection attempt fails (nothing listens on port 1).
    fn unreachable_pool() -> Pool {
        let url = SecretString::from("postgres://nobody@127.0.0.1:1/nothing");
        service_plumbing::postgres::pool(&url, 1, "auth-test").unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_without_a_database_round_trip() {
        let pool = unreachable_pool();
        let cache = DeviceCache::new(Duration::from_secs(5));
        let well_formed = devices::new_token().unwrap();
        for forged in [
            "mhd_".to_string(),
            format!("{}0", well_formed),
            well_formed[..well_formed.len() - 1].to_string(),
            well_formed.to_uppercase(),
            well_formed.replace("mhd_", "xyz_"),
            format!("mhd_{}", "g".repeat(64)),
            "' OR 1=1 --".to_string(),
            "a".repeat(16 * 1024),
        ] {
            let outcome = authenticate(&pool, &cache, &bearer(&forged)).await;
            assert!(
                matches!(outcome, Err(AuthError::Unauthorized(_))),
                "{forged:.40}: {outcome:?}"
            );
        }
        // A well-formed token is looked up: here the lookup fails, which proves it was tried.
        let outcome = authenticate(&pool, &cache, &bearer(&well_formed)).await;
        assert!(matches!(outcome, Err(AuthError::Store(_))), "{outcome:?}");
    }

    fn device(n: u128) -> Device {
        Device {
            id: uuid::Uuid::from_u128(n),
            clinic_id: uuid::Uuid::from_u128(n + 1000),
        }
    }

    #[tokio::test]
    async fn a_cached_device_is_answered_without_the_database_until_it_expires() {
        let pool = unreachable_pool();
        let cache = DeviceCache::new(Duration::from_secs(5));
        let token = devices::new_token().unwrap();
        let hash = devices::token_hash(&token);
        let found_at = Instant::now();
        cache.insert(hash, device(1), found_at);
        let outcome = authenticate(&pool, &cache, &bearer(&token)).await;
        assert_eq!(outcome.unwrap(), device(1));
        // Another token is not answered from the cache: its lookup is tried and fails here.
        let other = devices::new_token().unwrap();
        let outcome = authenticate(&pool, &cache, &bearer(&other)).await;
        assert!(matches!(outcome, Err(AuthError::Store(_))), "{outcome:?}");

        assert_eq!(
            cache.get(&hash, found_at + Duration::from_millis(4999)),
            Some(device(1))
        );
        assert_eq!(cache.get(&hash, found_at + Duration::from_secs(5)), None);
    }

    #[test]
    fn a_cache_with_no_time_to_live_remembers_nothing() {
        let cache = DeviceCache::new(Duration::ZERO);
        let now = Instant::now();
        cache.insert([7; 32], device(1), now);
        assert_eq!(cache.get(&[7; 32], now), None);
    }

    #[test]
    fn a_full_cache_drops_expired_devices_first() {
        let cache = DeviceCache::new(Duration::from_secs(5));
        let start = Instant::now();
        let later = start + Duration::from_secs(3);
        for n in 0..MAX_CACHED_DEVICES {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(n as u64).to_le_bytes());
            let at = if n == 0 { later } else { start };
            cache.insert(hash, device(n as u128), at);
        }
        // At start + 6 s every entry but the first has expired: they make room.
        cache.insert([9; 32], device(99_999), start + Duration::from_secs(6));
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries.contains_key(&[0u8; 32]));
        assert!(entries.contains_key(&[9; 32]));
    }
}
