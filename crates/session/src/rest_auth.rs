//! Authentication of REST requests (contract §1): `X-OPENTOK-AUTH` (HS256, legacy projects) and
//! `Authorization: Bearer` (RS256, applications). Every failure is an [`AuthError`] (HTTP 403).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::AuthError;
use crate::jwt::UnverifiedJwt;
use crate::project::{Credentials, Project, Projects};

/// The credential a request carried, taken from its headers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RestCredential<'a> {
    /// The `X-OPENTOK-AUTH` header value: an HS256 JWT.
    OpenTokAuth(&'a str),
    /// The token of `Authorization: Bearer <token>`: an RS256 JWT.
    Bearer(&'a str),
}

impl std::fmt::Debug for RestCredential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestCredential::OpenTokAuth(_) => f.write_str("OpenTokAuth(..)"),
            RestCredential::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

impl<'a> RestCredential<'a> {
    /// Picks the credential from the two header values (`X-OPENTOK-AUTH` wins when both are
    /// present). The `Bearer` scheme name is matched case-insensitively.
    pub fn from_headers(x_opentok_auth: Option<&'a str>, authorization: Option<&'a str>) -> Result<Self, AuthError> {
        if let Some(token) = x_opentok_auth.map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(RestCredential::OpenTokAuth(token));
        }
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Err(AuthError::MissingCredentials);
        };
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                Ok(RestCredential::Bearer(token.trim()))
            }
            _ => Err(AuthError::NotBearer),
        }
    }
}

/// Time rules for REST JWTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestAuthConfig {
    /// Tolerated clock difference with the SDK's host, both ways.
    pub clock_skew: Duration,
    /// Longest `exp - iat` for HS256 (`X-OPENTOK-AUTH`), before the skew is added. SDKs use 180 s or 300 s.
    pub max_hs256_lifetime: Duration,
    /// Longest `exp - iat` for RS256 (`Bearer`), before the skew is added. SDKs use up to 900 s.
    pub max_rs256_lifetime: Duration,
}

impl Default for RestAuthConfig {
    fn default() -> Self {
        RestAuthConfig {
            clock_skew: Duration::from_secs(30),
            max_hs256_lifetime: Duration::from_secs(300),
            max_rs256_lifetime: Duration::from_secs(900),
        }
    }
}

/// Authenticates a request for `/v2/project/{path_project_id}/...`; on success returns the project.
pub fn authenticate<'p>(
    projects: &'p Projects,
    path_project_id: &str,
    credential: RestCredential<'_>,
    now: SystemTime,
    config: &RestAuthConfig,
) -> Result<&'p Project, AuthError> {
    let project = projects.get(path_project_id).ok_or(AuthError::UnknownProject)?;
    let (token, max_lifetime) = match (credential, project.credentials()) {
        (RestCredential::OpenTokAuth(token), Credentials::Secret(secret)) => {
            let jwt = UnverifiedJwt::decode(token)?;
            jwt.verify_hs256(secret.expose().as_bytes())?;
            if !jwt.claim_str("iss").is_some_and(|iss| project.id().matches(iss)) {
                return Err(AuthError::WrongIssuer);
            }
            // `ist` may be absent, in the header (one SDK) or in the claims; if given, it is "project".
            for ist in [jwt.header.get("ist"), jwt.claims.get("ist")].into_iter().flatten() {
                if ist.as_str() != Some("project") {
                    return Err(AuthError::WrongIssuerType);
                }
            }
            (jwt, config.max_hs256_lifetime)
        }
        (RestCredential::Bearer(token), Credentials::PublicKey(key)) => {
            let jwt = UnverifiedJwt::decode(token)?;
            jwt.verify_rs256(key)?;
            if !jwt.claim_str("application_id").is_some_and(|app| project.id().matches(app)) {
                return Err(AuthError::WrongIssuer);
            }
            if let Some(ist) = jwt.claims.get("ist").or_else(|| jwt.header.get("ist")) {
                // Applications' tokens carry `ist` only sometimes; "project" and "account" are not ours to refuse
                // beyond requiring a string.
                if !matches!(ist, Value::String(_)) {
                    return Err(AuthError::WrongIssuerType);
                }
            }
            (jwt, config.max_rs256_lifetime)
        }
        _ => return Err(AuthError::WrongCredentialKind),
    };
    // Client tokens are signed with the same key and handed to browsers: one must never act
    // for the project (dial, moderate, read streams). The SDKs' REST tokens carry neither claim.
    if token.claims.get("scope").is_some() || token.claims.get("session_id").is_some() {
        return Err(AuthError::ClientToken);
    }
    check_times(&token, now, config.clock_skew, max_lifetime)?;
    Ok(project)
}

fn check_times(
    jwt: &UnverifiedJwt<'_>,
    now: SystemTime,
    skew: Duration,
    max_lifetime: Duration,
) -> Result<(), AuthError> {
    let exp = jwt.claim_seconds("exp").ok_or(AuthError::MissingClaim("exp"))?;
    let iat = jwt.claim_seconds("iat").ok_or(AuthError::MissingClaim("iat"))?;
    let now = unix_seconds(now);
    let skew = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
    let max_lifetime = i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX);
    if exp.saturating_add(skew) <= now {
        return Err(AuthError::Expired);
    }
    if iat > now.saturating_add(skew) {
        return Err(AuthError::IssuedInFuture);
    }
    // RFC 7519 §4.1.5: optional, but when present it binds (no SDK sends it today).
    match jwt.claims.get("nbf") {
        None => {}
        Some(nbf) => match crate::jwt::seconds(nbf) {
            Some(nbf) if nbf <= now.saturating_add(skew) => {}
            _ => return Err(AuthError::NotYetValid),
        },
    }
    if exp.saturating_sub(iat) > max_lifetime.saturating_add(skew) {
        return Err(AuthError::LifetimeTooLong);
    }
    Ok(())
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map(|s| -s).unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::JwtError;
    use crate::jwt::tests::{build, hs256, rs256, OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM, TEST_PUBLIC_PEM};
    use crate::project::ApiSecret;
    use serde_json::json;

    const KEY: &str = "123456";
    const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
    const APP: &str = "9f2b4c1e-0a1b-4c2d-8e3f-123456789abc";
    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn projects() -> Projects {
        let mut projects = Projects::new();
        projects.insert(Project::legacy(KEY, ApiSecret::new(SECRET).expect("secret")).expect("legacy"));
        projects.insert(Project::legacy("654321", ApiSecret::new("othersecret").expect("secret")).expect("legacy"));
        projects.insert(Project::application(APP, TEST_PUBLIC_PEM).expect("application"));
        projects
    }

    fn hs(header: Value, claims: Value) -> String {
        build(header, claims, hs256(SECRET.as_bytes()))
    }

    fn check(id: &str, credential: RestCredential<'_>) -> Result<(), AuthError> {
        authenticate(&projects(), id, credential, now(), &RestAuthConfig::default()).map(|_| ())
    }

    fn opentok(token: &str) -> Result<(), AuthError> {
        check(KEY, RestCredential::OpenTokAuth(token))
    }

    #[test]
    fn every_error_is_a_403() {
        let all = [
            AuthError::MissingCredentials,
            AuthError::NotBearer,
            AuthError::UnknownProject,
            AuthError::WrongCredentialKind,
            AuthError::Jwt(JwtError::BadSignature),
            AuthError::WrongIssuer,
            AuthError::WrongIssuerType,
            AuthError::MissingClaim("exp"),
            AuthError::Expired,
            AuthError::IssuedInFuture,
            AuthError::LifetimeTooLong,
            AuthError::ClientToken,
        ];
        for e in all {
            assert_eq!(e.http_status(), 403, "{e}");
            assert!(!e.reason().is_empty());
        }
    }

    #[test]
    fn hs256_shapes_the_sdks_send() {
        let n = NOW as i64;
        let header = json!({"alg": "HS256", "typ": "JWT"});
        // Python: ist in claims, jti, 180 s.
        assert_eq!(
            opentok(&hs(header.clone(), json!({"iss": KEY, "ist": "project", "iat": n, "exp": n + 180, "jti": "0.5"}))),
            Ok(())
        );
        // No jti, 300 s exactly.
        assert_eq!(
            opentok(&hs(header.clone(), json!({"iss": KEY, "ist": "project", "iat": n, "exp": n + 300}))),
            Ok(())
        );
        // ist in the header only.
        let with_ist = json!({"alg": "HS256", "typ": "JWT", "ist": "project"});
        assert_eq!(opentok(&hs(with_ist, json!({"iss": KEY, "iat": n, "exp": n + 300}))), Ok(()));
        // No ist anywhere.
        assert_eq!(opentok(&hs(header, json!({"iss": KEY, "iat": n, "exp": n + 60}))), Ok(()));
    }

    #[test]
    fn hs256_refusals() {
        let n = NOW as i64;
        let h = json!({"alg": "HS256"});
        let claims = |iss: &str, iat: i64, exp: i64| json!({"iss": iss, "ist": "project", "iat": iat, "exp": exp});
        assert_eq!(opentok(&hs(h.clone(), claims("654321", n, n + 60))), Err(AuthError::WrongIssuer));
        assert_eq!(opentok(&hs(h.clone(), json!({"iat": n, "exp": n + 60}))), Err(AuthError::WrongIssuer));
        assert_eq!(opentok(&hs(h.clone(), claims(KEY, n - 400, n - 100))), Err(AuthError::Expired));
        assert_eq!(opentok(&hs(h.clone(), claims(KEY, n - 10, n - 31))), Err(AuthError::Expired));
        // Within the 30 s skew.
        assert_eq!(opentok(&hs(h.clone(), claims(KEY, n - 100, n - 10))), Ok(()));
        assert_eq!(opentok(&hs(h.clone(), claims(KEY, n + 100, n + 200))), Err(AuthError::IssuedInFuture));
        // RFC 7519 nbf, within the same skew.
        let not_before = |nbf: Value| json!({"iss": KEY, "iat": n, "exp": n + 60, "nbf": nbf});
        assert_eq!(opentok(&hs(h.clone(), not_before(json!(n + 30)))), Ok(()));
        assert_eq!(opentok(&hs(h.clone(), not_before(json!(n + 31)))), Err(AuthError::NotYetValid));
        assert_eq!(opentok(&hs(h.clone(), not_before(json!(null)))), Err(AuthError::NotYetValid));
        assert_eq!(opentok(&hs(h.clone(), claims(KEY, n, n + 331))), Err(AuthError::LifetimeTooLong));
        assert_eq!(opentok(&hs(h.clone(), claims(KEY, n, n + 330))), Ok(()));
        assert_eq!(opentok(&hs(h.clone(), json!({"iss": KEY, "iat": n}))), Err(AuthError::MissingClaim("exp")));
        assert_eq!(opentok(&hs(h.clone(), json!({"iss": KEY, "exp": n + 5}))), Err(AuthError::MissingClaim("iat")));
        assert_eq!(
            opentok(&hs(h.clone(), json!({"iss": KEY, "iat": "x", "exp": n + 5}))),
            Err(AuthError::MissingClaim("iat"))
        );
        let bad_ist = json!({"iss": KEY, "ist": "account", "iat": n, "exp": n + 5});
        assert_eq!(opentok(&hs(h.clone(), bad_ist)), Err(AuthError::WrongIssuerType));
        let bad_header_ist = json!({"alg": "HS256", "ist": "account"});
        assert_eq!(opentok(&hs(bad_header_ist, claims(KEY, n, n + 5))), Err(AuthError::WrongIssuerType));
        // Signed with another project's secret.
        let other = build(h.clone(), claims(KEY, n, n + 60), hs256(b"othersecret"));
        assert_eq!(opentok(&other), Err(AuthError::Jwt(JwtError::BadSignature)));
        // alg=none, empty signature.
        let none = build(json!({"alg": "none"}), claims(KEY, n, n + 60), |_| Vec::new());
        assert_eq!(opentok(&none), Err(AuthError::Jwt(JwtError::AlgorithmNotAllowed)));
        // An RS256 token presented for an HS256 project.
        let rs = build(json!({"alg": "RS256"}), claims(KEY, n, n + 60), rs256(TEST_PRIVATE_PEM));
        assert_eq!(opentok(&rs), Err(AuthError::Jwt(JwtError::AlgorithmNotAllowed)));
        // Truncated and garbage.
        let good = hs(h, claims(KEY, n, n + 60));
        assert!(opentok(&good[..good.len() - 3]).is_err());
        assert!(opentok(&good[..good.len() / 2]).is_err());
        assert!(opentok("not a token").is_err());
        // Unknown project in the path; a good token for another path.
        assert_eq!(check("999", RestCredential::OpenTokAuth(&good)), Err(AuthError::UnknownProject));
        assert_eq!(check("654321", RestCredential::OpenTokAuth(&good)), Err(AuthError::Jwt(JwtError::BadSignature)));
    }

    #[test]
    fn rs256_bearer() {
        let n = NOW as i64;
        let h = json!({"alg": "RS256", "typ": "JWT"});
        let claims = |app: &str, iat: i64, exp: i64| json!({"application_id": app, "iat": iat, "exp": exp, "jti": "j"});
        let bearer = |t: &str| check(APP, RestCredential::Bearer(t));
        assert_eq!(bearer(&build(h.clone(), claims(APP, n, n + 900), rs256(TEST_PRIVATE_PEM))), Ok(()));
        let upper = APP.to_ascii_uppercase();
        assert_eq!(bearer(&build(h.clone(), claims(&upper, n, n + 60), rs256(TEST_PRIVATE_PEM))), Ok(()));
        assert_eq!(
            bearer(&build(h.clone(), claims(APP, n, n + 60), rs256(OTHER_PRIVATE_PEM))),
            Err(AuthError::Jwt(JwtError::BadSignature))
        );
        let other_app = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            bearer(&build(h.clone(), claims(other_app, n, n + 60), rs256(TEST_PRIVATE_PEM))),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            bearer(&build(h.clone(), claims(APP, n - 1000, n - 100), rs256(TEST_PRIVATE_PEM))),
            Err(AuthError::Expired)
        );
        assert_eq!(
            bearer(&build(h, claims(APP, n, n + 3600), rs256(TEST_PRIVATE_PEM))),
            Err(AuthError::LifetimeTooLong)
        );
        // HS256 with the public key's PEM as the HMAC secret (the classic confusion attack).
        let confused = build(json!({"alg": "HS256"}), claims(APP, n, n + 60), hs256(TEST_PUBLIC_PEM.as_bytes()));
        assert_eq!(bearer(&confused), Err(AuthError::Jwt(JwtError::AlgorithmNotAllowed)));
    }

    /// One token, one string: a signature whose last character differs only in the bits base64
    /// leaves unused decodes to the same bytes, and is refused all the same.
    #[test]
    fn a_signature_written_another_way_is_refused() {
        let n = NOW as i64;
        let token = hs(json!({"alg": "HS256"}), json!({"iss": KEY, "ist": "project", "iat": n, "exp": n + 60}));
        assert_eq!(opentok(&token), Ok(()));
        const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = token.as_bytes()[token.len() - 1];
        let value = URL_SAFE.iter().position(|c| *c == last).expect("base64");
        let other = URL_SAFE[value ^ 1] as char;
        let rewritten = format!("{}{other}", &token[..token.len() - 1]);
        assert_eq!(opentok(&rewritten), Err(AuthError::Jwt(JwtError::BadBase64)));
    }

    /// A client token (what a browser joins with, signed with the same key) is no REST
    /// credential: a participant replaying it could otherwise dial, moderate and read the project.
    #[test]
    fn client_tokens_are_not_rest_credentials() {
        let n = NOW as i64;
        let join = json!({"iss": KEY, "ist": "project", "iat": n, "exp": n + 300,
            "scope": "session.connect", "session_id": "1_x", "role": "subscriber"});
        assert_eq!(opentok(&hs(json!({"alg": "HS256"}), join)), Err(AuthError::ClientToken));
        let app_join = json!({"application_id": APP, "iat": n, "exp": n + 900, "jti": "j",
            "scope": "session.connect", "session_id": "1_x", "sub": "video"});
        let bearer = build(json!({"alg": "RS256"}), app_join, rs256(TEST_PRIVATE_PEM));
        assert_eq!(check(APP, RestCredential::Bearer(&bearer)), Err(AuthError::ClientToken));
        // A scope alone, or a session_id alone, says the same.
        let scoped = json!({"iss": KEY, "iat": n, "exp": n + 60, "scope": "session.connect"});
        assert_eq!(opentok(&hs(json!({"alg": "HS256"}), scoped)), Err(AuthError::ClientToken));
    }

    #[test]
    fn credential_kind_must_match_the_project() {
        let n = NOW as i64;
        let good_hs = hs(json!({"alg": "HS256"}), json!({"iss": KEY, "iat": n, "exp": n + 60}));
        assert_eq!(check(KEY, RestCredential::Bearer(&good_hs)), Err(AuthError::WrongCredentialKind));
        assert_eq!(check(APP, RestCredential::OpenTokAuth(&good_hs)), Err(AuthError::WrongCredentialKind));
    }

    #[test]
    fn headers() {
        assert_eq!(RestCredential::from_headers(Some("t"), None), Ok(RestCredential::OpenTokAuth("t")));
        assert_eq!(RestCredential::from_headers(None, Some("Bearer  t ")), Ok(RestCredential::Bearer("t")));
        assert_eq!(RestCredential::from_headers(None, Some("bearer t")), Ok(RestCredential::Bearer("t")));
        assert_eq!(RestCredential::from_headers(Some("a"), Some("Bearer b")), Ok(RestCredential::OpenTokAuth("a")));
        assert_eq!(RestCredential::from_headers(None, None), Err(AuthError::MissingCredentials));
        assert_eq!(RestCredential::from_headers(Some(" "), None), Err(AuthError::MissingCredentials));
        assert_eq!(RestCredential::from_headers(None, Some("Basic dTpw")), Err(AuthError::NotBearer));
        assert_eq!(RestCredential::from_headers(None, Some("Bearer")), Err(AuthError::NotBearer));
        assert_eq!(format!("{:?}", RestCredential::Bearer("secret-token")), "Bearer(..)");
    }
}
