//! One WebRTC participant's signalling channel (`docs/signalling.md`), over any transport that
//! carries text messages: the caller pumps received frames into `incoming` and sends what comes
//! out of `outgoing` (the REST crate does this for a WebSocket). The function returns when the
//! participant leaves, its transport closes, or it is disconnected by the server; the caller then
//! closes the transport after sending what is still queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info};

use crate::client_token::{validate_client_token, ClientGrant, Role};
use crate::error::RoomError;
use crate::room::{
    Connection, ConnectionId, ConnectionKind, DisconnectReason, StreamEndReason, StreamId, StreamSpec, VideoType,
};
use crate::router::{offer_kinds, PeerId, PeerRole, RouterError};
use crate::service::{connection_json, stream_json, SessionService, State, PARTICIPANT_QUEUE};
use crate::session_id::{MediaMode, SessionId};

/// Largest message accepted from a participant, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How long a new channel may take to send `join`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A refused request: its status and why.
#[derive(Debug)]
struct Refusal {
    code: u16,
    message: String,
}

impl Refusal {
    fn new(code: u16, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

impl From<RoomError> for Refusal {
    fn from(e: RoomError) -> Refusal {
        Refusal::new(e.http_status(), e.to_string())
    }
}

impl From<RouterError> for Refusal {
    fn from(e: RouterError) -> Refusal {
        let code = match e {
            RouterError::BadOffer(_) => 400,
            RouterError::UnknownStream | RouterError::UnknownPeer => 404,
            RouterError::Rtc(_) => 500,
        };
        Refusal::new(code, e.to_string())
    }
}

/// The joined participant.
struct Joined {
    connection: Connection,
    grant: ClientGrant,
    subscriptions: HashMap<String, PeerId>,
    signals: Budget,
    publishes: Budget,
}

/// Signals one participant may send in a burst; after it, [`SIGNAL_RATE`] a second.
const SIGNAL_BURST: f64 = 50.0;
/// Signals a second one participant may send, over time.
const SIGNAL_RATE: f64 = 20.0;
/// Streams one participant may publish in a burst; after it, [`PUBLISH_RATE`] a second.
const PUBLISH_BURST: f64 = 10.0;
/// Streams a second one participant may publish, over time (one every two seconds).
const PUBLISH_RATE: f64 = 0.5;

/// A token bucket for what one participant asks of everyone: signals (every signal to everyone
/// is a message per participant, and a participant that falls behind is disconnected) and
/// publishes (each makes a WebRTC peer with a DTLS certificate of its own, and a pair of
/// stream events for every participant and the callback URL).
#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f64,
    at: Instant,
    burst: f64,
    rate: f64,
}

impl Budget {
    /// The budget of signals.
    fn signals(now: Instant) -> Budget {
        Budget { tokens: SIGNAL_BURST, at: now, burst: SIGNAL_BURST, rate: SIGNAL_RATE }
    }

    /// The budget of publishes.
    fn publishes(now: Instant) -> Budget {
        Budget { tokens: PUBLISH_BURST, at: now, burst: PUBLISH_BURST, rate: PUBLISH_RATE }
    }

    /// Takes one token at `now`; false when none is left.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A bounded channel pair for [`run_participant`].
pub fn channel() -> (mpsc::Sender<String>, mpsc::Receiver<String>) {
    mpsc::channel(PARTICIPANT_QUEUE)
}

/// Serves one participant until it leaves or is removed (see the module docs).
pub async fn run_participant(
    service: SessionService,
    mut incoming: mpsc::Receiver<String>,
    outgoing: mpsc::Sender<String>,
) {
    let kicked = Arc::new(Notify::new());
    let mut joined: Option<Joined> = None;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let text = tokio::select! {
            // Removal first: nothing queued behind it runs for a connection that is gone.
            biased;
            _ = kicked.notified() => {
                debug!("participant removed by the server");
                return;
            }
            m = incoming.recv() => m,
            _ = tokio::time::sleep_until(deadline), if joined.is_none() => {
                let _ = outgoing.try_send(error_json(&Value::Null, &Refusal::new(400, "no join within 15 s")).to_string());
                return;
            }
        };
        let Some(text) = text else {
            // The transport closed without `leave`.
            depart(&service, joined.as_ref(), DisconnectReason::NetworkDisconnected);
            return;
        };
        let (id, result, leave) = handle(&service, &mut joined, &text, &outgoing, &kicked);
        let reply = match result {
            Ok(None) => continue,
            Ok(Some(mut fields)) => {
                if let Some(obj) = fields.as_object_mut() {
                    obj.insert("type".into(), Value::from("ok"));
                    obj.insert("id".into(), id);
                }
                fields
            }
            Err(r) => {
                debug!(code = r.code, reason = %r.message, "signalling request refused");
                error_json(&id, &r)
            }
        };
        if outgoing.try_send(reply.to_string()).is_err() {
            // The browser stopped reading (its queue is full) or its writer is gone: it leaves,
            // rather than staying in the session with nobody to tell.
            depart(&service, joined.as_ref(), DisconnectReason::NetworkDisconnected);
            return;
        }
        if leave {
            depart(&service, joined.as_ref(), DisconnectReason::ClientDisconnected);
            return;
        }
    }
}

/// Removes a joined participant's connection (and so its streams and peers) for `reason`.
fn depart(service: &SessionService, joined: Option<&Joined>, reason: DisconnectReason) {
    if let Some(j) = joined {
        service.unregister_client(&j.connection.id);
        // Already gone when the server removed it first: nothing more to do.
        let _ = service.disconnect_as(&j.connection.session, &j.connection.id, reason);
    }
}

fn error_json(id: &Value, r: &Refusal) -> Value {
    json!({"type": "error", "id": id, "code": r.code, "message": r.message})
}

fn str_field<'a>(msg: &'a Value, name: &str) -> Result<&'a str, Refusal> {
    msg.get(name).and_then(Value::as_str).ok_or_else(|| Refusal::new(400, format!("{name} missing or not a string")))
}

fn opt_str<'a>(msg: &'a Value, name: &str) -> Result<Option<&'a str>, Refusal> {
    match msg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refusal::new(400, format!("{name} must be a string"))),
    }
}

/// Handles one message: its `id`, the result, and whether the participant is leaving.
fn handle(
    service: &SessionService,
    joined: &mut Option<Joined>,
    text: &str,
    outgoing: &mpsc::Sender<String>,
    kicked: &Arc<Notify>,
) -> (Value, Result<Option<Value>, Refusal>, bool) {
    if text.len() > MAX_MESSAGE {
        return (Value::Null, Err(Refusal::new(413, "message larger than 64 KiB")), false);
    }
    let msg: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return (Value::Null, Err(Refusal::new(400, "a message must be a JSON object")), false),
        Err(e) => return (Value::Null, Err(Refusal::new(400, format!("not JSON: {e}"))), false),
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let Some(kind) = msg.get("type").and_then(Value::as_str) else {
        return (id, Err(Refusal::new(400, "type missing")), false);
    };
    let result = match (kind, joined.as_mut()) {
        ("join", None) => match join(service, &id, &msg, outgoing, kicked) {
            Ok(j) => {
                *joined = Some(j);
                return (id, Ok(None), false);
            }
            Err(e) => Err(e),
        },
        ("join", Some(_)) => Err(Refusal::new(409, "already joined")),
        (_, None) => Err(Refusal::new(400, "join first")),
        ("leave", Some(_)) => return (id, Ok(Some(json!({}))), true),
        // Removed by the server while this request waited: it acts for nobody.
        (_, Some(j)) if service.lock().rooms.connection(&j.connection.id).is_none() => {
            Err(Refusal::new(404, "this connection was removed from the session"))
        }
        // Answered under the state's lock (`Ok(None)` here), ahead of the events they cause.
        ("publish", Some(j)) => return (id.clone(), publish(service, j, &msg, &Reply { id: &id, outgoing }), false),
        ("subscribe", Some(j)) => {
            return (id.clone(), subscribe(service, j, &msg, &Reply { id: &id, outgoing }), false)
        }
        ("unpublish", Some(j)) => unpublish(service, j, &msg),
        ("unsubscribe", Some(j)) => unsubscribe(service, j, &msg),
        ("signal", Some(j)) => signal(service, j, &msg),
        ("forceDisconnect" | "forceMute" | "forceMuteAll", Some(j)) => moderate(service, j, kind, &msg),
        (other, Some(_)) => Err(Refusal::new(400, format!("unknown request type {other:?}"))),
    };
    (id, result.map(Some), false)
}

/// A request's reply queued under the state's lock, so it reaches the participant before any
/// event about what the request made (its stream's mute, its subscription's stream ending):
/// events are delivered when the lock is let go.
struct Reply<'a> {
    id: &'a Value,
    outgoing: &'a mpsc::Sender<String>,
}

impl Reply<'_> {
    /// Queues `fields` as the `ok` reply; false when the participant's queue is full or closed
    /// (the caller undoes what it made: the participant is leaving).
    fn send(&self, mut fields: Value) -> bool {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("type".into(), Value::from("ok"));
            obj.insert("id".into(), self.id.clone());
        }
        self.outgoing.try_send(fields.to_string()).is_ok()
    }
}

fn queue_full() -> Refusal {
    Refusal::new(500, "participant queue full: the reply could not be queued")
}

fn join(
    service: &SessionService,
    id: &Value,
    msg: &Value,
    outgoing: &mpsc::Sender<String>,
    kicked: &Arc<Notify>,
) -> Result<Joined, Refusal> {
    let session_text = str_field(msg, "sessionId")?;
    let token = str_field(msg, "token")?;
    let (session, info) = service.session(session_text).ok_or_else(|| Refusal::new(404, "session not found"))?;
    if info.media_mode != MediaMode::Routed {
        return Err(Refusal::new(409, "the session is relayed; only routed sessions are served here"));
    }
    let now = SystemTime::now();
    let grant = service
        .with_projects(|p| validate_client_token(p, token, &session, now))
        .map_err(|e| Refusal::new(403, format!("token refused: {e}")))?;
    // One critical section: the others hear of us, we get the snapshot as our reply, and only
    // then do events start flowing to us, so none is lost or arrives before the reply.
    let connection = {
        let mut guard = service.lock();
        let s = &mut *guard;
        let data = grant.connection_data.clone().unwrap_or_default();
        let connection = s.rooms.connect(&session, ConnectionKind::Client, grant.role, data, now, &mut s.rng)?;
        s.flush(Instant::now(), now);
        let others: Vec<Value> =
            s.rooms.connections(&session).iter().filter(|c| c.id != connection.id).map(connection_json).collect();
        let streams: Vec<Value> = s.rooms.streams(&session).iter().map(stream_json).collect();
        let reply = json!({"type": "ok", "id": id, "connection": connection_json(&connection),
            "connections": others, "streams": streams});
        if outgoing.try_send(reply.to_string()).is_err() {
            let _ = s.rooms.disconnect(&connection.id, DisconnectReason::NetworkDisconnected, now);
            s.flush(Instant::now(), now);
            return Err(Refusal::new(500, "participant channel closed"));
        }
        s.register_client(connection.id.clone(), outgoing.clone(), kicked.clone());
        connection
    };
    info!(connection = %connection.id, session = %session, role = grant.role.as_wire(), "participant joined");
    Ok(Joined {
        connection,
        grant,
        subscriptions: HashMap::new(),
        signals: Budget::signals(Instant::now()),
        publishes: Budget::publishes(Instant::now()),
    })
}

fn publish(service: &SessionService, j: &mut Joined, msg: &Value, reply: &Reply<'_>) -> Result<Option<Value>, Refusal> {
    if j.grant.role == Role::Subscriber {
        return Err(Refusal::new(403, "a subscriber may not publish"));
    }
    if !j.publishes.take(Instant::now()) {
        return Err(Refusal::new(429, "streams published too fast: at most one every 2 s, in bursts of 10"));
    }
    let sdp = str_field(msg, "sdp")?;
    let name = opt_str(msg, "name")?.unwrap_or_default().to_owned();
    let video_type = match opt_str(msg, "videoType")? {
        None => None,
        Some(t) => Some(
            VideoType::from_wire(t).ok_or_else(|| Refusal::new(400, "videoType must be camera, screen or custom"))?,
        ),
    };
    let (has_audio, has_video) = offer_kinds(sdp);
    if !has_audio && !has_video {
        return Err(Refusal::new(400, "the offer has no audio or video m-line"));
    }
    let spec = StreamSpec { name, has_audio, has_video, video_type };
    let owner = j.connection.id.clone();
    let layout = j.grant.layout_classes.clone();
    service.with(|s: &mut State| -> Result<_, Refusal> {
        s.rooms.may_publish(&owner)?;
        let id = StreamId::random(&mut s.rng);
        let (_, answer) = s.router.add_publisher(Instant::now(), owner.clone(), id.clone(), sdp)?;
        let stream = match s.rooms.publish(&owner, id.clone(), spec, layout, SystemTime::now()) {
            Ok(stream) => stream,
            Err(e) => {
                s.router.remove_stream(&id);
                return Err(e.into());
            }
        };
        if !reply.send(json!({"stream": stream_json(&stream), "sdp": answer})) {
            let reason = StreamEndReason::Connection(DisconnectReason::NetworkDisconnected);
            let _ = s.rooms.unpublish(&id, reason, SystemTime::now());
            s.router.remove_stream(&id);
            return Err(queue_full());
        }
        Ok(None)
    })
}

fn unpublish(service: &SessionService, j: &mut Joined, msg: &Value) -> Result<Value, Refusal> {
    let stream = StreamId::from_wire(str_field(msg, "streamId")?);
    let owner = j.connection.id.clone();
    service.with(|s: &mut State| {
        let mine = s.rooms.stream(&stream).is_some_and(|st| st.connection == owner);
        if !mine {
            return Err(Refusal::new(404, "no such stream of yours"));
        }
        let reason = StreamEndReason::Connection(DisconnectReason::ClientDisconnected);
        s.rooms.unpublish(&stream, reason, SystemTime::now()).map(|_| json!({})).map_err(Refusal::from)
    })
}

/// Subscriptions one connection may hold at once (a session's streams are far fewer in practice;
/// each is a WebRTC peer).
const MAX_SUBSCRIPTIONS: usize = 512;

fn subscribe(
    service: &SessionService,
    j: &mut Joined,
    msg: &Value,
    reply: &Reply<'_>,
) -> Result<Option<Value>, Refusal> {
    if j.grant.role == Role::PublisherOnly {
        return Err(Refusal::new(403, "a publisheronly connection may not subscribe"));
    }
    let stream = StreamId::from_wire(str_field(msg, "streamId")?);
    let sdp = str_field(msg, "sdp")?;
    let owner = j.connection.id.clone();
    let session = j.connection.session.clone();
    let subscriptions = &mut j.subscriptions;
    service.with(|s: &mut State| -> Result<_, Refusal> {
        // Checked under the lock that removal takes: a subscription made for a connection already
        // removed would outlive it (its clean-up has run).
        if s.rooms.connection(&owner).is_none() {
            return Err(Refusal::new(404, "this connection was removed from the session"));
        }
        // Subscriptions whose peer is gone (failed, never connected) no longer count.
        subscriptions.retain(|_, p| s.router.peer_role(*p).is_some());
        if subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(Refusal::new(429, "too many subscriptions on this connection"));
        }
        let in_session = s
            .rooms
            .stream(&stream)
            .and_then(|st| s.rooms.connection(&st.connection))
            .is_some_and(|c| c.session == session);
        if !in_session {
            return Err(Refusal::new(404, "stream not found in this session"));
        }
        let (peer, answer) = s.router.add_subscriber(Instant::now(), owner, stream, sdp)?;
        let sub_id = peer.0.to_string();
        if !reply.send(json!({"subscriptionId": sub_id, "sdp": answer})) {
            let _ = s.router.remove_peer(peer);
            return Err(queue_full());
        }
        subscriptions.insert(sub_id, peer);
        Ok(None)
    })
}

fn unsubscribe(service: &SessionService, j: &mut Joined, msg: &Value) -> Result<Value, Refusal> {
    let sub = str_field(msg, "subscriptionId")?;
    let peer = j.subscriptions.remove(sub).ok_or_else(|| Refusal::new(404, "no such subscription"))?;
    service.with(|s: &mut State| {
        if matches!(s.router.peer_role(peer), Some(PeerRole::Subscriber(_))) {
            let _ = s.router.remove_peer(peer);
        }
    });
    Ok(json!({}))
}

fn signal(service: &SessionService, j: &mut Joined, msg: &Value) -> Result<Value, Refusal> {
    if !j.signals.take(Instant::now()) {
        return Err(Refusal::new(429, "signals sent too fast: at most 20 a second, in bursts of 50"));
    }
    let signal_type = opt_str(msg, "signalType")?.unwrap_or_default();
    let data = opt_str(msg, "data")?.unwrap_or_default();
    let to = opt_str(msg, "to")?.map(ConnectionId::from_wire);
    let from = j.connection.id.clone();
    let session: SessionId = j.connection.session.clone();
    service.with(|s: &mut State| {
        s.rooms.signal(&session, Some(&from), to.as_ref(), signal_type, data, SystemTime::now())
    })?;
    Ok(json!({}))
}

fn moderate(service: &SessionService, j: &mut Joined, kind: &str, msg: &Value) -> Result<Value, Refusal> {
    if j.grant.role != Role::Moderator {
        return Err(Refusal::new(403, format!("{kind} needs the moderator role")));
    }
    let session = j.connection.session.clone();
    match kind {
        "forceDisconnect" => {
            let target = ConnectionId::from_wire(str_field(msg, "connectionId")?);
            service.force_disconnect(&session, &target)?;
        }
        "forceMute" => {
            let stream = StreamId::from_wire(str_field(msg, "streamId")?);
            service.mute_stream(&session, &stream)?;
        }
        _ => {
            let active = msg
                .get("active")
                .and_then(Value::as_bool)
                .ok_or_else(|| Refusal::new(400, "active must be a boolean"))?;
            let excluded = match msg.get("excludedStreamIds") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(StreamId::from_wire)
                            .ok_or_else(|| Refusal::new(400, "excludedStreamIds must hold strings"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(Refusal::new(400, "excludedStreamIds must be an array")),
            };
            service.mute_all(&session, active, excluded)?;
        }
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{ApiSecret, Project, ProjectId, Projects};
    use crate::room::Stream;
    use crate::service::ServiceConfig;
    use str0m::media::{Direction, MediaKind};

    /// A browser's offer of one audio m-line in direction `dir`.
    fn audio_offer(dir: Direction) -> String {
        let mut rtc = str0m::Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, _) = api.apply().expect("offer");
        offer.to_sdp_string()
    }

    /// A routed session with one stream (of a SIP connection) and a joined moderator.
    async fn fixture() -> (SessionService, SessionId, Stream, Joined) {
        let mut projects = Projects::new();
        let secret = ApiSecret::new("0123456789abcdef0123456789abcdef01234567").expect("secret");
        projects.insert(Project::legacy("4615003", secret).expect("project"));
        let service = SessionService::start(ServiceConfig::default(), projects).await.expect("service");
        let project = ProjectId::api_key("4615003").expect("key");
        let session = service.create_session(&project, MediaMode::Routed, None, SystemTime::now());
        let source = service.connect_external(&session, ConnectionKind::Sip, String::new()).expect("source");
        let spec = StreamSpec { name: String::new(), has_audio: true, has_video: false, video_type: None };
        let (stream, _) =
            service.publish_external(&source.id, StreamId::from_wire("st"), spec, Vec::new()).expect("stream");
        let connection = service.connect_external(&session, ConnectionKind::Client, String::new()).expect("conn");
        let grant = ClientGrant {
            role: Role::Moderator,
            connection_data: None,
            layout_classes: Vec::new(),
            expires: SystemTime::now() + Duration::from_secs(60),
        };
        let now = Instant::now();
        let j = Joined {
            connection,
            grant,
            subscriptions: HashMap::new(),
            signals: Budget::signals(now),
            publishes: Budget::publishes(now),
        };
        (service, session, stream, j)
    }

    /// A connection at its most streams is refused (400) before its offer is read (the WebRTC
    /// peer and its DTLS certificate would be made then) and leaves no peer behind; publishes
    /// beyond a burst of ten are refused (429), refused ones counting too.
    #[tokio::test]
    async fn publishes_are_checked_before_their_peer_is_made_and_budgeted() {
        let (service, _, _, mut j) = fixture().await;
        let offer = || json!({"sdp": audio_offer(Direction::SendOnly)});
        let (tx, _rx) = channel();
        let id = json!(1);
        let reply = Reply { id: &id, outgoing: &tx };
        // The fifth offer is broken: at the limit, it is refused for the limit before it is read.
        let broken = json!({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"});
        let refusals: Vec<(u16, String)> = (0..12)
            .map(|n| match publish(&service, &mut j, &if n == 4 { broken.clone() } else { offer() }, &reply) {
                Ok(_) => (200, String::new()),
                Err(r) => (r.code, r.message),
            })
            .collect();
        let codes: Vec<u16> = refusals.iter().map(|r| r.0).collect();
        assert_eq!(codes, [200, 200, 200, 200, 400, 400, 400, 400, 400, 400, 429, 429]);
        assert!(refusals[4].1.contains("at most 4 streams"), "{:?}", refusals[4]);
        assert_eq!(service.peer_count(), 4, "no peer made for a refused publish");
    }

    /// A connection the server removed while its requests waited: a subscribe queued behind the
    /// removal makes no subscription (it would outlive the connection: its clean-up already ran),
    /// and nothing else it asks for runs either.
    #[tokio::test]
    async fn requests_of_a_removed_connection_act_for_nobody() {
        let (service, session, stream, mut j) = fixture().await;
        let connection = j.connection.clone();
        let offer = || json!({"streamId": stream.id.as_str(), "sdp": audio_offer(Direction::RecvOnly)});
        let (tx, mut rx) = channel();
        let id = json!(1);
        let reply = Reply { id: &id, outgoing: &tx };
        assert!(matches!(subscribe(&service, &mut j, &offer(), &reply), Ok(None)), "a live connection subscribes");
        let answered: Value = serde_json::from_str(&rx.try_recv().expect("the reply")).expect("json");
        assert_eq!((answered["type"].as_str(), answered["id"].as_u64()), (Some("ok"), Some(1)), "{answered}");
        assert_eq!(service.peer_count(), 1);

        service.force_disconnect(&session, &connection.id).expect("removed");
        assert_eq!(service.peer_count(), 0, "its subscription went with it");
        let refused = subscribe(&service, &mut j, &offer(), &reply).expect_err("removed");
        assert_eq!(refused.code, 404, "{}", refused.message);
        assert_eq!(service.peer_count(), 0, "no subscription outlives the connection");

        // Through `handle`, anything else it asks is refused the same way.
        let (tx, _rx) = channel();
        let kicked = Arc::new(Notify::new());
        let mut joined = Some(j);
        let mute = json!({"type": "forceMute", "id": 7, "streamId": stream.id.as_str()}).to_string();
        let (_, result, leave) = handle(&service, &mut joined, &mute, &tx, &kicked);
        assert_eq!(result.map_err(|r| r.code), Err(404));
        assert!(!leave);
        assert!(!service.stream(&session, &stream.id).is_some_and(|s| s.audio_muted), "the stream was not muted");
    }

    #[test]
    fn signals_come_in_bursts_of_fifty_then_twenty_a_second() {
        let t0 = Instant::now();
        let mut b = Budget::signals(t0);
        assert_eq!((0..60).filter(|_| b.take(t0)).count(), 50, "a burst of 50");
        assert!(!b.take(t0 + Duration::from_millis(40)), "less than one token back after 40 ms");
        assert!(b.take(t0 + Duration::from_millis(50)), "one back after 50 ms");
        let later = t0 + Duration::from_secs(1) + Duration::from_millis(50);
        assert_eq!((0..60).filter(|_| b.take(later)).count(), 20, "20 a second after that");
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..60).filter(|_| b.take(much_later)).count(), 50, "never more than a burst");
        assert!(!b.take(t0), "a clock going back gives nothing");
    }

    /// Through `signal`: a participant's 51st signal at once is refused (429), and the others
    /// went out.
    #[tokio::test]
    async fn a_signal_flood_is_refused() {
        let (service, _, _, mut j) = fixture().await;
        let msg = json!({"signalType": "chat", "data": "x"});
        let results: Vec<Result<Value, Refusal>> = (0..60).map(|_| signal(&service, &mut j, &msg)).collect();
        let sent = results.iter().filter(|r| r.is_ok()).count();
        assert!((50..=51).contains(&sent), "a burst of 50 (one more if 50 ms passed): {sent}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|r| r.code == 429));
    }
}
