//! SRTP and SRTCP (RFC 3711) with AES-CM + HMAC-SHA1, 128- and 256-bit keys (RFC 6188), and AEAD
//! AES-GCM, 128 and 256 (RFC 7714), per-SSRC rollover counters and replay windows.

use crate::error::Error;
use crate::replay::ReplayWindow;
use crate::rtp::Ssrc;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::collections::HashMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// AES with a 128- or 256-bit key.
// Key schedules of 704 and 960 bytes, one per context: boxing the larger would put a pointer
// chase in front of every block of every packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Aes {
    A128(Aes128),
    A256(Aes256),
}

impl Aes {
    /// From a 16- or 32-byte key.
    fn new(key: &[u8]) -> Result<Aes, Error> {
        match key.len() {
            16 => Aes128::new_from_slice(key).map(Aes::A128),
            32 => Aes256::new_from_slice(key).map(Aes::A256),
            _ => return Err(Error::BadKey("AES keys are 16 or 32 bytes")),
        }
        .map_err(|_| Error::BadKey("AES key"))
    }

    fn encrypt_blocks(&self, blocks: &mut [aes::Block]) {
        match self {
            Aes::A128(a) => a.encrypt_blocks(blocks),
            Aes::A256(a) => a.encrypt_blocks(blocks),
        }
    }
}

/// AES-GCM with a 128- or 256-bit key (both with 12-byte nonces and 16-byte tags).
// As for `Aes`: key schedules held once per context, not boxed.
#[allow(clippy::large_enum_variant)]
enum Gcm {
    A128(Aes128Gcm),
    A256(Aes256Gcm),
}

type GcmNonce = aes_gcm::Nonce<aes_gcm::aead::consts::U12>;

impl Gcm {
    fn new(key: &[u8]) -> Result<Gcm, Error> {
        match key.len() {
            16 => Aes128Gcm::new_from_slice(key).map(Gcm::A128),
            32 => Aes256Gcm::new_from_slice(key).map(Gcm::A256),
            _ => return Err(Error::BadKey("AES-GCM keys are 16 or 32 bytes")),
        }
        .map_err(|_| Error::BadKey("session key"))
    }

    fn encrypt_in_place_detached(
        &self,
        nonce: &GcmNonce,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<aes_gcm::Tag, aes_gcm::Error> {
        match self {
            Gcm::A128(g) => g.encrypt_in_place_detached(nonce, aad, buf),
            Gcm::A256(g) => g.encrypt_in_place_detached(nonce, aad, buf),
        }
    }

    fn decrypt_in_place_detached(
        &self,
        nonce: &GcmNonce,
        aad: &[u8],
        buf: &mut [u8],
        tag: &aes_gcm::Tag,
    ) -> Result<(), aes_gcm::Error> {
        match self {
            Gcm::A128(g) => g.decrypt_in_place_detached(nonce, aad, buf, tag),
            Gcm::A256(g) => g.decrypt_in_place_detached(nonce, aad, buf, tag),
        }
    }
}

/// XORs `data` with the AES counter-mode keystream starting at `iv`,
/// sixteen blocks at a time so AES-NI can pipeline them.
fn aes_ctr(aes: &Aes, iv: u128, data: &mut [u8]) {
    let mut counter = iv;
    let mut blocks = [aes::Block::default(); 16];
    for chunk in data.chunks_mut(256) {
        let n = chunk.len().div_ceil(16);
        for b in blocks.iter_mut().take(n) {
            *b = counter.to_be_bytes().into();
            counter = counter.wrapping_add(1);
        }
        aes.encrypt_blocks(&mut blocks[..n]);
        for (bytes, key) in chunk.chunks_mut(16).zip(&blocks) {
            for (byte, k) in bytes.iter_mut().zip(key) {
                *byte ^= k;
            }
        }
    }
}

/// An SRTP protection profile / SDES crypto suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80` (SRTP_AES128_CM_HMAC_SHA1_80).
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 32-bit tag on SRTP, 80-bit on SRTCP.
    AesCm128HmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `AES_256_CM_HMAC_SHA1_80` (RFC 6188; SDES only: DTLS-SRTP has no profile for it).
    AesCm256HmacSha1_80,
    /// `AES_256_CM_HMAC_SHA1_32` (RFC 6188): 32-bit tag on SRTP, 80-bit on SRTCP; SDES only.
    AesCm256HmacSha1_32,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

/// Every suite, in the order we prefer them.
const ALL_SUITES: [Suite; 6] = [
    Suite::AesCm128HmacSha1_80,
    Suite::AesCm128HmacSha1_32,
    Suite::AeadAes128Gcm,
    Suite::AesCm256HmacSha1_80,
    Suite::AesCm256HmacSha1_32,
    Suite::AeadAes256Gcm,
];

impl Suite {
    /// The SDES (RFC 4568) name.
    pub fn sdes_name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Looks up an SDES name.
    pub fn from_sdes_name(s: &str) -> Option<Suite> {
        ALL_SUITES.into_iter().find(|x| x.sdes_name() == s)
    }

    /// The DTLS-SRTP protection profile number (RFC 5764, RFC 7714); `None` for the AES-256
    /// counter-mode suites, which have none.
    pub fn dtls_profile(self) -> Option<u16> {
        match self {
            Suite::AesCm128HmacSha1_80 => Some(0x0001),
            Suite::AesCm128HmacSha1_32 => Some(0x0002),
            Suite::AeadAes128Gcm => Some(0x0007),
            Suite::AeadAes256Gcm => Some(0x0008),
            Suite::AesCm256HmacSha1_80 | Suite::AesCm256HmacSha1_32 => None,
        }
    }

    /// Master key length in bytes (16, or 32 for the AES-256 suites).
    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm256HmacSha1_80 | Suite::AesCm256HmacSha1_32 | Suite::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master salt length in bytes (14, or 12 for GCM).
    pub fn salt_len(self) -> usize {
        if self.is_gcm() {
            12
        } else {
            14
        }
    }

    /// SRTP authentication tag length.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm256HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 | Suite::AesCm256HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 16,
        }
    }

    /// SRTCP authentication tag length.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_gcm() {
            16
        } else {
            10
        }
    }

    fn is_gcm(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }
}

/// A master key and salt. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// Master key (16 bytes, 32 for the AES-256 suites).
    pub key: Vec<u8>,
    /// Master salt (14 bytes, 12 for GCM).
    pub salt: Vec<u8>,
    /// Master key identifier carried in each packet, if negotiated.
    pub mki: Option<Vec<u8>>,
    /// Lifetime in packets from the `a=crypto` line, if any.
    pub lifetime: Option<u64>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("key", &"<redacted>").field("mki", &self.mki).finish()
    }
}

/// Options of a [`Context`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Replay window size in packets (64..=1024, RFC 3711 asks for at least 64).
    pub replay_window: u16,
    /// After this many consecutive authenticated packets that the replay
    /// window calls too old, and that form an increasing run, accept the
    /// sender's new numbering (a peer that restarted its sequence after a
    /// hold). `None` disables the re-synchronisation. It needs the packets'
    /// arrival times ([`Context::unprotect_rtp_at`]): the run must take at
    /// least [`RESYNC_PACE`] per packet and come with nothing of the current
    /// numbering in between, as a real restart does. Recorded packets replayed
    /// in a burst, or between the live stream's packets, never resynchronise
    /// (RFC 3711 §3.3.2: a replay is discarded).
    pub resync_after: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options { replay_window: 128, resync_after: Some(32) }
    }
}

/// The least time per packet of a run that resynchronises (see [`Options::resync_after`]): a
/// sender restarted at 10 ms per packet takes twice this; a replayed burst, far less.
pub const RESYNC_PACE: std::time::Duration = std::time::Duration::from_millis(5);

/// AES-CM PRF key derivation (RFC 3711 section 4.3.1; with a 32-byte master key, the AES-256 PRF
/// of RFC 6188 section 3) with a key derivation rate of zero.
pub fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> Result<(), Error> {
    if master_key.len() != 16 && master_key.len() != 32 {
        return Err(Error::BadKey("master key must be 16 or 32 bytes"));
    }
    // The 112-bit salt; a 96-bit (GCM) salt is multiplied by 2^16 (RFC 7714 erratum 4938).
    let mut x = [0u8; 16];
    match master_salt.len() {
        14 | 12 => x[..master_salt.len()].copy_from_slice(master_salt),
        _ => return Err(Error::BadKey("master salt must be 14 or 12 bytes")),
    }
    // key_id = label || r (48-bit index DIV kdr = 0), XORed at byte 7.
    x[7] ^= label;
    let cipher = Aes::new(master_key)?;
    let mut block_no: u16 = 0;
    for chunk in out.chunks_mut(16) {
        let mut block = aes::Block::clone_from_slice(&x);
        block[14..16].copy_from_slice(&block_no.to_be_bytes());
        cipher.encrypt_blocks(std::slice::from_mut(&mut block));
        chunk.copy_from_slice(&block[..chunk.len()]);
        block_no = block_no.wrapping_add(1);
    }
    Ok(())
}

/// Session keys given directly instead of derived from a master key; see
/// [`Context::from_session_keys`]. Known-answer tests only.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct SessionKeys<'a> {
    /// Session encryption key (16 bytes, 32 for the AES-256 suites).
    pub key: &'a [u8],
    /// Session salt (14 bytes, 12 for GCM).
    pub salt: &'a [u8],
    /// Session authentication key (20 bytes; empty for GCM).
    pub auth: &'a [u8],
}

/// The keyed transform of one direction and packet kind (SRTP or SRTCP).
enum Transform {
    /// AES counter mode and HMAC-SHA1 (the keyed state, cloned per packet).
    Cm { aes: Aes, auth: Hmac<Sha1> },
    /// AES-GCM: encryption and authentication in one.
    Gcm(Gcm),
}

struct Keys {
    transform: Transform,
    /// Session salt; GCM uses the first 12 bytes.
    salt: [u8; 14],
}

impl Keys {
    /// Derives the session keys of SRTP (`base_label` 0) or SRTCP (3).
    fn derive(suite: Suite, mk: &MasterKey, base_label: u8) -> Result<Keys, Error> {
        let mut key = [0u8; 32];
        let key = &mut key[..suite.key_len()];
        derive(&mk.key, &mk.salt, base_label, key)?;
        let mut salt = [0u8; 14];
        let salt = &mut salt[..suite.salt_len()];
        derive(&mk.key, &mk.salt, base_label + 2, salt)?;
        let mut auth = [0u8; 20];
        let auth: &[u8] = if suite.is_gcm() {
            &[]
        } else {
            derive(&mk.key, &mk.salt, base_label + 1, &mut auth)?;
            &auth
        };
        Keys::new(suite, SessionKeys { key, salt, auth })
    }

    fn new(suite: Suite, k: SessionKeys<'_>) -> Result<Keys, Error> {
        if k.key.len() != suite.key_len() || k.salt.len() != suite.salt_len() {
            return Err(Error::BadKey("session key or salt length does not fit the suite"));
        }
        let mut salt = [0u8; 14];
        salt[..k.salt.len()].copy_from_slice(k.salt);
        let transform = if suite.is_gcm() {
            Transform::Gcm(Gcm::new(k.key)?)
        } else {
            if k.auth.len() != 20 {
                return Err(Error::BadKey("session authentication key must be 20 bytes"));
            }
            Transform::Cm {
                aes: Aes::new(k.key)?,
                auth: <Hmac<Sha1> as Mac>::new_from_slice(k.auth).map_err(|_| Error::BadKey("auth key"))?,
            }
        };
        Ok(Keys { transform, salt })
    }

    /// AES-CM IV (RFC 3711 4.1.1): (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
    fn cm_iv(&self, ssrc: u32, index: u64) -> u128 {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        u128::from_be_bytes(iv) ^ (u128::from(ssrc) << 64) ^ (u128::from(index & 0xffff_ffff_ffff) << 16)
    }

    /// SRTP GCM IV (RFC 7714 8.1): (00 00 || SSRC || ROC || SEQ) XOR salt.
    fn gcm_rtp_iv(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        self.gcm_iv(ssrc, (u64::from(roc) << 16) | u64::from(seq))
    }

    /// SRTCP GCM IV (RFC 7714 9.1): (00 00 || SSRC || 00 00 || 0 || 31-bit index) XOR salt.
    fn gcm_rtcp_iv(&self, ssrc: u32, index: u32) -> [u8; 12] {
        self.gcm_iv(ssrc, u64::from(index & MAX_SRTCP_INDEX))
    }

    /// (00 00 || SSRC || 48-bit index) XOR salt.
    fn gcm_iv(&self, ssrc: u32, index48: u64) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index48.to_be_bytes()[2..]);
        for (a, b) in iv.iter_mut().zip(&self.salt[..12]) {
            *a ^= b;
        }
        iv
    }
}

/// HMAC-SHA1 over the concatenation of `parts`, from the keyed state.
fn hmac_sha1(auth: &Hmac<Sha1>, parts: &[&[u8]]) -> [u8; 20] {
    let mut m = auth.clone();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The rollover counter that puts `seq` closest to the highest index seen,
/// `roc || s_l` (RFC 3711 section 3.3.1). May be -1 or 2^32 at the ends.
fn estimate_roc(roc: u32, s_l: u16, seq: u16) -> i64 {
    let roc = i64::from(roc);
    let (seq, s_l) = (i32::from(seq), i32::from(s_l));
    if s_l < 0x8000 {
        if seq - s_l > 0x8000 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    }
}

fn rtp_index(roc: u32, seq: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(seq)
}

#[derive(Debug, Clone)]
struct Stream {
    // Receive side (the highest authenticated index is `roc || s_l`).
    roc: u32,
    s_l: u16,
    window: ReplayWindow,
    old_run: u16,
    old_last: Option<u64>,
    /// When the current run of too-old packets started.
    old_since: Option<std::time::Instant>,
    rtcp_window: ReplayWindow,
    // Send side.
    tx_roc: u32,
    tx_last: Option<u16>,
    tx_rtcp_next: u32,
    packets: u64,
}

impl Stream {
    fn new(replay_window: u16) -> Stream {
        Stream {
            roc: 0,
            s_l: 0,
            window: ReplayWindow::new(replay_window),
            old_run: 0,
            old_last: None,
            old_since: None,
            rtcp_window: ReplayWindow::new(replay_window),
            tx_roc: 0,
            tx_last: None,
            // libsrtp and RFC 3711 implementations send index 1 first.
            tx_rtcp_next: 1,
            packets: 0,
        }
    }
}

/// One direction's SRTP/SRTCP context: protect with the local key, or
/// unprotect with the peer's. Streams are tracked per SSRC; a receiving
/// context creates a stream's state only once a packet authenticated.
pub struct Context {
    suite: Suite,
    rtp: Keys,
    rtcp: Keys,
    mki: Option<Vec<u8>>,
    lifetime: u64,
    /// The master key's lifetime (RFC 4568 §6.1: SRTP and SRTCP packets, every stream, under
    /// this key), when its `a=crypto` line gave one, and the packets protected so far.
    key_lifetime: Option<u64>,
    protected: u64,
    streams: HashMap<u32, Stream>,
    options: Options,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("suite", &self.suite).field("streams", &self.streams.len()).finish()
    }
}

const MAX_SRTP_PACKETS: u64 = 1 << 48;
const MAX_SRTCP_INDEX: u32 = (1 << 31) - 1;
const E_FLAG: u32 = 0x8000_0000;

impl Context {
    /// Derives the session keys from a master key.
    pub fn new(suite: Suite, mk: &MasterKey, options: Options) -> Result<Context, Error> {
        if mk.key.len() != suite.key_len() || mk.salt.len() != suite.salt_len() {
            return Err(Error::BadKey("master key or salt length does not fit the suite"));
        }
        let rtp = Keys::derive(suite, mk, 0)?;
        let rtcp = Keys::derive(suite, mk, 3)?;
        Context::with_keys(suite, rtp, rtcp, mk.mki.clone(), mk.lifetime, options)
    }

    /// Builds a context from session keys given directly, skipping the key
    /// derivation: for known-answer tests such as RFC 7714 sections 16
    /// and 17, which give session keys. Real sessions use [`Context::new`].
    #[doc(hidden)]
    pub fn from_session_keys(
        suite: Suite,
        rtp: SessionKeys<'_>,
        rtcp: SessionKeys<'_>,
        options: Options,
    ) -> Result<Context, Error> {
        Context::with_keys(suite, Keys::new(suite, rtp)?, Keys::new(suite, rtcp)?, None, None, options)
    }

    fn with_keys(
        suite: Suite,
        rtp: Keys,
        rtcp: Keys,
        mki: Option<Vec<u8>>,
        lifetime: Option<u64>,
        options: Options,
    ) -> Result<Context, Error> {
        if !(64..=1024).contains(&options.replay_window) {
            return Err(Error::BadKey("replay window must be 64..=1024 packets"));
        }
        Ok(Context {
            suite,
            rtp,
            rtcp,
            mki,
            lifetime: lifetime.unwrap_or(MAX_SRTP_PACKETS).min(MAX_SRTP_PACKETS),
            key_lifetime: lifetime,
            protected: 0,
            streams: HashMap::new(),
            options,
        })
    }

    /// Counts one packet protected under the master key, refusing it once the key's lifetime
    /// is spent (RFC 4568 §6.1: SRTP and SRTCP together, every stream).
    fn use_key(&mut self) -> Result<(), Error> {
        if self.key_lifetime.is_some_and(|l| self.protected >= l) {
            return Err(Error::KeyExhausted);
        }
        self.protected += 1;
        Ok(())
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Forgets every stream's counters and replay state (use after the
    /// peer's keys change, or when a stream restarts).
    pub fn reset_streams(&mut self) {
        self.streams.clear();
    }

    /// Sets the SRTCP index that the next SRTCP packet protected for `ssrc`
    /// carries (a new stream starts at 1). For known-answer tests, and to
    /// carry a stream's numbering over to a new context on re-keying. An
    /// index above 2^31 - 1 makes the next [`Context::protect_rtcp`] fail
    /// with [`Error::KeyExhausted`].
    pub fn set_rtcp_index(&mut self, ssrc: Ssrc, index: u32) {
        self.stream(ssrc.0).tx_rtcp_next = index;
    }

    fn stream(&mut self, ssrc: u32) -> &mut Stream {
        let w = self.options.replay_window;
        self.streams.entry(ssrc).or_insert_with(|| Stream::new(w))
    }

    fn mki_len(&self) -> usize {
        self.mki.as_ref().map_or(0, Vec::len)
    }

    /// Encrypts and authenticates an RTP packet in place, appending the
    /// tag and MKI: `header | payload | MKI | tag` for AES-CM (RFC 3711),
    /// `header | payload | tag | MKI` for GCM (RFC 7714 section 8).
    pub fn protect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let header_len = crate::rtp::RtpPacket::parse(pkt)?.header_len();
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let lifetime = self.lifetime;
        self.use_key()?;
        let s = self.stream(ssrc);
        if s.packets >= lifetime {
            return Err(Error::KeyExhausted);
        }
        // The sender's index: ROC estimated against the highest index sent,
        // so a packet sent late (after the wrap) keeps its own ROC.
        let roc = match s.tx_last {
            None => s.tx_roc,
            Some(last) => u32::try_from(estimate_roc(s.tx_roc, last, seq)).unwrap_or(s.tx_roc),
        };
        if s.tx_last.is_none_or(|last| rtp_index(roc, seq) > rtp_index(s.tx_roc, last)) {
            s.tx_roc = roc;
            s.tx_last = Some(seq);
        }
        s.packets += 1;
        let tag_len = self.suite.rtp_tag_len();
        pkt.reserve(tag_len + self.mki_len());
        match &self.rtp.transform {
            Transform::Gcm(gcm) => {
                let iv = self.rtp.gcm_rtp_iv(ssrc, roc, seq);
                let (head, body) = pkt.split_at_mut(header_len);
                let tag = gcm.encrypt_in_place_detached(&iv.into(), head, body).map_err(|_| Error::BufferTooSmall)?;
                pkt.extend_from_slice(&tag);
                if let Some(m) = &self.mki {
                    pkt.extend_from_slice(m);
                }
            }
            Transform::Cm { aes, auth } => {
                aes_ctr(aes, self.rtp.cm_iv(ssrc, rtp_index(roc, seq)), &mut pkt[header_len..]);
                let tag = hmac_sha1(auth, &[pkt, &roc.to_be_bytes()]);
                if let Some(m) = &self.mki {
                    pkt.extend_from_slice(m);
                }
                pkt.extend_from_slice(&tag[..tag_len]);
            }
        }
        Ok(())
    }

    /// Verifies and decrypts an SRTP packet in place, removing MKI and tag.
    /// On error the packet is to be dropped (its bytes may have changed).
    /// Without an arrival time a sender's restarted numbering is never
    /// followed (see [`unprotect_rtp_at`](Self::unprotect_rtp_at)).
    pub fn unprotect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        self.unprotect(None, pkt)
    }

    /// [`unprotect_rtp`](Self::unprotect_rtp) for a packet that arrived at `now`: a sender that
    /// restarted its numbering is followed (see [`Options::resync_after`]).
    pub fn unprotect_rtp_at(&mut self, now: std::time::Instant, pkt: &mut Vec<u8>) -> Result<(), Error> {
        self.unprotect(Some(now), pkt)
    }

    fn unprotect(&mut self, now: Option<std::time::Instant>, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let tag_len = self.suite.rtp_tag_len();
        let mki_len = self.mki_len();
        if pkt.len() < 12 + tag_len + mki_len {
            return Err(Error::Malformed { what: "SRTP", reason: "shorter than header and tag" });
        }
        // `end` is where the payload stops and the trailer starts.
        let end = pkt.len() - tag_len - mki_len;
        let (mki_at, tag_at) = if self.suite.is_gcm() { (end + tag_len, end) } else { (end, end + mki_len) };
        if let Some(m) = &self.mki {
            if pkt[mki_at..mki_at + mki_len] != m[..] {
                return Err(Error::BadKey("unknown MKI"));
            }
        }
        // The padding count is encrypted: only the header is parsed here.
        let header_len = crate::rtp::header_len(&pkt[..end])?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let known = self.streams.get(&ssrc).map(|s| (s.roc, s.s_l));
        // RFC 3711 3.3.1: the index closest to the highest seen; then its
        // neighbours, so a sequence jump of more than half the space (seen
        // after long holds) does not lose the stream.
        let guess = known.map_or(0, |(roc, s_l)| estimate_roc(roc, s_l, seq));
        let mut chosen = None;
        for candidate in [guess, guess + 1, guess - 1] {
            let Ok(roc) = u32::try_from(candidate) else { continue };
            // GCM authenticates and decrypts in one pass, and leaves the
            // packet untouched when the tag does not match.
            if self.open_rtp(pkt, header_len, end, tag_at, ssrc, roc, seq) {
                chosen = Some(roc);
                break;
            }
        }
        let Some(roc) = chosen else { return Err(Error::AuthFailed) };
        let index = rtp_index(roc, seq);
        let resync = self.options.resync_after;
        let stream = self.stream(ssrc);
        let mut resynced = false;
        if known.is_some() {
            if let Err(e) = stream.window.check(index) {
                // Too old (or repeated) but authentic: an increasing run of
                // these means the sender restarted its numbering.
                let in_run = stream.old_last.is_some_and(|l| index == l + 1);
                stream.old_run = if in_run { stream.old_run.saturating_add(1) } else { 1 };
                stream.old_last = Some(index);
                if !in_run {
                    stream.old_since = now;
                }
                // As slow as a real sender: a burst of recorded packets is a replay.
                let paced = |n: u16| match (now, stream.old_since) {
                    (Some(now), Some(since)) => {
                        now.saturating_duration_since(since) >= RESYNC_PACE * u32::from(n.saturating_sub(1))
                    }
                    _ => false,
                };
                match resync {
                    Some(n) if stream.old_run >= n && paced(n) && !stream.window.contains(index) => {
                        stream.window = ReplayWindow::new(stream.window.size());
                        resynced = true;
                    }
                    _ => return Err(e),
                }
            }
        }
        stream.old_run = 0;
        stream.old_last = None;
        stream.old_since = None;
        stream.window.accept(index);
        if known.is_none() || index > rtp_index(stream.roc, stream.s_l) || resynced {
            stream.roc = roc;
            stream.s_l = seq;
        }
        if let Transform::Cm { aes, .. } = &self.rtp.transform {
            aes_ctr(aes, self.rtp.cm_iv(ssrc, index), &mut pkt[header_len..end]);
        }
        pkt.truncate(end);
        Ok(())
    }

    /// Authenticates the packet under `roc`; GCM also decrypts it in place.
    #[allow(clippy::too_many_arguments)]
    fn open_rtp(
        &self,
        pkt: &mut [u8],
        header_len: usize,
        end: usize,
        tag_at: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> bool {
        let tag_len = self.suite.rtp_tag_len();
        match &self.rtp.transform {
            Transform::Gcm(gcm) => {
                let iv = self.rtp.gcm_rtp_iv(ssrc, roc, seq);
                let (head, rest) = pkt.split_at_mut(header_len);
                let (body, trailer) = rest.split_at_mut(end - header_len);
                let tag = aes_gcm::Tag::from_slice(&trailer[tag_at - end..tag_at - end + tag_len]);
                gcm.decrypt_in_place_detached(&iv.into(), head, body, tag).is_ok()
            }
            Transform::Cm { auth, .. } => {
                let tag = hmac_sha1(auth, &[&pkt[..end], &roc.to_be_bytes()]);
                bool::from(tag[..tag_len].ct_eq(&pkt[tag_at..tag_at + tag_len]))
            }
        }
    }

    /// Encrypts and authenticates a (compound) RTCP packet in place:
    /// `header | payload | E+index | MKI | tag` for AES-CM (RFC 3711),
    /// `header | payload | tag | E+index | MKI` for GCM (RFC 7714 section 9).
    pub fn protect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        if pkt.len() < 8 || pkt[0] >> 6 != 2 {
            return Err(Error::Malformed { what: "RTCP", reason: "not an RTCP packet" });
        }
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        self.use_key()?;
        let s = self.stream(ssrc);
        let index = s.tx_rtcp_next;
        if index > MAX_SRTCP_INDEX {
            return Err(Error::KeyExhausted);
        }
        s.tx_rtcp_next += 1;
        let e_index = (index | E_FLAG).to_be_bytes();
        let tag_len = self.suite.rtcp_tag_len();
        pkt.reserve(4 + tag_len + self.mki_len());
        match &self.rtcp.transform {
            Transform::Gcm(gcm) => {
                let iv = self.rtcp.gcm_rtcp_iv(ssrc, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&pkt[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = gcm
                    .encrypt_in_place_detached(&iv.into(), &aad, &mut pkt[8..])
                    .map_err(|_| Error::BufferTooSmall)?;
                pkt.extend_from_slice(&tag);
                pkt.extend_from_slice(&e_index);
                if let Some(m) = &self.mki {
                    pkt.extend_from_slice(m);
                }
            }
            Transform::Cm { aes, auth } => {
                aes_ctr(aes, self.rtcp.cm_iv(ssrc, u64::from(index)), &mut pkt[8..]);
                pkt.extend_from_slice(&e_index);
                let tag = hmac_sha1(auth, &[pkt]);
                if let Some(m) = &self.mki {
                    pkt.extend_from_slice(m);
                }
                pkt.extend_from_slice(&tag[..tag_len]);
            }
        }
        Ok(())
    }

    /// Verifies and decrypts an SRTCP packet in place, removing the
    /// trailer. Packets sent with the E flag clear (authenticated only)
    /// are accepted. On error the packet is to be dropped.
    pub fn unprotect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let tag_len = self.suite.rtcp_tag_len();
        let mki_len = self.mki_len();
        if pkt.len() < 8 + 4 + tag_len + mki_len || pkt[0] >> 6 != 2 {
            return Err(Error::Malformed { what: "SRTCP", reason: "too short" });
        }
        // `end` is where the (encrypted) payload stops.
        let (end, idx_at, mki_at, tag_at) = if self.suite.is_gcm() {
            let mki_at = pkt.len() - mki_len;
            (mki_at - 4 - tag_len, mki_at - 4, mki_at, mki_at - 4 - tag_len)
        } else {
            let tag_at = pkt.len() - tag_len;
            (tag_at - mki_len - 4, tag_at - mki_len - 4, tag_at - mki_len, tag_at)
        };
        if let Some(m) = &self.mki {
            if pkt[mki_at..mki_at + mki_len] != m[..] {
                return Err(Error::BadKey("unknown MKI"));
            }
        }
        let e_index = u32::from_be_bytes([pkt[idx_at], pkt[idx_at + 1], pkt[idx_at + 2], pkt[idx_at + 3]]);
        let encrypted = e_index & E_FLAG != 0;
        let index = e_index & MAX_SRTCP_INDEX;
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        // Replays are refused before any cryptography.
        if let Some(s) = self.streams.get(&ssrc) {
            s.rtcp_window.check(u64::from(index))?;
        }
        match &self.rtcp.transform {
            Transform::Gcm(gcm) => {
                let iv = self.rtcp.gcm_rtcp_iv(ssrc, index);
                let tag = *aes_gcm::Tag::from_slice(&pkt[tag_at..tag_at + tag_len]);
                let e_index = e_index.to_be_bytes();
                let opened = if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&pkt[..8]);
                    aad[8..].copy_from_slice(&e_index);
                    gcm.decrypt_in_place_detached(&iv.into(), &aad, &mut pkt[8..end], &tag)
                } else {
                    // Authentication only: the whole packet is associated data.
                    let mut aad = Vec::with_capacity(end + 4);
                    aad.extend_from_slice(&pkt[..end]);
                    aad.extend_from_slice(&e_index);
                    gcm.decrypt_in_place_detached(&iv.into(), &aad, &mut [], &tag)
                };
                opened.map_err(|_| Error::AuthFailed)?;
            }
            Transform::Cm { aes, auth } => {
                let tag = hmac_sha1(auth, &[&pkt[..idx_at + 4]]);
                if !bool::from(tag[..tag_len].ct_eq(&pkt[tag_at..tag_at + tag_len])) {
                    return Err(Error::AuthFailed);
                }
                if encrypted {
                    aes_ctr(aes, self.rtcp.cm_iv(ssrc, u64::from(index)), &mut pkt[8..end]);
                }
            }
        }
        let s = self.stream(ssrc);
        s.rtcp_window.check(u64::from(index))?;
        s.rtcp_window.accept(u64::from(index));
        pkt.truncate(end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("hex")
    }

    /// RFC 3711 appendix B.3: key derivation.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let key = h("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = h("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, 0, &mut enc).expect("derive");
        assert_eq!(enc.to_vec(), h("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, 2, &mut s).expect("derive");
        assert_eq!(s.to_vec(), h("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 20];
        derive(&key, &salt, 1, &mut a).expect("derive");
        assert_eq!(a.to_vec(), h("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    /// RFC 3711 appendix B.2: AES-CM keystream.
    #[test]
    fn rfc3711_b2_keystream() {
        let (key, salt) = (h("2B7E151628AED2A6ABF7158809CF4F3C"), h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
        let keys = Keys::new(Suite::AesCm128HmacSha1_80, SessionKeys { key: &key, salt: &salt, auth: &[0; 20] })
            .expect("keys");
        let Transform::Cm { aes, .. } = &keys.transform else { panic!("AES-CM keys") };
        let mut data = vec![0u8; 48];
        aes_ctr(aes, keys.cm_iv(0, 0), &mut data);
        assert_eq!(
            data,
            h("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    fn mk(suite: Suite) -> MasterKey {
        MasterKey {
            key: (0..suite.key_len() as u8).collect(),
            salt: (100..100 + suite.salt_len() as u8).collect(),
            mki: None,
            lifetime: None,
        }
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::rtp::RtpHeader {
            payload_type: 0,
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 0xcafe,
            ..Default::default()
        }
        .write(payload, 0, &mut out)
        .expect("rtp");
        out
    }

    /// RFC 6188 and RFC 7714's AES-256 suites take 32-byte master keys and nothing else, are
    /// found by their SDES names, and only AEAD_AES_256_GCM has a DTLS-SRTP profile.
    #[test]
    fn aes_256_suites_take_32_byte_keys_only() {
        for suite in [Suite::AesCm256HmacSha1_80, Suite::AesCm256HmacSha1_32, Suite::AeadAes256Gcm] {
            assert_eq!(suite.key_len(), 32);
            let short = MasterKey { key: vec![1; 16], ..mk(suite) };
            assert!(Context::new(suite, &short, Options::default()).is_err(), "{suite:?}");
            assert_eq!(Suite::from_sdes_name(suite.sdes_name()), Some(suite));
        }
        assert_eq!(Suite::AeadAes256Gcm.dtls_profile(), Some(0x0008));
        assert_eq!(Suite::AesCm256HmacSha1_80.dtls_profile(), None);
        let mut out = [0u8; 32];
        assert!(derive(&[7; 24], &[0; 14], 0, &mut out).is_err(), "AES-192 is no SRTP suite");
        derive(&[7; 32], &[0; 14], 0, &mut out).expect("AES-256 PRF");
        let mut with_128 = [0u8; 32];
        derive(&[7; 16], &[0; 14], 0, &mut with_128).expect("AES-128 PRF");
        assert_ne!(out, with_128);
    }

    #[test]
    fn round_trip_every_suite_rtp_and_rtcp() {
        for suite in ALL_SUITES {
            let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
            let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
            for seq in [65530u16, 65535, 0, 1, 2] {
                let clear = rtp(seq, &[seq as u8; 160]);
                let mut p = clear.clone();
                tx.protect_rtp(&mut p).expect("protect");
                assert_eq!(p.len(), clear.len() + suite.rtp_tag_len());
                assert_ne!(p[12..172], clear[12..]);
                rx.unprotect_rtp(&mut p).expect("unprotect");
                assert_eq!(p, clear, "{suite:?} seq {seq}");
            }
            let sr = vec![
                0x80, 200, 0, 6, 0, 0, 0xca, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                20, 21, 22, 23, 24,
            ];
            let mut p = sr.clone();
            tx.protect_rtcp(&mut p).expect("protect rtcp");
            rx.unprotect_rtcp(&mut p).expect("unprotect rtcp");
            assert_eq!(p, sr);
        }
    }

    #[test]
    fn tampering_and_replay_are_refused() {
        let suite = Suite::AesCm128HmacSha1_80;
        let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
        let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
        let mut p = rtp(10, b"abcdef");
        tx.protect_rtp(&mut p).expect("protect");
        let mut bad = p.clone();
        bad[14] ^= 1;
        assert_eq!(rx.unprotect_rtp(&mut bad), Err(Error::AuthFailed));
        let mut ok = p.clone();
        rx.unprotect_rtp(&mut ok).expect("first");
        let mut again = p.clone();
        assert!(matches!(rx.unprotect_rtp(&mut again), Err(Error::Replay(_))));
        let mut short = vec![0x80, 0, 0, 1];
        assert!(rx.unprotect_rtp(&mut short).is_err());
    }

    #[test]
    fn mki_is_carried_and_checked() {
        let suite = Suite::AesCm128HmacSha1_80;
        let mut key = mk(suite);
        key.mki = Some(vec![0, 0, 0, 1]);
        let mut tx = Context::new(suite, &key, Options::default()).expect("tx");
        let mut rx = Context::new(suite, &key, Options::default()).expect("rx");
        let clear = rtp(1, b"x");
        let mut p = clear.clone();
        tx.protect_rtp(&mut p).expect("protect");
        assert_eq!(p.len(), clear.len() + 4 + 10);
        rx.unprotect_rtp(&mut p).expect("unprotect");
        assert_eq!(p, clear);
    }

    #[test]
    fn restart_far_behind_is_resynchronised() {
        let suite = Suite::AesCm128HmacSha1_80;
        let t0 = std::time::Instant::now();
        let at = |n: u64| t0 + std::time::Duration::from_millis(20 * n);
        let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
        let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
        for seq in 40_000..40_010u16 {
            let mut p = rtp(seq, b"a");
            tx.protect_rtp(&mut p).expect("p");
            rx.unprotect_rtp_at(at(u64::from(seq - 40_000)), &mut p).expect("u");
        }
        let mut tx2 = Context::new(suite, &mk(suite), Options::default()).expect("tx2");
        let mut results = Vec::new();
        for seq in 100..200u16 {
            let mut p = rtp(seq, b"b");
            tx2.protect_rtp(&mut p).expect("p");
            results.push(rx.unprotect_rtp_at(at(100 + u64::from(seq)), &mut p).is_ok());
        }
        // A sender that restarted, at 20 ms a packet: the first 31 are refused as too old, then
        // the stream is followed.
        assert!(results[..31].iter().all(|ok| !ok));
        assert!(results[31..].iter().all(|ok| *ok), "{results:?}");
        // Without resynchronisation the stream stays refused.
        let opts = Options { resync_after: None, ..Options::default() };
        let mut strict = Context::new(suite, &mk(suite), opts).expect("rx");
        let mut tx3 = Context::new(suite, &mk(suite), Options::default()).expect("tx3");
        let mut tx4 = Context::new(suite, &mk(suite), Options::default()).expect("tx4");
        let mut p = rtp(40_000, b"c");
        tx3.protect_rtp(&mut p).expect("p");
        strict.unprotect_rtp(&mut p).expect("u");
        for seq in 100..200u16 {
            let mut p = rtp(seq, b"d");
            tx4.protect_rtp(&mut p).expect("p");
            assert!(strict.unprotect_rtp_at(at(u64::from(seq)), &mut p).is_err());
        }
    }

    /// RFC 3711 §3.3.2: recorded packets replayed once they have left the window are discarded,
    /// however many: in a burst (faster than any sender), between the live stream's packets, or
    /// without arrival times at all. Only a paced run with nothing newer in between resyncs.
    #[test]
    fn replayed_old_packets_never_resynchronise() {
        let suite = Suite::AesCm128HmacSha1_80;
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + std::time::Duration::from_millis(n);
        let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
        let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
        let mut recorded = Vec::new();
        let mut live = |seq: u16, rx: &mut Context, t: u64| {
            let mut p = rtp(seq, b"live");
            tx.protect_rtp(&mut p).expect("p");
            rx.unprotect_rtp_at(ms(t), &mut p).is_ok()
        };
        // 300 live packets; the attacker records the first 100.
        let mut tx_copy = Context::new(suite, &mk(suite), Options::default()).expect("copy");
        for seq in 1000..1300u16 {
            if seq < 1100 {
                let mut p = rtp(seq, b"live");
                tx_copy.protect_rtp(&mut p).expect("p");
                recorded.push(p);
            }
            assert!(live(seq, &mut rx, 20 * u64::from(seq - 1000)));
        }
        // A burst of all 100, a tenth of a millisecond apart: every one refused.
        for (i, p) in recorded.iter().enumerate() {
            let mut p = p.clone();
            assert!(rx.unprotect_rtp_at(ms(7000 + i as u64 / 10), &mut p).is_err(), "burst packet {i}");
        }
        // Paced like a sender, but the live stream goes on in between: refused.
        for (next_live, (i, p)) in (1300u16..).zip(recorded.iter().enumerate()) {
            let t = 8000 + 20 * i as u64;
            let mut p = p.clone();
            assert!(rx.unprotect_rtp_at(ms(t), &mut p).is_err(), "interleaved packet {i}");
            assert!(live(next_live, &mut rx, t + 10));
        }
        // Without arrival times: refused.
        for p in &recorded {
            let mut p = p.clone();
            assert!(rx.unprotect_rtp(&mut p).is_err());
        }
    }

    #[test]
    fn sequence_jump_after_hold_is_followed() {
        let suite = Suite::AesCm128HmacSha1_80;
        let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
        let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
        for seq in 100..110u16 {
            let mut p = rtp(seq, b"a");
            tx.protect_rtp(&mut p).expect("p");
            rx.unprotect_rtp(&mut p).expect("u");
        }
        // A peer that restarts its numbering far behind after a hold.
        let mut tx2 = Context::new(suite, &mk(suite), Options::default()).expect("tx2");
        let mut accepted = 0;
        for seq in 50_000..50_100u16 {
            let mut p = rtp(seq, b"b");
            tx2.protect_rtp(&mut p).expect("p");
            if rx.unprotect_rtp(&mut p).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted >= 60, "the stream recovered: {accepted}");
    }

    const SUITES: [Suite; 6] = ALL_SUITES;

    /// The padding count is encrypted: an SRTP packet with the P bit must
    /// not be judged by its last (ciphertext or tag) byte.
    #[test]
    fn padded_packets_unprotect() {
        for suite in SUITES {
            let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
            let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
            for seq in 0..64u16 {
                let mut clear = Vec::new();
                let header = crate::rtp::RtpHeader { seq, ssrc: 7, ..Default::default() };
                header.write(&[seq as u8; 161], 16, &mut clear).expect("rtp");
                assert_ne!(clear[0] & 0x20, 0, "padded");
                let mut p = clear.clone();
                tx.protect_rtp(&mut p).expect("protect");
                rx.unprotect_rtp(&mut p).unwrap_or_else(|e| panic!("{suite:?} seq {seq}: {e}"));
                assert_eq!(p, clear);
            }
        }
    }

    /// Forged packets carrying fresh SSRCs cost no memory: a stream's state
    /// exists only once one of its packets authenticated.
    #[test]
    fn forged_ssrcs_create_no_state() {
        for suite in SUITES {
            let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
            for ssrc in 0..1000u32 {
                let mut p = rtp(1, &[0; 40]);
                p[8..12].copy_from_slice(&ssrc.to_be_bytes());
                p.extend_from_slice(&[0; 16]);
                assert_eq!(rx.unprotect_rtp(&mut p), Err(Error::AuthFailed));
                let mut r = vec![0x80, 200, 0, 1, 0, 0, 0, 0, 0x80, 0, 0, 1];
                r[4..8].copy_from_slice(&ssrc.to_be_bytes());
                r.extend_from_slice(&[0; 16]);
                assert_eq!(rx.unprotect_rtcp(&mut r), Err(Error::AuthFailed));
            }
            assert!(rx.streams.is_empty(), "{suite:?}");
        }
    }

    /// A packet sent late, after the sequence number wrapped, keeps the
    /// rollover counter it belongs to.
    #[test]
    fn late_packet_after_wrap_keeps_its_roc() {
        for suite in SUITES {
            let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
            let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
            let mut late = None;
            for seq in [65533u16, 65534, 0, 1] {
                let mut p = rtp(seq, b"x");
                tx.protect_rtp(&mut p).expect("protect");
                if seq == 65534 {
                    late = Some(p);
                } else {
                    rx.unprotect_rtp(&mut p).expect("unprotect");
                }
            }
            let mut p = rtp(65535, b"late");
            tx.protect_rtp(&mut p).expect("protect");
            rx.unprotect_rtp(&mut p).expect("late packet with ROC 0");
            rx.unprotect_rtp(&mut late.expect("kept")).expect("reordered packet");
            let mut p = rtp(2, b"y");
            tx.protect_rtp(&mut p).expect("protect");
            rx.unprotect_rtp(&mut p).expect("ROC 1 goes on");
            assert_eq!(rx.streams[&0xcafe].roc, 1);
            assert_eq!(tx.streams[&0xcafe].tx_roc, 1);
        }
    }

    #[test]
    fn mki_round_trip_every_suite_and_srtcp_replay() {
        for suite in SUITES {
            let mut key = mk(suite);
            key.mki = Some(vec![9, 8]);
            let mut tx = Context::new(suite, &key, Options::default()).expect("tx");
            let mut rx = Context::new(suite, &key, Options::default()).expect("rx");
            let clear = rtp(3, &[1; 20]);
            let mut p = clear.clone();
            tx.protect_rtp(&mut p).expect("protect");
            rx.unprotect_rtp(&mut p).expect("unprotect");
            assert_eq!(p, clear);
            let sr = vec![0x80, 200, 0, 1, 0, 0, 0xca, 0xfe];
            let mut p = sr.clone();
            tx.protect_rtcp(&mut p).expect("protect rtcp");
            assert_eq!(p.len(), 8 + 4 + 2 + suite.rtcp_tag_len());
            let mut again = p.clone();
            rx.unprotect_rtcp(&mut p).expect("unprotect rtcp");
            assert_eq!(p, sr);
            assert!(matches!(rx.unprotect_rtcp(&mut again), Err(Error::Replay(1))));
        }
    }

    #[test]
    fn srtcp_index_can_be_set_and_runs_out() {
        let suite = Suite::AesCm128HmacSha1_80;
        let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
        let sr = vec![0x80, 200, 0, 1, 0, 0, 0xca, 0xfe];
        tx.set_rtcp_index(Ssrc(0xcafe), MAX_SRTCP_INDEX);
        let mut p = sr.clone();
        tx.protect_rtcp(&mut p).expect("last index");
        assert_eq!(p[8..12], [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(tx.protect_rtcp(&mut sr.clone()), Err(Error::KeyExhausted));
    }

    /// RFC 4568 §6.1: a master key's lifetime counts every packet protected under it, SRTP and
    /// SRTCP, whatever the stream; once spent, nothing more is protected with it.
    #[test]
    fn a_master_key_lifetime_counts_every_packet_under_it() {
        let suite = Suite::AesCm128HmacSha1_80;
        let key = MasterKey { lifetime: Some(10), ..mk(suite) };
        let mut tx = Context::new(suite, &key, Options::default()).expect("tx");
        let sr = vec![0x80, 200, 0, 1, 0, 0, 0xca, 0xfe];
        for seq in 0..6u16 {
            tx.protect_rtp(&mut rtp(seq, b"a")).expect("rtp");
        }
        for _ in 0..4 {
            tx.protect_rtcp(&mut sr.clone()).expect("rtcp");
        }
        let mut other = rtp(1, b"b");
        other[8..12].copy_from_slice(&0x0bad_f00du32.to_be_bytes());
        assert_eq!(tx.protect_rtp(&mut other), Err(Error::KeyExhausted), "another stream, the same key");
        assert_eq!(tx.protect_rtcp(&mut sr.clone()), Err(Error::KeyExhausted));
    }

    /// RFC 7714 erratum 4938: the 96-bit GCM master salt enters the KDF
    /// multiplied by 2^16, i.e. as `salt || 00 00`. The expected packet is
    /// what libsrtp2 2.5.0 (`tests/libsrtp2/srtp_peer.c`) writes for the
    /// same master key, so the derivation is pinned even without libsrtp2.
    #[test]
    fn gcm_master_salt_is_left_aligned_like_libsrtp2() {
        let (key, salt) = (h("000102030405060708090a0b0c0d0e0f"), h("6465666768696a6b6c6d6e6f"));
        let padded = [&salt[..], &[0, 0]].concat();
        for label in 0..6 {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            derive(&key, &salt, label, &mut a).expect("derive");
            derive(&key, &padded, label, &mut b).expect("derive");
            assert_eq!(a, b, "label {label}");
        }
        let mk = MasterKey { key, salt, mki: None, lifetime: None };
        let mut tx = Context::new(Suite::AeadAes128Gcm, &mk, Options::default()).expect("tx");
        let mut p = h("80000001 00000000 0000cafe 0102030405");
        tx.protect_rtp(&mut p).expect("protect");
        assert_eq!(p, h("80000001 00000000 0000cafe 56147bb113 ba12e37d08ee5268c4d6406a488ff110"));
    }
}
