//! Interop with the official Python server SDK (`opentok` on PyPI): tokens it mints for session
//! IDs minted by us must validate, and must fail against the wrong session or secret.
//! Needs `python3` with the `opentok` package (scripts/test-all installs it); fails otherwise.

use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use session::{
    authenticate, validate_client_token, ApiSecret, AuthError, JwtError, Project, ProjectId, Projects, RestAuthConfig,
    RestCredential, Role, SessionId, TokenError,
};

const API_KEY: &str = "47123456";
const API_SECRET: &str = "5f2b1c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";
const APP_ID: &str = "0b3e9c57-2c4a-4f0e-9d1b-7a6e5f4d3c2b";

struct Minted {
    tokens: Value,
    session: SessionId,
    app_session: SessionId,
}

fn mint_with_sdk(label: &str) -> Minted {
    let now = SystemTime::now();
    let mut rng = StdRng::seed_from_u64(99);
    let session = SessionId::mint(&ProjectId::api_key(API_KEY).expect("key"), None, now, &mut rng);
    let app_session = SessionId::mint(&ProjectId::application(APP_ID).expect("app"), None, now, &mut rng);
    let work = std::env::temp_dir().join(format!("session-sdk-tokens-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&work).expect("temp dir");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/mint_tokens.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([API_KEY, API_SECRET, session.as_str(), APP_ID, app_session.as_str()])
        .arg(&work)
        .output();
    let _ = std::fs::remove_dir_all(&work);
    let output = match output {
        Ok(o) => o,
        Err(e) => panic!("cannot run python3 ({e}): install Python 3 and the `opentok` package (pip install opentok)"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!("the Python package `opentok` is missing: python3 -m pip install opentok\n{stderr}"),
        _ => panic!("mint_tokens.py failed ({}):\n{stderr}", output.status),
    }
    let tokens: Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    Minted { tokens, session, app_session }
}

fn projects(app_public_pem: &str) -> Projects {
    let mut projects = Projects::new();
    projects.insert(Project::legacy(API_KEY, ApiSecret::new(API_SECRET).expect("secret")).expect("legacy"));
    projects.insert(Project::application(APP_ID, app_public_pem).expect("application"));
    projects
}

fn text<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name].as_str().unwrap_or_else(|| panic!("no {name} in the script output"))
}

#[test]
fn python_sdk_tokens_validate() {
    let Minted { tokens, session, app_session } = mint_with_sdk("validate");
    let projects = projects(text(&tokens, "app_public_pem"));
    let now = SystemTime::now();
    let version = text(&tokens, "sdk_version");

    // T1, with spaces, '&', '+' and '=' in connection_data (urlencoded by the SDK).
    let t1 = text(&tokens, "t1");
    assert!(t1.starts_with("T1=="), "SDK {version} did not mint a T1 token");
    let grant = validate_client_token(&projects, t1, &session, now).expect("SDK T1 token");
    assert_eq!(grant.role, Role::Moderator);
    assert_eq!(grant.connection_data.as_deref(), Some("name=Alice Smith&team=a+b"));
    assert_eq!(grant.layout_classes, ["focus", "full"]);
    assert!(grant.expires > now);
    let grant = validate_client_token(&projects, text(&tokens, "t1_default"), &session, now).expect("default T1");
    assert_eq!((grant.role, grant.connection_data), (Role::Publisher, None));

    // JWT (the SDK's default format).
    let jwt = text(&tokens, "jwt");
    assert_eq!(jwt.split('.').count(), 3, "SDK {version} did not mint a JWT");
    let grant = validate_client_token(&projects, jwt, &session, now).expect("SDK JWT token");
    assert_eq!(grant.role, Role::PublisherOnly);
    assert_eq!(grant.connection_data.as_deref(), Some("user 42"));
    assert_eq!(grant.layout_classes, ["big"]);
    let grant = validate_client_token(&projects, text(&tokens, "jwt_default"), &session, now).expect("default JWT");
    assert_eq!(grant.role, Role::Publisher);

    // RS256 client token of an application.
    let grant = validate_client_token(&projects, text(&tokens, "app_jwt"), &app_session, now).expect("SDK app JWT");
    assert_eq!((grant.role, grant.connection_data.as_deref()), (Role::Subscriber, Some("app user")));

    // REST: X-OPENTOK-AUTH and Authorization: Bearer.
    let config = RestAuthConfig::default();
    let rest = RestCredential::from_headers(Some(text(&tokens, "rest")), None).expect("header");
    let project = authenticate(&projects, API_KEY, rest, now, &config).expect("SDK X-OPENTOK-AUTH");
    assert_eq!(project.id().as_str(), API_KEY);
    let bearer = RestCredential::from_headers(None, Some(text(&tokens, "app_rest"))).expect("header");
    let project = authenticate(&projects, APP_ID, bearer, now, &config).expect("SDK Bearer");
    assert_eq!(project.id().as_str(), APP_ID);
}

#[test]
fn python_sdk_tokens_are_refused_where_they_must_be() {
    let Minted { tokens, session, app_session } = mint_with_sdk("refuse");
    let projects = projects(text(&tokens, "app_public_pem"));
    let now = SystemTime::now();
    let other_session =
        SessionId::mint(&ProjectId::api_key(API_KEY).expect("key"), None, now, &mut StdRng::seed_from_u64(5));

    for name in ["t1", "jwt"] {
        let token = text(&tokens, name);
        assert_eq!(
            validate_client_token(&projects, token, &other_session, now),
            Err(TokenError::WrongSession),
            "{name}"
        );
        assert_eq!(validate_client_token(&projects, token, &app_session, now), Err(TokenError::WrongProject), "{name}");
        // A day and a bit later (the SDK's default lifetime is 24 h).
        let later = now + std::time::Duration::from_secs(2 * 86_400);
        assert_eq!(validate_client_token(&projects, token, &session, later), Err(TokenError::Expired), "{name}");
    }

    // The same project with another secret: every legacy token fails its signature.
    let mut wrong = Projects::new();
    wrong.insert(Project::legacy(API_KEY, ApiSecret::new("0000000000").expect("secret")).expect("legacy"));
    assert_eq!(validate_client_token(&wrong, text(&tokens, "t1"), &session, now), Err(TokenError::BadSignature));
    assert_eq!(
        validate_client_token(&wrong, text(&tokens, "jwt"), &session, now),
        Err(TokenError::Jwt(JwtError::BadSignature))
    );
    let rest = RestCredential::OpenTokAuth(text(&tokens, "rest"));
    assert_eq!(
        authenticate(&wrong, API_KEY, rest, now, &RestAuthConfig::default()).map(|_| ()),
        Err(AuthError::Jwt(JwtError::BadSignature))
    );
    // The REST JWT lives 3 minutes.
    let later = now + std::time::Duration::from_secs(600);
    assert_eq!(
        authenticate(&projects, API_KEY, rest, later, &RestAuthConfig::default()).map(|_| ()),
        Err(AuthError::Expired)
    );
}
