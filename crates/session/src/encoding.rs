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

/// Decodes base64 in the URL-safe or the standard alphabet (not mixed), with or without padding.
pub(crate) fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let standard = text.bytes().any(|b| b == b'+' || b == b'/');
    let url_safe = text.bytes().any(|b| b == b'-' || b == b'_');
    match (standard, url_safe) {
        (true, true) => None,
        (true, false) => STANDARD_LENIENT.decode(text).ok(),
        (false, _) => URL_SAFE_LENIENT.decode(text).ok(),
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
    fn mixed_alphabets_and_garbage_fail() {
        assert_eq!(decode_lenient("-/AA"), None);
        assert_eq!(decode_lenient("a"), None);
        assert_eq!(decode_lenient("ab~c"), None);
        assert_eq!(decode_lenient("AB=C"), None);
    }
}
