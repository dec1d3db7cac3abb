//! Demo mode only: the demo page (`/demo`), the browser test page (`/demo/test`) and
//! `POST /demo/token`, which creates a routed session of the demo project when none is named and
//! mints a moderator token for it. None of this exists when the API runs without a
//! [`DemoConfig`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response};
use rand::RngCore;
use serde_json::{json, Value};
use session::jwt::sign_hs256;
use session::service::SessionService;
use session::{ApiSecret, MediaMode, ProjectId};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{json_response, ApiError};

const DEMO_HTML: &str = include_str!("../../session/js/demo.html");
const TEST_HTML: &str = include_str!("../../session/js/test-page.html");

/// Lifetime of a demo token, in seconds.
pub const DEMO_TOKEN_LIFETIME: u64 = 3600;

/// The demo project whose tokens `POST /demo/token` mints.
#[derive(Clone)]
pub struct DemoConfig {
    /// Its API key.
    pub project: ProjectId,
    /// Its secret (never sent anywhere; signs the tokens).
    pub secret: ApiSecret,
}

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConfig").field("project", &self.project).finish_non_exhaustive()
    }
}

pub(crate) fn answer(
    demo: &DemoConfig,
    service: &SessionService,
    method: &Method,
    path: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match (method, path) {
        (&Method::GET, "/demo") => Ok(crate::asset("text/html; charset=utf-8", DEMO_HTML)),
        (&Method::GET, "/demo/test") => Ok(crate::asset("text/html; charset=utf-8", TEST_HTML)),
        (&Method::POST, "/demo/token") => token(demo, service, body, now),
        (_, "/demo" | "/demo/test" | "/demo/token") => Err(ApiError::new(405, "method not allowed")),
        _ => Err(ApiError::new(404, format!("no such resource: {path}"))),
    }
}

pub(crate) fn token(
    demo: &DemoConfig,
    service: &SessionService,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::new(400, format!("body is not JSON: {e}")))?
    };
    let wanted = match request.get("sessionId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::new(400, "sessionId must be a string")),
    };
    let role = match request.get("role") {
        None | Some(Value::Null) => "moderator".to_owned(),
        Some(Value::String(r)) if session::Role::from_wire(r).is_some() => r.clone(),
        Some(_) => return Err(ApiError::new(400, "role must be subscriber, publisher, publisheronly or moderator")),
    };
    let data = match request.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() <= 1000 => Some(d.clone()),
        Some(_) => return Err(ApiError::new(400, "data must be a string of at most 1000 characters")),
    };
    let session = match wanted {
        Some(text) => {
            let (id, info) = service.session(&text).ok_or_else(|| ApiError::new(404, "session not found"))?;
            if info.project != demo.project {
                return Err(ApiError::new(403, "not a session of the demo project"));
            }
            id
        }
        None => service.create_session(&demo.project, MediaMode::Routed, None, now),
    };
    let t = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut nonce = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut claims = json!({
        "iss": demo.project.as_str(), "ist": "project", "iat": t, "exp": t + DEMO_TOKEN_LIFETIME,
        "scope": "session.connect", "session_id": session.as_str(), "role": role, "nonce": hex::encode(nonce),
    });
    if let (Some(d), Some(obj)) = (data, claims.as_object_mut()) {
        obj.insert("connection_data".into(), Value::from(d));
    }
    let Value::Object(claims) = claims else { return Err(ApiError::new(500, "claims are not an object")) };
    let token = sign_hs256(&claims, demo.secret.expose().as_bytes());
    let body = json!({"apiKey": demo.project.as_str(), "sessionId": session.as_str(), "token": token});
    Ok(json_response(200, body.to_string()))
}
