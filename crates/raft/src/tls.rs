//! Mutual TLS for every gRPC connection, and who a peer's certificate says
//! it is.
//!
//! With `[tls]` configured, every agent serves only TLS and requires a
//! client certificate signed by the cluster CA; it dials other members
//! over TLS, presenting its own certificate and expecting theirs to name
//! the member it dials. A member's certificate names it by a DNS subject
//! alternative name equal to its member name: a request that speaks for
//! member N (a Raft message from N, a renewal forwarded by N) must come
//! with a certificate valid for N's name.

use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The three files of a TLS setup, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM): peers and clients must present a
    /// certificate it signed.
    pub ca: PathBuf,
    /// This side's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM); must not be readable by others.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    Read { what: &'static str, path: String, message: String },
    #[error("{what} {path} holds no PEM certificate or key (\"-----BEGIN\" missing): give the PEM file")]
    NotPem { what: &'static str, path: String },
    #[error("{path} is readable by other users (mode {mode:o}): chmod 600 it, a private key must stay private")]
    KeyReadableByOthers { path: String, mode: u32 },
}

/// The loaded material, ready for servers and clients.
#[derive(Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Identity,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(***)")
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let shown = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| TlsError::Read { what, path: shown.clone(), message: e.to_string() })?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem { what, path: shown });
    }
    Ok(bytes)
}

/// The permission bits (e.g. 0o644) of a secret file (a key, a token, a
/// password) that its group or other users may read or write; `None` when
/// only its owner may (or it cannot be read at all: that error is the
/// reader's). Shared by every place that loads a secret from a file.
pub fn open_to_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o777)
}

impl Tls {
    /// Reads the files; refuses a key file that others may read.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let ca = read_pem("tls CA file", &files.ca)?;
        let cert = read_pem("tls certificate file", &files.cert)?;
        let key = read_pem("tls key file", &files.key)?;
        if let Some(mode) = open_to_others(&files.key) {
            return Err(TlsError::KeyReadableByOthers { path: files.key.display().to_string(), mode });
        }
        Ok(Tls {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(&cert, &key),
            cert_pem: cert,
            key_pem: key,
        })
    }

    /// For this node's server: its certificate; clients must present one
    /// signed by the cluster CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity.clone()).client_ca_root(self.ca.clone())
    }

    /// For a connection to `server_name` (a member name, or the host an
    /// operator typed): its certificate must be valid for that name.
    pub fn client(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(server_name.to_string())
    }
}

impl Tls {
    /// A rustls server configuration with this certificate and no client
    /// authentication: for the REST API, whose clients are load balancers
    /// and monitoring (it serves only reads).
    pub fn https_server(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls certificate file: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| format!("tls key file: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls certificate and key: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Whether the peer's (already verified) certificate is valid for `name`:
/// true only when a certificate was presented and names `name`.
pub fn certificate_names(peer: Option<&Arc<Vec<CertificateDer<'static>>>>, name: &str) -> bool {
    let Some(leaf) = peer.and_then(|chain| chain.first()) else { return false };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return false };
    let Ok(server_name) = ServerName::try_from(name) else { return false };
    cert.verify_is_valid_for_subject_name(&server_name).is_ok()
}
