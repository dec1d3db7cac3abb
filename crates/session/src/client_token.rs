//! Client tokens (contract §3): the legacy `T1==` format and JWTs, both checked against the
//! session they claim to join. The result is a [`ClientGrant`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

use crate::encoding::decode_lenient;
use crate::error::TokenError;
use crate::jwt::{seconds, Algorithm, UnverifiedJwt, MAX_TOKEN_LEN};
use crate::project::{Project, Projects};
use crate::rest_auth::unix_seconds;
use crate::session_id::SessionId;

/// Longest `connection_data`, in characters.
pub const MAX_CONNECTION_DATA_CHARS: usize = 1000;

const T1_PREFIX: &str = "T1==";

/// What a client may do in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Subscribe only.
    Subscriber,
    /// Publish, subscribe and signal (the default).
    #[default]
    Publisher,
    /// Publish only.
    PublisherOnly,
    /// Publisher plus moderation (force disconnect, force mute).
    Moderator,
}

impl Role {
    /// Parses the wire name (`subscriber`, `publisher`, `publisheronly`, `moderator`).
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "subscriber" => Some(Role::Subscriber),
            "publisher" => Some(Role::Publisher),
            "publisheronly" => Some(Role::PublisherOnly),
            "moderator" => Some(Role::Moderator),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            Role::Subscriber => "subscriber",
            Role::Publisher => "publisher",
            Role::PublisherOnly => "publisheronly",
            Role::Moderator => "moderator",
        }
    }
}

/// What a valid client token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    /// The role (publisher when the token names none).
    pub role: Role,
    /// `connection_data`: becomes the connection's `data` (at most 1000 characters).
    pub connection_data: Option<String>,
    /// `initial_layout_class_list`, split on whitespace.
    pub layout_classes: Vec<String>,
    /// When the token stops being valid.
    pub expires: SystemTime,
}

/// Validates a client token (T1 or JWT) for joining `session`. The token's project must be the
/// session's project (field 1 of the ID) and must be in `projects`.
pub fn validate_client_token(
    projects: &Projects,
    token: &str,
    session: &SessionId,
    now: SystemTime,
) -> Result<ClientGrant, TokenError> {
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::BadLength);
    }
    if let Some(body) = token.strip_prefix(T1_PREFIX) {
        validate_t1(projects, body, session, now)
    } else if token.bytes().filter(|&b| b == b'.').count() == 2 {
        validate_jwt(projects, token, session, now)
    } else {
        Err(TokenError::UnknownFormat)
    }
}

fn validate_t1(
    projects: &Projects,
    body: &str,
    session: &SessionId,
    now: SystemTime,
) -> Result<ClientGrant, TokenError> {
    let decoded = decode_lenient(body).ok_or(TokenError::BadBase64)?;
    let colon = decoded.iter().position(|&b| b == b':').ok_or(TokenError::Malformed("no ':' separator"))?;
    let (head, data) = (&decoded[..colon], &decoded[colon + 1..]);

    let mut partner_id = None;
    let mut sig = None;
    for (name, value) in form_urlencoded::parse(head) {
        let slot = match name.as_ref() {
            "partner_id" => &mut partner_id,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(TokenError::Malformed("repeated partner_id or sig"));
        }
    }
    let partner_id = partner_id.ok_or(TokenError::Malformed("no partner_id"))?;
    let sig = sig.ok_or(TokenError::Malformed("no sig"))?;
    let project = projects.get(&partner_id).ok_or(TokenError::UnknownProject)?;
    let secret = project.secret().ok_or(TokenError::WrongCredentialKind)?;

    let sig = hex::decode(sig.as_bytes()).map_err(|_| TokenError::BadSignature)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes()).map_err(|_| TokenError::BadSignature)?;
    mac.update(data);
    mac.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    check_project(project, session)?;

    let mut fields = T1Fields::default();
    for (name, value) in form_urlencoded::parse(data) {
        let slot = match name.as_ref() {
            "session_id" => &mut fields.session_id,
            "expire_time" => &mut fields.expire_time,
            "role" => &mut fields.role,
            "connection_data" => &mut fields.connection_data,
            "initial_layout_class_list" => &mut fields.layout,
            "scope" => &mut fields.scope,
            // create_time, nonce and anything else are not needed to grant access.
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(TokenError::Malformed("repeated field"));
        }
    }
    if fields.scope.as_deref().is_some_and(|s| s != "session.connect") {
        return Err(TokenError::WrongScope);
    }
    check_session(fields.session_id.as_deref(), session)?;
    let expire = fields.expire_time.ok_or(TokenError::MissingField("expire_time"))?;
    let expire: i64 = expire.trim().parse().map_err(|_| TokenError::MissingField("expire_time"))?;
    let expires = check_expiry(expire, now)?;
    let role = match fields.role.as_deref() {
        None | Some("") => Role::default(),
        Some(name) => Role::from_wire(name).ok_or(TokenError::InvalidRole)?,
    };
    Ok(ClientGrant {
        role,
        connection_data: check_connection_data(fields.connection_data)?,
        layout_classes: split_classes(fields.layout.as_deref().unwrap_or("")),
        expires,
    })
}

#[derive(Default)]
struct T1Fields {
    session_id: Option<String>,
    expire_time: Option<String>,
    role: Option<String>,
    connection_data: Option<String>,
    layout: Option<String>,
    scope: Option<String>,
}

fn validate_jwt(
    projects: &Projects,
    token: &str,
    session: &SessionId,
    now: SystemTime,
) -> Result<ClientGrant, TokenError> {
    let jwt = UnverifiedJwt::decode(token)?;
    let project = match jwt.algorithm() {
        Some(Algorithm::Hs256) => {
            let iss = jwt.claim_str("iss").ok_or(TokenError::MissingField("iss"))?;
            let project = projects.get(iss).ok_or(TokenError::UnknownProject)?;
            let secret = project.secret().ok_or(TokenError::WrongCredentialKind)?;
            jwt.verify_hs256(secret.expose().as_bytes())?;
            project
        }
        Some(Algorithm::Rs256) => {
            let app = jwt.claim_str("application_id").ok_or(TokenError::MissingField("application_id"))?;
            let project = projects.get(app).ok_or(TokenError::UnknownProject)?;
            let key = project.public_key().ok_or(TokenError::WrongCredentialKind)?;
            jwt.verify_rs256(key)?;
            project
        }
        None => return Err(crate::error::JwtError::AlgorithmNotAllowed.into()),
    };
    check_project(project, session)?;
    if jwt.claim_str("scope") != Some("session.connect") {
        return Err(TokenError::WrongScope);
    }
    check_session(jwt.claim_str("session_id"), session)?;
    let exp = jwt.claim_seconds("exp").ok_or(TokenError::MissingField("exp"))?;
    let expires = check_expiry(exp, now)?;
    check_not_before(jwt.claims.get("nbf"), now)?;
    let role = match jwt.claims.get("role") {
        None | Some(Value::Null) => Role::default(),
        Some(Value::String(name)) => Role::from_wire(name).ok_or(TokenError::InvalidRole)?,
        Some(_) => return Err(TokenError::InvalidRole),
    };
    let connection_data = match jwt.claims.get("connection_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(data)) => Some(data.clone()),
        Some(_) => return Err(TokenError::MissingField("connection_data")),
    };
    let layout_classes = match jwt.claims.get("initial_layout_class_list") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(list)) => split_classes(list),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(split_classes).ok_or(TokenError::MissingField("initial_layout_class_list")))
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        Some(_) => return Err(TokenError::MissingField("initial_layout_class_list")),
    };
    // `iat` is optional; when present it must at least be a number.
    if jwt.claims.get("iat").is_some_and(|iat| seconds(iat).is_none()) {
        return Err(TokenError::MissingField("iat"));
    }
    Ok(ClientGrant { role, connection_data: check_connection_data(connection_data)?, layout_classes, expires })
}

fn check_project(project: &Project, session: &SessionId) -> Result<(), TokenError> {
    if project.id().matches(session.project()) {
        Ok(())
    } else {
        Err(TokenError::WrongProject)
    }
}

fn check_session(claimed: Option<&str>, session: &SessionId) -> Result<(), TokenError> {
    let claimed = claimed.ok_or(TokenError::MissingField("session_id"))?;
    match SessionId::parse(claimed) {
        Ok(id) if id.as_str() == session.as_str() => Ok(()),
        _ => Err(TokenError::WrongSession),
    }
}

/// How far in the future a client JWT's `nbf` may be: the clock of the server that minted it may
/// run a little ahead of ours.
pub const NBF_LEEWAY: Duration = Duration::from_secs(60);

/// RFC 7519 §4.1.5: a JWT with `nbf` is not accepted before that time (less [`NBF_LEEWAY`]); a
/// `nbf` that is not a number is refused too.
fn check_not_before(nbf: Option<&Value>, now: SystemTime) -> Result<(), TokenError> {
    let Some(nbf) = nbf else { return Ok(()) };
    let leeway = i64::try_from(NBF_LEEWAY.as_secs()).unwrap_or(i64::MAX);
    match seconds(nbf) {
        Some(nbf) if nbf <= unix_seconds(now).saturating_add(leeway) => Ok(()),
        _ => Err(TokenError::NotYetValid),
    }
}

/// The furthest ahead a client token's expiry may be: the 30 days the Vonage SDKs allow when
/// they mint one, and an hour for the minting server's clock. A token that lives longer (leaked,
/// or minted by hand for years) is refused.
pub const MAX_CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400 + 3600);

fn check_expiry(exp: i64, now: SystemTime) -> Result<SystemTime, TokenError> {
    if exp <= unix_seconds(now) {
        return Err(TokenError::Expired);
    }
    let max = i64::try_from(MAX_CLIENT_TOKEN_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    if exp - unix_seconds(now) > max {
        return Err(TokenError::LifetimeTooLong);
    }
    // exp > now >= 0 here unless `now` is before 1970; either way exp is positive. A time past
    // what the platform's clock holds is the furthest it holds (never a panic).
    let far = UNIX_EPOCH.checked_add(Duration::from_secs(exp.unsigned_abs()));
    Ok(far.or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400))).unwrap_or(now))
}

fn check_connection_data(data: Option<String>) -> Result<Option<String>, TokenError> {
    match data {
        Some(d) if d.chars().count() > MAX_CONNECTION_DATA_CHARS => Err(TokenError::ConnectionDataTooLong),
        Some(d) if d.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn split_classes(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::JwtError;
    use crate::jwt::tests::{build, hs256, rs256, OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM, TEST_PUBLIC_PEM};
    use crate::project::{ApiSecret, ProjectId};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    const KEY: &str = "123456";
    const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
    const APP: &str = "9f2b4c1e-0a1b-4c2d-8e3f-123456789abc";
    const NOW: i64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW as u64)
    }

    fn projects() -> Projects {
        let mut projects = Projects::new();
        projects.insert(Project::legacy(KEY, ApiSecret::new(SECRET).expect("secret")).expect("legacy"));
        projects.insert(Project::legacy("654321", ApiSecret::new("othersecret").expect("secret")).expect("legacy"));
        projects.insert(Project::application(APP, TEST_PUBLIC_PEM).expect("application"));
        projects
    }

    fn session(project: &str, seed: u64) -> SessionId {
        let id = ProjectId::api_key(project).or_else(|_| ProjectId::application(project)).expect("id");
        SessionId::mint(&id, None, now(), &mut StdRng::seed_from_u64(seed))
    }

    fn t1(partner: &str, secret: &str, data: &str) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(data.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        format!("T1=={}", STANDARD.encode(format!("partner_id={partner}&sig={sig}:{data}")))
    }

    fn data(sid: &SessionId, extra: &str) -> String {
        format!(
            "session_id={}&create_time={NOW}&expire_time={}&role=moderator&nonce=42&initial_layout_class_list=focus+big{extra}",
            sid, NOW + 3600
        )
    }

    fn validate(token: &str, sid: &SessionId) -> Result<ClientGrant, TokenError> {
        validate_client_token(&projects(), token, sid, now())
    }

    #[test]
    fn t1_valid_with_spaces_both_ways_and_any_order() {
        let sid = session(KEY, 1);
        let token = t1(KEY, SECRET, &data(&sid, "&connection_data=name%3DAlice%20B+C"));
        let grant = validate(&token, &sid).expect("valid");
        assert_eq!(grant.role, Role::Moderator);
        assert_eq!(grant.connection_data.as_deref(), Some("name=Alice B C"));
        assert_eq!(grant.layout_classes, ["focus", "big"]);
        assert_eq!(grant.expires, UNIX_EPOCH + Duration::from_secs((NOW + 3600) as u64));
        // Reordered fields, no role (publisher), a scope, unknown fields.
        let reordered = format!("nonce=1&expire_time={}&foo=bar&scope=session.connect&session_id={sid}", NOW + 10);
        let grant = validate(&t1(KEY, SECRET, &reordered), &sid).expect("valid");
        assert_eq!(grant.role, Role::Publisher);
        assert_eq!(grant.layout_classes, Vec::<String>::new());
        assert_eq!(grant.connection_data, None);
    }

    #[test]
    fn t1_refusals() {
        let sid = session(KEY, 1);
        let good = data(&sid, "");
        assert_eq!(validate(&t1(KEY, "wrongsecret", &good), &sid), Err(TokenError::BadSignature));
        assert_eq!(validate(&t1("999", SECRET, &good), &sid), Err(TokenError::UnknownProject));
        assert_eq!(validate(&t1(APP, SECRET, &good), &sid), Err(TokenError::WrongCredentialKind));
        // Signed correctly by another project, for a session of ours.
        assert_eq!(validate(&t1("654321", "othersecret", &good), &sid), Err(TokenError::WrongProject));
        // Another session of the same project.
        assert_eq!(validate(&t1(KEY, SECRET, &good), &session(KEY, 2)), Err(TokenError::WrongSession));
        let expired = good.replace(&format!("expire_time={}", NOW + 3600), &format!("expire_time={NOW}"));
        assert_eq!(validate(&t1(KEY, SECRET, &expired), &sid), Err(TokenError::Expired));
        let years =
            good.replace(&format!("expire_time={}", NOW + 3600), &format!("expire_time={}", NOW + 5 * 365 * 86_400));
        assert_eq!(validate(&t1(KEY, SECRET, &years), &sid), Err(TokenError::LifetimeTooLong));
        let no_exp = good.replace(&format!("expire_time={}", NOW + 3600), "");
        assert_eq!(validate(&t1(KEY, SECRET, &no_exp), &sid), Err(TokenError::MissingField("expire_time")));
        assert_eq!(validate(&t1(KEY, SECRET, &good.replace("moderator", "admin")), &sid), Err(TokenError::InvalidRole));
        assert_eq!(
            validate(&t1(KEY, SECRET, &format!("{good}&role=subscriber")), &sid),
            Err(TokenError::Malformed("repeated field"))
        );
        assert_eq!(validate(&t1(KEY, SECRET, &format!("{good}&scope=other")), &sid), Err(TokenError::WrongScope));
        let long = format!("{good}&connection_data={}", "x".repeat(1001));
        assert_eq!(validate(&t1(KEY, SECRET, &long), &sid), Err(TokenError::ConnectionDataTooLong));
        let exactly = format!("{good}&connection_data={}", "é".repeat(1000));
        assert!(validate(&t1(KEY, SECRET, &exactly), &sid).is_ok());
        // Tampering with DATA after signing.
        let token = t1(KEY, SECRET, &good);
        let raw = STANDARD.decode(&token[4..]).expect("b64");
        let tampered = String::from_utf8(raw).expect("utf8").replace("role=moderator", "role=moderatoR");
        assert_eq!(validate(&format!("T1=={}", STANDARD.encode(tampered)), &sid), Err(TokenError::BadSignature));
        // Truncated token, bad base64, missing parts.
        assert!(validate(&token[..token.len() - 8], &sid).is_err());
        assert_eq!(validate("T1==!!!!", &sid), Err(TokenError::BadBase64));
        let no_colon = format!("T1=={}", STANDARD.encode("partner_id=123456&sig=00"));
        assert_eq!(validate(&no_colon, &sid), Err(TokenError::Malformed("no ':' separator")));
        let no_sig = format!("T1=={}", STANDARD.encode(format!("partner_id=123456:{good}")));
        assert_eq!(validate(&no_sig, &sid), Err(TokenError::Malformed("no sig")));
        let bad_hex = format!("T1=={}", STANDARD.encode(format!("partner_id=123456&sig=zz:{good}")));
        assert_eq!(validate(&bad_hex, &sid), Err(TokenError::BadSignature));
        assert_eq!(validate("", &sid), Err(TokenError::BadLength));
        assert_eq!(validate("hello", &sid), Err(TokenError::UnknownFormat));
    }

    fn jwt_claims(sid: &SessionId) -> serde_json::Value {
        json!({"iss": KEY, "ist": "project", "iat": NOW, "exp": NOW + 60, "nonce": 7,
               "scope": "session.connect", "session_id": sid.as_str(), "role": "subscriber"})
    }

    #[test]
    fn jwt_hs256() {
        let sid = session(KEY, 1);
        let h = json!({"alg": "HS256", "typ": "JWT"});
        let grant = validate(&build(h.clone(), jwt_claims(&sid), hs256(SECRET.as_bytes())), &sid).expect("valid");
        assert_eq!(grant.role, Role::Subscriber);
        assert_eq!(grant.expires, UNIX_EPOCH + Duration::from_secs((NOW + 60) as u64));
        let with = |key: &str, value: Value| {
            let mut c = jwt_claims(&sid);
            c[key] = value;
            build(h.clone(), c, hs256(SECRET.as_bytes()))
        };
        let grant = validate(&with("initial_layout_class_list", json!(["a", "b c"])), &sid).expect("array");
        assert_eq!(grant.layout_classes, ["a", "b", "c"]);
        let grant = validate(&with("initial_layout_class_list", json!("x y")), &sid).expect("string");
        assert_eq!(grant.layout_classes, ["x", "y"]);
        assert_eq!(
            validate(&with("initial_layout_class_list", json!(5)), &sid),
            Err(TokenError::MissingField("initial_layout_class_list"))
        );
        assert_eq!(validate(&with("role", Value::Null), &sid).map(|g| g.role), Ok(Role::Publisher));
        assert_eq!(validate(&with("role", json!("publisheronly")), &sid).map(|g| g.role), Ok(Role::PublisherOnly));
        assert_eq!(validate(&with("role", json!("root")), &sid), Err(TokenError::InvalidRole));
        assert_eq!(validate(&with("scope", json!("session.other")), &sid), Err(TokenError::WrongScope));
        assert_eq!(validate(&with("exp", json!(NOW)), &sid), Err(TokenError::Expired));
        // At most 30 days (and an hour for the minting clock) ahead.
        assert!(validate(&with("exp", json!(NOW + 30 * 86_400 + 3600)), &sid).is_ok());
        assert_eq!(validate(&with("exp", json!(NOW + 30 * 86_400 + 3601)), &sid), Err(TokenError::LifetimeTooLong));
        assert_eq!(validate(&with("exp", json!(i64::MAX)), &sid), Err(TokenError::LifetimeTooLong));
        assert_eq!(validate(&with("exp", json!("later")), &sid), Err(TokenError::MissingField("exp")));
        // RFC 7519 nbf: binding when present, with a minute's leeway for the minting clock.
        assert!(validate(&with("nbf", json!(NOW)), &sid).is_ok());
        assert!(validate(&with("nbf", json!(NOW + 60)), &sid).is_ok());
        assert_eq!(validate(&with("nbf", json!(NOW + 61)), &sid), Err(TokenError::NotYetValid));
        assert_eq!(validate(&with("nbf", json!("soon")), &sid), Err(TokenError::NotYetValid));
        assert_eq!(validate(&with("session_id", json!(session(KEY, 9).as_str())), &sid), Err(TokenError::WrongSession));
        assert_eq!(validate(&with("session_id", json!("garbage")), &sid), Err(TokenError::WrongSession));
        assert_eq!(
            validate(&with("connection_data", json!("d".repeat(1001))), &sid),
            Err(TokenError::ConnectionDataTooLong)
        );
        assert_eq!(
            validate(&with("connection_data", json!("d")), &sid).map(|g| g.connection_data),
            Ok(Some("d".into()))
        );
        // Signed with another secret; another project's token for our session.
        assert_eq!(
            validate(&build(h.clone(), jwt_claims(&sid), hs256(b"nope")), &sid),
            Err(TokenError::Jwt(JwtError::BadSignature))
        );
        let mut other = jwt_claims(&sid);
        other["iss"] = json!("654321");
        assert_eq!(validate(&build(h.clone(), other, hs256(b"othersecret")), &sid), Err(TokenError::WrongProject));
        // alg=none, unsigned.
        let none = build(json!({"alg": "none"}), jwt_claims(&sid), |_| Vec::new());
        assert_eq!(validate(&none, &sid), Err(TokenError::Jwt(JwtError::AlgorithmNotAllowed)));
        // RS256 token presented for an HS256 project (iss names the legacy project).
        let mut rs_claims = jwt_claims(&sid);
        rs_claims["application_id"] = json!(KEY);
        let rs = build(json!({"alg": "RS256"}), rs_claims, rs256(TEST_PRIVATE_PEM));
        assert_eq!(validate(&rs, &sid), Err(TokenError::WrongCredentialKind));
        // Truncated.
        let good = build(h, jwt_claims(&sid), hs256(SECRET.as_bytes()));
        assert!(validate(&good[..good.len() - 5], &sid).is_err());
        assert!(validate(&good[..good.len() / 2], &sid).is_err());
    }

    #[test]
    fn jwt_rs256_for_applications() {
        let sid = session(APP, 1);
        let claims = json!({"application_id": APP, "iat": NOW, "exp": NOW + 60, "jti": "j", "subject": "video",
                            "acl": {"paths": {"/session/**": {}}}, "scope": "session.connect",
                            "session_id": sid.as_str(), "role": "publisher", "connection_data": "x"});
        let h = json!({"alg": "RS256", "typ": "JWT"});
        let grant = validate(&build(h.clone(), claims.clone(), rs256(TEST_PRIVATE_PEM)), &sid).expect("valid");
        assert_eq!((grant.role, grant.connection_data.as_deref()), (Role::Publisher, Some("x")));
        assert_eq!(
            validate(&build(h, claims.clone(), rs256(OTHER_PRIVATE_PEM)), &sid),
            Err(TokenError::Jwt(JwtError::BadSignature))
        );
        // HS256 for an application (HMAC keyed with the public PEM): refused by kind.
        let mut hs_claims = claims;
        hs_claims["iss"] = json!(APP);
        let confused = build(json!({"alg": "HS256"}), hs_claims, hs256(TEST_PUBLIC_PEM.as_bytes()));
        assert_eq!(validate(&confused, &sid), Err(TokenError::WrongCredentialKind));
    }

    #[test]
    fn errors_never_echo_the_token() {
        let sid = session(KEY, 1);
        let token = t1(KEY, "wrongsecret", &data(&sid, "&connection_data=PRIVATE"));
        let err = validate(&token, &sid).expect_err("bad signature");
        assert!(!err.to_string().contains("PRIVATE") && !err.to_string().contains(&token[4..20]));
    }
}
