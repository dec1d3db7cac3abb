//! Lenient base64 for input we did not produce: either alphabet, padded or not (SDKs re-encode
//! session IDs; JWT libraries differ on padding).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const CANONICAL: GeneralPurposeConfig = LENIENT.with_decode_allow_trailing_bits(false);
const URL_SAFE_CANONICAL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CANONICAL);
const STANDARD_CANONICAL: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CANONICAL);

/// Decodes base64 in the URL-safe or the standard alphabet (not mixed), with or without padding.
pub(crate) fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    decode_with(text, &STANDARD_LENIENT, &URL_SAFE_LENIENT)
}

/// [`decode_lenient`], but the unused bits of the last character must be zero, as every encoder
/// writes them: for signatures, so one token cannot be written as several strings.
pub(crate) fn decode_canonical(text: &str) -> Option<Vec<u8>> {
    decode_with(text, &STANDARD_CANONICAL, &URL_SAFE_CANONICAL)
}

fn decode_with(text: &str, standard: &GeneralPurpose, url_safe: &GeneralPurpose) -> Option<Vec<u8>> {
    let is_standard = text.bytes().any(|b| b == b'+' || b == b'/');
    let is_url_safe = text.bytes().any(|b| b == b'-' || b == b'_');
    match (is_standard, is_url_safe) {
        (true, true) => None,
        (true, false) => standard.decode(text).ok(),
        (false, _) => url_safe.decode(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_alphabets_and_padding() {
        let bytes = [0xfbu8, 0xff, 0xbf, 0x01];
        for text in ["-_-_AQ", "-_-_AQ==", "+/+/AQ", "+/+/AQ=="] {
            assert_eq!(decode_lenient(text).as_deref(), Some(&bytes[..]), "{text}");
        }
    }

    #[test]
    fn canonical_refuses_trailing_bits() {
        // "AQ" is 0x01 with the last character's unused bits zero; "AR" sets one of them.
        assert_eq!(decode_canonical("AQ").as_deref(), Some(&[1u8][..]));
        assert_eq!(decode_lenient("AR").as_deref(), Some(&[1u8][..]));
        assert_eq!(decode_canonical("AR"), None);
    }

    #[test]
    fn mixed_alphabets_and_garbage_fail() {
        assert_eq!(decode_lenient("-/AA"), None);
        assert_eq!(decode_lenient("a"), None);
        assert_eq!(decode_lenient("ab~c"), None);
        assert_eq!(decode_lenient("AB=C"), None);
    }
}
