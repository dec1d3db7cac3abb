//! RFC 4028 session timers.

use crate::header::HeaderName;
use crate::message::Message;
use crate::uri::Params;
use std::time::{Duration, Instant};

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The UAC of the transaction that set the interval.
    Uac,
    /// The UAS of that transaction.
    Uas,
}

/// A parsed `Session-Expires` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// Interval in seconds.
    pub interval: u32,
    /// The `refresher` parameter, if present.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Reads `Session-Expires` (or `x`) from a message; malformed values
    /// count as absent.
    pub fn from_message(m: &Message) -> Option<SessionExpires> {
        let v = m.headers.get(&HeaderName::SessionExpires)?;
        let (num, params) = match v.find(';') {
            Some(i) => (&v[..i], Params::parse(&v[i..]).ok()?),
            None => (v, Params::default()),
        };
        let interval: u32 = num.trim().parse().ok()?;
        if interval == 0 {
            return None;
        }
        let refresher = match params.value("refresher").map(str::to_ascii_lowercase).as_deref() {
            Some("uac") => Some(Refresher::Uac),
            Some("uas") => Some(Refresher::Uas),
            _ => None,
        };
        Some(SessionExpires { interval, refresher })
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        match self.refresher {
            Some(Refresher::Uac) => format!("{};refresher=uac", self.interval),
            Some(Refresher::Uas) => format!("{};refresher=uas", self.interval),
            None => self.interval.to_string(),
        }
    }
}

/// A running session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    pub interval: u32,
    /// Whether we send the refreshes.
    pub we_refresh: bool,
    /// When we refresh (half the interval) or, when the peer refreshes,
    /// when we give up and send BYE (RFC 4028 10: interval minus
    /// min(32 s, interval / 3)).
    pub deadline: Instant,
    /// Refresh sent, waiting for its answer.
    pub refreshing: bool,
    /// Absolute expiry of the session.
    pub expiry: Instant,
}

impl SessionTimer {
    pub fn start(now: Instant, interval: u32, we_refresh: bool) -> SessionTimer {
        let secs = Duration::from_secs(u64::from(interval));
        let deadline = if we_refresh {
            now + secs / 2
        } else {
            now + secs - Duration::from_secs(u64::from((interval / 3).min(32)))
        };
        SessionTimer { interval, we_refresh, deadline, refreshing: false, expiry: now + secs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_message, Framing, Limits};

    #[test]
    fn parses_and_schedules() {
        let m =
            parse_message(b"SIP/2.0 200 OK\r\nx: 1800 ;refresher=UAS\r\n\r\n", &Limits::default(), Framing::Datagram)
                .expect("p");
        let se = SessionExpires::from_message(&m).expect("se");
        assert_eq!(se, SessionExpires { interval: 1800, refresher: Some(Refresher::Uas) });
        assert_eq!(se.to_header(), "1800;refresher=uas");
        let now = Instant::now();
        assert_eq!(SessionTimer::start(now, 1800, true).deadline, now + Duration::from_secs(900));
        assert_eq!(SessionTimer::start(now, 1800, false).deadline, now + Duration::from_secs(1768));
        assert_eq!(SessionTimer::start(now, 90, false).deadline, now + Duration::from_secs(60));
        let bad =
            parse_message(b"SIP/2.0 200 OK\r\nSession-Expires: soon\r\n\r\n", &Limits::default(), Framing::Datagram)
                .expect("p");
        assert!(SessionExpires::from_message(&bad).is_none());
    }
}
