//! Patient authentication: bearer JWTs issued by the organisation's identity provider.
//!
//! A patient calls the API with `Authorization: Bearer <jwt>`. The token's `sub` claim is the
//! patient id (a uuid); every read is filtered by it. The parts fit together like this:
//!
//! - [`AuthConfig`] is the `auth` section of the service configuration. It deserializes from flat
//!   optional keys (`auth.algorithm`, `auth.hs256_secret`, `auth.public_key_pem`, …) and checks
//!   while deserializing, without any I/O, that they make sense together, so a bad combination
//!   fails at start-up with a message naming the keys.
//! - [`Verifier`] is built from it (reading key files, parsing PEM) and turns an `Authorization`
//!   header into a patient id, or into an [`AuthError`], which becomes a `401` problem with a
//!   `WWW-Authenticate` challenge ([`AuthError::to_problem`]).
//! - [`Minter`] signs tokens with the same configuration, for local runs and tests: with the
//!   HS256 secret, or with a private key when one is configured next to the public key.
//!
//! Only the configured algorithm is accepted: a token whose header names another one (`none`,
//! or HS256 signed with the RSA public key as secret, the classic algorithm confusion) is refused
//! before any signature check. `exp`, `iss`, `aud` and `sub` are required; `nbf` is checked when
//! present; `exp` and `nbf` allow `leeway_seconds` of clock skew.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use service_plumbing::http::BearerError;
use service_plumbing::problem::Problem;
use uuid::Uuid;

/// `realm` of the `WWW-Authenticate` challenge.
pub const REALM: &str = "reports-api";

/// Issuer expected when `auth.issuer` is not configured.
pub const DEFAULT_ISSUER: &str = "myhealth-local";

/// Audience expected when `auth.audience` is not configured.
pub const DEFAULT_AUDIENCE: &str = "myhealth-reports-api";

/// Clock skew allowed on `exp` and `nbf` when `auth.leeway_seconds` is not configured.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Largest accepted `auth.leeway_seconds`: more would quietly extend every token's life.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// Shortest accepted HS256 secret, in bytes (RFC 7518 section 3.2: at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Longest accepted bearer token. Real tokens are well under 2 KiB; this bounds the work done
/// on a garbage header before it is refused.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A signature algorithm the service accepts (one per deployment, chosen by `auth.algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret: for local runs and tests.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and the identity provider's RSA key.
    RS256,
    /// Ed25519 with the identity provider's key.
    EdDSA,
}

impl Algorithm {
    /// Every accepted algorithm.
    pub const ALL: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::EdDSA];

    /// The algorithm named `name` (exactly as in [`Algorithm::as_str`]), if accepted.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == name)
    }

    /// The name used in configuration and in JWT headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// PEM text given inline or as a file to read when the [`Verifier`] or [`Minter`] is built.
#[derive(Debug, Clone)]
pub enum PemSource {
    /// The PEM text itself. Held as a secret because private keys come this way too (public
    /// keys are redacted from `Debug` as well, harmlessly).
    Text(SecretString),
    /// A file holding the PEM text.
    File(PathBuf),
}

/// Where the keys come from; which variant fits depends on [`AuthConfig::algorithm`].
#[derive(Debug, Clone)]
pub enum KeySource {
    /// HS256: a shared secret that both verifies and signs.
    Hs256Secret(SecretString),
    /// RS256 or EdDSA: the identity provider's public key, and optionally a private key (only
    /// to mint tokens for local runs).
    KeyPair {
        /// The public key that verifies tokens (`auth.public_key_pem` or `auth.public_key_file`).
        public: PemSource,
        /// The private key that signs them (`auth.private_key_pem` or `auth.private_key_file`).
        private: Option<PemSource>,
    },
}

/// The `auth` section of the service configuration, checked for consistency.
///
/// Deserialized from flat keys (environment variables `MYHEALTH_AUTH__<KEY>`):
///
/// | key | meaning |
/// | --- | --- |
/// | `auth.algorithm` | `HS256`, `RS256` or `EdDSA` (required) |
/// | `auth.hs256_secret` | HS256 secret, at least 32 bytes (local runs) |
/// | `auth.public_key_pem` / `auth.public_key_file` | RS256/EdDSA public key, one of the two |
/// | `auth.private_key_pem` / `auth.private_key_file` | optional, only to mint local tokens |
/// | `auth.issuer` | expected `iss`, default `myhealth-local` |
/// | `auth.audience` | expected `aud`, default `myhealth-reports-api` |
/// | `auth.leeway_seconds` | clock skew allowed on `exp`/`nbf`, default 30, at most 300 |
///
/// Keys that the algorithm does not use are refused rather than ignored, so that a deployment
/// cannot believe it verifies with a key it does not. Secrets are redacted from `Debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "AuthSettings")]
pub struct AuthConfig {
    /// The only algorithm tokens may be signed with.
    pub algorithm: Algorithm,
    /// The keys that verify (and possibly sign) tokens.
    pub key: KeySource,
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim (the token's `aud` must be or contain it).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}

/// The `auth` keys as written in the configuration, before [`AuthConfig`] checks them.
#[derive(Deserialize)]
struct AuthSettings {
    algorithm: Option<String>,
    hs256_secret: Option<SecretString>,
    public_key_pem: Option<SecretString>,
    public_key_file: Option<PathBuf>,
    private_key_pem: Option<SecretString>,
    private_key_file: Option<PathBuf>,
    #[serde(default = "default_issuer")]
    issuer: String,
    #[serde(default = "default_audience")]
    audience: String,
    #[serde(default = "default_leeway_seconds")]
    leeway_seconds: u64,
}

fn default_issuer() -> String {
    DEFAULT_ISSUER.to_owned()
}

fn default_audience() -> String {
    DEFAULT_AUDIENCE.to_owned()
}

fn default_leeway_seconds() -> u64 {
    DEFAULT_LEEWAY_SECONDS
}

/// Why the `auth` configuration cannot be used. Messages name configuration keys and paths,
/// never key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `auth.algorithm` is missing.
    #[error("auth.algorithm is not set (expected HS256, RS256 or EdDSA)")]
    MissingAlgorithm,
    /// `auth.algorithm` names an algorithm that is not accepted.
    #[error("auth.algorithm must be HS256, RS256 or EdDSA, not {0:?}")]
    UnknownAlgorithm(String),
    /// The algorithm needs a key that is not configured.
    #[error("auth.algorithm is {algorithm} but {missing} is not set")]
    MissingKey {
        /// The configured algorithm.
        algorithm: Algorithm,
        /// The key or keys that would be needed.
        missing: &'static str,
    },
    /// A key is configured that the algorithm does not use.
    #[error("auth.algorithm is {algorithm}, which does not use {key}; remove it")]
    UnusedKey {
        /// The configured algorithm.
        algorithm: Algorithm,
        /// The superfluous key.
        key: &'static str,
    },
    /// Both the inline and the file form of a key are set.
    #[error("set only one of {first} and {second}")]
    Ambiguous {
        /// The setting holding the key inline.
        first: &'static str,
        /// The setting naming the key's file.
        second: &'static str,
    },
    /// The HS256 secret is too short to be safe.
    #[error("auth.hs256_secret must be at least {MIN_HS256_SECRET_BYTES} bytes long")]
    ShortSecret,
    /// A string setting is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// `auth.leeway_seconds` is too large.
    #[error("auth.leeway_seconds must be at most {MAX_LEEWAY_SECONDS}")]
    LeewayTooLarge,
    /// [`AuthConfig::key`] does not fit [`AuthConfig::algorithm`] (only when built by hand).
    #[error("the configured key does not fit auth.algorithm {0}")]
    KeyDoesNotFitAlgorithm(Algorithm),
    /// A key file could not be read.
    #[error("failed to read {key} {}", path.display())]
    ReadKeyFile {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A key is not a PEM key of the configured algorithm.
    #[error("{key} is not a valid {algorithm} key in PEM form")]
    BadKey {
        /// The setting holding the key.
        key: &'static str,
        /// The configured algorithm.
        algorithm: Algorithm,
        /// What the JWT library reported (never the key itself).
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The private key does not sign tokens that the public key verifies.
    #[error(
        "the private key (auth.private_key_*) does not match the public key (auth.public_key_*)"
    )]
    KeyMismatch,
}

impl TryFrom<AuthSettings> for AuthConfig {
    type Error = AuthConfigError;

    fn try_from(settings: AuthSettings) -> Result<Self, Self::Error> {
        let name = settings
            .algorithm
            .ok_or(AuthConfigError::MissingAlgorithm)?;
        let algorithm = Algorithm::parse(&name).ok_or(AuthConfigError::UnknownAlgorithm(name))?;
        let key = match algorithm {
            Algorithm::HS256 => {
                for (present, key) in [
                    (settings.public_key_pem.is_some(), "auth.public_key_pem"),
                    (settings.public_key_file.is_some(), "auth.public_key_file"),
                    (settings.private_key_pem.is_some(), "auth.private_key_pem"),
                    (settings.private_key_file.is_some(), "auth.private_key_file"),
                ] {
                    if present {
                        return Err(AuthConfigError::UnusedKey { algorithm, key });
                    }
                }
                let secret = settings.hs256_secret.ok_or(AuthConfigError::MissingKey {
                    algorithm,
                    missing: "auth.hs256_secret",
                })?;
                if secret.expose_secret().len() < MIN_HS256_SECRET_BYTES {
                    return Err(AuthConfigError::ShortSecret);
                }
                KeySource::Hs256Secret(secret)
            }
            Algorithm::RS256 | Algorithm::EdDSA => {
                if settings.hs256_secret.is_some() {
                    return Err(AuthConfigError::UnusedKey {
                        algorithm,
                        key: "auth.hs256_secret",
                    });
                }
                let public = pem_source(
                    settings.public_key_pem,
                    settings.public_key_file,
                    ("auth.public_key_pem", "auth.public_key_file"),
                )?
                .ok_or(AuthConfigError::MissingKey {
                    algorithm,
                    missing: "auth.public_key_pem or auth.public_key_file",
                })?;
                let private = pem_source(
                    settings.private_key_pem,
                    settings.private_key_file,
                    ("auth.private_key_pem", "auth.private_key_file"),
                )?;
                KeySource::KeyPair { public, private }
            }
        };
        if settings.issuer.trim().is_empty() {
            return Err(AuthConfigError::Empty("auth.issuer"));
        }
        if settings.audience.trim().is_empty() {
            return Err(AuthConfigError::Empty("auth.audience"));
        }
        if settings.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(AuthConfigError::LeewayTooLarge);
        }
        Ok(AuthConfig {
            algorithm,
            key,
            issuer: settings.issuer,
            audience: settings.audience,
            leeway_seconds: settings.leeway_seconds,
        })
    }
}

fn pem_source(
    text: Option<SecretString>,
    file: Option<PathBuf>,
    (text_key, file_key): (&'static str, &'static str),
) -> Result<Option<PemSource>, AuthConfigError> {
    match (text, file) {
        (Some(_), Some(_)) => Err(AuthConfigError::Ambiguous {
            first: text_key,
            second: file_key,
        }),
        (Some(text), None) => Ok(Some(PemSource::Text(text))),
        (None, Some(path)) => Ok(Some(PemSource::File(path))),
        (None, None) => Ok(None),
    }
}

impl AuthConfig {
    /// An HS256 configuration with the default issuer, audience and leeway (local runs, tests).
    pub fn hs256(secret: SecretString) -> Result<AuthConfig, AuthConfigError> {
        AuthConfig::try_from(AuthSettings {
            algorithm: Some(Algorithm::HS256.as_str().to_owned()),
            hs256_secret: Some(secret),
            public_key_pem: None,
            public_key_file: None,
            private_key_pem: None,
            private_key_file: None,
            issuer: default_issuer(),
            audience: default_audience(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
        })
    }
}

/// Reads a PEM source: the inline text, or the file's contents.
fn read_pem(source: &PemSource, key: &'static str) -> Result<SecretString, AuthConfigError> {
    match source {
        PemSource::Text(text) => Ok(text.clone()),
        PemSource::File(path) => read_key_file(path, key),
    }
}

fn read_key_file(path: &Path, key: &'static str) -> Result<SecretString, AuthConfigError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|source| AuthConfigError::ReadKeyFile {
            key,
            path: path.to_owned(),
            source,
        })
}

/// The name of the setting a key came from, for error messages.
fn setting_name(
    source: &PemSource,
    text_key: &'static str,
    file_key: &'static str,
) -> &'static str {
    match source {
        PemSource::Text(_) => text_key,
        PemSource::File(_) => file_key,
    }
}

/// Checks bearer tokens and extracts the patient id from them.
#[derive(Clone)]
pub struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    // By hand: the decoding key of HS256 is the secret itself.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("leeway_seconds", &self.validation.leeway)
            .finish_non_exhaustive()
    }
}

/// The claims read from a verified token beyond those the JWT library checks itself.
#[derive(Deserialize)]
struct VerifiedClaims {
    /// Any JSON value, so that a non-string `sub` is reported as a bad subject rather than as
    /// a malformed token.
    #[serde(default)]
    sub: serde_json::Value,
}

impl Verifier {
    /// Builds the verifier: reads the public key file if one is configured and parses the key.
    pub fn new(config: &AuthConfig) -> Result<Verifier, AuthConfigError> {
        let algorithm = config.algorithm;
        let key = match (&config.key, algorithm) {
            (KeySource::Hs256Secret(secret), Algorithm::HS256) => {
                DecodingKey::from_secret(secret.expose_secret().as_bytes())
            }
            (KeySource::KeyPair { public, .. }, Algorithm::RS256 | Algorithm::EdDSA) => {
                let setting = setting_name(public, "auth.public_key_pem", "auth.public_key_file");
                let pem = read_pem(public, setting)?;
                let pem = pem.expose_secret().as_bytes();
                let parsed = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(pem)
                } else {
                    DecodingKey::from_ed_pem(pem)
                };
                parsed.map_err(|source| AuthConfigError::BadKey {
                    key: setting,
                    algorithm,
                    source,
                })?
            }
            _ => return Err(AuthConfigError::KeyDoesNotFitAlgorithm(algorithm)),
        };
        let mut validation = Validation::new(algorithm.to_jwt());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.leeway = config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        Ok(Verifier {
            algorithm,
            key,
            validation,
        })
    }

    /// The patient id of the request whose `Authorization` header value is given (`None` when
    /// the request has none).
    pub fn verify(&self, authorization_header: Option<&str>) -> Result<Uuid, AuthError> {
        let token = service_plumbing::http::parse_bearer(authorization_header.unwrap_or_default())?;
        self.verify_token(token)
    }

    /// Like [`Verifier::verify`], reading the `Authorization` header from `headers`; several
    /// `Authorization` headers, or one that is not visible ASCII, count as malformed.
    pub fn verify_headers(&self, headers: &HeaderMap) -> Result<Uuid, AuthError> {
        self.verify_token(service_plumbing::http::bearer_token(headers)?)
    }

    fn verify_token(&self, token: &str) -> Result<Uuid, AuthError> {
        if token.len() > MAX_TOKEN_BYTES || !is_compact_jws(token) {
            return Err(AuthError::Malformed);
        }
        let data = jsonwebtoken::decode::<VerifiedClaims>(token, &self.key, &self.validation)
            .map_err(|error| AuthError::from_jwt(error.kind()))?;
        patient_id(&data.claims.sub)
    }
}

/// Whether `token` has the shape of a compact JWS: three non-empty base64url segments. Checked
/// before any decoding or signature work, so garbage costs one pass over its bytes.
fn is_compact_jws(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        let base64url = segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if segment.is_empty() || !base64url {
            return false;
        }
    }
    segments == 3
}

/// The patient id in `sub`: a uuid in its canonical hyphenated form, not the nil uuid.
fn patient_id(sub: &serde_json::Value) -> Result<Uuid, AuthError> {
    let text = sub.as_str().ok_or(AuthError::BadSubject)?;
    // `parse_str` also takes the simple, braced and urn forms; identity providers write the
    // hyphenated one, and accepting a single spelling keeps one patient one `sub`.
    if text.len() != 36 {
        return Err(AuthError::BadSubject);
    }
    match Uuid::parse_str(text) {
        Ok(id) if !id.is_nil() => Ok(id),
        _ => Err(AuthError::BadSubject),
    }
}

/// Why a request is not authenticated. The `Display` text is the problem's `detail`: it says
/// what is wrong without echoing the token or revealing anything about the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (or an empty one).
    #[error("the request has no bearer token; send the header Authorization: Bearer <token>")]
    Missing,
    /// An `Authorization` header with another scheme, such as `Basic`.
    #[error("the Authorization header does not use the Bearer scheme")]
    NotBearer,
    /// Not a JWT: wrong shape, bad base64 or JSON, a claim of the wrong type.
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    /// The token's header names an algorithm other than the accepted one (including `none`).
    #[error("the token is not signed with the accepted algorithm")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` does not name this service.
    #[error("the token is not meant for this service (wrong audience)")]
    WrongAudience,
    /// `iss` is not the expected identity provider.
    #[error("the token was not issued by the expected identity provider (wrong issuer)")]
    WrongIssuer,
    /// A required claim (`exp`, `iss` or `aud`) is absent.
    #[error("the token lacks the required claim {0}")]
    MissingClaim(String),
    /// `sub` is absent or not a patient id.
    #[error("the token's subject is not a patient id")]
    BadSubject,
}

impl From<BearerError> for AuthError {
    fn from(error: BearerError) -> Self {
        match error {
            BearerError::Missing => AuthError::Missing,
            BearerError::NotBearer => AuthError::NotBearer,
            BearerError::Malformed => AuthError::Malformed,
        }
    }
}

impl AuthError {
    fn from_jwt(kind: &ErrorKind) -> AuthError {
        match kind {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidSubject => AuthError::BadSubject,
            // A non-string `sub` is reported as missing by the library.
            ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => AuthError::BadSubject,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthError::WrongAlgorithm
            }
            ErrorKind::InvalidToken
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::Malformed,
            // Key and provider errors: the token could not be verified with our key.
            _ => AuthError::BadSignature,
        }
    }

    /// Whether a token was presented (and found bad), as opposed to no bearer token at all.
    fn token_was_given(&self) -> bool {
        !matches!(self, AuthError::Missing | AuthError::NotBearer)
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 section 3): the realm, plus
    /// `error="invalid_token"` and a description when a token was given but is bad.
    pub fn challenge(&self) -> HeaderValue {
        const PLAIN: &str = "Bearer realm=\"reports-api\"";
        if !self.token_was_given() {
            return HeaderValue::from_static(PLAIN);
        }
        // error_description allows printable ASCII except `"` and `\` (RFC 6750 section 3).
        let description: String = self
            .to_string()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                ' '..='~' => c,
                _ => '?',
            })
            .collect();
        let value = format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
        );
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(PLAIN))
    }

    /// The `401 Unauthorized` problem, with the `WWW-Authenticate` challenge.
    pub fn to_problem(&self) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, self.to_string())
            .with_header(WWW_AUTHENTICATE, self.challenge())
    }
}

/// Signs tokens for local runs and tests, with the keys of an [`AuthConfig`].
#[derive(Clone)]
pub struct Minter {
    algorithm: Algorithm,
    /// `None` when only a public key is configured.
    key: Option<EncodingKey>,
    issuer: String,
    audience: String,
}

impl fmt::Debug for Minter {
    // By hand: the encoding key is secret.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Minter")
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.key.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// Only a public key is configured, so nothing can be signed.
    #[error("refusing to mint: only a public key is configured")]
    OnlyPublicKey,
    /// The JWT library failed to sign.
    #[error("failed to sign the token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// The claims of a minted token.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: String,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

impl Minter {
    /// Builds the minter: reads and parses the private key if one is configured, and checks
    /// that it matches the public key by verifying a token it signs.
    pub fn new(config: &AuthConfig) -> Result<Minter, AuthConfigError> {
        let algorithm = config.algorithm;
        let key = match (&config.key, algorithm) {
            (KeySource::Hs256Secret(secret), Algorithm::HS256) => {
                Some(EncodingKey::from_secret(secret.expose_secret().as_bytes()))
            }
            (KeySource::KeyPair { private: None, .. }, Algorithm::RS256 | Algorithm::EdDSA) => None,
            (
                KeySource::KeyPair {
                    private: Some(private),
                    ..
                },
                Algorithm::RS256 | Algorithm::EdDSA,
            ) => {
                let setting =
                    setting_name(private, "auth.private_key_pem", "auth.private_key_file");
                let pem = read_pem(private, setting)?;
                let pem = pem.expose_secret().as_bytes();
                let parsed = if algorithm == Algorithm::RS256 {
                    EncodingKey::from_rsa_pem(pem)
                } else {
                    EncodingKey::from_ed_pem(pem)
                };
                Some(parsed.map_err(|source| AuthConfigError::BadKey {
                    key: setting,
                    algorithm,
                    source,
                })?)
            }
            _ => return Err(AuthConfigError::KeyDoesNotFitAlgorithm(algorithm)),
        };
        let minter = Minter {
            algorithm,
            key,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        };
        if minter.key.is_some() && algorithm != Algorithm::HS256 {
            // A mismatched pair would mint tokens the service itself refuses; say so at start-up.
            let verifier = Verifier::new(config)?;
            let probe = Uuid::from_u128(1);
            let token = minter
                .mint(probe, Duration::from_secs(60))
                .map_err(|_| AuthConfigError::KeyMismatch)?;
            let header = format!("Bearer {token}");
            if verifier.verify(Some(&header)) != Ok(probe) {
                return Err(AuthConfigError::KeyMismatch);
            }
        }
        Ok(minter)
    }

    /// A token for `patient`, valid from now for `ttl` (whole seconds), with `sub`, `iss`,
    /// `aud`, `iat`, `nbf` and `exp`.
    pub fn mint(&self, patient: Uuid, ttl: Duration) -> Result<String, MintError> {
        let key = self.key.as_ref().ok_or(MintError::OnlyPublicKey)?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = MintedClaims {
            sub: patient.hyphenated().to_string(),
            iss: &self.issuer,
            aud: &self.audience,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm.to_jwt()), &claims, key)
            .map_err(MintError::Signing)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Keys under `tests/keys/` were made with `openssl genpkey` for these tests only.

    use std::collections::HashMap;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http::header::AUTHORIZATION;
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = "a-local-secret-of-at-least-32-bytes!";
    const OTHER_SECRET: &str = "another-secret-of-at-least-32-bytes";
    const ED_PRIVATE: &str = include_str!("../tests/keys/ed25519-private.pem");
    const ED_PUBLIC: &str = include_str!("../tests/keys/ed25519-public.pem");
    const ED_OTHER_PRIVATE: &str = include_str!("../tests/keys/ed25519-other-private.pem");
    const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/keys/rsa-public.pem");

    fn patient() -> Uuid {
        Uuid::parse_str("7f1c2a3e-5b6d-4e8f-9a0b-1c2d3e4f5a6b").unwrap()
    }

    fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
    }

    /// Loads an `AuthConfig` the way the service does, from `MYHEALTH_*` variables.
    fn config_from_env(vars: &[(&str, &str)]) -> Result<AuthConfig, String> {
        #[derive(Debug, Deserialize)]
        struct ServiceConfig {
            auth: AuthConfig,
        }
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        service_plumbing::config::load_from_vars::<ServiceConfig>(None, vars)
            .map(|config| config.auth)
            .map_err(|error| {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                text
            })
    }

    fn hs256_config() -> AuthConfig {
        AuthConfig::hs256(SECRET.into()).unwrap()
    }

    fn key_pair_config(algorithm: Algorithm, public: &str, private: Option<&str>) -> AuthConfig {
        AuthConfig {
            algorithm,
            key: KeySource::KeyPair {
                public: PemSource::Text(public.into()),
                private: private.map(|pem| PemSource::Text(pem.into())),
            },
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
        }
    }

    /// Valid claims for [`patient`], to be altered by each test.
    fn claims() -> Value {
        let now = now();
        json!({
            "sub": patient().to_string(),
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
            "iat": now,
            "exp": now + 300,
        })
    }

    fn sign_hs256(claims: &Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&Header::default(), claims, &key).unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn verify_hs256(claims: &Value) -> Result<Uuid, AuthError> {
        let token = sign_hs256(claims, SECRET);
        Verifier::new(&hs256_config())
            .unwrap()
            .verify(Some(&bearer(&token)))
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    #[test]
    fn a_valid_hs256_token_yields_the_patient_id() {
        assert_eq!(verify_hs256(&claims()), Ok(patient()));
    }

    #[test]
    fn minted_hs256_tokens_verify() {
        let config = hs256_config();
        let token = Minter::new(&config)
            .unwrap()
            .mint(patient(), Duration::from_secs(60))
            .unwrap();
        let verifier = Verifier::new(&config).unwrap();
        assert_eq!(verifier.verify(Some(&bearer(&token))), Ok(patient()));
        assert_eq!(
            verifier.verify(Some(&format!("bearer  {token}"))),
            Ok(patient())
        );
    }

    #[test]
    fn minted_eddsa_tokens_verify_with_the_public_key() {
        let config = key_pair_config(Algorithm::EdDSA, ED_PUBLIC, Some(ED_PRIVATE));
        let token = Minter::new(&config)
            .unwrap()
            .mint(patient(), Duration::from_secs(60))
            .unwrap();
        let verifier = Verifier::new(&key_pair_config(Algorithm::EdDSA, ED_PUBLIC, None)).unwrap();
        assert_eq!(verifier.verify(Some(&bearer(&token))), Ok(patient()));
    }

    #[test]
    fn minted_rs256_tokens_verify_with_the_public_key() {
        let config = key_pair_config(Algorithm::RS256, RSA_PUBLIC, Some(RSA_PRIVATE));
        let token = Minter::new(&config)
            .unwrap()
            .mint(patient(), Duration::from_secs(60))
            .unwrap();
        let verifier = Verifier::new(&key_pair_config(Algorithm::RS256, RSA_PUBLIC, None)).unwrap();
        assert_eq!(verifier.verify(Some(&bearer(&token))), Ok(patient()));
    }

    #[test]
    fn an_eddsa_token_signed_with_another_key_has_a_bad_signature() {
        let other = key_pair_config(Algorithm::EdDSA, ED_PUBLIC, None);
        let key = EncodingKey::from_ed_pem(ED_OTHER_PRIVATE.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims(),
            &key,
        )
        .unwrap();
        let verifier = Verifier::new(&other).unwrap();
        assert_eq!(
            verifier.verify(Some(&bearer(&token))),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_token_expired_beyond_the_leeway_is_refused() {
        let claims = with(claims(), "exp", json!(now() - 60));
        assert_eq!(verify_hs256(&claims), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_expired_within_the_leeway_is_accepted() {
        let claims = with(claims(), "exp", json!(now() - 10));
        assert_eq!(verify_hs256(&claims), Ok(patient()));
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        assert_eq!(
            verify_hs256(&without(claims(), "exp")),
            Err(AuthError::MissingClaim("exp".to_owned()))
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let claims = with(claims(), "nbf", json!(now() + 120));
        assert_eq!(verify_hs256(&claims), Err(AuthError::NotYetValid));
        let claims = with(self::claims(), "nbf", json!(now() + 10));
        assert_eq!(verify_hs256(&claims), Ok(patient()));
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let claims = with(claims(), "aud", json!("some-other-api"));
        assert_eq!(verify_hs256(&claims), Err(AuthError::WrongAudience));
        let listed = with(self::claims(), "aud", json!(["x", DEFAULT_AUDIENCE]));
        assert_eq!(verify_hs256(&listed), Ok(patient()));
        assert_eq!(
            verify_hs256(&without(self::claims(), "aud")),
            Err(AuthError::MissingClaim("aud".to_owned()))
        );
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let claims = with(claims(), "iss", json!("https://evil.example"));
        assert_eq!(verify_hs256(&claims), Err(AuthError::WrongIssuer));
        assert_eq!(
            verify_hs256(&without(self::claims(), "iss")),
            Err(AuthError::MissingClaim("iss".to_owned()))
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_has_a_bad_signature() {
        let token = sign_hs256(&claims(), OTHER_SECRET);
        let verifier = Verifier::new(&hs256_config()).unwrap();
        assert_eq!(
            verifier.verify(Some(&bearer(&token))),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        let verifier = Verifier::new(&hs256_config()).unwrap();
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let error = verifier.verify(Some(&bearer(&token))).unwrap_err();
            assert!(
                matches!(error, AuthError::Malformed | AuthError::WrongAlgorithm),
                "{error:?}"
            );
        }
    }

    #[test]
    fn an_hs256_token_is_refused_when_rs256_is_configured() {
        // Algorithm confusion: the public key, which anyone has, used as an HMAC secret.
        let verifier = Verifier::new(&key_pair_config(Algorithm::RS256, RSA_PUBLIC, None)).unwrap();
        let token = sign_hs256(&claims(), RSA_PUBLIC);
        assert_eq!(
            verifier.verify(Some(&bearer(&token))),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn an_eddsa_token_is_refused_when_hs256_is_configured() {
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims(),
            &key,
        )
        .unwrap();
        let verifier = Verifier::new(&hs256_config()).unwrap();
        assert_eq!(
            verifier.verify(Some(&bearer(&token))),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn a_subject_that_is_not_a_uuid_is_refused() {
        for sub in [
            json!("patient-42"),
            json!(42),
            json!(""),
            json!("7f1c2a3e5b6d4e8f9a0b1c2d3e4f5a6b"),
            json!("{7f1c2a3e-5b6d-4e8f-9a0b-1c2d3e4f5a6b}"),
            json!(Uuid::nil().to_string()),
            Value::Null,
        ] {
            let claims = with(claims(), "sub", sub.clone());
            assert_eq!(verify_hs256(&claims), Err(AuthError::BadSubject), "{sub}");
        }
        assert_eq!(
            verify_hs256(&without(claims(), "sub")),
            Err(AuthError::BadSubject)
        );
    }

    #[test]
    fn a_missing_header_or_another_scheme_is_refused() {
        let verifier = Verifier::new(&hs256_config()).unwrap();
        assert_eq!(verifier.verify(None), Err(AuthError::Missing));
        assert_eq!(verifier.verify(Some("  ")), Err(AuthError::Missing));
        assert_eq!(
            verifier.verify(Some("Basic dXNlcjpwYXNz")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(verifier.verify(Some("Bearer")), Err(AuthError::Malformed));
        assert_eq!(verifier.verify(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(
            verifier.verify(Some("Bearer a.b c")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            verifier.verify(Some("Bearer not-a-jwt")),
            Err(AuthError::Malformed)
        );
        let token = sign_hs256(&claims(), SECRET);
        assert_eq!(
            verifier.verify(Some(&format!("Token {token}"))),
            Err(AuthError::NotBearer)
        );
        assert_eq!(
            verifier.verify(Some(&format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1)))),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn tokens_not_shaped_like_a_compact_jws_are_refused_before_decoding() {
        let verifier = Verifier::new(&hs256_config()).unwrap();
        let good = sign_hs256(&claims(), SECRET);
        let (header, rest) = good.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        for forged in [
            "abc".to_string(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}."),
            format!(".{payload}.{signature}"),
            format!("{header}.{payload}.{signature}.{signature}"),
            format!("{header}.{payload}.{signature}="),
            format!("{header}.{payload}.{signature}%00"),
            format!("{header}.{{\"$ne\":null}}.{signature}"),
        ] {
            assert_eq!(
                verifier.verify(Some(&format!("Bearer {forged}"))),
                Err(AuthError::Malformed),
                "{forged}"
            );
        }
        assert!(verifier.verify(Some(&format!("Bearer {good}"))).is_ok());
    }

    #[test]
    fn headers_are_read_from_a_header_map() {
        let verifier = Verifier::new(&hs256_config()).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(verifier.verify_headers(&headers), Err(AuthError::Missing));
        let value = HeaderValue::from_str(&bearer(&sign_hs256(&claims(), SECRET))).unwrap();
        headers.insert(AUTHORIZATION, value.clone());
        assert_eq!(verifier.verify_headers(&headers), Ok(patient()));
        headers.append(AUTHORIZATION, value);
        assert_eq!(verifier.verify_headers(&headers), Err(AuthError::Malformed));
    }

    #[test]
    fn a_minter_with_only_a_public_key_refuses_to_mint() {
        let minter = Minter::new(&key_pair_config(Algorithm::EdDSA, ED_PUBLIC, None)).unwrap();
        let error = minter.mint(patient(), Duration::from_secs(60)).unwrap_err();
        assert!(matches!(error, MintError::OnlyPublicKey));
        assert_eq!(
            error.to_string(),
            "refusing to mint: only a public key is configured"
        );
    }

    #[test]
    fn a_private_key_that_does_not_match_the_public_key_is_refused() {
        let config = key_pair_config(Algorithm::EdDSA, ED_PUBLIC, Some(ED_OTHER_PRIVATE));
        assert!(matches!(
            Minter::new(&config),
            Err(AuthConfigError::KeyMismatch)
        ));
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_refused_when_building() {
        let error = Verifier::new(&key_pair_config(Algorithm::RS256, ED_PUBLIC, None)).unwrap_err();
        assert!(
            matches!(
                error,
                AuthConfigError::BadKey {
                    key: "auth.public_key_pem",
                    ..
                }
            ),
            "{error:?}"
        );
        let mut config = hs256_config();
        config.algorithm = Algorithm::EdDSA;
        assert!(matches!(
            Verifier::new(&config),
            Err(AuthConfigError::KeyDoesNotFitAlgorithm(Algorithm::EdDSA))
        ));
    }

    #[test]
    fn the_problem_has_a_bearer_challenge_and_never_contains_the_token() {
        let token = sign_hs256(&with(claims(), "exp", json!(now() - 600)), SECRET);
        let verifier = Verifier::new(&hs256_config()).unwrap();
        let error = verifier.verify(Some(&bearer(&token))).unwrap_err();
        let problem = error.to_problem();
        assert_eq!(problem.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            problem.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"reports-api\", error=\"invalid_token\", \
             error_description=\"the token has expired\""
        );
        let body = serde_json::to_string(&problem).unwrap();
        let header = problem.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        for part in token.split('.') {
            assert!(!body.contains(part), "{body}");
            assert!(!header.contains(part), "{header}");
        }
        assert!(!body.contains(SECRET));
    }

    #[test]
    fn a_request_without_a_token_gets_a_plain_challenge() {
        for error in [AuthError::Missing, AuthError::NotBearer] {
            let problem = error.to_problem();
            assert_eq!(problem.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                problem.headers()[WWW_AUTHENTICATE],
                "Bearer realm=\"reports-api\""
            );
        }
    }

    #[test]
    fn every_error_has_a_distinct_detail_and_a_valid_challenge() {
        let errors = [
            AuthError::Missing,
            AuthError::NotBearer,
            AuthError::Malformed,
            AuthError::WrongAlgorithm,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::WrongAudience,
            AuthError::WrongIssuer,
            AuthError::MissingClaim("exp".to_owned()),
            AuthError::BadSubject,
        ];
        let details: std::collections::HashSet<String> =
            errors.iter().map(ToString::to_string).collect();
        assert_eq!(details.len(), errors.len());
        for error in &errors {
            let header = error.challenge();
            let header = header.to_str().unwrap();
            assert!(
                header.starts_with("Bearer realm=\"reports-api\""),
                "{header}"
            );
        }
    }

    #[test]
    fn configuration_is_read_from_myhealth_auth_variables() {
        let config = config_from_env(&[
            ("MYHEALTH_AUTH__ALGORITHM", "EdDSA"),
            ("MYHEALTH_AUTH__PUBLIC_KEY_PEM", ED_PUBLIC),
            ("MYHEALTH_AUTH__PRIVATE_KEY_PEM", ED_PRIVATE),
            ("MYHEALTH_AUTH__ISSUER", "https://id.example"),
            ("MYHEALTH_AUTH__AUDIENCE", "reports"),
            ("MYHEALTH_AUTH__LEEWAY_SECONDS", "5"),
        ])
        .unwrap();
        assert_eq!(config.algorithm, Algorithm::EdDSA);
        assert_eq!(config.issuer, "https://id.example");
        assert_eq!(config.audience, "reports");
        assert_eq!(config.leeway_seconds, 5);
        let token = Minter::new(&config)
            .unwrap()
            .mint(patient(), Duration::from_secs(60))
            .unwrap();
        let verifier = Verifier::new(&config).unwrap();
        assert_eq!(verifier.verify(Some(&bearer(&token))), Ok(patient()));
    }

    #[test]
    fn configuration_defaults_apply_and_secrets_are_redacted() {
        let config = config_from_env(&[
            ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
            ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
        ])
        .unwrap();
        assert_eq!(config.issuer, DEFAULT_ISSUER);
        assert_eq!(config.audience, DEFAULT_AUDIENCE);
        assert_eq!(config.leeway_seconds, DEFAULT_LEEWAY_SECONDS);
        let debug = format!(
            "{config:?} {:?} {:?}",
            Verifier::new(&config).unwrap(),
            Minter::new(&config).unwrap()
        );
        assert!(!debug.contains(SECRET), "{debug}");
        let config = key_pair_config(Algorithm::EdDSA, ED_PUBLIC, Some(ED_PRIVATE));
        let debug = format!("{config:?} {:?}", Minter::new(&config).unwrap());
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn key_files_are_read_when_building() {
        let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
        let config = config_from_env(&[
            ("MYHEALTH_AUTH__ALGORITHM", "RS256"),
            (
                "MYHEALTH_AUTH__PUBLIC_KEY_FILE",
                &format!("{directory}/rsa-public.pem"),
            ),
        ])
        .unwrap();
        let verifier = Verifier::new(&config).unwrap();
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::RS256),
            &claims(),
            &key,
        )
        .unwrap();
        assert_eq!(verifier.verify(Some(&bearer(&token))), Ok(patient()));

        let missing = config_from_env(&[
            ("MYHEALTH_AUTH__ALGORITHM", "RS256"),
            ("MYHEALTH_AUTH__PUBLIC_KEY_FILE", "/nonexistent/key.pem"),
        ])
        .unwrap();
        let error = Verifier::new(&missing).unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to read auth.public_key_file /nonexistent/key.pem"
        );
    }

    #[test]
    fn inconsistent_configurations_are_refused_with_the_keys_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("MYHEALTH_AUTH__ALGORITHM", "HS256")],
                "auth.algorithm is HS256 but auth.hs256_secret is not set",
            ),
            (
                &[("MYHEALTH_AUTH__HS256_SECRET", SECRET)],
                "auth.algorithm is not set",
            ),
            (
                &[
                    ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
                    ("MYHEALTH_AUTH__HS256_SECRET", "short"),
                ],
                "auth.hs256_secret must be at least 32 bytes long",
            ),
            (
                &[("MYHEALTH_AUTH__ALGORITHM", "RS256")],
                "auth.algorithm is RS256 but auth.public_key_pem or auth.public_key_file is not set",
            ),
            (
                &[
                    ("MYHEALTH_AUTH__ALGORITHM", "EdDSA"),
                    ("MYHEALTH_AUTH__PUBLIC_KEY_PEM", ED_PUBLIC),
                    ("MYHEALTH_AUTH__PUBLIC_KEY_FILE", "/tmp/key.pem"),
                ],
                "set only one of auth.public_key_pem and auth.public_key_file",
            ),
            (
                &[
                    ("MYHEALTH_AUTH__ALGORITHM", "EdDSA"),
                    ("MYHEALTH_AUTH__PUBLIC_KEY_PEM", ED_PUBLIC),
                    ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
                ],
                "auth.algorithm is EdDSA, which does not use auth.hs256_secret",
            ),
            (
                &[
                    ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
                    ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
                    ("MYHEALTH_AUTH__PRIVATE_KEY_FILE", "/tmp/key.pem"),
                ],
                "auth.algorithm is HS256, which does not use auth.private_key_file",
            ),
            (
                &[
                    ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
                    ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
                    ("MYHEALTH_AUTH__LEEWAY_SECONDS", "3600"),
                ],
                "auth.leeway_seconds must be at most 300",
            ),
            (
                &[
                    ("MYHEALTH_AUTH__ALGORITHM", "HS256"),
                    ("MYHEALTH_AUTH__HS256_SECRET", SECRET),
                    ("MYHEALTH_AUTH__AUDIENCE", " "),
                ],
                "auth.audience must not be empty",
            ),
            (
                &[("MYHEALTH_AUTH__ALGORITHM", "none")],
                "auth.algorithm must be HS256, RS256 or EdDSA, not \"none\"",
            ),
        ];
        for (vars, expected) in cases {
            let error = config_from_env(vars).unwrap_err();
            assert!(
                error.contains(expected),
                "{error} should contain {expected}"
            );
            assert!(!error.contains(SECRET), "{error}");
        }
    }
}
