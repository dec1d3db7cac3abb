//! `POST /v2/project/{projectId}/dial` (contract §4): validation, authentication, the session and
//! token checks, and the exact answer. Placing the call is the [`Dialer`]'s job (the SIP bridge,
//! a crate above this one), given to [`crate::RestApi::with_dialer`].

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{HeaderMap, Response};
use serde_json::{json, Map, Value};
use session::service::SessionService;
use session::{validate_client_token, ClientGrant, MediaMode, ProjectId, RestAuthConfig, SessionId, StreamId};

use crate::error::{json_response, ApiError};

/// What the SIP side of a dial asks for (the `sip` object), validated.
#[derive(Clone, PartialEq, Eq)]
pub struct SipOptions {
    /// `sip:` or `sips:` URI; `;transport=tls|tcp|udp` picks the signalling transport.
    pub uri: String,
    /// The From identity, when given.
    pub from: Option<String>,
    /// Custom headers, in the order received.
    pub headers: Vec<(String, String)>,
    /// Digest credentials (`auth`), when given.
    pub auth: Option<(String, String)>,
    /// SRTP media.
    pub secure: bool,
    /// The composed video grid.
    pub video: bool,
    /// Force mute, `*6` and `muteForced` apply to this call.
    pub observe_force_mute: bool,
    /// The streams the SIP side hears and sees; `None` is every stream, including later ones.
    pub streams: Option<Vec<StreamId>>,
}

impl std::fmt::Debug for SipOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipOptions")
            .field("uri", &self.uri)
            .field("from", &self.from)
            .field("headers", &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("auth", &self.auth.as_ref().map(|(u, _)| u))
            .field("secure", &self.secure)
            .field("video", &self.video)
            .field("observe_force_mute", &self.observe_force_mute)
            .field("streams", &self.streams)
            .finish()
    }
}

/// A dial request that passed every check.
#[derive(Debug, Clone)]
pub struct DialRequest {
    /// The project (authenticated).
    pub project: ProjectId,
    /// The routed session to join.
    pub session: SessionId,
    /// What the token grants (its `connection_data` becomes the SIP connection's data).
    pub grant: ClientGrant,
    /// The SIP side.
    pub sip: SipOptions,
}

/// What the dial answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialAnswer {
    /// The call's ID (a UUID).
    pub id: String,
    /// The SIP connection, already in the session.
    pub connection_id: String,
    /// The SIP stream, already in the session.
    pub stream_id: String,
    /// When the call was created, ms since the epoch.
    pub created_ms: u64,
}

/// Places calls. Implemented by the SIP bridge; `dial` must create the connection and stream in
/// the session before it returns, then place the call in the background.
pub trait Dialer: Send + Sync + std::fmt::Debug {
    /// Starts a call. An error is answered as it is (its status and message).
    fn dial(&self, request: DialRequest) -> Result<DialAnswer, ApiError>;

    /// Queues DTMF digits (`0-9`, `*`, `#`, `p` = 500 ms pause; already validated; RFC 4733, or SIP
    /// INFO for a call without telephone-event) for one SIP
    /// connection of the session, or for every SIP call in it when `connection` is `None`.
    fn play_dtmf(
        &self,
        session: &SessionId,
        connection: Option<&session::ConnectionId>,
        digits: &str,
    ) -> Result<(), ApiError>;
}

/// Checks a `play-dtmf` body: `{"digits": "..."}` with digits matching `^[0-9*#p]+$`.
pub(crate) fn dtmf_digits(body: &[u8]) -> Result<String, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let digits = match v.get("digits") {
        Some(Value::String(d)) => d.clone(),
        Some(_) => return Err(bad("digits must be a string")),
        None => return Err(bad("digits is required")),
    };
    if digits.is_empty() || digits.len() > 256 || !digits.chars().all(|c| c.is_ascii_digit() || "*#p".contains(c)) {
        return Err(bad("digits must match ^[0-9*#p]+$ (at most 256 of them)"));
    }
    Ok(digits)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(400, message)
}

fn opt_bool(sip: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match sip.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // One SDK sends booleans as strings.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(bad(format!("sip.{key} must be a boolean"))),
    }
}

fn opt_string(map: &Map<String, Value>, key: &str, label: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{label} must be a string"))),
    }
}

/// A custom header the SIP user agent will send: the same rule it applies (a token name, not one
/// of the headers it sets itself, a bounded value without line breaks), so that a header it would
/// refuse is a 400 here rather than a call that fails after the 200.
fn check_header(name: &str, value: &str) -> Result<(), ApiError> {
    sip_signaling::validate_custom_header(name, value).map_err(|e| bad(format!("sip.headers: {e}")))
}

/// Digest credentials go into a quoted string of the `Authorization` header: no control
/// characters (a line break there would write headers of its own), and a sane length.
fn check_credential(label: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(bad(format!("{label} must be at most 256 bytes without control characters")));
    }
    Ok(())
}

/// Reads and checks the `sip` object.
pub(crate) fn sip_options(sip: &Map<String, Value>) -> Result<SipOptions, ApiError> {
    let uri = match sip.get("uri") {
        Some(Value::String(u)) if !u.trim().is_empty() => u.trim().to_owned(),
        Some(Value::String(_)) | None | Some(Value::Null) => return Err(bad("sip.uri is required")),
        Some(_) => return Err(bad("sip.uri must be a string")),
    };
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
        return Err(bad("sip.uri must be a sip: or sips: URI"));
    }
    if sip_signaling::Uri::parse(&uri).is_err() || uri.len() > 1024 {
        return Err(bad(format!("sip.uri is not a valid SIP URI: {uri:?}")));
    }
    let from = opt_string(sip, "from", "sip.from")?;
    if from.as_ref().is_some_and(|f| f.len() > 256 || f.chars().any(|c| c.is_control())) {
        return Err(bad("sip.from must be a short identity without control characters"));
    }
    let headers = match sip.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => {
            let mut out = Vec::new();
            for (name, value) in h {
                let value = match value {
                    Value::String(v) => v.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(bad(format!("sip.headers.{name} must be a string"))),
                };
                check_header(name, &value)?;
                out.push((name.clone(), value));
            }
            out
        }
        Some(_) => return Err(bad("sip.headers must be an object of strings")),
    };
    let auth = match sip.get("auth") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => {
            let username = opt_string(a, "username", "sip.auth.username")?;
            let password = match a.get("password") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(p)) => p.clone(),
                Some(_) => return Err(bad("sip.auth.password must be a string")),
            };
            check_credential("sip.auth.password", &password)?;
            match username {
                Some(u) => {
                    check_credential("sip.auth.username", &u)?;
                    Some((u, password))
                }
                None => return Err(bad("sip.auth.username is required with sip.auth")),
            }
        }
        Some(_) => return Err(bad("sip.auth must be an object with username and password")),
    };
    let streams = match sip.get("streams") {
        // Empty means absent: the SDKs that drop empty options send nothing for it, and the same
        // call must mean the same thing whichever SDK made it.
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok(StreamId::from_wire(s)),
                    _ => Err(bad("sip.streams must be an array of stream IDs")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|mut ids| {
                    // A stream named twice is one stream (heard once, one tile).
                    let mut seen = std::collections::HashSet::new();
                    ids.retain(|id| seen.insert(id.clone()));
                    ids
                })?,
        ),
        Some(_) => return Err(bad("sip.streams must be an array of stream IDs")),
    };
    Ok(SipOptions {
        uri,
        from,
        headers,
        auth,
        secure: opt_bool(sip, "secure")?,
        video: opt_bool(sip, "video")?,
        observe_force_mute: opt_bool(sip, "observeForceMute")?,
        streams,
    })
}

/// Answers an authenticated dial for `project`.
pub(crate) fn dial(
    service: &SessionService,
    dialer: Option<&dyn Dialer>,
    project: ProjectId,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let request: Value = serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let Value::Object(request) = request else { return Err(bad("body must be a JSON object")) };
    let session_text = match request.get("sessionId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(bad("sessionId must be a string")),
        None => return Err(bad("sessionId is required")),
    };
    let token = match request.get("token") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(bad("token must be a string")),
        None => return Err(bad("token is required")),
    };
    let sip = match request.get("sip") {
        Some(Value::Object(s)) => sip_options(s)?,
        Some(_) => return Err(bad("sip must be an object")),
        None => return Err(bad("sip is required")),
    };
    SessionId::parse(&session_text).map_err(|e| bad(format!("sessionId is not a session ID: {e}")))?;
    let (session, info) = service
        .session(&session_text)
        .filter(|(_, info)| info.project == project)
        .ok_or_else(|| ApiError::new(404, "session not found"))?;
    if info.media_mode != MediaMode::Routed {
        return Err(ApiError::new(409, "the session is relayed; SIP calls need a routed session"));
    }
    let grant = service
        .with_projects(|p| validate_client_token(p, &token, &session, now))
        .map_err(|e| ApiError::new(403, format!("token is not valid for this session: {e}")))?;
    let dialer = dialer.ok_or_else(|| ApiError::new(501, "this gateway has no SIP bridge configured"))?;
    let answer = dialer.dial(DialRequest { project: project.clone(), session: session.clone(), grant, sip })?;
    let body = json!({
        "id": answer.id,
        "connectionId": answer.connection_id,
        "streamId": answer.stream_id,
        "projectId": project.as_str(),
        "sessionId": session.as_str(),
        "createdAt": answer.created_ms,
        "updatedAt": answer.created_ms,
    });
    Ok(json_response(200, body.to_string()))
}

/// Authenticates, then [`dial`].
pub(crate) fn answer(
    service: &SessionService,
    auth: &RestAuthConfig,
    dialer: Option<&dyn Dialer>,
    project: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let project = crate::auth::authenticate(service, auth, headers, Some(project), now)?;
    dial(service, dialer, project, body, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<SipOptions, u16> {
        let Value::Object(m) = v else { return Err(0) };
        sip_options(&m).map_err(|e| e.status)
    }

    #[test]
    fn sip_objects_as_sdks_send_them() {
        let full = parse(json!({"uri": "sip:user@sip.partner.com;transport=tls", "from": "from@example.com",
            "headers": {"X-Foo": "bar", "X-Num": 5}, "auth": {"username": "u", "password": "p"},
            "secure": true, "video": "true", "observeForceMute": true, "streams": ["s1", "s2"], "unknown": 1}))
        .expect("full");
        assert_eq!(full.headers, vec![("X-Foo".into(), "bar".into()), ("X-Num".into(), "5".into())]);
        assert_eq!(full.auth, Some(("u".into(), "p".into())));
        assert!(full.secure && full.video && full.observe_force_mute);
        assert_eq!(full.streams.map(|s| s.len()), Some(2));
        let nulls = parse(json!({"uri": "sip:a@b", "from": null, "headers": null, "auth": null, "secure": null,
            "video": false, "streams": null}))
        .expect("nulls");
        assert_eq!((nulls.from, nulls.auth, nulls.streams, nulls.secure), (None, None, None, false));
        // An empty list is absent (everything heard), as from the SDKs that drop empty options.
        assert_eq!(parse(json!({"uri": "sip:a@b", "streams": []})).expect("empty").streams, None);
        let twice = parse(json!({"uri": "sip:a@b", "streams": ["s2", "s1", "s2", "s1"]})).expect("twice");
        assert_eq!(
            twice.streams,
            Some(vec![StreamId::from_wire("s2"), StreamId::from_wire("s1")]),
            "each once, in order"
        );
        assert!(!format!("{:?}", full_debug()).contains("secret-pw"), "Debug never shows the password");
    }

    fn full_debug() -> SipOptions {
        let Value::Object(m) = json!({"uri": "sip:a@b", "auth": {"username": "u", "password": "secret-pw"}}) else {
            unreachable!()
        };
        sip_options(&m).expect("ok")
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(dtmf_digits(br#"{"digits": "0123456789*#p"}"#).map_err(|e| e.status), Ok("0123456789*#p".into()));
        for body in [
            &br#"{"digits": "12a"}"#[..],
            br#"{"digits": ""}"#,
            br#"{"digits": 5}"#,
            b"{}",
            b"12",
            br#"{"digits": "1 2"}"#,
        ] {
            assert_eq!(dtmf_digits(body).map_err(|e| e.status), Err(400), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn bad_sip_objects_say_which_field() {
        for (v, field) in [
            (json!({}), "sip.uri"),
            (json!({"uri": 5}), "sip.uri"),
            (json!({"uri": "tel:+123"}), "sip.uri"),
            (json!({"uri": "sip:"}), "sip.uri"),
            (json!({"uri": "sip:a@b", "secure": "maybe"}), "sip.secure"),
            (json!({"uri": "sip:a@b", "headers": ["x"]}), "sip.headers"),
            (json!({"uri": "sip:a@b", "headers": {"Bad Name": "x"}}), "sip.headers"),
            (json!({"uri": "sip:a@b", "headers": {"X-A": "a\r\nVia: evil"}}), "sip.headers"),
            // Headers the user agent sets itself, and a value it would refuse: a 400 here, not a
            // call that fails after the 200.
            (json!({"uri": "sip:a@b", "headers": {"Via": "SIP/2.0/UDP evil"}}), "sip.headers"),
            (json!({"uri": "sip:a@b", "headers": {"contact": "<sip:evil@x>"}}), "sip.headers"),
            (json!({"uri": "sip:a@b", "headers": {"Max-Forwards": "1"}}), "sip.headers"),
            (json!({"uri": "sip:a@b", "headers": {"X-Big": "x".repeat(5000)}}), "sip.headers"),
            (json!({"uri": "sip:a@b", "auth": {"password": "p"}}), "sip.auth"),
            // A line break in a credential would write headers of its own into the Authorization.
            (json!({"uri": "sip:a@b", "auth": {"username": "u\r\nVia: evil", "password": "p"}}), "sip.auth.username"),
            (json!({"uri": "sip:a@b", "auth": {"username": "u", "password": "p\n"}}), "sip.auth.password"),
            (json!({"uri": "sip:a@b", "streams": "s1"}), "sip.streams"),
            (json!({"uri": "sip:a@b", "streams": [1]}), "sip.streams"),
        ] {
            let Value::Object(m) = v.clone() else { unreachable!() };
            let e = sip_options(&m).expect_err("refused");
            assert_eq!(e.status, 400, "{v}");
            assert!(e.message.contains(field), "{v}: {} should name {field}", e.message);
        }
    }
}
