//! The `Authorization` JWT of signed callbacks.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `iss` claim of every signed callback.
pub const ISSUER: &str = "sip-interconnect-gateway";

/// How long a signature is valid: `exp` = `iat` + this many seconds.
pub const SIGNATURE_LIFETIME_SECS: u64 = 300;

/// Signs one attempt of an event: an HS256 JWT with `iss`, `iat`, `exp`, `jti` (the event's id,
/// the same on every attempt) and `payload_hash` (lower-case hex SHA-256 of the exact body bytes).
pub(crate) fn sign(secret: &[u8], body: &[u8], event_id: &str, now_unix: u64) -> String {
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(ISSUER));
    claims.insert("iat".into(), Value::from(now_unix));
    claims.insert("exp".into(), Value::from(now_unix + SIGNATURE_LIFETIME_SECS));
    claims.insert("jti".into(), Value::from(event_id));
    claims.insert("payload_hash".into(), Value::from(hex::encode(Sha256::digest(body))));
    session::jwt::sign_hs256(&claims, secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use session::jwt::UnverifiedJwt;

    #[test]
    fn claims_verify_with_the_secret_and_bind_the_body() {
        let body = br#"{"event":"callCreated","call":{"id":"c1"}}"#;
        let token = sign(b"topsecret", body, "00000000000000ab-7", 1_700_000_000);
        let jwt = UnverifiedJwt::decode(&token).expect("decode");
        jwt.verify_hs256(b"topsecret").expect("verifies");
        assert!(jwt.verify_hs256(b"other").is_err());
        assert_eq!(jwt.claim_str("iss"), Some(ISSUER));
        assert_eq!(jwt.claim_seconds("iat"), Some(1_700_000_000));
        assert_eq!(jwt.claim_seconds("exp"), Some(1_700_000_300));
        assert_eq!(jwt.claim_str("jti"), Some("00000000000000ab-7"));
        assert_eq!(jwt.claim_str("payload_hash"), Some(hex::encode(Sha256::digest(body)).as_str()));
        // SHA-256("") as a known answer, so the hash is the standard one.
        let empty = sign(b"k", b"", "x", 0);
        let jwt = UnverifiedJwt::decode(&empty).expect("decode");
        assert_eq!(
            jwt.claim_str("payload_hash"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }
}
