//! Errors as the REST contract writes them: `{"code": <status>, "message": "..."}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Human-readable cause (never a token or secret).
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    /// The HTTP response: the contract's JSON body, exact `application/json`.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "code": self.status, "message": self.message }).to_string();
        json_response(self.status, body)
    }
}

/// A JSON response with the exact Content-Type one SDK compares against.
pub fn json_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}
