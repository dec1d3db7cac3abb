//! Hostile credentials: REST authentication headers (HS256 `X-OPENTOK-AUTH`, RS256 `Bearer`),
//! client tokens for a session, and session IDs, each checked against a project that exists.
//!
//! Input: one selector byte, then text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session::{
    authenticate, validate_client_token, ApiSecret, Project, Projects, RestAuthConfig, RestCredential, SessionId,
};
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let mut projects = Projects::new();
    let secret = ApiSecret::new("0123456789abcdef0123456789abcdef01234567").expect("secret");
    projects.insert(Project::legacy("12345678", secret).expect("project"));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match selector % 4 {
        0 => {
            let _ =
                authenticate(&projects, "12345678", RestCredential::OpenTokAuth(text), now, &RestAuthConfig::default());
        }
        1 => {
            let (first, second) = text.split_once('\n').unwrap_or((text, ""));
            if let Ok(credential) = RestCredential::from_headers(
                Some(first).filter(|s| !s.is_empty()),
                Some(second).filter(|s| !s.is_empty()),
            ) {
                let _ = authenticate(&projects, "12345678", credential, now, &RestAuthConfig::default());
            }
        }
        2 => {
            let (session, token) = text.split_once('\n').unwrap_or((text, ""));
            if let Ok(session) = SessionId::parse(session) {
                let _ = validate_client_token(&projects, token, &session, now);
            }
        }
        _ => {
            if let Ok(id) = SessionId::parse(text) {
                // What parses prints back to something that parses the same.
                let again = SessionId::parse(&id.to_string()).expect("a printed session ID parses");
                assert_eq!(again.to_string(), id.to_string());
            }
        }
    }
});
