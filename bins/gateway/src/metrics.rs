//! The gateway's counters, in the Prometheus text format (`GET /metrics`).
//!
//! Call counters are observed from the bridge's call events as they pass to the callbacks
//! (`callCreated` is a set-up, `callDestroyed`'s `reason_code` says how it ended); live sessions,
//! connections and streams from the session events. The rest is read when scraped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use callbacks::CallbackStats;
use serde_json::Value;
use session::{ConnectionKind, Event, EventKind};

/// Counters the gateway keeps.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    call_setups: AtomicU64,
    /// `callDestroyed` by `reason_code`.
    calls_ended: Mutex<BTreeMap<String, u64>>,
    live: Mutex<Live>,
}

/// What the session events say is live now.
#[derive(Debug, Default)]
struct Live {
    /// Connections per session with at least one.
    sessions: HashMap<String, u64>,
    client_connections: u64,
    sip_connections: u64,
    streams: u64,
}

/// What is read from the other components when scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readings {
    /// Calls the bridge is running.
    pub active_calls: usize,
    /// WebRTC peer connections of the router.
    pub webrtc_peers: usize,
    /// Sessions created and known to the service.
    pub sessions_known: usize,
    /// The callback queue.
    pub callbacks: CallbackStats,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Zeroed counters; uptime counts from now.
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            call_setups: AtomicU64::new(0),
            calls_ended: Mutex::new(BTreeMap::new()),
            live: Mutex::new(Live::default()),
        }
    }

    /// Seconds since start-up.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts a call event (the bridge's JSON body).
    pub fn observe_call_event(&self, body: &Value) {
        match body.get("event").and_then(Value::as_str) {
            Some("callCreated") => {
                self.call_setups.fetch_add(1, Ordering::Relaxed);
            }
            Some("callDestroyed") => {
                let code = match body.get("reason_code") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => "unknown".to_owned(),
                };
                *locked(&self.calls_ended).entry(code).or_insert(0) += 1;
            }
            _ => {}
        }
    }

    /// Follows the live sessions, connections and streams.
    pub fn observe_session_event(&self, event: &Event) {
        let mut live = locked(&self.live);
        match &event.kind {
            EventKind::ConnectionCreated(c) => {
                *live.sessions.entry(event.session.as_str().to_owned()).or_insert(0) += 1;
                match c.kind {
                    ConnectionKind::Client => live.client_connections += 1,
                    ConnectionKind::Sip => live.sip_connections += 1,
                }
            }
            EventKind::ConnectionDestroyed { connection, .. } => {
                let key = event.session.as_str();
                if let Some(n) = live.sessions.get_mut(key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        live.sessions.remove(key);
                    }
                }
                match connection.kind {
                    ConnectionKind::Client => live.client_connections = live.client_connections.saturating_sub(1),
                    ConnectionKind::Sip => live.sip_connections = live.sip_connections.saturating_sub(1),
                }
            }
            EventKind::StreamCreated { .. } => live.streams += 1,
            EventKind::StreamDestroyed { .. } => live.streams = live.streams.saturating_sub(1),
            _ => {}
        }
    }

    /// Calls set up so far.
    pub fn call_setups(&self) -> u64 {
        self.call_setups.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, r: &Readings) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: u64| [(String::new(), v)];
        let ended = locked(&self.calls_ended).clone();
        let by = |label: &str, entries: &mut dyn Iterator<Item = (&String, &u64)>| -> Vec<(String, u64)> {
            entries.map(|(k, v)| (format!("{{{label}=\"{}\"}}", escape(k)), *v)).collect()
        };
        let failures: Vec<(String, u64)> = by(
            "sip_status",
            &mut ended.iter().filter(|(code, _)| code.parse::<u16>().is_ok_and(|c| (300..700).contains(&c))),
        );
        let ended = by("reason_code", &mut ended.iter());
        let (sessions, clients, sips, streams) = {
            let live = locked(&self.live);
            (live.sessions.len() as u64, live.client_connections, live.sip_connections, live.streams)
        };
        let cb = r.callbacks;
        metric(
            "gateway_build_info",
            "gauge",
            "The gateway's version.",
            &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
        );
        metric("gateway_uptime_seconds", "gauge", "Seconds since start-up.", &one(self.uptime_seconds()));
        metric("gateway_calls_active", "gauge", "SIP calls in progress.", &one(r.active_calls as u64));
        metric("gateway_call_setups_total", "counter", "SIP calls placed (callCreated).", &one(self.call_setups()));
        metric("gateway_calls_ended_total", "counter", "Calls ended (callDestroyed), by reason_code.", &ended);
        metric(
            "gateway_call_failures_total",
            "counter",
            "Calls whose set-up failed with a final SIP status (3xx-6xx), by status.",
            &failures,
        );
        metric("gateway_sessions_live", "gauge", "Sessions with at least one connection.", &one(sessions));
        metric("gateway_sessions_known", "gauge", "Sessions created and still known.", &one(r.sessions_known as u64));
        metric(
            "gateway_connections",
            "gauge",
            "Connections in sessions, by kind.",
            &[("{kind=\"client\"}".to_owned(), clients), ("{kind=\"sip\"}".to_owned(), sips)],
        );
        metric("gateway_streams", "gauge", "Published streams.", &one(streams));
        metric("gateway_webrtc_peers", "gauge", "WebRTC peer connections.", &one(r.webrtc_peers as u64));
        metric("gateway_callbacks_backlog", "gauge", "Callback events waiting for delivery.", &one(cb.backlog));
        metric("gateway_callbacks_delivered_total", "counter", "Callback events delivered (2xx).", &one(cb.delivered));
        metric(
            "gateway_callbacks_failed_attempts_total",
            "counter",
            "Failed callback attempts.",
            &one(cb.failed_attempts),
        );
        metric(
            "gateway_callbacks_dead_letters",
            "gauge",
            "Callback events given up (kept on disk).",
            &one(cb.dead_letters),
        );
        metric(
            "gateway_callbacks_dropped_total",
            "counter",
            "Callback events of projects without a callback URL.",
            &one(cb.dropped),
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use session::{Connection, ConnectionId, DisconnectReason, ProjectId, Role, SessionId};
    use std::time::SystemTime;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn call_events_count_set_ups_and_endings() {
        let m = Metrics::new();
        m.observe_call_event(&json!({"event": "callCreated"}));
        m.observe_call_event(&json!({"event": "callCreated"}));
        m.observe_call_event(&json!({"event": "callUpdated", "state": "ACTIVE"}));
        m.observe_call_event(&json!({"event": "callDestroyed", "reason_code": "700"}));
        m.observe_call_event(&json!({"event": "callDestroyed", "reason_code": "486"}));
        let text = m.render(&Readings { active_calls: 0, ..Readings::default() });
        assert_eq!(line(&text, "gateway_call_setups_total "), Some("gateway_call_setups_total 2"));
        assert_eq!(
            line(&text, "gateway_calls_ended_total{reason_code=\"700\"}"),
            Some("gateway_calls_ended_total{reason_code=\"700\"} 1")
        );
        assert_eq!(
            line(&text, "gateway_call_failures_total{"),
            Some("gateway_call_failures_total{sip_status=\"486\"} 1")
        );
        assert!(text.contains("# TYPE gateway_call_setups_total counter"));
    }

    #[test]
    fn session_events_follow_live_state() {
        let m = Metrics::new();
        let mut rng = rand::thread_rng();
        let project = ProjectId::api_key("1").expect("key");
        let session = SessionId::mint(&project, None, SystemTime::now(), &mut rng);
        let conn = Connection {
            id: ConnectionId::random(&mut rng),
            session: session.clone(),
            kind: ConnectionKind::Sip,
            created_ms: 1,
            data: String::new(),
            role: Role::Publisher,
        };
        let ev = |kind| Event { session: session.clone(), at_ms: 1, kind };
        m.observe_session_event(&ev(EventKind::ConnectionCreated(conn.clone())));
        let text = m.render(&Readings::default());
        assert_eq!(line(&text, "gateway_sessions_live "), Some("gateway_sessions_live 1"));
        assert_eq!(line(&text, "gateway_connections{kind=\"sip\"}"), Some("gateway_connections{kind=\"sip\"} 1"));
        m.observe_session_event(&ev(EventKind::ConnectionDestroyed {
            connection: conn,
            reason: DisconnectReason::ClientDisconnected,
        }));
        let text = m.render(&Readings::default());
        assert_eq!(line(&text, "gateway_sessions_live "), Some("gateway_sessions_live 0"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
