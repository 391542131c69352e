//! The cluster's PKI: a CA, the API server's serving certificate and an admin client
//! certificate, generated at first start under `DATA_DIR/tls/` and reused afterwards, plus the
//! admin kubeconfig.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Paths and PEM contents of the cluster's certificates.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

/// Certificates are valid for ten years from today.
fn ten_years(params: &mut CertificateParams) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    params.not_after =
        rcgen::date_time_ymd(now.year() + 10, now.month() as u8, now.day().min(28) as u8);
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The names the serving certificate is valid for: localhost, loopback, this host's
/// addresses and name, and whatever the user adds.
pub fn serving_names(extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    if let Ok(addrs) = if_addrs::get_if_addrs() {
        for a in addrs {
            names.push(a.ip().to_string());
        }
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

fn sans(names: &[String]) -> Result<Vec<SanType>> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect()
}

impl Pki {
    /// Load the PKI from `data_dir/tls`, generating whatever is missing. The serving
    /// certificate is regenerated when `names` asks for a name it lacks.
    pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<Pki> {
        let dir = data_dir.join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        if !ca_cert.exists() || !ca_key.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "skiff-ca");
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            ten_years(&mut params);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key, &key.serialize_pem())?;
            std::fs::write(&ca_cert, cert.pem())?;
            // A new CA invalidates every certificate it did not sign.
            for f in ["server.crt", "server.key", "admin.crt", "admin.key"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
        }
        let ca_cert_pem = read(&ca_cert)?;
        let ca_key = KeyPair::from_pem(&read(&ca_key)?).context("parsing the CA key")?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).context("parsing the CA certificate")?;

        let server_crt = dir.join("server.crt");
        let server_key = dir.join("server.key");
        let names_file = dir.join("server.names");
        let have_names = std::fs::read_to_string(&names_file).unwrap_or_default();
        let have: Vec<&str> = have_names.lines().collect();
        let missing = names.iter().any(|n| !have.contains(&n.as_str()));
        if !server_crt.exists() || !server_key.exists() || missing {
            let mut all: Vec<String> = have.iter().map(|s| s.to_string()).collect();
            all.extend(names.iter().cloned());
            all.sort();
            all.dedup();
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.subject_alt_names = sans(&all)?;
            params
                .distinguished_name
                .push(DnType::CommonName, "kube-apiserver");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            ten_years(&mut params);
            let cert = params.signed_by(&key, &issuer)?;
            write_private(&server_key, &key.serialize_pem())?;
            std::fs::write(&server_crt, cert.pem())?;
            std::fs::write(&names_file, all.join("\n"))?;
        }

        let admin_crt = dir.join("admin.crt");
        let admin_key = dir.join("admin.key");
        if !admin_crt.exists() || !admin_key.exists() {
            let (cert, key) = issue_client_cert(&issuer, "admin", &["system:masters"])?;
            write_private(&admin_key, &key)?;
            std::fs::write(&admin_crt, cert)?;
        }

        Ok(Pki {
            ca_cert_pem,
            serving_cert_pem: read(&server_crt)?,
            serving_key_pem: read(&server_key)?,
            admin_cert_pem: read(&admin_crt)?,
            admin_key_pem: read(&admin_key)?,
            dir,
        })
    }

    /// Sign a client certificate for `user` in `groups` with the cluster CA.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&read(&self.dir.join("ca.key"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        issue_client_cert(&issuer, user, groups)
    }

    /// A kubeconfig for `server` authenticating with the admin client certificate.
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        kubeconfig(
            server,
            &self.ca_cert_pem,
            "admin",
            &self.admin_cert_pem,
            &self.admin_key_pem,
        )
    }
}

fn issue_client_cert(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    ten_years(&mut params);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A one-cluster, one-user kubeconfig with embedded certificates.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: {user}
current-context: skiff
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}
