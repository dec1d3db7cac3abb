//! Call orchestration: one SIP call = a SIP dialog (`sip-signaling`) + a media leg
//! (`srtp-transport`, offer and answer by `sdp-negotiation`) + a connection and a stream in the
//! session (`session`) + an output of the session's mixer (`media-mixer`) + the call's events for
//! the callbacks.
//!
//! [`Bridge`] implements [`rest_api::Dialer`]: `dial` puts the SIP connection and its stream into
//! the session at once, answers, and places the call in the background. It follows the session's
//! events: a force disconnect of the SIP connection hangs the call up (BYE, or CANCEL while
//! ringing), and so does the end of the session.

mod audio;
mod call;
pub mod codec;
mod rtcp;
mod video;
mod video_rate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rest_api::{ApiError, DialAnswer, DialRequest, Dialer};
use sdp_negotiation::Codec;
use serde_json::{json, Value};
use session::room::unix_ms;
use session::service::SessionService;
use session::{ConnectionId, ConnectionKind, EventKind, ProjectId, SessionId, StreamId, StreamSpec};
use sip_signaling::driver::SipHandle;
use srtp_transport::driver::PortAllocator;
use tokio::sync::mpsc;
use tracing::{info, warn};

use audio::SessionAudio;
use call::{CallSpec, Control};
use video::SessionVideo;
pub use video::VideoConfig;

/// Receives the call events (`callCreated`, `callUpdated`, `callDestroyed`) as the contract's
/// JSON bodies; the gateway hands them to the `callbacks` crate.
pub trait CallReporter: Send + Sync {
    /// One event of `project`; `order_key` (the call ID) keeps a call's events in order.
    fn report(&self, project: &ProjectId, order_key: &str, body: Value);

    /// How the audio of an answered call of `project` went, when its media ends: for monitoring
    /// (no callback carries it). Nothing by default.
    fn call_quality(&self, project: &ProjectId, quality: &CallQuality) {
        let _ = (project, quality);
    }

    /// How the video of a call of `project` went, when its video ends: for monitoring. Nothing
    /// by default.
    fn video_quality(&self, project: &ProjectId, quality: &VideoQuality) {
        let _ = (project, quality);
    }
}

/// How the video of a call went, both ways, when its video ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoQuality {
    /// Grid frames sent to the SIP party.
    pub frames_sent: u64,
    /// Its frames published into the session.
    pub frames_received: u64,
    /// Its frames left out while waiting for a keyframe after a loss.
    pub frames_skipped: u64,
    /// Its packets that never came in time (given up).
    pub packets_lost: u64,
    /// Its packets put back in order.
    pub packets_reordered: u64,
    /// Its packets asked for again (generic NACK).
    pub packets_nacked: u64,
    /// Our packets it asked for again, resent.
    pub packets_resent: u64,
    /// Keyframes it asked of us (PLI, FIR).
    pub keyframes_asked_by_party: u64,
    /// Keyframes we asked of it (PLI).
    pub keyframes_asked_of_party: u64,
    /// The lowest bitrate the grid was sent at (its SDP, TMMBR and losses), bit/s.
    pub lowest_bitrate: u32,
}

/// How the audio of a call went, both ways, when its media ended.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallQuality {
    /// RTP packets received from the SIP party (audio and telephone-events, all its SSRCs).
    pub packets_received: u64,
    /// Its packets that never arrived (RFC 3550's cumulative count: duplicates make it smaller).
    pub packets_lost: i64,
    /// Its audio made up for losses (G.711 and G.722 only: Opus is forwarded to the session as it
    /// arrives, and concealed by those who decode it).
    pub concealed: Duration,
    /// Its audio dropped to bring a grown delay back down.
    pub trimmed_packets: u64,
    /// The interarrival jitter of its stream at our end.
    pub jitter: Duration,
    /// RTCP reports received from it.
    pub far_end_reports: u64,
    /// Our packets it says it never got (from its last report).
    pub far_end_lost: i64,
    /// The jitter of our stream at its end (from its last report).
    pub far_end_jitter: Duration,
    /// The round trip, when its reports echoed one of our sender reports.
    pub round_trip: Option<Duration>,
}

/// How a `secure: true` call protects its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpOffer {
    /// SRTP keys in the SDP (RFC 4568, `a=crypto`, RTP/SAVP): what most PBXs and carriers take.
    /// The default.
    #[default]
    Sdes,
    /// DTLS-SRTP (RFC 5763/5764, `a=fingerprint`, UDP/TLS/RTP/SAVP): keys never cross the
    /// signalling.
    Dtls,
}

/// How calls are placed.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// What a `secure: true` call offers, unless its project says otherwise.
    pub srtp_offer: SrtpOffer,
    /// Per project (API key or application ID): what its `secure: true` calls offer.
    pub srtp_offer_by_project: HashMap<String, SrtpOffer>,
    /// The SRTP suites an SDES offer lists (one `a=crypto` each), in preference order. Each adds
    /// about 90 bytes to the INVITE: the default is the two 128-bit counter-mode suites every peer
    /// takes; add `AesCm256HmacSha1_80` or `AeadAes256Gcm` for peers that want 256-bit keys.
    pub sdes_suites: Vec<srtp_transport::Suite>,
    /// The address written in our SDP (`c=`); the media socket's address when `None`.
    pub media_address: Option<IpAddr>,
    /// Audio codecs offered, in preference order.
    pub audio_codecs: Vec<Codec>,
    /// No RTP at all from the SIP side this long after the answer: 704 Media Timeout.
    pub no_rtp_timeout: Duration,
    /// No RTP for this long (outside hold): 706 Max Inactive.
    pub inactivity_timeout: Duration,
    /// A call this old ends: 705 Max Duration.
    pub max_duration: Duration,
    /// The grid sent to calls dialled with `video: true`.
    pub video: VideoConfig,
    /// A call's RTCP report interval before randomisation (RFC 3550's 5 s by default): each
    /// interval is this times a random factor between 0.5 and 1.5, divided by 1.21828 (§6.3.1),
    /// so reports come between 0.41 and 1.23 times it apart, 0.82 times it on average.
    pub rtcp_interval: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            srtp_offer: SrtpOffer::Sdes,
            srtp_offer_by_project: HashMap::new(),
            sdes_suites: vec![srtp_transport::Suite::AesCm128HmacSha1_80, srtp_transport::Suite::AesCm128HmacSha1_32],
            media_address: None,
            audio_codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
            no_rtp_timeout: Duration::from_secs(30),
            inactivity_timeout: Duration::from_secs(300),
            max_duration: Duration::from_secs(6 * 3600),
            video: VideoConfig::default(),
            rtcp_interval: Duration::from_secs(5),
        }
    }
}

/// A running call, as the bridge tracks it.
struct Running {
    session: SessionId,
    /// The call's stream in the session.
    stream: StreamId,
    control: mpsc::UnboundedSender<Control>,
    /// What `play-dtmf` needs to know synchronously.
    dtmf: Arc<Mutex<DtmfReadiness>>,
}

/// Whether a call can carry DTMF now.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DtmfReadiness {
    /// The call is answered.
    pub(crate) answered: bool,
    /// The answer agreed on telephone-event (RFC 4733).
    pub(crate) telephone_event: bool,
    /// Without telephone-event, digits go in SIP INFO (`application/dtmf-relay`), until the far
    /// end refuses one.
    pub(crate) by_info: bool,
    /// Our media goes to the far end (not on hold, the stream not removed): digits are heard.
    pub(crate) sending: bool,
    /// Digits and pauses waiting in the call's sender, not started.
    pub(crate) queued: usize,
    /// Digits and pauses `play-dtmf` accepted that the call has not taken yet.
    pub(crate) reserved: usize,
}

/// Digits and pauses a call may have waiting (its RFC 4733 or SIP INFO sender's queue).
pub(crate) const DTMF_QUEUE: usize = 256;

pub(crate) struct Inner {
    pub(crate) service: SessionService,
    /// Our DTLS certificate (one for all calls; its fingerprint goes in DTLS-SRTP offers).
    pub(crate) dtls_identity: Option<srtp_transport::dtls::DtlsIdentity>,
    pub(crate) sip: SipHandle,
    pub(crate) ports: PortAllocator,
    pub(crate) config: BridgeConfig,
    reporter: Arc<dyn CallReporter>,
    calls: Mutex<HashMap<ConnectionId, Running>>,
    /// Each session's mixer and how many calls use it.
    audio: Mutex<HashMap<SessionId, (SessionAudio, usize)>>,
    /// Each session's video hub and how many calls watch it.
    video: Mutex<HashMap<SessionId, (SessionVideo, usize)>>,
    next_call: AtomicU64,
    /// Set when the shutdown's wait for calls to end ran out: calls still waiting for the far
    /// end to confirm their end (a CANCEL waiting for a provisional answer, a BYE unanswered)
    /// stop waiting, so their last events are still reported. Set once, never cleared: the bridge
    /// is stopping for good.
    pub(crate) abandon: tokio::sync::watch::Sender<bool>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Inner {
    /// Sends one call event in the contract's envelope.
    pub(crate) fn report(&self, spec: &CallSpec, event: &str, extra: Value) {
        let mut body = json!({
            "sessionId": spec.session.as_str(),
            "projectId": spec.project.as_str(),
            "event": event,
            "timestamp": unix_ms(SystemTime::now()),
            "call": {"id": spec.id, "connectionId": spec.connection.id.as_str(), "createdAt": spec.created_ms},
        });
        if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.reporter.report(&spec.project, &spec.id, body);
    }

    /// The session's mixer (started by the first call of the session).
    pub(crate) fn audio_for(&self, session: &SessionId) -> SessionAudio {
        let mut audio = locked(&self.audio);
        let entry = audio
            .entry(session.clone())
            .or_insert_with(|| (SessionAudio::start(self.service.clone(), session.clone()), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    /// The session's mixer, when calls of the session use one.
    pub(crate) fn audio_for_existing(&self, session: &SessionId) -> Option<SessionAudio> {
        locked(&self.audio).get(session).map(|(a, _)| a.clone())
    }

    /// The session's video hub (started by the first video call of the session).
    pub(crate) fn video_for(&self, session: &SessionId) -> SessionVideo {
        let mut video = locked(&self.video);
        let entry = video
            .entry(session.clone())
            .or_insert_with(|| (SessionVideo::start(self.service.clone(), session.clone(), &self.config.video), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    /// A call stops watching; the last one stops the session's video hub.
    pub(crate) fn video_left(&self, spec: &CallSpec) {
        let mut video = locked(&self.video);
        if let Some(entry) = video.get_mut(&spec.session) {
            let _ = entry.0.commands.send(video::VideoCommand::Leave { call: spec.number });
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                video.remove(&spec.session);
            }
        }
    }

    /// Forgets a finished call; the last call of a session to listen to its mixer stops it (a call
    /// that never listened, one that failed or was cancelled, leaves the others' count alone).
    pub(crate) fn call_finished(&self, spec: &CallSpec) {
        locked(&self.calls).remove(&spec.connection.id);
        if !spec.listening.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut audio = locked(&self.audio);
        if let Some(entry) = audio.get_mut(&spec.session) {
            let _ = entry.0.commands.send(audio::AudioCommand::Leave { call: spec.number });
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                audio.remove(&spec.session);
            }
        }
    }
}

/// The SIP bridge (cheap to clone).
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("calls", &self.active_calls()).finish()
    }
}

impl Bridge {
    /// A bridge placing calls through `sip`, with media ports from `ports`, reporting to
    /// `reporter`. Starts the task that follows the sessions' events (needs a tokio runtime).
    pub fn new(
        service: SessionService,
        sip: SipHandle,
        ports: PortAllocator,
        config: BridgeConfig,
        reporter: Arc<dyn CallReporter>,
    ) -> Bridge {
        let events = service.subscribe();
        let dtls_identity = match srtp_transport::dtls::DtlsIdentity::generate() {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(error = %e, "no DTLS certificate: secure calls will offer SDES only");
                None
            }
        };
        let inner = Arc::new(Inner {
            service,
            dtls_identity,
            sip,
            ports,
            config,
            reporter,
            calls: Mutex::new(HashMap::new()),
            audio: Mutex::new(HashMap::new()),
            video: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            abandon: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(follow_sessions(Arc::downgrade(&inner), events));
        Bridge { inner }
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        locked(&self.inner.calls).len()
    }

    /// Hangs every call up and waits (at most `timeout`) until they have ended. Calls still
    /// waiting then for the far end to confirm (a CANCEL that needs a provisional answer first,
    /// a BYE nobody answers: up to 32 s each) stop waiting and end at once, reported as ended by
    /// the shutdown, so no call goes without its `callDestroyed`.
    pub async fn shutdown(&self, timeout: Duration) {
        for running in locked(&self.inner.calls).values() {
            let _ = running.control.send(Control::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while self.active_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.active_calls() > 0 {
            warn!(calls = self.active_calls(), "calls still waiting for their far end: ended without it");
            self.inner.abandon.send_replace(true);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while self.active_calls() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl Dialer for Bridge {
    fn dial(&self, request: DialRequest) -> Result<DialAnswer, ApiError> {
        let inner = &self.inner;
        // The SIP party publishes: a token that may only subscribe cannot bring it in.
        if request.grant.role == session::Role::Subscriber {
            return Err(ApiError::new(
                403,
                "the token's role is subscriber: the SIP party's stream needs one that may publish",
            ));
        }
        let data = request.grant.connection_data.clone().unwrap_or_default();
        let connection = inner
            .service
            .connect_external(&request.session, ConnectionKind::Sip, data)
            .map_err(|e| ApiError::new(e.http_status(), e.to_string()))?;
        let stream_id = StreamId::random(&mut rand::thread_rng());
        let name = request.sip.from.clone().unwrap_or_else(|| request.sip.uri.clone());
        // With video asked for, the SIP stream carries video from the start (a SIP party that
        // declines video leaves it without frames: subscribers see no picture, as for a camera
        // that is off).
        let has_video = request.sip.video && !inner.config.video.codecs.is_empty();
        let spec = StreamSpec { name, has_audio: true, has_video, video_type: None };
        // The call is known before its stream is published: publishing into a session with a mute
        // in force raises the session's mute event at once, and the task that follows session
        // events must find the call to tell it.
        let (control, rx) = mpsc::unbounded_channel();
        let dtmf = Arc::new(Mutex::new(DtmfReadiness::default()));
        let running =
            Running { session: request.session.clone(), stream: stream_id.clone(), control, dtmf: dtmf.clone() };
        locked(&inner.calls).insert(connection.id.clone(), running);
        let classes = request.grant.layout_classes.clone();
        let keyframe_wanted = match inner.service.publish_external(&connection.id, stream_id.clone(), spec, classes) {
            Ok((_, wanted)) => wanted,
            Err(e) => {
                locked(&inner.calls).remove(&connection.id);
                let _ = inner.service.disconnect_as(
                    &request.session,
                    &connection.id,
                    session::DisconnectReason::ClientDisconnected,
                );
                return Err(ApiError::new(e.http_status(), e.to_string()));
            }
        };
        let created_ms = unix_ms(SystemTime::now());
        let id = StreamId::random(&mut rand::thread_rng()).as_str().to_owned();
        let spec = CallSpec {
            id: id.clone(),
            number: inner.next_call.fetch_add(1, Ordering::Relaxed),
            created_ms,
            project: request.project,
            session: request.session,
            connection: connection.clone(),
            stream: stream_id.clone(),
            sip: request.sip,
            dtmf,
            watching: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            digits: Mutex::new(call::DigitBudget::default()),
            keyframe_wanted: Mutex::new(Some(keyframe_wanted)),
        };
        info!(call = %id, uri = %spec.sip.uri, session = %spec.session, "dialling");
        inner.report(&spec, "callCreated", json!({}));
        inner.report(&spec, "callUpdated", json!({"state": "DIALING"}));
        tokio::spawn(call::run(inner.clone(), spec, rx));
        Ok(DialAnswer {
            id,
            connection_id: connection.id.as_str().to_owned(),
            stream_id: stream_id.as_str().to_owned(),
            created_ms,
        })
    }

    fn play_dtmf(&self, session: &SessionId, connection: Option<&ConnectionId>, digits: &str) -> Result<(), ApiError> {
        let calls = locked(&self.inner.calls);
        let targets: Vec<&Running> = match connection {
            Some(c) => {
                let r = calls
                    .get(c)
                    .filter(|r| &r.session == session)
                    .ok_or_else(|| ApiError::new(404, "no SIP call on this connection"))?;
                vec![r]
            }
            None => calls.values().filter(|r| &r.session == session).collect(),
        };
        if targets.is_empty() {
            return Err(ApiError::new(404, "no SIP call in this session"));
        }
        let ready = |r: &&Running| {
            let d = *locked(&r.dtmf);
            d.answered && (d.telephone_event || d.by_info)
        };
        if !targets.iter().any(ready) {
            let why = if targets.iter().any(|r| !locked(&r.dtmf).answered) {
                "the SIP call is not answered yet"
            } else {
                "the SIP call negotiated no telephone-event (RFC 4733) and refuses DTMF in SIP INFO, so it cannot carry DTMF"
            };
            return Err(ApiError::new(400, why));
        }
        // Each call takes the digits whole or not at all, its room in the queue reserved under
        // its lock: a 200 means they will be played.
        let items = digits.chars().count();
        let mut refusal = None;
        let mut sent = false;
        for r in targets.iter().filter(|r| ready(r)) {
            let mut d = locked(&r.dtmf);
            if !d.sending {
                refusal = Some(ApiError::new(400, "the SIP call is on hold: digits would not be heard"));
            } else if d.queued + d.reserved + items > DTMF_QUEUE {
                let waiting = d.queued + d.reserved;
                let why =
                    format!("{waiting} digits are still waiting to be played on the SIP call (at most {DTMF_QUEUE})");
                refusal = Some(ApiError::new(400, why));
            } else if r.control.send(Control::Dtmf(digits.to_owned())).is_ok() {
                d.reserved += items;
                sent = true;
            }
        }
        match refusal {
            Some(e) if !sent => Err(e),
            _ => Ok(()),
        }
    }
}

/// Hangs calls up when their connection is force-disconnected or their session ends.
async fn follow_sessions(inner: std::sync::Weak<Inner>, mut events: mpsc::UnboundedReceiver<Arc<session::Event>>) {
    while let Some(e) = events.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match &e.kind {
            EventKind::ConnectionDestroyed { connection, reason: session::DisconnectReason::ForceDisconnected } => {
                if let Some(r) = locked(&inner.calls).get(&connection.id) {
                    let _ = r.control.send(Control::ForceDisconnected);
                }
            }
            EventKind::SessionEnded => {
                for r in locked(&inner.calls).values().filter(|r| r.session == e.session) {
                    let _ = r.control.send(Control::SessionEnded);
                }
            }
            EventKind::MuteForced { muted, .. } if !muted.is_empty() => {
                for r in locked(&inner.calls).values().filter(|r| r.session == e.session && muted.contains(&r.stream)) {
                    let _ = r.control.send(Control::MuteForced);
                }
            }
            _ => {}
        }
    }
    warn!("the session service stopped; the bridge no longer follows sessions");
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
