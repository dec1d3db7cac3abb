//! The gateway's counters, in the Prometheus text format (`GET /metrics`).
//!
//! Call counters are observed from the bridge's call events as they pass to the callbacks
//! (`callCreated` is a set-up, `callDestroyed`'s `reason_code` says how it ended); live sessions,
//! connections and streams from the session events; the audio quality of calls from the bridge's
//! report at the end of each call's media. The rest is read when scraped.

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
    audio: Mutex<AudioQuality>,
    video: Mutex<VideoSums>,
}

/// The video of the calls that ended, summed.
#[derive(Debug)]
struct VideoSums {
    sums: bridge::VideoQuality,
    lowest_bitrate: Histogram,
}

/// The audio of the calls that ended, summed.
#[derive(Debug)]
struct AudioQuality {
    received: u64,
    lost: u64,
    concealed_seconds: f64,
    trimmed: u64,
    far_end_lost: u64,
    jitter: Histogram,
    round_trip: Histogram,
}

/// A Prometheus histogram: counts per upper bound (cumulative when rendered), sum and count.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut below = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            below += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {below}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
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
            audio: Mutex::new(AudioQuality {
                received: 0,
                lost: 0,
                concealed_seconds: 0.0,
                trimmed: 0,
                far_end_lost: 0,
                jitter: Histogram::new(&[0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2]),
                round_trip: Histogram::new(&[0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]),
            }),
            video: Mutex::new(VideoSums {
                sums: bridge::VideoQuality::default(),
                lowest_bitrate: Histogram::new(&[64e3, 128e3, 256e3, 512e3, 1e6, 2e6, 4e6]),
            }),
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

    /// Adds up how a call's audio went (the bridge's report as its media ends).
    pub fn observe_call_quality(&self, q: &bridge::CallQuality) {
        let mut a = locked(&self.audio);
        a.received += q.packets_received;
        a.lost += q.packets_lost.max(0) as u64;
        a.concealed_seconds += q.concealed.as_secs_f64();
        a.trimmed += q.trimmed_packets;
        a.far_end_lost += q.far_end_lost.max(0) as u64;
        if q.packets_received > 0 {
            a.jitter.observe(q.jitter.as_secs_f64());
        }
        if let Some(rtt) = q.round_trip {
            a.round_trip.observe(rtt.as_secs_f64());
        }
    }

    /// Adds up how a call's video went (the bridge's report as its video ends).
    pub fn observe_video_quality(&self, q: &bridge::VideoQuality) {
        let mut v = locked(&self.video);
        let s = &mut v.sums;
        s.frames_sent += q.frames_sent;
        s.frames_received += q.frames_received;
        s.frames_skipped += q.frames_skipped;
        s.packets_lost += q.packets_lost;
        s.packets_reordered += q.packets_reordered;
        s.packets_nacked += q.packets_nacked;
        s.packets_resent += q.packets_resent;
        s.keyframes_asked_by_party += q.keyframes_asked_by_party;
        s.keyframes_asked_of_party += q.keyframes_asked_of_party;
        v.lowest_bitrate.observe(f64::from(q.lowest_bitrate));
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
            "gateway_callbacks_open_circuits",
            "gauge",
            "Projects whose callback target failed in a row: their deliveries wait for a probe.",
            &one(cb.open_circuits),
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
        let a = locked(&self.audio);
        metric(
            "gateway_call_audio_packets_received_total",
            "counter",
            "RTP packets received from SIP parties (calls whose media ended).",
            &one(a.received),
        );
        metric(
            "gateway_call_audio_packets_lost_total",
            "counter",
            "RTP packets of SIP parties that never arrived (RFC 3550 cumulative loss).",
            &one(a.lost),
        );
        metric(
            "gateway_call_audio_trimmed_packets_total",
            "counter",
            "SIP parties' packets dropped to bring a grown jitter-buffer delay back down.",
            &one(a.trimmed),
        );
        metric(
            "gateway_call_far_end_packets_lost_total",
            "counter",
            "Our RTP packets SIP parties reported never getting (their last RTCP report per call).",
            &one(a.far_end_lost),
        );
        let v = locked(&self.video);
        let s = &v.sums;
        for (name, help, value) in [
            ("frames_sent", "Grid frames sent to SIP parties.", s.frames_sent),
            ("frames_received", "SIP parties' video frames published into sessions.", s.frames_received),
            (
                "frames_skipped",
                "SIP parties' video frames left out while waiting for a keyframe after a loss.",
                s.frames_skipped,
            ),
            ("packets_lost", "SIP parties' video packets that never came in time.", s.packets_lost),
            ("packets_reordered", "SIP parties' video packets put back in order.", s.packets_reordered),
            ("packets_nacked", "SIP parties' video packets asked for again (generic NACK).", s.packets_nacked),
            ("packets_resent", "Grid packets resent on SIP parties' NACKs.", s.packets_resent),
            (
                "keyframes_asked_by_party",
                "Keyframes of the grid SIP parties asked for (PLI, FIR).",
                s.keyframes_asked_by_party,
            ),
            ("keyframes_asked_of_party", "Keyframes asked of SIP parties (PLI).", s.keyframes_asked_of_party),
        ] {
            metric(&format!("gateway_call_video_{name}_total"), "counter", help, &one(value));
        }
        let _ = writeln!(
            out,
            "# HELP gateway_call_audio_concealed_seconds_total SIP parties' audio made up for losses.\n\
             # TYPE gateway_call_audio_concealed_seconds_total counter\n\
             gateway_call_audio_concealed_seconds_total {}",
            a.concealed_seconds
        );
        a.jitter.render(
            &mut out,
            "gateway_call_audio_jitter_seconds",
            "Interarrival jitter of SIP parties' audio at call end.",
        );
        a.round_trip.render(
            &mut out,
            "gateway_call_round_trip_seconds",
            "Round trip to SIP parties from RTCP, at call end.",
        );
        v.lowest_bitrate.render(
            &mut out,
            "gateway_call_video_lowest_bitrate_bits",
            "The lowest bitrate each call's grid was sent at (SDP, TMMBR, losses), bit/s.",
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
    fn call_video_quality_is_summed_and_bucketed() {
        let m = Metrics::new();
        let q = bridge::VideoQuality {
            frames_sent: 300,
            frames_received: 290,
            packets_resent: 4,
            keyframes_asked_of_party: 2,
            lowest_bitrate: 100_000,
            ..bridge::VideoQuality::default()
        };
        m.observe_video_quality(&q);
        m.observe_video_quality(&bridge::VideoQuality { lowest_bitrate: 1_500_000, ..q });
        let text = m.render(&Readings::default());
        assert_eq!(
            line(&text, "gateway_call_video_frames_sent_total "),
            Some("gateway_call_video_frames_sent_total 600")
        );
        assert_eq!(
            line(&text, "gateway_call_video_packets_resent_total "),
            Some("gateway_call_video_packets_resent_total 8")
        );
        assert_eq!(
            line(&text, "gateway_call_video_keyframes_asked_of_party_total "),
            Some("gateway_call_video_keyframes_asked_of_party_total 4")
        );
        assert!(text.contains("# TYPE gateway_call_video_frames_received_total counter"));
        assert_eq!(
            line(&text, "gateway_call_video_lowest_bitrate_bits_bucket{le=\"128000\"}"),
            Some("gateway_call_video_lowest_bitrate_bits_bucket{le=\"128000\"} 1")
        );
        assert_eq!(
            line(&text, "gateway_call_video_lowest_bitrate_bits_count "),
            Some("gateway_call_video_lowest_bitrate_bits_count 2")
        );
    }

    #[test]
    fn call_audio_quality_is_summed_and_bucketed() {
        let m = Metrics::new();
        let ms = std::time::Duration::from_millis;
        m.observe_call_quality(&bridge::CallQuality {
            packets_received: 1000,
            packets_lost: 7,
            concealed: ms(140),
            jitter: ms(4),
            far_end_lost: 2,
            round_trip: Some(ms(60)),
            ..bridge::CallQuality::default()
        });
        m.observe_call_quality(&bridge::CallQuality {
            packets_received: 500,
            packets_lost: -1,
            jitter: ms(25),
            ..bridge::CallQuality::default()
        });
        // A call that received nothing has no jitter to count.
        m.observe_call_quality(&bridge::CallQuality::default());
        let text = m.render(&Readings::default());
        assert_eq!(
            line(&text, "gateway_call_audio_packets_received_total "),
            Some("gateway_call_audio_packets_received_total 1500")
        );
        assert_eq!(
            line(&text, "gateway_call_audio_packets_lost_total "),
            Some("gateway_call_audio_packets_lost_total 7")
        );
        assert_eq!(
            line(&text, "gateway_call_far_end_packets_lost_total "),
            Some("gateway_call_far_end_packets_lost_total 2")
        );
        assert_eq!(
            line(&text, "gateway_call_audio_concealed_seconds_total "),
            Some("gateway_call_audio_concealed_seconds_total 0.14")
        );
        assert!(text.contains("# TYPE gateway_call_audio_jitter_seconds histogram"));
        assert_eq!(
            line(&text, "gateway_call_audio_jitter_seconds_bucket{le=\"0.005\"}"),
            Some("gateway_call_audio_jitter_seconds_bucket{le=\"0.005\"} 1")
        );
        assert_eq!(
            line(&text, "gateway_call_audio_jitter_seconds_bucket{le=\"0.03\"}"),
            Some("gateway_call_audio_jitter_seconds_bucket{le=\"0.03\"} 2")
        );
        assert_eq!(
            line(&text, "gateway_call_audio_jitter_seconds_count "),
            Some("gateway_call_audio_jitter_seconds_count 2")
        );
        assert_eq!(
            line(&text, "gateway_call_round_trip_seconds_bucket{le=\"+Inf\"}"),
            Some("gateway_call_round_trip_seconds_bucket{le=\"+Inf\"} 1")
        );
        assert_eq!(
            line(&text, "gateway_call_round_trip_seconds_bucket{le=\"0.05\"}"),
            Some("gateway_call_round_trip_seconds_bucket{le=\"0.05\"} 0")
        );
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
