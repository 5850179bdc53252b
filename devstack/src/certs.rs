//! Throwaway certificate authorities and server certificates for the TLS tests: each test makes
//! its own CA, so that a certificate of one test can never verify against another's trust.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::HarnessError;

/// A CA whose key lives only in this process.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server's certificate and private key, PEM-encoded, as PostgreSQL and FerretDB read them.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate, signed by the CA that issued it.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<TestCa, HarnessError> {
        let mut params = CertificateParams::new(Vec::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate: what a client puts in `sslrootcert` or `tlsCAFile`.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for exactly `names` (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> Result<ServerCert, HarnessError> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.join(","));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a harness server needs to serve TLS, and what its clients need to verify it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate and key.
    pub server: ServerCert,
    /// The certificate of the CA that issued it.
    pub ca_pem: String,
    /// A name the certificate is valid for that resolves to the loopback address: the host of
    /// the server's URL.
    pub host: String,
}

impl ServerTls {
    /// A new CA and a certificate it issued for `host` alone.
    pub fn for_host(host: &str) -> Result<ServerTls, HarnessError> {
        let ca = TestCa::new(&format!("myhealth test CA for {host}"))?;
        Ok(ServerTls {
            server: ca.server_cert(&[host])?,
            ca_pem: ca.cert_pem(),
            host: host.to_string(),
        })
    }

    /// Writes `server.crt`, `server.key` (mode 0600) and `ca.pem` into `dir`; returns their
    /// paths in that order.
    pub fn write_to(&self, dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), HarnessError> {
        let paths = (
            dir.join("server.crt"),
            dir.join("server.key"),
            dir.join("ca.pem"),
        );
        write_file(&paths.0, &self.server.cert_pem, 0o644)?;
        write_file(&paths.1, &self.server.key_pem, 0o600)?;
        write_file(&paths.2, &self.ca_pem, 0o644)?;
        Ok(paths)
    }
}

/// Writes `contents` to `path` with permissions `mode`.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), HarnessError> {
    let failed = || format!("failed to write {}", path.display());
    std::fs::write(path, contents).map_err(HarnessError::io(failed()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(HarnessError::io(failed()))
}
