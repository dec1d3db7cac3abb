//! The session routes of contract §5 under `/v2/project/{projectId}/session/{sessionId}`: list
//! and inspect streams, signal, force-disconnect, force-mute one stream or the whole session.
//!
//! Every route authenticates for the project in its path, then looks the session up by its ID as
//! received (padding and the standard base64 alphabet tolerated); a session that was not created
//! here, or belongs to another project, is a 404. A session created here but with nobody in it is
//! simply empty: no streams, signals reach nobody.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use session::room::{MAX_SIGNAL_DATA, MAX_SIGNAL_TYPE};
use session::service::SessionService;
use session::{ConnectionId, ProjectId, RestAuthConfig, RoomError, SessionId, Stream, StreamId};
use std::time::SystemTime;
use tracing::debug;

use crate::error::{json_response, ApiError};
use crate::route::{ProjectPath, Resource};

/// The keys under which SDKs send the streams a session-wide mute leaves alone (one of them is a
/// typo in a vendor's documentation that SDKs copied).
const EXCLUDED_KEYS: [&str; 3] = ["excludedStreamIds", "excludedStreams", "excudedStreamIds"];

/// What the session routes work with.
pub(crate) struct Context<'a> {
    /// The live state.
    pub(crate) service: &'a SessionService,
    /// REST JWT time rules.
    pub(crate) auth: &'a RestAuthConfig,
    /// The `createdAt` of the project JSON that mute answers carry: when this API started, in ms
    /// since the epoch (projects are configured, not created, so they have no creation time of
    /// their own; a fixed value per process is what an SDK comparing answers expects).
    pub(crate) project_created_ms: u64,
}

/// Answers a request whose path starts with `/v2/project/`.
pub(crate) fn answer(
    cx: &Context<'_>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let route = ProjectPath::parse(path)?;
    let allowed = route.resource.method();
    if *method != allowed {
        debug!(path, %method, "method not allowed");
        let mut r = ApiError::new(405, format!("use {allowed} for this resource")).into_response();
        if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
            r.headers_mut().insert(ALLOW, v);
        }
        return Ok(r);
    }
    let project = crate::auth::authenticate(cx.service, cx.auth, headers, Some(&route.project), now)?;
    let session = cx
        .service
        .session(route.resource.session())
        .filter(|(_, info)| info.project == project)
        .map(|(id, _)| id)
        .ok_or_else(|| ApiError::new(404, "session not found"))?;
    let service = cx.service;
    match &route.resource {
        Resource::Streams { .. } => {
            let items: Vec<Value> = service.streams(&session).iter().map(stream_item).collect();
            Ok(json_response(200, json!({"count": items.len(), "items": items}).to_string()))
        }
        Resource::Stream { stream, .. } => {
            let stream = service
                .stream(&session, &StreamId::from_wire(stream))
                .ok_or_else(|| ApiError::new(404, "stream not found"))?;
            Ok(json_response(200, stream_item(&stream).to_string()))
        }
        Resource::Signal { .. } => signal(service, &session, None, body),
        Resource::ConnectionSignal { connection, .. } => {
            signal(service, &session, Some(ConnectionId::from_wire(connection)), body)
        }
        Resource::Connection { connection, .. } => {
            // The body is ignored: SDKs send none, some with a JSON Content-Type.
            service.force_disconnect(&session, &ConnectionId::from_wire(connection)).map_err(room_error)?;
            Ok(no_content())
        }
        Resource::StreamMute { stream, .. } => {
            // Empty, or a JSON object whose content does not matter (`{}`).
            json_object(body, true)?;
            match service.mute_stream(&session, &StreamId::from_wire(stream)) {
                Ok(()) => Ok(project_json(&project, cx.project_created_ms)),
                // Nobody in the session: no stream either.
                Err(RoomError::UnknownSession) => Err(room_error(RoomError::UnknownStream)),
                Err(e) => Err(room_error(e)),
            }
        }
        Resource::MuteAll { .. } => {
            let (active, excluded) = mute_all_request(body)?;
            service.mute_all(&session, active, excluded).map_err(room_error)?;
            Ok(project_json(&project, cx.project_created_ms))
        }
    }
}

/// A stream as the REST API lists it: `id`, `videoType` (absent for audio-only), `name`,
/// `layoutClassList`.
fn stream_item(s: &Stream) -> Value {
    let mut item = json!({"id": s.id.as_str(), "name": s.name, "layoutClassList": s.layout_class_list});
    if let (Some(t), Some(obj)) = (s.video_type, item.as_object_mut()) {
        obj.insert("videoType".into(), Value::from(t.as_wire()));
    }
    item
}

/// `POST .../signal` and `.../connection/{cid}/signal`: body `{"type", "data"}`, `data` required,
/// `type` optional; 413 beyond 128 bytes of type or 8 KiB of data; 204 when sent.
fn signal(
    service: &SessionService,
    session: &SessionId,
    to: Option<ConnectionId>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let request = json_object(body, false)?;
    let signal_type = match request.get("type") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(ApiError::new(400, "type must be a string")),
    };
    let data = match request.get("data") {
        Some(Value::String(d)) => d.as_str(),
        _ => return Err(ApiError::new(400, "data must be a string")),
    };
    if signal_type.len() > MAX_SIGNAL_TYPE {
        return Err(ApiError::new(413, format!("type is longer than {MAX_SIGNAL_TYPE} bytes")));
    }
    if data.len() > MAX_SIGNAL_DATA {
        return Err(ApiError::new(413, format!("data is longer than {MAX_SIGNAL_DATA} bytes")));
    }
    match service.signal(session, to.as_ref(), signal_type, data) {
        Ok(()) => Ok(no_content()),
        // Nobody is connected: a signal to everyone reaches nobody, which is not an error...
        Err(RoomError::UnknownSession) if to.is_none() => Ok(no_content()),
        // ...but then no connection can be the addressee.
        Err(RoomError::UnknownSession) => Err(room_error(RoomError::UnknownConnection)),
        Err(e) => Err(room_error(e)),
    }
}

/// The body of `POST .../mute`: `active` (absent or `null` = `true`) and the excluded streams
/// under any of [`EXCLUDED_KEYS`] (absent or `null` = none; several are merged).
fn mute_all_request(body: &[u8]) -> Result<(bool, Vec<StreamId>), ApiError> {
    let request = json_object(body, true)?;
    let active = match request.get("active") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::new(400, "active must be true or false")),
    };
    let mut excluded: Vec<StreamId> = Vec::new();
    for key in EXCLUDED_KEYS {
        match request.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(ids)) => {
                for id in ids {
                    let id =
                        id.as_str().ok_or_else(|| ApiError::new(400, format!("{key} must be a list of strings")))?;
                    let id = StreamId::from_wire(id);
                    if !excluded.contains(&id) {
                        excluded.push(id);
                    }
                }
            }
            Some(_) => return Err(ApiError::new(400, format!("{key} must be a list of stream IDs"))),
        }
    }
    Ok((active, excluded))
}

/// The body as a JSON object. An empty (or all-whitespace) body is an empty object when
/// `empty_ok`, a 400 otherwise.
fn json_object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok { Ok(Map::new()) } else { Err(ApiError::new(400, "the body must be a JSON object")) };
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(400, "the body must be a JSON object")),
        Err(e) => Err(ApiError::new(400, format!("the body is not JSON: {e}"))),
    }
}

/// The project JSON of the mute answers. The secret is never echoed: always `""`.
fn project_json(project: &ProjectId, created_ms: u64) -> Response<Full<Bytes>> {
    let body = json!({"id": project.as_str(), "secret": "", "status": "ACTIVE", "name": "",
        "environment": "standard", "createdAt": created_ms});
    json_response(200, body.to_string())
}

/// 204, no body, no Content-Type.
fn no_content() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn room_error(e: RoomError) -> ApiError {
    ApiError::new(e.http_status(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<StreamId> {
        v.iter().map(|s| StreamId::from_wire(s)).collect()
    }

    #[test]
    fn mute_all_bodies() {
        let parse = |b: &str| mute_all_request(b.as_bytes()).map_err(|e| e.status);
        assert_eq!(parse(r#"{"active": true, "excludedStreamIds": ["a"]}"#), Ok((true, ids(&["a"]))));
        assert_eq!(parse(r#"{"active": true, "excludedStreams": ["a", "b"]}"#), Ok((true, ids(&["a", "b"]))));
        assert_eq!(parse(r#"{"active": false, "excudedStreamIds": ["b"]}"#), Ok((false, ids(&["b"]))));
        assert_eq!(
            parse(r#"{"excludedStreamIds": ["a"], "excludedStreams": ["a", "c"]}"#),
            Ok((true, ids(&["a", "c"])))
        );
        assert_eq!(parse(r#"{"active": null, "excludedStreamIds": null}"#), Ok((true, vec![])));
        assert_eq!(parse(""), Ok((true, vec![])));
        assert_eq!(parse("{}"), Ok((true, vec![])));
        assert_eq!(parse(r#"{"active": "yes"}"#), Err(400));
        assert_eq!(parse(r#"{"excludedStreamIds": "a"}"#), Err(400));
        assert_eq!(parse(r#"{"excludedStreams": [1]}"#), Err(400));
        assert_eq!(parse("[]"), Err(400));
        assert_eq!(parse("{"), Err(400));
    }

    #[test]
    fn stream_items() {
        let mut s = Stream {
            id: StreamId::from_wire("s1"),
            connection: ConnectionId::from_wire("c1"),
            created_ms: 5,
            name: "Alice".into(),
            has_audio: true,
            has_video: true,
            video_type: Some(session::VideoType::Screen),
            layout_class_list: vec!["focus".into()],
            audio_muted: false,
        };
        assert_eq!(
            stream_item(&s),
            json!({"id": "s1", "videoType": "screen", "name": "Alice", "layoutClassList": ["focus"]})
        );
        s.video_type = None;
        assert_eq!(stream_item(&s), json!({"id": "s1", "name": "Alice", "layoutClassList": ["focus"]}));
    }
}
