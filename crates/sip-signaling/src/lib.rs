//! An outbound SIP user agent for gateways that dial out.
//!
//! The core is sans-IO: [`UserAgent`] never opens a socket, spawns a task,
//! sleeps or reads the clock. Bytes go in with
//! [`UserAgent::handle_input`], time with [`UserAgent::handle_timeout`];
//! datagrams to send come out of [`UserAgent::poll_transmit`], call
//! progress out of [`UserAgent::poll_event`] and the next deadline out of
//! [`UserAgent::poll_timeout`]. The [`driver`] module (feature `tokio`)
//! runs it over real UDP, TCP and TLS sockets.
//!
//! ```
//! use sip_signaling::{parse_message, Framing, Limits, HeaderName};
//! let raw = b"OPTIONS sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
//! f: <sip:a@example.com>;tag=1\r\nt: <sip:bob@example.com>\r\ni: x1\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n";
//! let msg = parse_message(raw, &Limits::default(), Framing::Datagram).unwrap();
//! assert_eq!(msg.cseq().unwrap().seq, 7);
//! assert_eq!(msg.headers.get(&HeaderName::CallId), Some("x1"));
//! ```

mod agent;
mod custom_header;
mod dialog;
pub mod digest;
#[cfg(feature = "tokio")]
pub mod driver;
mod error;
mod framer;
mod header;
mod message;
mod method;
mod parse;
mod session_timer;
mod transaction;
mod transport;
mod uri;

pub use agent::{CallEvent, CallHandle, CallRequest, Config, EndReason, OfferKind, Stats, UserAgent, TCP_REFUSED_FOR};
pub use custom_header::validate_custom_header;
pub use digest::Credentials;
pub use error::{Error, ParseError};
pub use framer::{Frame, StreamFramer};
pub use header::{Header, HeaderName, Headers};
pub use message::{split_list, CSeq, Message, NameAddr, StartLine, Via};
pub use method::Method;
pub use parse::{parse_message, Framing, Limits};
pub use session_timer::{Refresher, SessionExpires};
pub use transaction::Timers;
pub use transport::{Target, Transmit, Transport};
pub use uri::{escape_user, unescape, Host, Params, SipUri, TelUri, Uri};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
