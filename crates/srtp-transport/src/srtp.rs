//! SRTP and SRTCP (RFC 3711) with AES-CM + HMAC-SHA1 and AEAD AES-GCM
//! (RFC 7714), per-SSRC rollover counters and replay windows.

use crate::error::Error;
use crate::replay::ReplayWindow;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes128Gcm;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::collections::HashMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// XORs `data` with the AES counter-mode keystream starting at `iv`,
/// sixteen blocks at a time so AES-NI can pipeline them.
fn aes_ctr(aes: &Aes128, iv: u128, data: &mut [u8]) {
    let mut counter = iv;
    let mut blocks = [aes::Block::default(); 16];
    for chunk in data.chunks_mut(256) {
        let n = chunk.len().div_ceil(16);
        for b in blocks.iter_mut().take(n) {
            b.copy_from_slice(&counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        aes.encrypt_blocks(&mut blocks[..n]);
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte ^= blocks[i / 16][i % 16];
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
}

impl Suite {
    /// The SDES (RFC 4568) name.
    pub fn sdes_name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// Looks up an SDES name.
    pub fn from_sdes_name(s: &str) -> Option<Suite> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm]
            .into_iter()
            .find(|x| x.sdes_name() == s)
    }

    /// The DTLS-SRTP protection profile number (RFC 5764, RFC 7714).
    pub fn dtls_profile(self) -> u16 {
        match self {
            Suite::AesCm128HmacSha1_80 => 0x0001,
            Suite::AesCm128HmacSha1_32 => 0x0002,
            Suite::AeadAes128Gcm => 0x0007,
        }
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes (14, or 12 for GCM).
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// SRTP authentication tag length.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }

    /// SRTCP authentication tag length.
    pub fn rtcp_tag_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 16,
            _ => 10,
        }
    }

    fn is_gcm(self) -> bool {
        self == Suite::AeadAes128Gcm
    }
}

/// A master key and salt. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// Master key (16 bytes).
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
    /// hold). `None` disables the re-synchronisation.
    pub resync_after: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options { replay_window: 128, resync_after: Some(32) }
    }
}

/// AES-CM PRF key derivation (RFC 3711 section 4.3.1) with a key
/// derivation rate of zero.
pub fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> Result<(), Error> {
    if master_key.len() != 16 {
        return Err(Error::BadKey("master key must be 16 bytes"));
    }
    // The 112-bit salt; a 96-bit (GCM) salt is multiplied by 2^16 (RFC 7714 erratum 4938).
    let mut x = [0u8; 16];
    match master_salt.len() {
        14 | 12 => x[..master_salt.len()].copy_from_slice(master_salt),
        _ => return Err(Error::BadKey("master salt must be 14 or 12 bytes")),
    }
    // key_id = label || r (48-bit index DIV kdr = 0), XORed at byte 7.
    x[7] ^= label;
    let cipher = Aes128::new_from_slice(master_key).map_err(|_| Error::BadKey("master key"))?;
    let mut block_no: u16 = 0;
    for chunk in out.chunks_mut(16) {
        let mut block = aes::Block::clone_from_slice(&x);
        block[14..16].copy_from_slice(&block_no.to_be_bytes());
        cipher.encrypt_block(&mut block);
        chunk.copy_from_slice(&block[..chunk.len()]);
        block_no = block_no.wrapping_add(1);
    }
    Ok(())
}

struct Keys {
    ctr: Option<Aes128>,
    gcm: Option<Aes128Gcm>,
    auth: Option<Hmac<Sha1>>,
    salt: [u8; 14],
}

impl Keys {
    fn new(suite: Suite, mk: &MasterKey, enc_label: u8) -> Result<Keys, Error> {
        let mut enc = [0u8; 16];
        derive(&mk.key, &mk.salt, enc_label, &mut enc)?;
        let mut salt = [0u8; 14];
        derive(&mk.key, &mk.salt, enc_label + 2, &mut salt[..suite.salt_len()])?;
        if suite.is_gcm() {
            let gcm = Aes128Gcm::new_from_slice(&enc).map_err(|_| Error::BadKey("session key"))?;
            return Ok(Keys { ctr: None, gcm: Some(gcm), auth: None, salt });
        }
        let mut auth_key = [0u8; 20];
        derive(&mk.key, &mk.salt, enc_label + 1, &mut auth_key)?;
        let auth = <Hmac<Sha1> as Mac>::new_from_slice(&auth_key).map_err(|_| Error::BadKey("auth key"))?;
        let ctr = Aes128::new_from_slice(&enc).map_err(|_| Error::BadKey("session key"))?;
        Ok(Keys { ctr: Some(ctr), gcm: None, auth: Some(auth), salt })
    }

    /// AES-CM IV: (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
    fn cm_iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        if let Some(aes) = &self.ctr {
            let iv = u128::from_be_bytes(self.cm_iv(ssrc, index));
            aes_ctr(aes, iv, data);
        }
    }

    fn tag(&self, parts: &[&[u8]], len: usize) -> [u8; 20] {
        let mut out = [0u8; 20];
        if let Some(h) = &self.auth {
            let mut m = h.clone();
            for p in parts {
                m.update(p);
            }
            out.copy_from_slice(&m.finalize().into_bytes());
        }
        let _ = len;
        out
    }

    /// GCM IV (RFC 7714 8.1 / 9.1): 00 00 || SSRC || word || low, XOR salt.
    fn gcm_iv(&self, ssrc: u32, word: u32, low: u16) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&word.to_be_bytes());
        iv[10..12].copy_from_slice(&low.to_be_bytes());
        for (a, b) in iv.iter_mut().zip(self.salt.iter()) {
            *a ^= b;
        }
        iv
    }
}

#[derive(Debug, Clone, Default)]
struct Stream {
    // Receive side.
    roc: u32,
    s_l: u16,
    seen: bool,
    window: ReplayWindow,
    old_run: u16,
    old_last: Option<u64>,
    rtcp_window: ReplayWindow,
    // Send side.
    tx_roc: u32,
    tx_last: Option<u16>,
    tx_rtcp_index: u32,
    packets: u64,
}

/// One direction's SRTP/SRTCP context: protect with the local key, or
/// unprotect with the peer's. Streams are tracked per SSRC.
pub struct Context {
    suite: Suite,
    rtp: Keys,
    rtcp: Keys,
    mki: Option<Vec<u8>>,
    lifetime: u64,
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

impl Context {
    /// Derives the session keys from a master key.
    pub fn new(suite: Suite, mk: &MasterKey, options: Options) -> Result<Context, Error> {
        if mk.key.len() != suite.key_len() || mk.salt.len() != suite.salt_len() {
            return Err(Error::BadKey("master key or salt length does not fit the suite"));
        }
        if !(64..=1024).contains(&options.replay_window) {
            return Err(Error::BadKey("replay window must be 64..=1024 packets"));
        }
        Ok(Context {
            suite,
            rtp: Keys::new(suite, mk, 0)?,
            rtcp: Keys::new(suite, mk, 3)?,
            mki: mk.mki.clone(),
            lifetime: mk.lifetime.unwrap_or(MAX_SRTP_PACKETS).min(MAX_SRTP_PACKETS),
            streams: HashMap::new(),
            options,
        })
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

    fn stream(&mut self, ssrc: u32) -> &mut Stream {
        let w = self.options.replay_window;
        self.streams.entry(ssrc).or_insert_with(|| Stream {
            window: ReplayWindow::new(w),
            rtcp_window: ReplayWindow::new(w),
            ..Stream::default()
        })
    }

    /// Encrypts and authenticates an RTP packet in place (appends MKI and tag).
    pub fn protect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let header_len = crate::rtp::RtpPacket::parse(pkt)?.header_len();
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let suite = self.suite;
        let lifetime = self.lifetime;
        let s = self.stream(ssrc);
        if s.packets >= lifetime {
            return Err(Error::KeyExhausted);
        }
        // Sender ROC: increments when the sequence number wraps.
        if let Some(last) = s.tx_last {
            if seq < last && last - seq > 0x8000 {
                s.tx_roc = s.tx_roc.wrapping_add(1);
            }
        }
        if s.tx_last.is_none_or(|l| seq.wrapping_sub(l) < 0x8000) {
            s.tx_last = Some(seq);
        }
        s.packets += 1;
        let roc = s.tx_roc;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        if suite.is_gcm() {
            let iv = self.rtp.gcm_iv(ssrc, roc, seq);
            let gcm = self.rtp.gcm.as_ref().ok_or(Error::BadKey("no GCM key"))?;
            let (head, body) = pkt.split_at_mut(header_len);
            let tag = gcm.encrypt_in_place_detached(&iv.into(), head, body).map_err(|_| Error::BufferTooSmall)?;
            if let Some(m) = &self.mki {
                pkt.extend_from_slice(m);
            }
            pkt.extend_from_slice(&tag);
            return Ok(());
        }
        self.rtp.keystream(ssrc, index, &mut pkt[header_len..]);
        let tag = self.rtp.tag(&[pkt, &roc.to_be_bytes()], suite.rtp_tag_len());
        if let Some(m) = &self.mki {
            pkt.extend_from_slice(m);
        }
        pkt.extend_from_slice(&tag[..suite.rtp_tag_len()]);
        Ok(())
    }

    /// Verifies and decrypts an SRTP packet in place (strips MKI and tag).
    pub fn unprotect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let suite = self.suite;
        let tag_len = suite.rtp_tag_len();
        let mki_len = self.mki.as_ref().map_or(0, Vec::len);
        if pkt.len() < 12 + tag_len + mki_len {
            return Err(Error::Malformed { what: "SRTP", reason: "shorter than header and tag" });
        }
        let end = pkt.len() - tag_len - mki_len;
        if let Some(m) = &self.mki {
            if pkt[end..end + mki_len] != m[..] {
                return Err(Error::BadKey("unknown MKI"));
            }
        }
        let header_len = crate::rtp::RtpPacket::parse(&pkt[..end])?.header_len();
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let resync = self.options.resync_after;
        let s = self.stream(ssrc).clone();
        // RFC 3711 3.3.1: the index closest to the highest seen.
        let guess = if !s.seen {
            s.roc
        } else if s.s_l < 0x8000 {
            if i32::from(seq) - i32::from(s.s_l) > 0x8000 {
                s.roc.wrapping_sub(1)
            } else {
                s.roc
            }
        } else if i32::from(s.s_l) - 0x8000 > i32::from(seq) {
            s.roc.wrapping_add(1)
        } else {
            s.roc
        };
        // Try the estimate, then its neighbours: a sequence jump of more
        // than half the space (seen after long holds) must not lose the stream.
        let mut chosen = None;
        for roc in [guess, guess.wrapping_add(1), guess.wrapping_sub(1)] {
            if roc == u32::MAX && guess == 0 && s.roc == 0 {
                continue;
            }
            if self.verify_rtp(pkt, end, header_len, ssrc, roc, seq) {
                chosen = Some(roc);
                break;
            }
        }
        let Some(roc) = chosen else { return Err(Error::AuthFailed) };
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let stream = self.stream(ssrc);
        let highest = u64::from(stream.roc) << 16 | u64::from(stream.s_l);
        let mut resynced = false;
        if stream.seen {
            if let Err(e) = stream.window.check(index) {
                // Too old (or repeated) but authentic: an increasing run of
                // these means the sender restarted its numbering.
                let in_run = stream.old_last.is_some_and(|l| index == l + 1);
                stream.old_run = if in_run { stream.old_run + 1 } else { 1 };
                stream.old_last = Some(index);
                match resync {
                    Some(n) if stream.old_run >= n && !stream.window.contains(index) => {
                        stream.window = ReplayWindow::new(stream.window.size());
                        resynced = true;
                    }
                    _ => return Err(e),
                }
            }
        }
        stream.old_run = 0;
        stream.old_last = None;
        stream.window.accept(index);
        if !stream.seen || index > highest || resynced {
            stream.roc = roc;
            stream.s_l = seq;
        }
        stream.seen = true;
        // Decrypt.
        if suite.is_gcm() {
            let iv = self.rtp.gcm_iv(ssrc, roc, seq);
            let gcm = self.rtp.gcm.as_ref().ok_or(Error::BadKey("no GCM key"))?;
            let tag = aes_gcm::Tag::clone_from_slice(&pkt[end + mki_len..]);
            let (head, body) = pkt[..end].split_at_mut(header_len);
            gcm.decrypt_in_place_detached(&iv.into(), head, body, &tag).map_err(|_| Error::AuthFailed)?;
        } else {
            self.rtp.keystream(ssrc, index, &mut pkt[header_len..end]);
        }
        pkt.truncate(end);
        Ok(())
    }

    fn verify_rtp(&self, pkt: &[u8], end: usize, header_len: usize, ssrc: u32, roc: u32, seq: u16) -> bool {
        let tag_start = pkt.len() - self.suite.rtp_tag_len();
        if self.suite.is_gcm() {
            // GCM verification is the decryption itself: do it on a copy.
            let Some(gcm) = self.rtp.gcm.as_ref() else { return false };
            let iv = self.rtp.gcm_iv(ssrc, roc, seq);
            let tag = aes_gcm::Tag::clone_from_slice(&pkt[tag_start..]);
            let mut body = pkt[header_len..end].to_vec();
            return gcm.decrypt_in_place_detached(&iv.into(), &pkt[..header_len], &mut body, &tag).is_ok();
        }
        let tag = self.rtp.tag(&[&pkt[..end], &roc.to_be_bytes()], self.suite.rtp_tag_len());
        bool::from(tag[..self.suite.rtp_tag_len()].ct_eq(&pkt[tag_start..]))
    }

    /// Encrypts and authenticates a (compound) RTCP packet in place.
    pub fn protect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        if pkt.len() < 8 || pkt[0] >> 6 != 2 {
            return Err(Error::Malformed { what: "RTCP", reason: "not an RTCP packet" });
        }
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let suite = self.suite;
        let s = self.stream(ssrc);
        if s.tx_rtcp_index >= MAX_SRTCP_INDEX {
            return Err(Error::KeyExhausted);
        }
        s.tx_rtcp_index += 1;
        let index = s.tx_rtcp_index;
        let e_index = (index | 0x8000_0000).to_be_bytes();
        if suite.is_gcm() {
            let iv = self.rtcp.gcm_iv(ssrc, u32::from((index >> 16) as u16), index as u16);
            let iv = gcm_rtcp_iv(&self.rtcp, ssrc, index, iv);
            let gcm = self.rtcp.gcm.as_ref().ok_or(Error::BadKey("no GCM key"))?;
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(&pkt[..8]);
            aad[8..].copy_from_slice(&e_index);
            let tag =
                gcm.encrypt_in_place_detached(&iv.into(), &aad, &mut pkt[8..]).map_err(|_| Error::BufferTooSmall)?;
            pkt.extend_from_slice(&e_index);
            if let Some(m) = &self.mki {
                pkt.extend_from_slice(m);
            }
            pkt.extend_from_slice(&tag);
            return Ok(());
        }
        self.rtcp.keystream(ssrc, u64::from(index), &mut pkt[8..]);
        pkt.extend_from_slice(&e_index);
        let tag = self.rtcp.tag(&[pkt], suite.rtcp_tag_len());
        if let Some(m) = &self.mki {
            pkt.extend_from_slice(m);
        }
        pkt.extend_from_slice(&tag[..suite.rtcp_tag_len()]);
        Ok(())
    }

    /// Verifies and decrypts an SRTCP packet in place.
    pub fn unprotect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let suite = self.suite;
        let tag_len = suite.rtcp_tag_len();
        let mki_len = self.mki.as_ref().map_or(0, Vec::len);
        if pkt.len() < 8 + 4 + tag_len + mki_len || pkt[0] >> 6 != 2 {
            return Err(Error::Malformed { what: "SRTCP", reason: "too short" });
        }
        let tag_start = pkt.len() - tag_len;
        let idx_start = tag_start - mki_len - 4;
        if let Some(m) = &self.mki {
            if pkt[idx_start + 4..tag_start] != m[..] {
                return Err(Error::BadKey("unknown MKI"));
            }
        }
        let e_index = u32::from_be_bytes([pkt[idx_start], pkt[idx_start + 1], pkt[idx_start + 2], pkt[idx_start + 3]]);
        let encrypted = e_index & 0x8000_0000 != 0;
        let index = e_index & MAX_SRTCP_INDEX;
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        if suite.is_gcm() {
            let iv = gcm_rtcp_iv(&self.rtcp, ssrc, index, [0; 12]);
            let gcm = self.rtcp.gcm.as_ref().ok_or(Error::BadKey("no GCM key"))?;
            let tag = aes_gcm::Tag::clone_from_slice(&pkt[tag_start..]);
            let mut aad = Vec::with_capacity(12);
            aad.extend_from_slice(&pkt[..8]);
            aad.extend_from_slice(&e_index.to_be_bytes());
            if !encrypted {
                // Authentication only: everything is associated data.
                let mut aad = pkt[..idx_start].to_vec();
                aad.extend_from_slice(&e_index.to_be_bytes());
                gcm.decrypt_in_place_detached(&iv.into(), &aad, &mut [], &tag).map_err(|_| Error::AuthFailed)?;
            } else {
                let (_, body) = pkt[..idx_start].split_at_mut(8);
                gcm.decrypt_in_place_detached(&iv.into(), &aad, body, &tag).map_err(|_| Error::AuthFailed)?;
            }
        } else {
            let tag = self.rtcp.tag(&[&pkt[..idx_start + 4]], tag_len);
            if !bool::from(tag[..tag_len].ct_eq(&pkt[tag_start..])) {
                return Err(Error::AuthFailed);
            }
            if encrypted {
                let (body, _) = pkt[8..].split_at_mut(idx_start - 8);
                self.rtcp.keystream(ssrc, u64::from(index), body);
            }
        }
        let s = self.stream(ssrc);
        s.rtcp_window.check(u64::from(index))?;
        s.rtcp_window.accept(u64::from(index));
        pkt.truncate(idx_start);
        Ok(())
    }
}

/// RFC 7714 9.1: 00 00 || SSRC || 00 00 || 0 || 31-bit index, XOR salt.
fn gcm_rtcp_iv(keys: &Keys, ssrc: u32, index: u32, _unused: [u8; 12]) -> [u8; 12] {
    keys.gcm_iv(ssrc, u32::from((index >> 16) as u16), (index & 0xffff) as u16)
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
        let keys = Keys {
            ctr: Some(Aes128::new_from_slice(&h("2B7E151628AED2A6ABF7158809CF4F3C")).expect("key")),
            gcm: None,
            auth: None,
            salt: h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().expect("salt"),
        };
        let mut data = vec![0u8; 48];
        keys.keystream(0, 0, &mut data);
        assert_eq!(
            data,
            h("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    fn mk(suite: Suite) -> MasterKey {
        MasterKey {
            key: (0..16).collect(),
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

    #[test]
    fn round_trip_every_suite_rtp_and_rtcp() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm] {
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
        let mut tx = Context::new(suite, &mk(suite), Options::default()).expect("tx");
        let mut rx = Context::new(suite, &mk(suite), Options::default()).expect("rx");
        for seq in 40_000..40_010u16 {
            let mut p = rtp(seq, b"a");
            tx.protect_rtp(&mut p).expect("p");
            rx.unprotect_rtp(&mut p).expect("u");
        }
        let mut tx2 = Context::new(suite, &mk(suite), Options::default()).expect("tx2");
        let mut results = Vec::new();
        for seq in 100..200u16 {
            let mut p = rtp(seq, b"b");
            tx2.protect_rtp(&mut p).expect("p");
            results.push(rx.unprotect_rtp(&mut p).is_ok());
        }
        // The first 31 are refused as too old, then the stream is followed.
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
            assert!(strict.unprotect_rtp(&mut p).is_err());
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
}
