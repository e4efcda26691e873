//! The lab's own PKI, made with rcgen: one CA per lab, a server certificate
//! for the services VM (its lab address and names as subject alternative
//! names) and a client certificate for the host tool. ECDSA P-256 keys;
//! validity from an hour ago for [`VALIDITY_DAYS`].
//!
//! Where the pieces live:
//!
//! | file | host (state directory of the lab) | services VM (`data_dir/admin/`) |
//! |---|---|---|
//! | `ca.crt` | yes | yes: the only trust anchor for client certificates |
//! | `ca.key` | yes, 0600 | never |
//! | `server.crt`, `server.key` | yes (0600 key: the install payload is rebuilt from them) | yes, 0600 key |
//! | `client.crt`, `client.key` | yes, 0600 key | never |
//!
//! [`server_config`] requires a client certificate chaining to the lab CA
//! (rustls' WebPKI verifier: no certificate, an expired one or one from
//! another CA fail the handshake); [`client_config`] trusts only the lab CA.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long certificates are valid.
pub const VALIDITY_DAYS: i64 = 3650;
/// CA certificate file name.
pub const CA_CERT: &str = "ca.crt";
/// CA key file name (host only).
pub const CA_KEY: &str = "ca.key";
/// Server certificate file name.
pub const SERVER_CERT: &str = "server.crt";
/// Server key file name.
pub const SERVER_KEY: &str = "server.key";
/// Client certificate file name (host only).
pub const CLIENT_CERT: &str = "client.crt";
/// Client key file name (host only).
pub const CLIENT_KEY: &str = "client.key";

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Not PEM, or not what was expected.
    #[error("{what}: not a PEM {expected}")]
    Pem {
        /// Which file or field.
        what: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKey {
    /// Certificate.
    pub cert: String,
    /// Private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("cert", &self.cert.len())
            .field("key", &"(secret)")
            .finish()
    }
}

/// Validity window of a certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Not before.
    pub not_before: time::OffsetDateTime,
    /// Not after.
    pub not_after: time::OffsetDateTime,
}

impl Validity {
    /// From an hour ago for [`VALIDITY_DAYS`].
    pub fn standard() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self {
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(VALIDITY_DAYS),
        }
    }

    /// A window that ended `days_ago` days ago (tests of expiry).
    pub fn expired(days_ago: i64) -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self {
            not_before: now - time::Duration::days(days_ago + 30),
            not_after: now - time::Duration::days(days_ago),
        }
    }
}

/// A lab's CA, server and client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPki {
    /// The lab name (in every subject).
    pub lab: String,
    /// The CA.
    pub ca: CertKey,
    /// The services VM's server certificate.
    pub server: CertKey,
    /// The host tool's client certificate.
    pub client: CertKey,
}

fn ca_params(lab: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("bootlab lab {lab} CA"));
    dn.push(DnType::OrganizationName, "bootlab");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let v = Validity::standard();
    p.not_before = v.not_before;
    p.not_after = v.not_after;
    Ok(p)
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub enum Leaf {
    /// The services VM: its address and names.
    Server {
        /// Lab address.
        ip: IpAddr,
        /// DNS names.
        names: Vec<String>,
    },
    /// The host tool.
    Client,
}

impl LabPki {
    /// A new CA with a server certificate for `server_ip` / `server_names`
    /// and a client certificate.
    pub fn generate(
        lab: &str,
        server_ip: IpAddr,
        server_names: &[String],
    ) -> Result<Self, PkiError> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params(lab)?.self_signed(&ca_key)?;
        let ca = CertKey {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let mut pki = Self {
            lab: lab.to_owned(),
            server: CertKey {
                cert: String::new(),
                key: String::new(),
            },
            client: CertKey {
                cert: String::new(),
                key: String::new(),
            },
            ca,
        };
        pki.server = pki.issue(
            &Leaf::Server {
                ip: server_ip,
                names: server_names.to_vec(),
            },
            Validity::standard(),
        )?;
        pki.client = pki.issue(&Leaf::Client, Validity::standard())?;
        Ok(pki)
    }

    /// A new leaf certificate signed by this lab's CA.
    pub fn issue(&self, leaf: &Leaf, validity: Validity) -> Result<CertKey, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca.key)?;
        let issuer = Issuer::new(ca_params(&self.lab)?, ca_key);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "bootlab");
        match leaf {
            Leaf::Server { ip, names } => {
                dn.push(
                    DnType::CommonName,
                    format!("bootlab lab {} services", self.lab),
                );
                p.subject_alt_names.push(SanType::IpAddress(*ip));
                for n in names {
                    p.subject_alt_names
                        .push(SanType::DnsName(n.as_str().try_into()?));
                }
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Leaf::Client => {
                dn.push(DnType::CommonName, format!("bootlab lab {} host", self.lab));
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = validity.not_before;
        p.not_after = validity.not_after;
        let cert = p.signed_by(&key, &issuer)?;
        Ok(CertKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Reads a PKI saved with [`LabPki::save`].
    pub fn load(dir: &Path, lab: &str) -> Result<Self, PkiError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| PkiError::Io {
                path: dir.join(name),
                source,
            })
        };
        Ok(Self {
            lab: lab.to_owned(),
            ca: CertKey {
                cert: read(CA_CERT)?,
                key: read(CA_KEY)?,
            },
            server: CertKey {
                cert: read(SERVER_CERT)?,
                key: read(SERVER_KEY)?,
            },
            client: CertKey {
                cert: read(CLIENT_CERT)?,
                key: read(CLIENT_KEY)?,
            },
        })
    }

    /// Writes every file into `dir` (created 0700); keys 0600.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PkiError::Io { path, source }
        };
        create_private_dir(dir).map_err(io(dir))?;
        for (name, text, secret) in [
            (CA_CERT, &self.ca.cert, false),
            (CA_KEY, &self.ca.key, true),
            (SERVER_CERT, &self.server.cert, false),
            (SERVER_KEY, &self.server.key, true),
            (CLIENT_CERT, &self.client.cert, false),
            (CLIENT_KEY, &self.client.key, true),
        ] {
            let p = dir.join(name);
            write_file_atomic(&p, text.as_bytes(), if secret { 0o600 } else { 0o644 })
                .map_err(io(&p))?;
        }
        Ok(())
    }
}

/// `mkdir -p` with mode 0700 for the last component (an existing directory
/// gets 0700 too).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` with `mode` through a temporary file in the
/// same directory (created with that mode, so a key is never readable by
/// others, not even for a moment), fsynced and renamed into place.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let res = f
        .write_all(bytes)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = res.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| PkiError::Pem {
            what: what.to_owned(),
            expected: "certificate",
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: what.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

fn key(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::Pem {
        what: what.to_owned(),
        expected: "private key",
    })
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("CA certificate", ca_pem)? {
        roots.add(c)?;
    }
    Ok(Arc::new(roots))
}

/// The admin server's TLS: `cert`/`key` as its identity, and a client
/// certificate chaining to `ca` required from every client.
pub fn server_config(
    ca: &str,
    cert: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, PkiError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
            .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs("server certificate", cert)?,
            key("server key", key_pem)?,
        )?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The host's TLS: trusts only `ca`; presents `client` when given.
pub fn client_config(ca: &str, client: Option<&CertKey>) -> Result<rustls::ClientConfig, PkiError> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let mut cfg = match client {
        Some(c) => b.with_client_auth_cert(
            certs("client certificate", &c.cert)?,
            key("client key", &c.key)?,
        )?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generate_save_load_and_configs() {
        let pki = LabPki::generate(
            "t",
            "10.0.0.2".parse().unwrap(),
            &["services.t.test".into()],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        pki.save(&d).unwrap();
        let mode = |n: &str| std::fs::metadata(d.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(CA_KEY), 0o600);
        assert_eq!(mode(SERVER_KEY), 0o600);
        assert_eq!(mode(CLIENT_KEY), 0o600);
        assert_eq!(mode(CA_CERT), 0o644);
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let back = LabPki::load(&d, "t").unwrap();
        assert_eq!(back, pki);
        server_config(&pki.ca.cert, &pki.server.cert, &pki.server.key).unwrap();
        client_config(&pki.ca.cert, Some(&pki.client)).unwrap();
        assert!(server_config("junk", &pki.server.cert, &pki.server.key).is_err());
        // a leaf issued later (the CA rebuilt from its key) still chains
        pki.issue(&Leaf::Client, Validity::expired(1)).unwrap();
    }
}
