//! Certificates for tests (rcgen): a cluster CA, member certificates that
//! name each member (DNS) and 127.0.0.1 (IP), operator certificates, and a
//! second, unrelated CA to prove its certificates are refused.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A CA that issues certificates into a directory.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// The three files a `[tls]` section or haraftctl's flags name.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, writing `NAME-ca.crt` into `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert");
        std::fs::write(dir.join(format!("{name}-ca.crt")), issuer.pem()).expect("write ca");
        TestCa { issuer, dir: dir.to_path_buf(), name: name.to_string() }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// A certificate for `subject` (DNS name) and 127.0.0.1, for server and
    /// client use; files `NAME-SUBJECT.crt` and `.key` (mode 600).
    pub fn issue(&self, subject: &str) -> CertFiles {
        let mut params =
            CertificateParams::new(vec![subject.to_string(), "127.0.0.1".to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, subject);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let base = self.dir.join(format!("{}-{subject}", self.name));
        let (cert_file, key_file) = (base.with_extension("crt"), base.with_extension("key"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        CertFiles { ca: self.ca_file(), cert: cert_file, key: key_file }
    }
}

impl CertFiles {
    /// The `[tls]` section naming these files.
    pub fn section(&self) -> String {
        format!(
            "[tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    /// haraftctl's flags for these files.
    pub fn ctl_args(&self) -> Vec<String> {
        vec![
            "--ca-file".into(),
            self.ca.display().to_string(),
            "--cert-file".into(),
            self.cert.display().to_string(),
            "--key-file".into(),
            self.key.display().to_string(),
        ]
    }
}
