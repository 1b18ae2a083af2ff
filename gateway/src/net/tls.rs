//! TLS for client listeners: rustls with the ring provider, TLS 1.2 and 1.3 only,
//! forward-secret AEAD suites only, ALPN `h2` and `http/1.1`, certificate and key from
//! PEM files, and a certificate that can be swapped (on SIGHUP) without touching open
//! connections: new handshakes pick up the new certificate, established sessions keep
//! theirs.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why a TLS certificate or configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or parsed.
    #[error("certificate `{path}`: {problem}")]
    Cert {
        /// The file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// The key file could not be read or parsed, or does not match the certificate.
    #[error("private key `{path}`: {problem}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The suites offered: AEAD (AES-GCM, ChaCha20-Poly1305) with ECDHE key exchange only.
/// rustls implements nothing weaker, so this list states the policy rather than
/// removing anything.
const SUITES: [CipherSuite; 9] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// A server certificate that can be replaced while the listener runs.
#[derive(Debug)]
pub struct ReloadableCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Re-reads the PEM files; on any error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_certified_key(&self.files, &self.provider)?);
        if let Ok(mut current) = self.current.write() {
            *current = fresh;
        }
        Ok(())
    }

    /// The certificate file this listener serves.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| Arc::clone(&current))
    }
}

/// The crypto provider: ring, restricted to [`SUITES`].
pub fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|suite| SUITES.contains(&suite.suite()));
    provider
}

/// Builds a listener's server configuration and the handle that reloads its certificate.
pub fn server_config(
    files: &TlsFiles,
) -> Result<(Arc<ServerConfig>, Arc<ReloadableCert>), TlsError> {
    let provider = Arc::new(provider());
    let certified = load_certified_key(files, &provider)?;
    let cert = Arc::new(ReloadableCert {
        files: files.clone(),
        provider: Arc::clone(&provider),
        current: RwLock::new(Arc::new(certified)),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), cert))
}

fn load_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_error = |problem: String| TlsError::Cert {
        path: files.cert.display().to_string(),
        problem,
    };
    let key_error = |problem: String| TlsError::Key {
        path: files.key.display().to_string(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|err| cert_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(err.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no certificate in file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| key_error(err.to_string()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|err| key_error(err.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|err| key_error(format!("does not match the certificate: {err}")))?;
    Ok(certified)
}
