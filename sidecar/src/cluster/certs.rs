//! `sc cluster init-ca` and `sc cluster issue`: the cluster CA and node
//! certificates (rcgen).
//!
//! Layout:
//! - CA directory: `ca.crt` (PEM, self-signed, CN "sc cluster CA") and
//!   `ca.key` (PEM, mode 0600);
//! - node directory: `node.crt` (PEM: the node certificate, then the CA
//!   certificate), `node.key` (PEM, 0600) and a copy of `ca.crt`.
//!
//! A node certificate has CN = the node name and the DNS SANs NAME and
//! [`CLUSTER_DNS_NAME`] (the TLS server name used when dialing an address
//! whose node name is unknown), plus any extra IPs / DNS names, and is valid
//! for both server and client authentication.
//!
//! Nothing here ever overwrites a file: every output is created with
//! `create_new`, and private keys are created with mode 0600 (never
//! world-readable, not even briefly).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

/// The DNS SAN every node certificate carries; the TLS server name used to
/// dial a peer whose node name is unknown (chitchat only gives addresses).
pub const CLUSTER_DNS_NAME: &str = "sc-cluster";
/// Common name of the CA certificate made by [`init_ca`].
pub const CA_COMMON_NAME: &str = "sc cluster CA";
/// File names inside a CA or node directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const NODE_CERT_FILE: &str = "node.crt";
pub const NODE_KEY_FILE: &str = "node.key";
/// Longest node name: it becomes a chitchat node id, which every digest
/// carries, so keep it short.
pub const MAX_NODE_NAME_LEN: usize = 64;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// CA validity: 100 years (rotating a CA means re-issuing every node).
const CA_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
/// Node certificate validity: 10 years (re-issue with `sc cluster issue`).
const NODE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Checks a node name: 1..=64 ASCII characters from `[A-Za-z0-9._-]`.
///
/// The name becomes a chitchat node id; chitchat 0.11.2 crashes on
/// non-ASCII keys (shared/CHITCHAT-0.11.2.md §7).
pub fn validate_node_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "node name is empty");
    ensure!(
        name.len() <= MAX_NODE_NAME_LEN,
        "node name {name:?} is longer than {MAX_NODE_NAME_LEN} characters"
    );
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        bail!("node name {name:?} contains {bad:?}: only A-Z a-z 0-9 . _ - are allowed");
    }
    Ok(())
}

/// Creates `dir/ca.crt` and `dir/ca.key` (0600), creating `dir` (0700) if
/// needed. Refuses to overwrite either file.
pub fn init_ca(dir: &Path) -> Result<()> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    refuse_existing(&[&cert_path, &key_path])?;
    ensure_dir(dir)?;

    let key = KeyPair::generate().context("generating the CA key")?;
    let params = ca_params();
    let cert = params
        .self_signed(&key)
        .context("signing the CA certificate")?;

    let mut written = Written::default();
    written.create(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    written.create(&cert_path, cert.pem().as_bytes(), 0o644)?;
    written.keep();
    Ok(())
}

/// Issues the certificate of node `name`, signed by the CA in `ca_dir`,
/// into `out_dir` (`node.crt`, `node.key`, `ca.crt`), creating `out_dir`
/// (0700) if needed. Refuses to overwrite any of the three files.
pub fn issue(
    ca_dir: &Path,
    name: &str,
    ips: &[IpAddr],
    dnss: &[String],
    out_dir: &Path,
) -> Result<()> {
    validate_node_name(name)?;
    let ca = LoadedCa::load(ca_dir)?;

    let out_cert = out_dir.join(NODE_CERT_FILE);
    let out_key = out_dir.join(NODE_KEY_FILE);
    let out_ca = out_dir.join(CA_CERT_FILE);
    refuse_existing(&[&out_cert, &out_key, &out_ca])?;

    let mut dns_names: Vec<String> = vec![name.to_owned(), CLUSTER_DNS_NAME.to_owned()];
    for dns in dnss {
        ensure!(
            !dns.is_empty() && dns.is_ascii(),
            "DNS name {dns:?} must be non-empty ASCII"
        );
        if !dns_names.contains(dns) {
            dns_names.push(dns.clone());
        }
    }
    let mut sans = Vec::with_capacity(dns_names.len() + ips.len());
    for dns in dns_names {
        let ia5 = dns
            .as_str()
            .try_into()
            .map_err(|e| anyhow!("DNS name {dns:?} is not valid in a certificate: {e}"))?;
        sans.push(SanType::DnsName(ia5));
    }
    for ip in ips {
        let san = SanType::IpAddress(*ip);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }

    let mut params = CertificateParams::default();
    set_validity(&mut params, NODE_VALIDITY);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys: signatures only (no key encipherment).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;

    let key = KeyPair::generate().context("generating the node key")?;
    let issuer = Issuer::new(ca_params(), &ca.key);
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("signing the certificate of {name:?}"))?;
    // The issuer name was rebuilt from init_ca's parameters: make sure it is
    // byte-identical to the CA's subject, or chains would not build.
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
        .map_err(|e| anyhow!("re-reading the new certificate: {e}"))?;
    ensure!(
        parsed.issuer().as_raw() == ca.subject_raw.as_slice(),
        "{}: the CA's subject is not {CA_COMMON_NAME:?}; only CAs made by `sc cluster init-ca` \
         are supported",
        ca.cert_path.display()
    );

    let mut chain = cert.pem();
    chain.push_str(&ca.cert_pem);
    ensure_dir(out_dir)?;
    let mut written = Written::default();
    written.create(&out_key, key.serialize_pem().as_bytes(), 0o600)?;
    written.create(&out_cert, chain.as_bytes(), 0o644)?;
    written.create(&out_ca, ca.cert_pem.as_bytes(), 0o644)?;
    written.keep();
    Ok(())
}

/// The CA's parameters. `issue` rebuilds the issuer from them, so the
/// subject must stay exactly what `init_ca` wrote.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    set_validity(&mut params, CA_VALIDITY);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Valid from now − 1 day (slack for clock skew between the issuing host
/// and the others) to now + `length`.
fn set_validity(params: &mut CertificateParams, length: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    params.not_before = epoch + now.saturating_sub(DAY);
    params.not_after = epoch + now + length;
}

/// The CA read back from disk for `issue`.
struct LoadedCa {
    cert_path: PathBuf,
    cert_pem: String,
    subject_raw: Vec<u8>,
    key: KeyPair,
}

impl LoadedCa {
    fn load(dir: &Path) -> Result<LoadedCa> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;

        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow!("{}: not a PEM certificate: {e}", cert_path.display()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow!("{}: not a valid certificate: {e}", cert_path.display()))?;
        ensure!(
            cert.is_ca(),
            "{}: not a CA certificate (no basicConstraints CA:TRUE)",
            cert_path.display()
        );
        ensure!(
            cert.public_key().raw == key.subject_public_key_info().as_slice(),
            "{} does not belong to {} (the public keys differ)",
            key_path.display(),
            cert_path.display()
        );
        let subject_raw = cert.subject().as_raw().to_vec();
        // Keep only the first PEM block: that is what node.crt and the copy
        // of ca.crt carry.
        let cert_pem = pem_block_text(&cert_pem)
            .with_context(|| format!("{}: no certificate block", cert_path.display()))?;
        Ok(LoadedCa {
            cert_path,
            cert_pem,
            subject_raw,
            key,
        })
    }
}

/// The text of the first `CERTIFICATE` PEM block, with a final newline.
fn pem_block_text(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)?;
    let end = start + pem[start..].find(END)? + END.len();
    Some(format!("{}\n", &pem[start..end]))
}

/// Creates `dir` with mode 0700 if it does not exist (it may hold keys).
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))
}

fn refuse_existing(paths: &[&Path]) -> Result<()> {
    for path in paths {
        if fs::symlink_metadata(path).is_ok() {
            bail!(
                "{} already exists; refusing to overwrite it",
                path.display()
            );
        }
    }
    Ok(())
}

/// Files created so far; removed again unless [`Written::keep`] is called,
/// so a failure half-way leaves no partial output behind.
#[derive(Default)]
struct Written {
    paths: Vec<PathBuf>,
}

impl Written {
    /// Creates `path` (never overwriting) with `mode` from the start, writes
    /// `contents` and syncs it.
    fn create(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        self.paths.push(path.to_owned());
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }

    fn keep(mut self) {
        self.paths.clear();
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::cluster::tls::NodeTls;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn load(dir: &Path) -> Result<NodeTls> {
        NodeTls::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(NODE_CERT_FILE),
            &dir.join(NODE_KEY_FILE),
        )
    }

    #[test]
    fn init_ca_then_issue_two_nodes_and_load_them() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        init_ca(&ca).unwrap();
        assert_eq!(mode(&ca.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&ca), 0o700);
        let ca_pem = fs::read_to_string(ca.join(CA_CERT_FILE)).unwrap();
        assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));

        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        issue(&ca, "node-a", &[ip], &["a.example".into()], &a).unwrap();
        issue(&ca, "host_b.lab", &[], &[], &b).unwrap();
        for dir in [&a, &b] {
            assert_eq!(mode(&dir.join(NODE_KEY_FILE)), 0o600);
            let chain = fs::read_to_string(dir.join(NODE_CERT_FILE)).unwrap();
            assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
            assert!(chain.ends_with(&ca_pem), "node.crt ends with the CA cert");
            assert_eq!(fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap(), ca_pem);
        }
        assert_eq!(load(&a).unwrap().node_name(), "node-a");
        assert_eq!(load(&b).unwrap().node_name(), "host_b.lab");

        // SANs: NAME, the fixed cluster name, and the extras.
        let pem = fs::read(a.join(NODE_CERT_FILE)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        let want = [
            "DNSName(node-a)".to_owned(),
            format!("DNSName({CLUSTER_DNS_NAME})"),
            "DNSName(a.example)".to_owned(),
            "IPAddress(7f:00:00:01)".to_owned(),
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn nothing_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        init_ca(&ca).unwrap();
        let before = fs::read(ca.join(CA_KEY_FILE)).unwrap();
        let err = init_ca(&ca).unwrap_err().to_string();
        assert!(
            err.contains("ca.crt") && err.contains("already exists"),
            "{err}"
        );
        assert_eq!(fs::read(ca.join(CA_KEY_FILE)).unwrap(), before);

        let out = tmp.path().join("n");
        issue(&ca, "n1", &[], &[], &out).unwrap();
        let key = fs::read(out.join(NODE_KEY_FILE)).unwrap();
        let err = issue(&ca, "n2", &[], &[], &out).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(fs::read(out.join(NODE_KEY_FILE)).unwrap(), key);
        assert_eq!(load(&out).unwrap().node_name(), "n1");
    }

    #[test]
    fn bad_names_and_bad_ca_are_refused() {
        for bad in ["", "a b", "é", "node/1", &"x".repeat(65)] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} accepted");
        }
        validate_node_name(&"x".repeat(64)).unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let err = format!("{:#}", issue(tmp.path(), "n", &[], &[], &out).unwrap_err());
        assert!(err.contains("ca.crt"), "{err}");
        assert!(!out.exists(), "nothing written on failure");

        // A key that is not the CA's.
        let ca1 = tmp.path().join("ca1");
        let ca2 = tmp.path().join("ca2");
        init_ca(&ca1).unwrap();
        init_ca(&ca2).unwrap();
        fs::copy(ca2.join(CA_KEY_FILE), tmp.path().join("k")).unwrap();
        fs::remove_file(ca1.join(CA_KEY_FILE)).unwrap();
        fs::copy(tmp.path().join("k"), ca1.join(CA_KEY_FILE)).unwrap();
        let err = format!("{:#}", issue(&ca1, "n", &[], &[], &out).unwrap_err());
        assert!(err.contains("does not belong"), "{err}");
        assert!(!out.join(NODE_KEY_FILE).exists());
    }

    #[test]
    fn load_refuses_a_certificate_from_another_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca1, ca2) = (tmp.path().join("ca1"), tmp.path().join("ca2"));
        init_ca(&ca1).unwrap();
        init_ca(&ca2).unwrap();
        let out = tmp.path().join("n");
        issue(&ca2, "n", &[], &[], &out).unwrap();
        let err = format!(
            "{:#}",
            NodeTls::load(
                &ca1.join(CA_CERT_FILE),
                &out.join(NODE_CERT_FILE),
                &out.join(NODE_KEY_FILE)
            )
            .unwrap_err()
        );
        assert!(err.contains("not a valid server certificate"), "{err}");
    }
}
