//! What the caller configures: retry tuning, TLS, and each project's callback target.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;

use crate::error::CallbackError;

/// Tuning for [`Callbacks::open`](crate::Callbacks::open).
///
/// Backoff: after the `n`-th failed attempt of an event (n = 1, 2, ...) the next attempt of that
/// event waits `d = min(max_backoff, initial_backoff * 2^(n-1))`, scaled by jitter to
/// `d * (1 - jitter * r)` with `r` uniform in `[0, 1)`. `jitter = 1.0` is *full jitter* (uniform
/// in `(0, d]`), `jitter = 0.5` is *equal jitter* (`d/2` plus uniform up to `d/2`), `0.0` none.
#[derive(Clone)]
pub struct CallbackConfig {
    /// The wait after the first failure of an event. Default 500 ms.
    pub initial_backoff: Duration,
    /// The cap on the (pre-jitter) wait. Default 60 s.
    pub max_backoff: Duration,
    /// The jitter fraction in `[0, 1]` (values outside are clamped). Default 0.5 (equal jitter).
    pub jitter: f64,
    /// The limit on one attempt: connecting, the TLS handshake, sending, the response head and
    /// reading (and discarding) the response body. Going over it is a failed attempt. Default 10 s.
    pub request_timeout: Duration,
    /// `None` (the default): an event is retried until it is delivered or
    /// [`max_age`](CallbackConfig::max_age) passes, and the later events of its order key wait
    /// behind it. `Some(n)`: after `n` failed attempts
    /// (counted across restarts) the event moves to the store's dead-letter table (kept on disk,
    /// listed by [`Callbacks::dead_letters`](crate::Callbacks::dead_letters), counted in
    /// [`CallbackStats::dead_letters`](crate::CallbackStats::dead_letters)) and the next event of
    /// its key goes ahead. `Some(0)` is treated as `Some(1)`.
    pub max_attempts: Option<u32>,
    /// An event still undelivered this long after it was enqueued (across restarts) is given up:
    /// kept as a dead letter, and the next event of its key goes ahead. Default 72 hours, a long
    /// weekend's outage of the receiver; `None`: never.
    pub max_age: Option<Duration>,
    /// At most this many events queued per project: beyond it (a receiver down for long, a
    /// flood), new events of the project are given up at once (kept as dead letters), so that
    /// the store cannot fill the disk. Default 100,000; `None`: no limit.
    pub max_backlog_per_project: Option<u64>,
    /// At most this many dead letters kept in the store; burying more deletes the oldest.
    /// Default 100,000; `None`: no limit.
    pub max_dead_letters: Option<u64>,
    /// At most this many requests in flight at once, across all keys (at least 1). Default 64.
    pub max_in_flight: usize,
    /// A project's circuit breaker: after this many failed attempts in a row (whatever their
    /// keys) its keys stop retrying each on its own; after a cooldown (the backoff formula, in the
    /// times the circuit opened) one attempt probes the target, and its success lets every key go
    /// on. Default `Some(5)`; `None` lets every key retry on its own backoff.
    pub circuit_after: Option<u32>,
    /// The TLS client configuration for `https://` URLs. `None` (the default): rustls with the
    /// `ring` provider, the safe default protocol versions and the system's root certificates
    /// (`rustls-native-certs`). A configuration given here is used as it is, except that its ALPN
    /// list is replaced by `http/1.1`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The projects known at start-up. Events left on disk by a previous run for a project that is
    /// not here wait (on disk, counted in the backlog) until
    /// [`Callbacks::set_project`](crate::Callbacks::set_project) gives it a target or
    /// [`max_age`](CallbackConfig::max_age) gives them up.
    pub projects: HashMap<String, ProjectCallbacks>,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            jitter: 0.5,
            request_timeout: Duration::from_secs(10),
            max_attempts: None,
            max_age: Some(Duration::from_secs(72 * 3600)),
            max_backlog_per_project: Some(100_000),
            max_dead_letters: Some(100_000),
            max_in_flight: 64,
            circuit_after: Some(5),
            tls: None,
            projects: HashMap::new(),
        }
    }
}

impl fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("jitter", &self.jitter)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_age", &self.max_age)
            .field("max_backlog_per_project", &self.max_backlog_per_project)
            .field("max_dead_letters", &self.max_dead_letters)
            .field("max_in_flight", &self.max_in_flight)
            .field("circuit_after", &self.circuit_after)
            .field("tls", &self.tls.as_ref().map(|_| "custom"))
            .field("projects", &self.projects)
            .finish()
    }
}

/// Where one project's callbacks go.
///
/// `Debug` shows the URL and whether a secret is set, never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ProjectCallbacks {
    /// The callback URL: absolute, `http://` or `https://`, with a host. Requests are `POST`ed to
    /// it as it is (redirects are not followed: a 3xx is a failed attempt).
    pub url: String,
    /// When set, each request carries `Authorization: <JWT>` signed HS256 with this secret (see
    /// the crate documentation for the claims).
    pub signature_secret: Option<String>,
}

impl ProjectCallbacks {
    /// An unsigned target.
    pub fn new(url: impl Into<String>) -> Self {
        ProjectCallbacks { url: url.into(), signature_secret: None }
    }

    /// A target whose requests are signed with `secret`.
    pub fn signed(url: impl Into<String>, secret: impl Into<String>) -> Self {
        ProjectCallbacks { url: url.into(), signature_secret: Some(secret.into()) }
    }
}

impl fmt::Debug for ProjectCallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectCallbacks")
            .field("url", &self.url)
            .field("signature_secret", &self.signature_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A validated target, as the delivery task uses it.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) uri: Uri,
    pub(crate) secret: Option<Arc<[u8]>>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("host", &self.uri.host()).field("signed", &self.secret.is_some()).finish()
    }
}

/// Checks a project's URL and prepares it for delivery.
pub(crate) fn validate(project: &str, target: &ProjectCallbacks) -> Result<Target, CallbackError> {
    let invalid = |reason| CallbackError::InvalidUrl { project: project.to_string(), reason };
    let uri: Uri = target.url.trim().parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(_) => return Err(invalid("scheme must be http or https")),
        None => return Err(invalid("not an absolute URL")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("no host"));
    };
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("user information in the URL is not supported"));
    }
    let secret = target.signature_secret.as_ref().map(|s| Arc::from(s.as_bytes()));
    Ok(Target { uri, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        for url in ["http://127.0.0.1:8080/cb", "https://example.com/hooks?x=1", "HTTPS://example.com", " http://h/ "] {
            let t = validate("p", &ProjectCallbacks::new(url)).expect(url);
            assert!(t.uri.host().is_some(), "{url}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_posted_to() {
        for (url, why) in [
            ("", "not a URL"),
            ("/relative/path", "not an absolute URL"),
            ("ftp://example.com/x", "scheme must be http or https"),
            ("ws://example.com/x", "scheme must be http or https"),
            ("http://user:pw@example.com/x", "user information in the URL is not supported"),
            ("not a url at all", "not a URL"),
        ] {
            match validate("p", &ProjectCallbacks::new(url)) {
                Err(CallbackError::InvalidUrl { reason, .. }) => assert_eq!(reason, why, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = ProjectCallbacks::signed("https://example.com/cb", "s3cr3t-value");
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        let target = validate("p", &t).expect("valid");
        assert!(!format!("{target:?}").contains("s3cr3t"));
        let mut cfg = CallbackConfig::default();
        cfg.projects.insert("p".into(), t);
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = CallbackConfig::default();
        assert_eq!(c.initial_backoff, Duration::from_millis(500));
        assert_eq!(c.max_backoff, Duration::from_secs(60));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.max_attempts, None);
        assert_eq!(c.max_age, Some(Duration::from_secs(72 * 3600)));
        assert_eq!((c.max_backlog_per_project, c.max_dead_letters), (Some(100_000), Some(100_000)));
        assert!((0.0..=1.0).contains(&c.jitter));
    }
}
