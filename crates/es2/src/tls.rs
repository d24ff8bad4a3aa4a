//! TLS settings for ES2+ from PEM files, with `ring` as the only crypto.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto: `ring`, which builds with nothing but a C compiler (aws-lc
/// needs more). rustls marks it deprecated for lacking post-quantum key
/// exchange, which ES2+ peers do not offer yet.
#[allow(deprecated)]
fn default_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Why TLS settings cannot be made: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(TlsError(format!("{}: no certificate in it (PEM, BEGIN CERTIFICATE)", path.display())));
    }
    Ok(certificates)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError(format!("{}: no private key read: {e}", path.display())))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate).map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// A client that trusts only `ca` and shows `cert` (a chain) with `key`.
pub fn client_config(ca: &Path, cert: &Path, key_path: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certificates(cert)?, key(key_path)?)
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    Ok(Arc::new(config))
}

/// A server showing `cert` with `key` that requires every client to show a
/// certificate signed by `client_ca`.
pub fn server_config(cert: &Path, key_path: &Path, client_ca: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone()).build().map_err(|e| TlsError(format!("{}: {e}", client_ca.display())))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert)?, key(key_path)?)
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    Ok(Arc::new(config))
}
