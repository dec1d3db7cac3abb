//! The crate's errors, by cause. None of them ever carries a token, a secret or a key: the
//! `Display` text is a reason fit for logs.

use thiserror::Error;

/// The caller handed us credentials we cannot use (configuration error, not peer input).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    /// An API key must be 1 to 20 ASCII digits.
    #[error("an API key must be 1 to 20 ASCII digits")]
    InvalidApiKey,
    /// An application id must be a UUID (8-4-4-4-12 hex digits).
    #[error("an application id must be a UUID")]
    InvalidApplicationId,
    /// The secret is empty, too long, not printable ASCII, or ends in `.` + word characters
    /// (one SDK then reads it as a file name).
    #[error("unusable API secret: {0}")]
    InvalidSecret(&'static str),
    /// The public key is not an RSA public key in PEM (SPKI or PKCS#1), or is shorter than 2048 bits.
    #[error("unusable RSA public key: {0}")]
    InvalidPublicKey(&'static str),
}

/// A JWT that could not be decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwtError {
    /// Longer than we accept before decoding.
    #[error("token too long")]
    TooLong,
    /// Not three dot-separated parts.
    #[error("not a JWT: expected three dot-separated parts")]
    NotThreeParts,
    /// A part is not base64url.
    #[error("JWT part is not valid base64url")]
    BadBase64,
    /// The header or the claims are not a JSON object.
    #[error("JWT header or claims are not a JSON object")]
    BadJson,
    /// `alg` is missing, `none`, or not the one this credential requires.
    #[error("JWT algorithm not allowed here")]
    AlgorithmNotAllowed,
    /// The signature does not verify with the project's key.
    #[error("JWT signature does not verify")]
    BadSignature,
}

/// Why a REST request was refused. Every variant is an authentication failure and answers
/// HTTP 403 ([`AuthError::http_status`]); the SDKs recognise only 403 as an auth error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Neither `X-OPENTOK-AUTH` nor `Authorization: Bearer` was present.
    #[error("no credentials in the request")]
    MissingCredentials,
    /// `Authorization` is present but not a `Bearer` token.
    #[error("Authorization header is not a Bearer token")]
    NotBearer,
    /// The project in the path is not known.
    #[error("unknown project")]
    UnknownProject,
    /// `X-OPENTOK-AUTH` for an application, or `Bearer` for a legacy project.
    #[error("credential kind does not match the project kind")]
    WrongCredentialKind,
    /// The JWT itself is unusable.
    #[error("{0}")]
    Jwt(#[from] JwtError),
    /// `iss` (HS256) or `application_id` (RS256) is not the project in the path.
    #[error("token issued for another project")]
    WrongIssuer,
    /// `ist` is present and is not `project`.
    #[error("ist is not \"project\"")]
    WrongIssuerType,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0} missing or not of the expected type")]
    MissingClaim(&'static str),
    /// `exp` is in the past (beyond the clock skew).
    #[error("token expired")]
    Expired,
    /// `iat` is in the future (beyond the clock skew).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `nbf` (RFC 7519 §4.1.5) is in the future (beyond the clock skew), or not a number.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `exp - iat` exceeds the maximum lifetime.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// A client token (it names a `scope` or a `session_id`: what a browser joins with), not a
    /// REST credential.
    #[error("a client token is not a REST credential")]
    ClientToken,
}

impl AuthError {
    /// The HTTP status of the response: 403 for every variant (contract §1).
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::MissingCredentials
            | AuthError::NotBearer
            | AuthError::UnknownProject
            | AuthError::WrongCredentialKind
            | AuthError::Jwt(_)
            | AuthError::WrongIssuer
            | AuthError::WrongIssuerType
            | AuthError::MissingClaim(_)
            | AuthError::Expired
            | AuthError::IssuedInFuture
            | AuthError::NotYetValid
            | AuthError::LifetimeTooLong
            | AuthError::ClientToken => 403,
        }
    }

    /// The reason for logs (never contains the token).
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// A session ID that is not one of ours in shape.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionIdError {
    /// Empty or longer than we accept.
    #[error("session id empty or too long")]
    BadLength,
    /// Does not start with `1_`.
    #[error("session id does not start with 1_")]
    MissingPrefix,
    /// The rest is not base64.
    #[error("session id is not base64")]
    BadBase64,
    /// The decoded text is not `1~{id}~{location}~{epoch_ms}~{random}...`.
    #[error("session id has an unexpected layout: {0}")]
    BadLayout(&'static str),
}

/// Why a client token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Empty or longer than we accept.
    #[error("token empty or too long")]
    BadLength,
    /// Neither `T1==` nor a three-part JWT.
    #[error("unknown token format")]
    UnknownFormat,
    /// The T1 body is not base64.
    #[error("T1 token body is not base64")]
    BadBase64,
    /// The T1 body lacks `partner_id`, `sig` or the `:` separator, or repeats a field.
    #[error("malformed T1 token: {0}")]
    Malformed(&'static str),
    /// The issuing project is not known.
    #[error("unknown project")]
    UnknownProject,
    /// The token's project is not the one the session belongs to.
    #[error("token project does not own the session")]
    WrongProject,
    /// A T1 token for an application, HS256 for an application, RS256 for a legacy project.
    #[error("token kind does not match the project kind")]
    WrongCredentialKind,
    /// The T1 HMAC does not match.
    #[error("T1 signature does not verify")]
    BadSignature,
    /// The JWT itself is unusable.
    #[error("{0}")]
    Jwt(#[from] JwtError),
    /// `scope` is not `session.connect`.
    #[error("scope is not session.connect")]
    WrongScope,
    /// The token is for another session (or its session id is unreadable).
    #[error("token is for another session")]
    WrongSession,
    /// `exp` / `expire_time` is not in the future.
    #[error("token expired")]
    Expired,
    /// `exp` / `expire_time` is further ahead than a client token may live
    /// ([`MAX_CLIENT_TOKEN_LIFETIME`](crate::client_token::MAX_CLIENT_TOKEN_LIFETIME)).
    #[error("token expires too far in the future (at most 30 days)")]
    LifetimeTooLong,
    /// A JWT's `nbf` (RFC 7519 §4.1.5) is more than [`NBF_LEEWAY`](crate::client_token::NBF_LEEWAY)
    /// in the future, or not a number.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// A required field is missing or has the wrong type.
    #[error("field {0} missing or not of the expected type")]
    MissingField(&'static str),
    /// The role is not subscriber, publisher, publisheronly or moderator.
    #[error("unknown role")]
    InvalidRole,
    /// `connection_data` is longer than 1000 characters.
    #[error("connection_data longer than 1000 characters")]
    ConnectionDataTooLong,
}

/// Why a change to a live session was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoomError {
    /// The session is not live here (or does not exist).
    #[error("session not found")]
    UnknownSession,
    /// No such connection (in that session).
    #[error("connection not found")]
    UnknownConnection,
    /// No such stream (in that session).
    #[error("stream not found")]
    UnknownStream,
    /// The caller's role does not allow it.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// A signal beyond the contract's sizes.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// The request itself is wrong.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The session has as many connections as it may.
    #[error("session is full")]
    Full,
}

impl RoomError {
    /// The HTTP status the REST API and the signalling channel answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            RoomError::UnknownSession | RoomError::UnknownConnection | RoomError::UnknownStream => 404,
            RoomError::Forbidden(_) => 403,
            RoomError::TooLarge(_) => 413,
            RoomError::Invalid(_) => 400,
            RoomError::Full => 409,
        }
    }
}
