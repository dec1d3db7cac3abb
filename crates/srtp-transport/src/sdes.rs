//! SDES key parameters (RFC 4568 section 6.1): `inline:<key||salt>|<lifetime>|<MKI>:<length>`.

use crate::error::Error;
use crate::srtp::{MasterKey, Suite};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Parses the key-params of an `a=crypto` line for `suite`.
pub fn parse_key_params(suite: Suite, params: &str) -> Result<MasterKey, Error> {
    // Several keys may be listed with ';' (MKI-based rollover); we use the first.
    let first = params.split(';').next().unwrap_or_default().trim();
    let inline = first.strip_prefix("inline:").ok_or(Error::BadKey("only inline keys are supported"))?;
    let mut parts = inline.split('|');
    let b64 = parts.next().unwrap_or_default();
    let raw = STANDARD
        .decode(b64.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim_end_matches('=')))
        .map_err(|_| Error::BadKey("key is not base64"))?;
    if raw.len() != suite.key_len() + suite.salt_len() {
        return Err(Error::BadKey("key and salt length does not fit the suite"));
    }
    let (key, salt) = raw.split_at(suite.key_len());
    let mut mk = MasterKey { key: key.to_vec(), salt: salt.to_vec(), mki: None, lifetime: None };
    for p in parts {
        if let Some((value, len)) = p.split_once(':') {
            let value: u64 = value.parse().map_err(|_| Error::BadKey("MKI value"))?;
            let len: usize = len.parse().map_err(|_| Error::BadKey("MKI length"))?;
            // RFC 4568 §6.1: 1 to 128 bytes, holding the value (big-endian, zeros before it).
            if !(1..=128).contains(&len) || (len < 8 && value >> (8 * len) != 0) {
                return Err(Error::BadKey("MKI length must be 1..=128 bytes and hold the value"));
            }
            let mut mki = vec![0u8; len];
            let be = value.to_be_bytes();
            let n = len.min(8);
            mki[len - n..].copy_from_slice(&be[8 - n..]);
            mk.mki = Some(mki);
        } else if let Some(exp) = p.strip_prefix("2^") {
            let e: u32 = exp.parse().map_err(|_| Error::BadKey("lifetime exponent"))?;
            if e > 48 {
                return Err(Error::BadKey("lifetime above 2^48"));
            }
            mk.lifetime = Some(1u64 << e);
        } else {
            let v: u64 = p.parse().map_err(|_| Error::BadKey("lifetime"))?;
            mk.lifetime = Some(v);
        }
    }
    Ok(mk)
}

/// Writes key-params for a key: `inline:<base64>` plus MKI when present.
pub fn format_key_params(mk: &MasterKey) -> String {
    let mut raw = mk.key.clone();
    raw.extend_from_slice(&mk.salt);
    let mut out = format!("inline:{}", STANDARD.encode(raw));
    if let Some(mki) = &mk.mki {
        let value = mki.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        out.push_str(&format!("|{value}:{}", mki.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4568_example() {
        // RFC 4568 section 9.1's key-params.
        let mk =
            parse_key_params(Suite::AesCm128HmacSha1_80, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4")
                .expect("parse");
        assert_eq!(mk.lifetime, Some(1 << 20));
        assert_eq!(mk.mki, Some(vec![0, 0, 0, 1]));
        assert_eq!(mk.key.len(), 16);
        assert_eq!(mk.salt.len(), 14);
        assert_eq!(format_key_params(&mk), "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4");
    }

    /// Every suite's key-params round-trip, split into its own key and salt lengths (32 + 14
    /// for AES-256 counter mode, 32 + 12 for AEAD_AES_256_GCM).
    #[test]
    fn every_suite_round_trips_with_its_lengths() {
        for name in ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80", "AEAD_AES_256_GCM"] {
            let suite = Suite::from_sdes_name(name).expect("known");
            let mk = MasterKey {
                key: (0..suite.key_len() as u8).collect(),
                salt: (100..100 + suite.salt_len() as u8).collect(),
                mki: Some(vec![7]),
                lifetime: None,
            };
            let back = parse_key_params(suite, &format_key_params(&mk)).expect("parses");
            assert_eq!(back, mk, "{name}");
        }
        let k128 = format_key_params(&MasterKey { key: vec![1; 16], salt: vec![2; 14], mki: None, lifetime: None });
        assert!(parse_key_params(Suite::AesCm256HmacSha1_80, &k128).is_err(), "a 128-bit key for a 256-bit suite");
    }

    #[test]
    fn rejects_bad_params() {
        let s = Suite::AesCm128HmacSha1_80;
        assert!(parse_key_params(s, "uri:http://x").is_err());
        assert!(parse_key_params(s, "inline:!!!!").is_err());
        assert!(parse_key_params(s, "inline:AAAA").is_err(), "too short");
        assert!(parse_key_params(s, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^99").is_err());
        assert!(parse_key_params(s, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|300:1").is_err());
        assert!(parse_key_params(s, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0").is_err());
        assert!(parse_key_params(s, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:129").is_err());
    }

    /// RFC 4568 §6.1: MKI lengths run to 128 bytes; the value sits at the end, big-endian.
    #[test]
    fn long_mkis() {
        let s = Suite::AesCm128HmacSha1_80;
        let mk = parse_key_params(s, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|258:8").expect("8 bytes");
        assert_eq!(mk.mki, Some(vec![0, 0, 0, 0, 0, 0, 1, 2]));
        let mk = parse_key_params(s, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|5:16").expect("16 bytes");
        assert_eq!(mk.mki.as_ref().map(Vec::len), Some(16));
        assert_eq!(mk.mki.as_ref().and_then(|m| m.last()), Some(&5));
        assert_eq!(parse_key_params(s, &format_key_params(&mk)).expect("round trip"), mk);
        // And SRTP carries it: a packet protected under it comes back.
        let mut tx = crate::srtp::Context::new(s, &mk, crate::srtp::Options::default()).expect("tx");
        let mut rx = crate::srtp::Context::new(s, &mk, crate::srtp::Options::default()).expect("rx");
        let clear: Vec<u8> = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9].into_iter().chain([7u8; 20]).collect();
        let mut p = clear.clone();
        tx.protect_rtp(&mut p).expect("protect");
        assert_eq!(p.len(), clear.len() + 16 + 10, "the 16-byte MKI and the tag");
        rx.unprotect_rtp(&mut p).expect("unprotect");
        assert_eq!(p, clear);
        assert!(parse_key_params(Suite::AeadAes128Gcm, "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR").is_err());
    }
}
