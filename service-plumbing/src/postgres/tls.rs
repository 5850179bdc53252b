//! libpq's `sslmode` and `sslrootcert` for every PostgreSQL connection of the project, on rustls.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and no `sslrootcert`, and checks
//! whatever certificate its TLS connector checks. [`parse`] takes both options out of a
//! `postgres://` URL, applies libpq's rules, and leaves tokio-postgres a URL it accepts;
//! [`Tls::connector`] builds the one rustls connector that enforces the mode. The replication
//! connection (pgwire-replication, its own TLS) reads the same [`Tls`].
//!
//! The modes, as in libpq:
//!
//! | sslmode | encrypted | certificate chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | no | – | – |
//! | `prefer` (default) | when the server offers TLS | no | no |
//! | `require` | yes | only with `sslrootcert` (then it is `verify-ca`) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes (DNS name, or IP address SAN) |
//!
//! `sslrootcert` is a PEM file of trusted CAs, or `system` for the Mozilla root set built into
//! the binary (webpki-roots); `system` makes `verify-full` the default and refuses weaker modes.
//! Unlike libpq, the URL is the only source: no `PGSSLMODE`-style environment variables and no
//! `~/.postgresql/root.crt`, so `verify-*` without `sslrootcert` is an error, not a surprise.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much TLS a connection insists on (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS without any certificate check when the server offers it, else plaintext.
    Prefer,
    /// TLS, any certificate.
    Require,
    /// TLS, a certificate issued by a trusted CA for any name.
    VerifyCa,
    /// TLS, a certificate issued by a trusted CA for the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The value as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The CAs a verifying mode trusts (libpq's `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// Every certificate of this PEM file (a provider's CA bundle).
    File(PathBuf),
    /// The Mozilla root set built into the binary (`sslrootcert=system`).
    System,
}

/// The TLS part of a database URL, after libpq's rules: `root` is set exactly when `mode`
/// verifies certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The effective mode.
    pub mode: SslMode,
    /// The trusted CAs of `verify-ca` and `verify-full`.
    pub root: Option<RootCert>,
}

/// A database URL split into what tokio-postgres reads and what the TLS connector enforces.
#[derive(Debug, Clone)]
pub struct Target {
    /// The connection settings (its own `ssl_mode` is `Require` for every encrypting mode: the
    /// connector does the checking).
    pub config: tokio_postgres::Config,
    /// The TLS settings.
    pub tls: Tls,
}

/// Why a database URL or its TLS settings are unusable. Messages never contain the URL, which
/// may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not a `postgres://` URL (the key=value form is not accepted, so that `sslmode` is read
    /// in one place).
    #[error("database_url must be a postgres:// or postgresql:// URL")]
    NotUrl,
    /// A percent escape in the query is malformed.
    #[error("database_url has a malformed percent escape in option {0:?}")]
    BadEscape(String),
    /// An option appears twice.
    #[error("database_url gives option {0:?} twice")]
    Repeated(String),
    /// `sslmode` is not a libpq mode.
    #[error(
        "sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full (client certificates and sslnegotiation=direct are not supported)"
    )]
    BadSslMode(String),
    /// A verifying mode without CAs to verify with.
    #[error(
        "sslmode={0} checks the server certificate and needs sslrootcert=<PEM file of the CA> or sslrootcert=system"
    )]
    NoRootCert(&'static str),
    /// `sslrootcert=system` with a mode that would not check the host name (libpq refuses it
    /// too: a public CA signs certificates for anyone's host).
    #[error("sslrootcert=system needs sslmode=verify-full (or no sslmode), not {0}")]
    WeakWithSystem(&'static str),
    /// tokio-postgres refused the rest of the URL.
    #[error("failed to parse database_url")]
    Parse(#[source] tokio_postgres::Error),
    /// The `sslrootcert` file cannot be read or holds no certificate.
    #[error("sslrootcert {path}: {detail}")]
    RootCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("failed to set up TLS")]
    Rustls(#[source] rustls::Error),
}

/// Splits `url` into tokio-postgres settings and the TLS settings of its `sslmode` and
/// `sslrootcert` options (removed from the URL tokio-postgres sees).
pub fn parse(url: &str) -> Result<Target, ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::NotUrl);
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut sslmode = None;
    let mut sslrootcert = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sslmode" => &mut sslmode,
            "sslrootcert" => &mut sslrootcert,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        if slot.is_some() {
            return Err(ConfigError::Repeated(key.to_string()));
        }
        *slot = Some(percent_decode(value).ok_or_else(|| ConfigError::BadEscape(key.into()))?);
    }
    let tls = resolve(sslmode.as_deref(), sslrootcert)?;

    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(ConfigError::Parse)?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    Ok(Target { config, tls })
}

/// libpq's rules for the two options.
fn resolve(sslmode: Option<&str>, sslrootcert: Option<String>) -> Result<Tls, ConfigError> {
    let root = sslrootcert.map(|value| match value.as_str() {
        "system" => RootCert::System,
        _ => RootCert::File(PathBuf::from(value)),
    });
    let mode = match sslmode {
        None if root == Some(RootCert::System) => SslMode::VerifyFull,
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => return Err(ConfigError::BadSslMode(other.to_string())),
    };
    match (mode, root) {
        (SslMode::VerifyFull, Some(root)) | (SslMode::VerifyCa, Some(root @ RootCert::File(_))) => {
            Ok(Tls {
                mode,
                root: Some(root),
            })
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            Err(ConfigError::NoRootCert(mode.as_str()))
        }
        (_, Some(RootCert::System)) => Err(ConfigError::WeakWithSystem(mode.as_str())),
        // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
        (SslMode::Require, Some(root)) => Ok(Tls {
            mode: SslMode::VerifyCa,
            root: Some(root),
        }),
        // `disable` and `prefer` never check a certificate, so a CA file changes nothing.
        (mode, _) => Ok(Tls { mode, root: None }),
    }
}

/// `%XX` escapes decoded, as tokio-postgres decodes the rest of the URL.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

impl Tls {
    /// The tokio-postgres connector enforcing this mode (it reads the CA file now).
    pub fn connector(&self) -> Result<MakeRustlsConnect, ConfigError> {
        Ok(MakeRustlsConnect::new(self.client_config()?))
    }

    /// The rustls client configuration enforcing this mode.
    fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ConfigError::Rustls)?;
        let Some(root) = &self.root else {
            let verifier = AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            };
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth());
        };
        let roots = Arc::new(root_store(root)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|error| ConfigError::Rustls(rustls::Error::General(error.to_string())))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::VerifyFull => webpki,
            _ => Arc::new(AnyName { inner: webpki }),
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }
}

/// The trust anchors of `root`.
fn root_store(root: &RootCert) -> Result<RootCertStore, ConfigError> {
    let path = match root {
        RootCert::System => {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        }
        RootCert::File(path) => path,
    };
    let failure = |detail: String| ConfigError::RootCert {
        path: path.clone(),
        detail,
    };
    let certificates = read_certificates(path).map_err(failure)?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(failure("holds no usable CA certificate".to_string()));
    }
    Ok(store)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|error| error.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())
}

/// `prefer` and `require` without a CA: any certificate is accepted (libpq checks none), but the
/// handshake signatures are still checked, so the session is keyed to that certificate.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check (chain, validity, usage), except that a certificate for
/// another name passes. WebPKI checks the name last, so that error means everything else held.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<Tls, ConfigError> {
        parse(url).map(|target| target.tls)
    }

    #[test]
    fn modes_follow_libpq() {
        let base = "postgres://u:p@db.example.com:5432/app";
        let cases = [
            ("", SslMode::Prefer, None),
            ("?sslmode=disable", SslMode::Disable, None),
            ("?sslmode=prefer&sslrootcert=/ca.pem", SslMode::Prefer, None),
            ("?sslmode=require", SslMode::Require, None),
            (
                "?sslmode=require&sslrootcert=/ca.pem",
                SslMode::VerifyCa,
                Some(RootCert::File("/ca.pem".into())),
            ),
            (
                "?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem",
                SslMode::VerifyCa,
                Some(RootCert::File("/etc/ca.pem".into())),
            ),
            (
                "?sslrootcert=/ca.pem&sslmode=verify-full",
                SslMode::VerifyFull,
                Some(RootCert::File("/ca.pem".into())),
            ),
            (
                "?sslrootcert=system",
                SslMode::VerifyFull,
                Some(RootCert::System),
            ),
        ];
        for (query, mode, root) in cases {
            let parsed = tls(&format!("{base}{query}")).unwrap();
            assert_eq!(parsed, Tls { mode, root }, "{query}");
        }
    }

    #[test]
    fn refuses_what_libpq_refuses() {
        let base = "postgres://u:secret@db.example.com/app";
        for (query, expected) in [
            ("?sslmode=verify-full", "needs sslrootcert"),
            ("?sslmode=verify-ca", "needs sslrootcert"),
            (
                "?sslmode=require&sslrootcert=system",
                "needs sslmode=verify-full",
            ),
            (
                "?sslmode=verify-ca&sslrootcert=system",
                "needs sslmode=verify-full",
            ),
            ("?sslmode=allow", "not one of"),
            ("?sslmode=require&sslmode=disable", "twice"),
            ("?sslrootcert=%zz", "percent escape"),
        ] {
            let message = tls(&format!("{base}{query}")).unwrap_err().to_string();
            assert!(message.contains(expected), "{query}: {message}");
            assert!(!message.contains("secret"), "{query}: {message}");
        }
        assert!(matches!(
            tls("host=db user=u sslmode=require"),
            Err(ConfigError::NotUrl)
        ));
    }

    #[test]
    fn tokio_postgres_sees_the_rest_of_the_url() {
        let target = parse(
            "postgresql://u:p@db:6432/app?application_name=ingest&sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(target.config.get_application_name(), Some("ingest"));
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(target.config.get_ports(), &[6432]);
        assert_eq!(
            target.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let plain = parse("postgres://u@db/app?sslmode=disable").unwrap();
        assert_eq!(
            plain.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let missing = Tls {
            mode: SslMode::VerifyFull,
            root: Some(RootCert::File("/nonexistent/ca.pem".into())),
        };
        let message = missing.client_config().unwrap_err().to_string();
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");

        let empty = tempfile::NamedTempFile::new().unwrap();
        let tls = Tls {
            mode: SslMode::VerifyCa,
            root: Some(RootCert::File(empty.path().to_path_buf())),
        };
        let message = tls.client_config().unwrap_err().to_string();
        assert!(message.contains("no usable CA certificate"), "{message}");
    }

    #[test]
    fn system_roots_and_unverified_modes_build() {
        for tls in [
            Tls {
                mode: SslMode::VerifyFull,
                root: Some(RootCert::System),
            },
            Tls {
                mode: SslMode::Require,
                root: None,
            },
        ] {
            tls.client_config().unwrap();
        }
    }
}
