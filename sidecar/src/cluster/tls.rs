//! rustls/quinn configuration of one node: mutual TLS against the cluster CA.
//!
//! Both sides use TLS 1.3 only, ALPN [`ALPN`], the *ring* provider (passed
//! explicitly: no process-wide default provider is installed or needed),
//! and no session resumption (every connection verifies the full chain).
//!
//! - server: requires a client certificate that chains to the CA;
//! - client: presents our certificate and verifies the server's chain
//!   against the CA under the name [`CLUSTER_DNS_NAME`];
//! - endpoint: a stateless-reset key derived from our private key and
//!   connection IDs any of our processes accepts, so a restarted node
//!   resets its old process's connections at once.
//!
//! mTLS pitfall: with TLS 1.3 the *client's* handshake completes before the
//! server has checked the client's certificate, so a dialer cannot learn
//! that it was rejected. Authorisation therefore happens on the accepting
//! side ([`peer_name`] on an accepted connection).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

pub use super::certs::CLUSTER_DNS_NAME;
use super::certs::validate_node_name;

/// ALPN protocol of the gossip transport.
pub const ALPN: &[u8] = b"sc-gossip/1";
/// QUIC keep-alive: well under the idle timeout, so an idle but healthy
/// connection stays open and a dead one is noticed quickly.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// QUIC idle timeout: a connection with no packets for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent unidirectional streams a peer may have open towards us.
const MAX_CONCURRENT_UNI_STREAMS: u32 = 64;

/// The TLS identity of this node and the CA it trusts, ready to make quinn
/// configurations. Cheap to clone.
#[derive(Clone)]
pub struct NodeTls {
    name: String,
    server: Arc<QuicServerConfig>,
    client: Arc<QuicClientConfig>,
    transport: Arc<quinn::TransportConfig>,
    /// The QUIC stateless-reset key, derived from our private key so it is
    /// the same in every process of this node (see [`NodeTls::endpoint_config`]).
    reset_key: Arc<ring::hmac::Key>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads the CA certificate(s), our certificate chain and our private
    /// key (all PEM), and checks up front that our certificate chains to the
    /// CA for both client and server use, is currently valid, carries a
    /// valid node name as CN, and matches the key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<NodeTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let ca_certs = read_certs(ca)?;
        let mut roots = RootCertStore::empty();
        for der in ca_certs {
            roots
                .add(der)
                .map_err(|e| anyhow!("{}: not a usable CA certificate: {e}", ca.display()))?;
        }
        let roots = Arc::new(roots);

        let chain = read_certs(cert)?;
        let key_bytes = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|e| anyhow!("{}: no PEM private key: {e}", key.display()))?;

        let name = common_name(&chain[0])
            .with_context(|| format!("{}: the certificate has no common name", cert.display()))?;
        validate_node_name(&name)
            .with_context(|| format!("{}: bad common name", cert.display()))?;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .context("building the client certificate verifier")?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .context("building the server certificate verifier")?;

        // Our own chain must pass the checks peers will make.
        let now = UnixTime::now();
        let server_name = ServerName::try_from(CLUSTER_DNS_NAME)?;
        server_verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
            .map_err(|e| {
                anyhow!(
                    "{} is not a valid server certificate from {} (for {CLUSTER_DNS_NAME:?}): {e}",
                    cert.display(),
                    ca.display()
                )
            })?;
        client_verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map_err(|e| {
                anyhow!(
                    "{} is not a valid client certificate from {}: {e}",
                    cert.display(),
                    ca.display()
                )
            })?;

        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 with the ring provider")?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), private_key.clone_key())
            .with_context(|| format!("{} does not match {}", key.display(), cert.display()))?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        server.send_tls13_tickets = 0;
        server.max_early_data_size = 0;
        let server = QuicServerConfig::try_from(server).context("QUIC server TLS config")?;

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 with the ring provider")?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, private_key)
            .with_context(|| format!("{} does not match {}", key.display(), cert.display()))?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_early_data = false;
        let client = QuicClientConfig::try_from(client).context("QUIC client TLS config")?;

        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
            .max_idle_timeout(Some(IDLE_TIMEOUT.try_into()?))
            .max_concurrent_uni_streams(MAX_CONCURRENT_UNI_STREAMS.into())
            .max_concurrent_bidi_streams(0u32.into())
            .datagram_receive_buffer_size(None);

        // HMAC of a label under the private key: secret like the key, and
        // stable across restarts of this node.
        let derived = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes),
            b"sc quic stateless reset key v1",
        );
        let reset_key = Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            derived.as_ref(),
        ));

        Ok(NodeTls {
            name,
            server: Arc::new(server),
            client: Arc::new(client),
            transport: Arc::new(transport),
            reset_key,
        })
    }

    /// Our node name: the CN of our certificate.
    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// The endpoint's configuration, with a stateless-reset key that every
    /// process of this node shares. When this node restarts, a peer's
    /// connection to the old process gets a valid stateless reset from the
    /// new one at its next packet and closes at once, instead of
    /// swallowing writes until the idle timeout (quinn's default key is
    /// random per process, so the reset would be ignored).
    pub fn endpoint_config(&self) -> quinn::EndpointConfig {
        let key: Arc<dyn quinn::crypto::HmacKey> = self.reset_key.clone();
        let mut config = quinn::EndpointConfig::new(key);
        // quinn's default generator signs its IDs with a per-process key
        // and drops packets whose ID it did not sign, without a reset: the
        // new process must take the old one's IDs for plausible.
        config.cid_generator(|| Box::new(RandomCids(ring::rand::SystemRandom::new())));
        config
    }

    /// Accepting side: requires a client certificate signed by the CA.
    /// Connection migration is off: a peer's address is its identity in
    /// gossip.
    pub fn server_config(&self) -> quinn::ServerConfig {
        let mut config = quinn::ServerConfig::with_crypto(self.server.clone());
        config
            .transport_config(self.transport.clone())
            .migration(false);
        config
    }

    /// Dialing side: presents our certificate; verifies the server's chain
    /// against the CA. Connect with server name [`CLUSTER_DNS_NAME`].
    pub fn client_config(&self) -> quinn::ClientConfig {
        let mut config = quinn::ClientConfig::new(self.client.clone());
        config.transport_config(self.transport.clone());
        config
    }
}

/// The node name of the peer of an established connection: the CN of the
/// leaf certificate it presented, if it presented one (the verifier already
/// checked it against the CA) and the CN is a valid node name.
pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let name = common_name(certs.first()?)?;
    validate_node_name(&name).ok()?;
    Some(name)
}

/// The first common name of a DER certificate.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// All certificates of a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: bad PEM: {e}", path.display()))?;
    ensure!(
        !certs.is_empty(),
        "{}: no PEM certificate found",
        path.display()
    );
    Ok(certs)
}

/// Random 8-byte connection IDs that any process of this node accepts as
/// its own (so it answers a dead process's connections with a reset).
struct RandomCids(ring::rand::SystemRandom);

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        // SystemRandom reads getrandom(2); it does not fail on Linux. If it
        // ever did, a zero ID would only be retried by quinn as a clash.
        let _ = self.0.fill(&mut bytes);
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}
