//! RFC 7714 sections 16 and 17: the AEAD_AES_128_GCM SRTP and SRTCP
//! examples, fed through `Context` (data in `tests/data/rfc7714/`).

use srtp_transport::{Context, Error, Options, SessionKeys, Ssrc, Suite};
use std::collections::HashMap;
use std::path::Path;

/// Reads a `name: hex` vector file (continuation lines are indented).
fn vector(name: &str) -> HashMap<String, Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc7714").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let (_, value) = fields.last_mut().unwrap_or_else(|| panic!("{name}: continuation first"));
            value.push_str(line);
        } else {
            let (key, value) = line.split_once(':').unwrap_or_else(|| panic!("{name}: no colon in {line:?}"));
            fields.push((key.trim().to_string(), value.to_string()));
        }
    }
    fields
        .into_iter()
        .map(|(k, v)| {
            let hex: String = v.split_whitespace().collect();
            let bytes = hex::decode(&hex).unwrap_or_else(|e| panic!("{name}: {k}: {e}"));
            (k, bytes)
        })
        .collect()
}

fn field<'a>(v: &'a HashMap<String, Vec<u8>>, name: &str) -> &'a [u8] {
    v.get(name).unwrap_or_else(|| panic!("no field {name}"))
}

fn u32_field(v: &HashMap<String, Vec<u8>>, name: &str) -> u32 {
    u32::from_be_bytes(field(v, name).try_into().expect("4 bytes"))
}

/// A context keyed with the vector's session key and salt for both SRTP
/// and SRTCP, as the RFC's examples are.
fn context(v: &HashMap<String, Vec<u8>>) -> Context {
    let keys = SessionKeys { key: field(v, "key"), salt: field(v, "salt"), auth: &[] };
    Context::from_session_keys(Suite::AeadAes128Gcm, keys, keys, Options::default()).expect("context")
}

/// The vector files agree with themselves: the IV is built as RFC 7714
/// sections 8.1 and 9.1 say, from the salt, SSRC and index given.
#[test]
fn vector_files_are_consistent() {
    let v = vector("srtp_aead_aes_128_gcm.txt");
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(field(&v, "ssrc"));
    iv[6..10].copy_from_slice(field(&v, "roc"));
    iv[10..12].copy_from_slice(field(&v, "seq"));
    iv.iter_mut().zip(field(&v, "salt")).for_each(|(a, b)| *a ^= b);
    assert_eq!(iv[..], *field(&v, "iv"));
    assert_eq!(field(&v, "plain")[..12], *field(&v, "aad"));
    assert_eq!(field(&v, "protected").len(), field(&v, "plain").len() + 16);
    for name in ["srtcp_aead_aes_128_gcm.txt", "srtcp_aead_aes_128_gcm_tag_only.txt"] {
        let v = vector(name);
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(field(&v, "ssrc"));
        iv[8..12].copy_from_slice(field(&v, "index"));
        iv.iter_mut().zip(field(&v, "salt")).for_each(|(a, b)| *a ^= b);
        assert_eq!(iv[..], *field(&v, "iv"), "{name}");
        assert_eq!(field(&v, "protected").len(), field(&v, "plain").len() + 16 + 4, "{name}");
    }
}

#[test]
fn srtp_encryption() {
    let v = vector("srtp_aead_aes_128_gcm.txt");
    let mut ctx = context(&v);
    let mut pkt = field(&v, "plain").to_vec();
    ctx.protect_rtp(&mut pkt).expect("protect");
    assert_eq!(hex::encode(&pkt), hex::encode(field(&v, "protected")));
}

#[test]
fn srtp_decryption() {
    let v = vector("srtp_aead_aes_128_gcm.txt");
    let mut ctx = context(&v);
    let mut pkt = field(&v, "protected").to_vec();
    ctx.unprotect_rtp(&mut pkt).expect("unprotect");
    assert_eq!(hex::encode(&pkt), hex::encode(field(&v, "plain")));
    let mut again = field(&v, "protected").to_vec();
    assert!(matches!(ctx.unprotect_rtp(&mut again), Err(Error::Replay(_))));
}

#[test]
fn srtp_tampering_fails() {
    let v = vector("srtp_aead_aes_128_gcm.txt");
    let protected = field(&v, "protected");
    // Every byte but the sequence number, which only moves the IV too (and
    // so fails as well, checked separately below).
    for i in (0..protected.len()).filter(|i| !(2..4).contains(i)) {
        let mut ctx = context(&v);
        let mut pkt = protected.to_vec();
        pkt[i] ^= 0x01;
        assert!(ctx.unprotect_rtp(&mut pkt).is_err(), "byte {i} flipped was accepted");
    }
    let mut ctx = context(&v);
    let mut pkt = protected.to_vec();
    pkt[3] ^= 0x01;
    assert_eq!(ctx.unprotect_rtp(&mut pkt), Err(Error::AuthFailed));
}

#[test]
fn srtcp_encryption() {
    let v = vector("srtcp_aead_aes_128_gcm.txt");
    let mut ctx = context(&v);
    ctx.set_rtcp_index(Ssrc(u32_field(&v, "ssrc")), u32_field(&v, "index"));
    let mut pkt = field(&v, "plain").to_vec();
    ctx.protect_rtcp(&mut pkt).expect("protect");
    assert_eq!(hex::encode(&pkt), hex::encode(field(&v, "protected")));
    // The next packet carries the next index.
    let mut next = field(&v, "plain").to_vec();
    ctx.protect_rtcp(&mut next).expect("protect");
    assert_eq!(next[next.len() - 4..], ((u32_field(&v, "index") + 1) | 0x8000_0000).to_be_bytes());
}

#[test]
fn srtcp_decryption() {
    for name in ["srtcp_aead_aes_128_gcm.txt", "srtcp_aead_aes_128_gcm_tag_only.txt"] {
        let v = vector(name);
        let mut ctx = context(&v);
        let mut pkt = field(&v, "protected").to_vec();
        ctx.unprotect_rtcp(&mut pkt).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex::encode(&pkt), hex::encode(field(&v, "plain")), "{name}");
        let mut again = field(&v, "protected").to_vec();
        assert_eq!(ctx.unprotect_rtcp(&mut again), Err(Error::Replay(0x5d4)), "{name}");
    }
}

#[test]
fn srtcp_tampering_fails() {
    for name in ["srtcp_aead_aes_128_gcm.txt", "srtcp_aead_aes_128_gcm_tag_only.txt"] {
        let v = vector(name);
        let protected = field(&v, "protected");
        for i in 0..protected.len() {
            for bit in [0x01, 0x80] {
                let mut ctx = context(&v);
                let mut pkt = protected.to_vec();
                pkt[i] ^= bit;
                assert!(ctx.unprotect_rtcp(&mut pkt).is_err(), "{name}: byte {i} bit {bit:#x} flipped was accepted");
            }
        }
    }
}
