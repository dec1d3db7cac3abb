//! Identity and credentials of the Vonage Video API, as a self-hosted gateway needs them:
//! projects and their secrets or public keys ([`project`]), authentication of REST requests
//! ([`rest_auth`]), session IDs and the sessions registry ([`session_id`]), and client tokens in
//! both formats ([`client_token`]).
//!
//! Nothing here does IO or reads the clock: time comes in as `now: SystemTime`, randomness as an
//! `Rng`. Errors never carry a token or a secret.

pub mod client_token;
mod encoding;
pub mod error;
pub mod jwt;
pub mod project;
pub mod rest_auth;
pub mod room;
pub mod router;
pub mod service;
pub mod session_id;
pub mod signalling;

pub use client_token::{validate_client_token, ClientGrant, Role};
pub use error::{AuthError, CredentialError, JwtError, RoomError, SessionIdError, TokenError};
pub use project::{ApiSecret, Credentials, Project, ProjectId, Projects};
pub use rest_auth::{authenticate, RestAuthConfig, RestCredential};
pub use room::{
    Connection, ConnectionId, ConnectionKind, DisconnectReason, Event, EventKind, MuteTarget, Rooms, RoomsConfig,
    Stream, StreamEndReason, StreamId, StreamSpec, VideoType,
};
pub use session_id::{MediaMode, SessionId, SessionInfo, Sessions};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
