//! DTLS-SRTP key agreement (RFC 5763, RFC 5764) over a datagram channel.
//!
//! The leg's socket carries RTP, RTCP and DTLS together (RFC 7983): the
//! caller feeds the DTLS records it demultiplexed into `incoming` and sends
//! whatever comes out of `outgoing`. Certificates are self-signed and
//! authenticated by the SDP fingerprint, in both directions.

use crate::error::Error;
use crate::srtp::{MasterKey, Suite};
use dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use webrtc_util::conn::Conn;
use webrtc_util::KeyingMaterialExporter;

/// Our DTLS certificate and its SDP fingerprint.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: Certificate,
    fingerprint: String,
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsIdentity").field("fingerprint", &self.fingerprint).finish()
    }
}

impl DtlsIdentity {
    /// A fresh self-signed certificate (ECDSA P-256).
    pub fn generate() -> Result<DtlsIdentity, Error> {
        let certificate = Certificate::generate_self_signed(vec!["sip-interconnect".to_owned()])
            .map_err(|e| Error::Dtls(e.to_string()))?;
        let der = certificate.certificate.first().ok_or_else(|| Error::Dtls("no certificate generated".into()))?;
        Ok(DtlsIdentity { fingerprint: fingerprint_of(der.as_ref()), certificate })
    }

    /// The `a=fingerprint` value: `sha-256 AB:CD:...`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// `sha-256 AB:CD:...` of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> String {
    let hash = Sha256::digest(der);
    let hex: Vec<String> = hash.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha-256 {}", hex.join(":"))
}

/// Whether `der` has the `a=fingerprint` value `expected` (`<hash> AB:CD:...`). The hashes of
/// RFC 8122 §5 that real peers use are taken: SHA-1 (older endpoints still send it), SHA-224,
/// SHA-256, SHA-384 and SHA-512; any other fails.
fn same_fingerprint(expected: &str, der: &[u8]) -> bool {
    let (alg, value) = expected.trim().split_once(' ').unwrap_or(("", expected));
    let digest = match alg.to_ascii_lowercase().as_str() {
        "sha-1" => sha1::Sha1::digest(der).to_vec(),
        "sha-224" => Sha224::digest(der).to_vec(),
        "sha-256" => Sha256::digest(der).to_vec(),
        "sha-384" => Sha384::digest(der).to_vec(),
        "sha-512" => Sha512::digest(der).to_vec(),
        _ => return false,
    };
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
    value.trim().eq_ignore_ascii_case(&hex.join(":"))
}

/// Which side of the handshake we are (from `a=setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// `a=setup:active`: we send the ClientHello.
    Client,
    /// `a=setup:passive`: we wait for it.
    Server,
}

/// The keys a DTLS-SRTP handshake produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsKeys {
    /// The negotiated protection profile.
    pub suite: Suite,
    /// Our sending key (outbound context).
    pub local: MasterKey,
    /// The peer's sending key (inbound context).
    pub remote: MasterKey,
}

/// Keeps the DTLS association alive (it answers retransmissions of the
/// peer's last flight) until dropped or closed.
pub struct DtlsSession {
    conn: DTLSConn,
}

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DtlsSession")
    }
}

impl DtlsSession {
    /// Sends close_notify.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

struct ChannelConn {
    incoming: Mutex<mpsc::Receiver<Vec<u8>>>,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    remote: SocketAddr,
}

#[async_trait::async_trait]
impl Conn for ChannelConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let pkt = self
            .incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| webrtc_util::Error::Other("channel closed".into()))?;
        let n = pkt.len().min(buf.len());
        buf[..n].copy_from_slice(&pkt[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Ok((self.recv(buf).await?, self.remote))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.outgoing.send(buf.to_vec()).map_err(|_| webrtc_util::Error::Other("channel closed".into()))?;
        Ok(buf.len())
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.remote)
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// What a handshake needs besides our identity and the datagram channels.
#[derive(Debug, Clone, Copy)]
pub struct DtlsParams<'a> {
    /// Our role, from the agreed `a=setup`.
    pub role: DtlsRole,
    /// The peer's `a=fingerprint`; its certificate must match.
    pub remote_fingerprint: &'a str,
    /// SRTP protection profiles to offer, in preference order.
    pub suites: &'a [Suite],
    /// The peer's media address (informational: the channels carry the bytes).
    pub remote: SocketAddr,
    /// Give up after this long.
    pub timeout: Duration,
}

/// Runs the handshake over the channels: `incoming` gets the DTLS records
/// demultiplexed from the media socket, `outgoing` yields records to send.
pub async fn handshake(
    identity: &DtlsIdentity,
    params: DtlsParams<'_>,
    incoming: mpsc::Receiver<Vec<u8>>,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
) -> Result<(DtlsKeys, DtlsSession), Error> {
    let DtlsParams { role, remote_fingerprint, suites, remote, timeout } = params;
    let expected = remote_fingerprint.to_owned();
    let verify = Arc::new(
        move |certs: &[Vec<u8>], _: &[rustls_pki_types::CertificateDer<'static>]| -> Result<(), dtls::Error> {
            match certs.first() {
                Some(der) if same_fingerprint(&expected, der) => Ok(()),
                Some(_) => Err(dtls::Error::Other("certificate does not match the SDP fingerprint".into())),
                None => Err(dtls::Error::Other("no certificate".into())),
            }
        },
    );
    // The AES-256 counter-mode suites have no DTLS-SRTP profile: left out.
    let profiles: Vec<SrtpProtectionProfile> =
        suites.iter().filter_map(|s| s.dtls_profile()).map(SrtpProtectionProfile::from).collect();
    let config = Config {
        certificates: vec![identity.certificate.clone()],
        srtp_protection_profiles: profiles,
        extended_master_secret: ExtendedMasterSecretType::Request,
        insecure_skip_verify: true,
        client_auth: ClientAuthType::RequireAnyClientCert,
        verify_peer_certificate: Some(verify),
        ..Config::default()
    };
    let conn: Arc<dyn Conn + Send + Sync> = Arc::new(ChannelConn { incoming: Mutex::new(incoming), outgoing, remote });
    let dtls = tokio::time::timeout(timeout, DTLSConn::new(conn, config, role == DtlsRole::Client, None))
        .await
        .map_err(|_| Error::Dtls("handshake timed out".into()))?
        .map_err(|e| Error::Dtls(e.to_string()))?;
    let suite = match dtls.selected_srtpprotection_profile() {
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Suite::AesCm128HmacSha1_80,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => Suite::AesCm128HmacSha1_32,
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Suite::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => Suite::AeadAes256Gcm,
        other => return Err(Error::Dtls(format!("unsupported SRTP profile {other:?}"))),
    };
    let (kl, sl) = (suite.key_len(), suite.salt_len());
    let state = dtls.connection_state().await;
    let km = state
        .export_keying_material("EXTRACTOR-dtls_srtp", &[], 2 * (kl + sl))
        .await
        .map_err(|e| Error::Dtls(e.to_string()))?;
    // RFC 5764 4.2: client key | server key | client salt | server salt.
    let client =
        MasterKey { key: km[..kl].to_vec(), salt: km[2 * kl..2 * kl + sl].to_vec(), mki: None, lifetime: None };
    let server =
        MasterKey { key: km[kl..2 * kl].to_vec(), salt: km[2 * kl + sl..].to_vec(), mki: None, lifetime: None };
    let (local, remote) = if role == DtlsRole::Client { (client, server) } else { (server, client) };
    Ok((DtlsKeys { suite, local, remote }, DtlsSession { conn: dtls }))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ends = (mpsc::Receiver<Vec<u8>>, mpsc::UnboundedSender<Vec<u8>>);

    /// Two endpoints' channels, each one's output fed to the other's input.
    fn crossed_channels() -> (Ends, Ends) {
        let (a_in_tx, a_in) = mpsc::channel(64);
        let (b_in_tx, b_in) = mpsc::channel(64);
        let (a_out, mut a_out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (b_out, mut b_out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(p) = a_out_rx.recv().await {
                let _ = b_in_tx.send(p).await;
            }
        });
        tokio::spawn(async move {
            while let Some(p) = b_out_rx.recv().await {
                let _ = a_in_tx.send(p).await;
            }
        });
        ((a_in, a_out), (b_in, b_out))
    }

    /// Two endpoints in memory: keys agree crosswise, and a wrong
    /// fingerprint is refused.
    /// A client offering `client` and a server offering `server` shake hands in memory: their keys.
    async fn shake(client: &[Suite], server: &[Suite]) -> (DtlsKeys, DtlsKeys) {
        let a = DtlsIdentity::generate().expect("a");
        let b = DtlsIdentity::generate().expect("b");
        assert!(a.fingerprint().starts_with("sha-256 ") && a.fingerprint().len() == 8 + 95);
        let ((a_in, a_out), (b_in, b_out)) = crossed_channels();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let (fa, fb) = (b.fingerprint().to_owned(), a.fingerprint().to_owned());
        let t = Duration::from_secs(10);
        let (ra, rb) = tokio::join!(
            handshake(
                &a,
                DtlsParams {
                    role: DtlsRole::Client,
                    remote_fingerprint: &fa,
                    suites: client,
                    remote: addr,
                    timeout: t
                },
                a_in,
                a_out
            ),
            handshake(
                &b,
                DtlsParams {
                    role: DtlsRole::Server,
                    remote_fingerprint: &fb,
                    suites: server,
                    remote: addr,
                    timeout: t
                },
                b_in,
                b_out
            ),
        );
        let ((ka, _sa), (kb, _sb)) = (ra.expect("client"), rb.expect("server"));
        assert_eq!(ka.local, kb.remote);
        assert_eq!(ka.remote, kb.local);
        assert_ne!(ka.local, ka.remote);
        (ka, kb)
    }

    #[tokio::test]
    async fn handshake_in_memory() {
        let suites = [Suite::AeadAes128Gcm, Suite::AesCm128HmacSha1_80];
        let (ka, kb) = shake(&suites, &suites).await;
        assert_eq!((ka.suite, kb.suite), (Suite::AeadAes128Gcm, Suite::AeadAes128Gcm));
        assert_eq!(ka.local.salt.len(), 12);
    }

    /// AEAD_AES_256_GCM (profile 0x0008) exports 32-byte keys; the AES-256 counter-mode suites,
    /// which have no DTLS-SRTP profile, are left out of the offer rather than refused.
    #[tokio::test]
    async fn aes_256_gcm_and_suites_without_a_profile() {
        let (ka, _) = shake(&[Suite::AeadAes256Gcm], &[Suite::AeadAes256Gcm, Suite::AesCm128HmacSha1_80]).await;
        assert_eq!(ka.suite, Suite::AeadAes256Gcm);
        assert_eq!((ka.local.key.len(), ka.local.salt.len()), (32, 12));
        let (ka, _) =
            shake(&[Suite::AesCm256HmacSha1_80, Suite::AesCm128HmacSha1_80], &[Suite::AesCm128HmacSha1_80]).await;
        assert_eq!(ka.suite, Suite::AesCm128HmacSha1_80);
    }

    #[test]
    fn fingerprints_of_every_common_hash_are_checked() {
        let der = b"not really a certificate, but bytes all the same";
        let colons = |d: &[u8]| d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        for (alg, digest) in [
            ("sha-1", sha1::Sha1::digest(der).to_vec()),
            ("SHA-224", Sha224::digest(der).to_vec()),
            ("sha-256", Sha256::digest(der).to_vec()),
            ("sha-384", Sha384::digest(der).to_vec()),
            ("sha-512", Sha512::digest(der).to_vec()),
        ] {
            let value = format!("{alg} {}", colons(&digest));
            assert!(same_fingerprint(&value, der), "{alg}");
            assert!(same_fingerprint(&value.to_ascii_lowercase(), der), "{alg}, lower case");
            let mut other = digest.clone();
            other[0] ^= 1;
            assert!(!same_fingerprint(&format!("{alg} {}", colons(&other)), der), "{alg}: another certificate");
        }
        assert!(!same_fingerprint(&format!("md5 {}", colons(&[0; 16])), der), "an unknown hash");
        assert!(!same_fingerprint("sha-256", der), "no value");
        assert_eq!(fingerprint_of(der), format!("sha-256 {}", colons(&Sha256::digest(der))));
    }

    #[tokio::test]
    async fn wrong_fingerprint_is_refused() {
        let a = DtlsIdentity::generate().expect("a");
        let b = DtlsIdentity::generate().expect("b");
        let ((a_in, a_out), (b_in, b_out)) = crossed_channels();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let suites = [Suite::AesCm128HmacSha1_80];
        let t = Duration::from_secs(5);
        let wrong = "sha-256 00:11:22:33";
        let (ra, _rb) = tokio::join!(
            handshake(
                &a,
                DtlsParams {
                    role: DtlsRole::Client,
                    remote_fingerprint: wrong,
                    suites: &suites,
                    remote: addr,
                    timeout: t
                },
                a_in,
                a_out
            ),
            handshake(
                &b,
                DtlsParams {
                    role: DtlsRole::Server,
                    remote_fingerprint: a.fingerprint(),
                    suites: &suites,
                    remote: addr,
                    timeout: t
                },
                b_in,
                b_out
            ),
        );
        assert!(ra.is_err(), "the client must refuse the server's certificate");
    }
}
