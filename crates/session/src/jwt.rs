//! Just enough JWT (RFC 7519) for the Vonage Video API: HS256 and RS256 over compact
//! serialisation. The algorithm is fixed by the credential the caller looked up, never chosen by
//! the token: `none` and every other `alg` are refused.

use hmac::{Hmac, Mac};
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::encoding::{decode_canonical, decode_lenient};
use crate::error::JwtError;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The signature algorithms the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 with a project's API secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an application's key pair.
    Rs256,
}

/// A decoded, **not yet verified** JWT.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    /// The header (a JSON object).
    pub header: Map<String, Value>,
    /// The claims (a JSON object).
    pub claims: Map<String, Value>,
}

impl<'a> UnverifiedJwt<'a> {
    /// Splits and decodes a compact JWT. Nothing is trusted until [`verify_hs256`] or
    /// [`verify_rs256`] succeeds.
    ///
    /// [`verify_hs256`]: UnverifiedJwt::verify_hs256
    /// [`verify_rs256`]: UnverifiedJwt::verify_rs256
    pub fn decode(token: &'a str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::NotThreeParts);
        };
        let signing_input = &token[..header.len() + 1 + claims.len()];
        let header = decode_object(header)?;
        let claims = decode_object(claims)?;
        // Canonical: a signature whose unused last bits were flipped is another string, refused.
        let signature = decode_canonical(signature).ok_or(JwtError::BadBase64)?;
        Ok(UnverifiedJwt { signing_input, signature, header, claims })
    }

    /// The `alg` of the header, if it is one we implement.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.header.get("alg").and_then(Value::as_str) {
            Some("HS256") => Some(Algorithm::Hs256),
            Some("RS256") => Some(Algorithm::Rs256),
            _ => None,
        }
    }

    /// Verifies an HS256 signature with `secret`; any other `alg` fails.
    pub fn verify_hs256(&self, secret: &[u8]) -> Result<(), JwtError> {
        if self.algorithm() != Some(Algorithm::Hs256) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::BadSignature)?;
        mac.update(self.signing_input.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&self.signature).map_err(|_| JwtError::BadSignature)
    }

    /// Verifies an RS256 signature with `key`; any other `alg` fails.
    pub fn verify_rs256(&self, key: &RsaPublicKey) -> Result<(), JwtError> {
        if self.algorithm() != Some(Algorithm::Rs256) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let digest = Sha256::digest(self.signing_input.as_bytes());
        key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &self.signature).map_err(|_| JwtError::BadSignature)
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim in whole seconds (integers, or floats as some libraries write them).
    pub fn claim_seconds(&self, name: &str) -> Option<i64> {
        seconds(self.claims.get(name)?)
    }
}

/// Reads a NumericDate: an integer, or a finite float truncated to whole seconds.
pub(crate) fn seconds(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    if f.is_finite() && f.abs() < 1e15 {
        Some(f as i64)
    } else {
        None
    }
}

fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = decode_lenient(part).ok_or(JwtError::BadBase64)?;
    match serde_json::from_slice::<UniqueKeys>(&bytes) {
        Ok(UniqueKeys(map)) => Ok(map),
        Err(_) => Err(JwtError::BadJson),
    }
}

/// A JSON object none of whose keys is given twice: `serde_json` keeps the last of two, so
/// `{"role":"subscriber","role":"moderator"}` would grant the second to whoever reads the first
/// (T1 tokens refuse a key given twice too).
struct UniqueKeys(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueKeys;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with each key once")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<UniqueKeys, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = entries.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom("a key given twice"));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueKeys(map))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// Signs `claims` as an HS256 JWT (`{"alg":"HS256","typ":"JWT"}`), for tests and for the
/// gateway's own signed callbacks.
pub fn sign_hs256(claims: &Map<String, Value>, secret: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let signing_input = format!("{header}.{body}");
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let tag = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::RsaPrivateKey;
    use serde_json::json;

    pub(crate) const TEST_PRIVATE_PEM: &str = include_str!("../tests/data/test-rsa-private.pem");
    pub(crate) const TEST_PUBLIC_PEM: &str = include_str!("../tests/data/test-rsa-public.pem");
    pub(crate) const OTHER_PRIVATE_PEM: &str = include_str!("../tests/data/other-rsa-private.pem");

    /// Builds a JWT with an arbitrary header, signed by `sign` over the signing input.
    pub(crate) fn build(header: Value, claims: Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    pub(crate) fn hs256(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
        move |input| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac key");
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
    }

    pub(crate) fn private_key(pem: &str) -> RsaPrivateKey {
        RsaPrivateKey::from_pkcs1_pem(pem).or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem)).expect("test key")
    }

    pub(crate) fn rs256(pem: &str) -> impl Fn(&[u8]) -> Vec<u8> {
        let key = private_key(pem);
        move |input| key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input)).expect("rsa sign")
    }

    fn public_key() -> RsaPublicKey {
        use rsa::pkcs8::DecodePublicKey;
        RsaPublicKey::from_public_key_pem(TEST_PUBLIC_PEM).expect("test public key")
    }

    #[test]
    fn hs256_round_trip_and_wrong_secret() {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!("123456"));
        let token = sign_hs256(&claims, b"secret");
        let jwt = UnverifiedJwt::decode(&token).expect("decode");
        assert_eq!(jwt.claim_str("iss"), Some("123456"));
        assert_eq!(jwt.verify_hs256(b"secret"), Ok(()));
        assert_eq!(jwt.verify_hs256(b"secreT"), Err(JwtError::BadSignature));
        assert_eq!(jwt.verify_rs256(&public_key()), Err(JwtError::AlgorithmNotAllowed));
    }

    #[test]
    fn rs256_verifies_only_with_the_right_key() {
        let header = json!({"alg": "RS256", "typ": "JWT"});
        let good = build(header.clone(), json!({"a": 1}), rs256(TEST_PRIVATE_PEM));
        let jwt = UnverifiedJwt::decode(&good).expect("decode");
        assert_eq!(jwt.verify_rs256(&public_key()), Ok(()));
        // An HS256 check of an RS256 token is refused by alg, whatever the key.
        assert_eq!(jwt.verify_hs256(b"anything"), Err(JwtError::AlgorithmNotAllowed));
        let other = build(header, json!({"a": 1}), rs256(OTHER_PRIVATE_PEM));
        let jwt = UnverifiedJwt::decode(&other).expect("decode");
        assert_eq!(jwt.verify_rs256(&public_key()), Err(JwtError::BadSignature));
    }

    #[test]
    fn alg_none_and_unknown_algs_are_refused() {
        for alg in ["none", "None", "HS512", "hs256", ""] {
            let token = build(json!({"alg": alg}), json!({}), |_| Vec::new());
            let jwt = UnverifiedJwt::decode(&token).expect("decode");
            assert_eq!(jwt.verify_hs256(b""), Err(JwtError::AlgorithmNotAllowed), "{alg}");
        }
        let token = build(json!({}), json!({}), hs256(b"k"));
        let jwt = UnverifiedJwt::decode(&token).expect("decode");
        assert_eq!(jwt.verify_hs256(b"k"), Err(JwtError::AlgorithmNotAllowed));
    }

    #[test]
    fn tampered_claims_fail_the_signature() {
        let token = build(json!({"alg": "HS256"}), json!({"iss": "1"}), hs256(b"k"));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(r#"{"iss":"2"}"#), parts[2]);
        let jwt = UnverifiedJwt::decode(&forged).expect("decode");
        assert_eq!(jwt.verify_hs256(b"k"), Err(JwtError::BadSignature));
    }

    #[test]
    fn hostile_shapes() {
        assert_eq!(UnverifiedJwt::decode("").err(), Some(JwtError::NotThreeParts));
        assert_eq!(UnverifiedJwt::decode("a.b").err(), Some(JwtError::NotThreeParts));
        assert_eq!(UnverifiedJwt::decode("a.b.c.d").err(), Some(JwtError::NotThreeParts));
        assert_eq!(UnverifiedJwt::decode("!!.e30.").err(), Some(JwtError::BadBase64));
        // "[]" and "1" are valid JSON but not objects.
        let arr = URL_SAFE_NO_PAD.encode("[]");
        assert_eq!(UnverifiedJwt::decode(&format!("e30.{arr}.")).err(), Some(JwtError::BadJson));
        assert_eq!(UnverifiedJwt::decode("e30.e30.***").err(), Some(JwtError::BadBase64));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(UnverifiedJwt::decode(&long).err(), Some(JwtError::TooLong));
        // A key given twice (the second role would have won): refused, whatever the signature.
        let twice = URL_SAFE_NO_PAD.encode(r#"{"role":"subscriber","role":"moderator"}"#);
        assert_eq!(UnverifiedJwt::decode(&format!("e30.{twice}.")).err(), Some(JwtError::BadJson));
        let nested = URL_SAFE_NO_PAD.encode(r#"{"a":{"b":1},"c":2}"#);
        assert!(UnverifiedJwt::decode(&format!("e30.{nested}.")).is_ok(), "distinct keys are fine");
        // Truncated signature.
        let token = sign_hs256(&Map::new(), b"k");
        let truncated = &token[..token.len() - 4];
        let jwt = UnverifiedJwt::decode(truncated).expect("still decodes");
        assert_eq!(jwt.verify_hs256(b"k"), Err(JwtError::BadSignature));
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(seconds(&json!(5)), Some(5));
        assert_eq!(seconds(&json!(5.9)), Some(5));
        assert_eq!(seconds(&json!("5")), None);
        assert_eq!(seconds(&json!(1e300)), None);
    }
}
