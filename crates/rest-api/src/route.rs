//! Which resource a `/v2/project/{projectId}/...` path names, and which methods it takes.
//!
//! The raw path is split at `/` first and each segment percent-decoded afterwards, so an ID an
//! SDK escaped (`%3D` padding, `%2F` of a standard-alphabet session ID) stays one segment. `+` in a
//! path is a plus sign, not a space.

use hyper::Method;

use crate::error::ApiError;

/// The prefix of every project route.
pub(crate) const PREFIX: &str = "/v2/project/";

/// A parsed project path: the project and the resource under it, IDs percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectPath {
    /// `{projectId}` as written in the path.
    pub(crate) project: String,
    /// What it names.
    pub(crate) resource: Resource,
}

/// The resources under `/v2/project/{projectId}` that this crate serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resource {
    /// `session/{sid}/stream`.
    Streams { session: String },
    /// `session/{sid}/stream/{streamId}`.
    Stream { session: String, stream: String },
    /// `session/{sid}/stream/{streamId}/mute`.
    StreamMute { session: String, stream: String },
    /// `session/{sid}/mute`.
    MuteAll { session: String },
    /// `session/{sid}/signal`.
    Signal { session: String },
    /// `session/{sid}/connection/{connectionId}`.
    Connection { session: String, connection: String },
    /// `session/{sid}/connection/{connectionId}/signal`.
    ConnectionSignal { session: String, connection: String },
}

impl Resource {
    /// The one method the resource answers.
    pub(crate) fn method(&self) -> Method {
        match self {
            Resource::Streams { .. } | Resource::Stream { .. } => Method::GET,
            Resource::Connection { .. } => Method::DELETE,
            Resource::StreamMute { .. }
            | Resource::MuteAll { .. }
            | Resource::Signal { .. }
            | Resource::ConnectionSignal { .. } => Method::POST,
        }
    }

    /// The session ID segment, percent-decoded.
    pub(crate) fn session(&self) -> &str {
        match self {
            Resource::Streams { session }
            | Resource::Stream { session, .. }
            | Resource::StreamMute { session, .. }
            | Resource::MuteAll { session }
            | Resource::Signal { session }
            | Resource::Connection { session, .. }
            | Resource::ConnectionSignal { session, .. } => session,
        }
    }
}

impl ProjectPath {
    /// Parses a path (trailing `/` already trimmed) that starts with [`PREFIX`]. An unknown shape
    /// is a 404; a segment that does not decode to UTF-8 is a 400.
    pub(crate) fn parse(path: &str) -> Result<ProjectPath, ApiError> {
        let not_found = || ApiError::new(404, format!("no such resource: {path}"));
        let rest = path.strip_prefix(PREFIX).ok_or_else(not_found)?;
        let segments = rest.split('/').map(percent_decode).collect::<Result<Vec<String>, ApiError>>()?;
        if segments.iter().any(String::is_empty) {
            return Err(not_found());
        }
        let s = |i: usize| segments[i].clone();
        let resource = match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [_, "session", _, "stream"] => Resource::Streams { session: s(2) },
            [_, "session", _, "stream", _] => Resource::Stream { session: s(2), stream: s(4) },
            [_, "session", _, "stream", _, "mute"] => Resource::StreamMute { session: s(2), stream: s(4) },
            [_, "session", _, "mute"] => Resource::MuteAll { session: s(2) },
            [_, "session", _, "signal"] => Resource::Signal { session: s(2) },
            [_, "session", _, "connection", _] => Resource::Connection { session: s(2), connection: s(4) },
            [_, "session", _, "connection", _, "signal"] => {
                Resource::ConnectionSignal { session: s(2), connection: s(4) }
            }
            _ => return Err(not_found()),
        };
        Ok(ProjectPath { project: s(0), resource })
    }
}

/// Decodes `%XX` escapes of one path segment. A `%` not followed by two hex digits is kept as it
/// is (lenient); the decoded bytes must be UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex_value(h).zip(hex_value(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::new(400, "a path segment does not decode to UTF-8"))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<ProjectPath, u16> {
        ProjectPath::parse(path).map_err(|e| e.status)
    }

    #[test]
    fn decodes_segments_after_splitting() {
        assert_eq!(percent_decode("1_MX4xMjM%3D").map_err(|e| e.status), Ok("1_MX4xMjM=".to_owned()));
        assert_eq!(percent_decode("a%2Fb+c").map_err(|e| e.status), Ok("a/b+c".to_owned()));
        assert_eq!(percent_decode("100%").map_err(|e| e.status), Ok("100%".to_owned()));
        assert_eq!(percent_decode("%zz%4").map_err(|e| e.status), Ok("%zz%4".to_owned()));
        assert_eq!(percent_decode("%e2%82%ac").map_err(|e| e.status), Ok("\u{20ac}".to_owned()));
        assert_eq!(percent_decode("%ff").map_err(|e| e.status), Err(400));
        let p = parse("/v2/project/123/session/1_ab%2Fcd%3D/stream/s%201").expect("parses");
        assert_eq!(p.project, "123");
        assert_eq!(p.resource, Resource::Stream { session: "1_ab/cd=".into(), stream: "s 1".into() });
    }

    #[test]
    fn every_route_and_its_method() {
        let cases = [
            ("/v2/project/1/session/S/stream", Resource::Streams { session: "S".into() }, Method::GET),
            (
                "/v2/project/1/session/S/stream/T",
                Resource::Stream { session: "S".into(), stream: "T".into() },
                Method::GET,
            ),
            (
                "/v2/project/1/session/S/stream/T/mute",
                Resource::StreamMute { session: "S".into(), stream: "T".into() },
                Method::POST,
            ),
            ("/v2/project/1/session/S/mute", Resource::MuteAll { session: "S".into() }, Method::POST),
            ("/v2/project/1/session/S/signal", Resource::Signal { session: "S".into() }, Method::POST),
            (
                "/v2/project/1/session/S/connection/C",
                Resource::Connection { session: "S".into(), connection: "C".into() },
                Method::DELETE,
            ),
            (
                "/v2/project/1/session/S/connection/C/signal",
                Resource::ConnectionSignal { session: "S".into(), connection: "C".into() },
                Method::POST,
            ),
        ];
        for (path, resource, method) in cases {
            let p = parse(path).unwrap_or_else(|s| panic!("{path}: {s}"));
            assert_eq!(p.project, "1");
            assert_eq!(p.resource.session(), "S");
            assert_eq!(p.resource.method(), method, "{path}");
            assert_eq!(p.resource, resource);
        }
    }

    #[test]
    fn unknown_shapes_are_404() {
        for path in [
            "/v2/project/1",
            "/v2/project/1/session",
            "/v2/project/1/session/S",
            "/v2/project/1/session//stream",
            "/v2/project//session/S/stream",
            "/v2/project/1/session/S/stream/T/unmute",
            "/v2/project/1/session/S/connection/C/play-dtmf",
            "/v2/project/1/session/S/play-dtmf",
            "/v2/project/1/dial",
            "/v2/project/1/archive",
            "/v2/other/1/session/S/stream",
        ] {
            assert_eq!(parse(path), Err(404), "{path}");
        }
    }
}
