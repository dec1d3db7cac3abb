//! The tokio driver around [`Rooms`] and [`Router`]: one UDP socket for every WebRTC peer, the
//! timers, the participants' signalling channels, and the API other crates use (the REST surface,
//! the SIP bridge): session registry, live state, moderation, event subscription, taps and external
//! streams.
//!
//! All state sits behind one lock that is never held across an `.await`; every change is followed
//! by a flush that sends datagrams, delivers events to participants and subscribers and
//! keeps the router in step with the rooms (a destroyed stream closes its peer connections).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use crate::client_token::Role;
use crate::error::RoomError;
use crate::project::{ProjectId, Projects};
use crate::room::{
    Connection, ConnectionId, ConnectionKind, DisconnectReason, Event, EventKind, MuteTarget, Rooms, RoomsConfig,
    Stream, StreamEndReason, StreamId, StreamSpec,
};
use crate::router::{MediaFrame, PeerRole, Router, RouterConfig, RouterEvent, TapId};
use crate::session_id::{MediaMode, SessionId, SessionInfo, Sessions};

/// How many messages may wait for a participant before it is considered gone.
pub const PARTICIPANT_QUEUE: usize = 512;

/// What the service needs to start.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where the WebRTC UDP socket binds (one port for every peer).
    pub rtc_bind: SocketAddr,
    /// Addresses to advertise besides the bound one (a public address in front of it).
    pub rtc_public: Vec<SocketAddr>,
    /// Session limits and the empty-session timeout.
    pub rooms: RoomsConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            rtc_bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            rtc_public: Vec::new(),
            rooms: RoomsConfig::default(),
        }
    }
}

/// A participant's outgoing channel and its "you are out" signal.
struct ClientHandle {
    tx: mpsc::Sender<String>,
    kicked: Arc<Notify>,
}

/// Frames a tap holds for its consumer at most (8 s of 30 fps video, 5 s of 20 ms audio).
pub const TAP_QUEUE: usize = 256;

/// A tap's sending side.
#[derive(Debug)]
struct Tap {
    tx: mpsc::Sender<MediaFrame>,
    /// Frames were dropped since the last one delivered (its consumer fell behind).
    lost: bool,
}

/// Everything behind the lock.
pub(crate) struct State {
    pub(crate) projects: Projects,
    pub(crate) sessions: Sessions,
    pub(crate) rooms: Rooms,
    pub(crate) router: Router,
    pub(crate) rng: StdRng,
    clients: HashMap<ConnectionId, ClientHandle>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<Event>>>,
    taps: HashMap<TapId, Tap>,
    keyframe_wanted: HashMap<StreamId, mpsc::UnboundedSender<()>>,
    socket: Arc<UdpSocket>,
    /// What the timer task sleeps until; a change needs to wake it only when it moves a deadline
    /// before this.
    timer_deadline: Option<Instant>,
}

/// The session service (cheap to clone).
#[derive(Clone)]
pub struct SessionService {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    wake: Arc<Notify>,
    rtc_addr: SocketAddr,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").field("rtc_addr", &self.inner.rtc_addr).finish()
    }
}

impl SessionService {
    /// Binds the UDP socket and starts the receive and timer tasks (needs a tokio runtime).
    pub async fn start(config: ServiceConfig, projects: Projects) -> io::Result<SessionService> {
        let socket = Arc::new(UdpSocket::bind(config.rtc_bind).await?);
        let local = socket.local_addr()?;
        let router = Router::new(RouterConfig { local, public: config.rtc_public.clone() });
        let state = State {
            projects,
            sessions: Sessions::new(),
            rooms: Rooms::new(config.rooms.clone()),
            router,
            rng: StdRng::from_entropy(),
            clients: HashMap::new(),
            subscribers: Vec::new(),
            taps: HashMap::new(),
            keyframe_wanted: HashMap::new(),
            socket: socket.clone(),
            timer_deadline: None,
        };
        let service = SessionService {
            inner: Arc::new(Inner { state: Mutex::new(state), wake: Arc::new(Notify::new()), rtc_addr: local }),
        };
        info!(%local, "WebRTC media on UDP");
        tokio::spawn(receive_loop(Arc::downgrade(&service.inner), socket));
        tokio::spawn(timer_loop(Arc::downgrade(&service.inner), service.inner.wake.clone()));
        Ok(service)
    }

    /// The WebRTC UDP address.
    pub fn rtc_addr(&self) -> SocketAddr {
        self.inner.rtc_addr
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Runs `f` on the state, then delivers what it caused.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let (out, wake) = {
            let mut s = self.lock();
            let out = f(&mut s);
            let (now, wall) = (Instant::now(), SystemTime::now());
            s.flush(now, wall);
            let next = s.next_deadline(now, wall);
            (out, next.is_some_and(|n| s.timer_deadline.is_none_or(|d| n < d)))
        };
        if wake {
            self.inner.wake.notify_one();
        }
        out
    }

    /// Runs `f` with the configured projects.
    pub fn with_projects<T>(&self, f: impl FnOnce(&mut Projects) -> T) -> T {
        f(&mut self.lock().projects)
    }

    /// Creates a session (`POST /session/create`).
    pub fn create_session(
        &self,
        project: &ProjectId,
        media_mode: MediaMode,
        location: Option<Ipv4Addr>,
        now: SystemTime,
    ) -> SessionId {
        let mut s = self.lock();
        let State { sessions, rng, .. } = &mut *s;
        sessions.create(project, media_mode, location, now, rng)
    }

    /// A session created here, by its ID as received.
    pub fn session(&self, text: &str) -> Option<(SessionId, SessionInfo)> {
        self.lock().sessions.get(text).map(|(id, info)| (id.clone(), info.clone()))
    }

    /// How many WebRTC peer connections the router serves.
    pub fn peer_count(&self) -> usize {
        self.lock().router.peer_count()
    }

    /// How many sessions were created here.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Every event of every session from now on, in order. Dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// The session's streams in publish order.
    pub fn streams(&self, session: &SessionId) -> Vec<Stream> {
        self.lock().rooms.streams(session).to_vec()
    }

    /// The session's connections in join order.
    pub fn connections(&self, session: &SessionId) -> Vec<Connection> {
        self.lock().rooms.connections(session).to_vec()
    }

    /// One stream of the session.
    pub fn stream(&self, session: &SessionId, id: &StreamId) -> Option<Stream> {
        let s = self.lock();
        s.rooms
            .stream(id)
            .filter(|st| s.rooms.connection(&st.connection).is_some_and(|c| &c.session == session))
            .cloned()
    }

    /// One connection of the session.
    pub fn connection(&self, session: &SessionId, id: &ConnectionId) -> Option<Connection> {
        self.lock().rooms.connection(id).filter(|c| &c.session == session).cloned()
    }

    /// Whether the session is live (has connections, has not ended).
    pub fn is_live(&self, session: &SessionId) -> bool {
        self.lock().rooms.is_live(session)
    }

    /// A signal from the server (REST) to one connection or to all.
    pub fn signal(
        &self,
        session: &SessionId,
        to: Option<&ConnectionId>,
        signal_type: &str,
        data: &str,
    ) -> Result<(), RoomError> {
        self.with(|s| {
            s.rooms.is_live(session).then_some(()).ok_or(RoomError::UnknownSession)?;
            s.rooms.signal(session, None, to, signal_type, data, SystemTime::now())
        })
    }

    /// A signal from one connection of the session (the SIP bridge reports DTMF this way).
    pub fn signal_from(
        &self,
        session: &SessionId,
        from: &ConnectionId,
        to: Option<&ConnectionId>,
        signal_type: &str,
        data: &str,
    ) -> Result<(), RoomError> {
        self.with(|s| s.rooms.signal(session, Some(from), to, signal_type, data, SystemTime::now()))
    }

    /// Removes a connection of the session (`forceDisconnected`).
    pub fn force_disconnect(&self, session: &SessionId, id: &ConnectionId) -> Result<(), RoomError> {
        self.disconnect_as(session, id, DisconnectReason::ForceDisconnected)
    }

    /// Removes a connection of the session with the given reason.
    pub fn disconnect_as(
        &self,
        session: &SessionId,
        id: &ConnectionId,
        reason: DisconnectReason,
    ) -> Result<(), RoomError> {
        self.with(|s| {
            s.rooms.connection(id).filter(|c| &c.session == session).ok_or(RoomError::UnknownConnection)?;
            s.rooms.disconnect(id, reason, SystemTime::now()).map(|_| ())
        })
    }

    /// Force-mutes one stream of the session.
    pub fn mute_stream(&self, session: &SessionId, id: &StreamId) -> Result<(), RoomError> {
        self.with(|s| s.rooms.mute_stream(session, id, SystemTime::now()))
    }

    /// The session-wide mute (see [`Rooms::mute_all`]).
    /// The session must have been created here; it need not be live (the state waits for those
    /// who join later).
    pub fn mute_all(&self, session: &SessionId, active: bool, excluded: Vec<StreamId>) -> Result<(), RoomError> {
        self.with(|s| {
            s.sessions.get(session.as_str()).ok_or(RoomError::UnknownSession)?;
            s.rooms.mute_all(session, active, excluded, SystemTime::now());
            Ok(())
        })
    }

    /// Clears a stream's force mute.
    pub fn unmute_stream(&self, id: &StreamId) -> Result<(), RoomError> {
        self.with(|s| s.rooms.unmute_stream(id, SystemTime::now()))
    }

    /// Mutes a stream at its publisher's own wish (see [`Rooms::mute_own_stream`]).
    pub fn mute_own_stream(&self, id: &StreamId) -> Result<(), RoomError> {
        self.with(|s| s.rooms.mute_own_stream(id, SystemTime::now()))
    }

    /// Adds a non-WebRTC connection (a SIP call) to a routed session created here.
    pub fn connect_external(
        &self,
        session: &SessionId,
        kind: ConnectionKind,
        data: String,
    ) -> Result<Connection, RoomError> {
        self.with(|s| {
            let info = s.sessions.get(session.as_str()).map(|(_, i)| i.clone()).ok_or(RoomError::UnknownSession)?;
            if info.media_mode != MediaMode::Routed {
                return Err(RoomError::Invalid("the session is relayed, not routed".into()));
            }
            let State { rooms, rng, .. } = s;
            rooms.connect(session, kind, Role::Publisher, data, SystemTime::now(), rng)
        })
    }

    /// Publishes a stream whose media the caller writes with [`SessionService::write_frame`],
    /// with its `layoutClassList` (a SIP call's: its token's `initial_layout_class_list`).
    /// Keyframe requests from its subscribers arrive on the returned receiver.
    pub fn publish_external(
        &self,
        connection: &ConnectionId,
        id: StreamId,
        spec: StreamSpec,
        layout_classes: Vec<String>,
    ) -> Result<(Stream, mpsc::UnboundedReceiver<()>), RoomError> {
        self.with(|s| {
            s.router.add_external(id.clone()).map_err(|e| RoomError::Invalid(e.to_string()))?;
            match s.rooms.publish(connection, id.clone(), spec, layout_classes, SystemTime::now()) {
                Ok(stream) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    s.keyframe_wanted.insert(id, tx);
                    Ok((stream, rx))
                }
                Err(e) => {
                    s.router.remove_stream(&id);
                    Err(e)
                }
            }
        })
    }

    /// Sends a frame of an external stream to its subscribers.
    pub fn write_frame(&self, stream: &StreamId, frame: MediaFrame) -> Result<(), RoomError> {
        self.with(|s| s.router.write_external(Instant::now(), stream, frame).map_err(|_| RoomError::UnknownStream))
    }

    /// Receives a stream's frames (depacketised, undecoded) until the stream ends or the receiver
    /// is dropped. A receiver that falls [`TAP_QUEUE`] frames behind loses the newest ones, and
    /// the next it gets says so (`contiguous: false`): a stalled consumer never grows memory.
    pub fn tap(&self, stream: &StreamId) -> Result<(TapId, mpsc::Receiver<MediaFrame>), RoomError> {
        self.with(|s| {
            let tap = s.router.tap(stream).map_err(|_| RoomError::UnknownStream)?;
            let (tx, rx) = mpsc::channel(TAP_QUEUE);
            s.taps.insert(tap, Tap { tx, lost: false });
            Ok((tap, rx))
        })
    }

    /// Asks a stream's source for a keyframe.
    pub fn request_keyframe(&self, stream: &StreamId) {
        self.with(|s| s.router.request_keyframe(Instant::now(), stream));
    }

    pub(crate) fn unregister_client(&self, id: &ConnectionId) {
        self.lock().clients.remove(id);
    }
}

impl State {
    /// The earliest of the router's and the rooms' deadlines, as an `Instant`.
    fn next_deadline(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        let room = self.rooms.poll_timeout().map(|t| now + t.duration_since(wall).unwrap_or_default());
        [self.router.poll_timeout(), room].into_iter().flatten().min()
    }

    pub(crate) fn register_client(&mut self, id: ConnectionId, tx: mpsc::Sender<String>, kicked: Arc<Notify>) {
        self.clients.insert(id, ClientHandle { tx, kicked });
    }

    /// Delivers everything the last change caused, until nothing is left.
    pub(crate) fn flush(&mut self, now: Instant, wall: SystemTime) {
        loop {
            let mut progressed = false;
            while let Some(d) = self.router.poll_transmit() {
                progressed = true;
                if let Err(e) = self.socket.try_send_to(&d.contents, d.destination) {
                    debug!(to = %d.destination, error = %e, "UDP send dropped");
                }
            }
            while let Some(e) = self.router.poll_event() {
                progressed = true;
                self.on_router_event(e, wall);
            }
            while let Some(e) = self.rooms.poll_event() {
                progressed = true;
                self.on_room_event(e, now);
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_router_event(&mut self, e: RouterEvent, wall: SystemTime) {
        match e {
            RouterEvent::PeerConnected { peer, owner } => debug!(peer = peer.0, %owner, "peer connected"),
            RouterEvent::PeerFailed { peer, owner, role } => {
                info!(peer = peer.0, %owner, ?role, "peer connection failed");
                match role {
                    PeerRole::Publisher(stream) => {
                        let reason = StreamEndReason::Connection(DisconnectReason::NetworkDisconnected);
                        let _ = self.rooms.unpublish(&stream, reason, wall);
                    }
                    PeerRole::Subscriber(stream) => {
                        let msg = json!({"type": "event", "event": "subscriberFailed", "streamId": stream.as_str(),
                            "subscriptionId": peer.0.to_string()});
                        let msg = msg.to_string();
                        self.send_to(&owner, &msg);
                    }
                }
            }
            RouterEvent::TapFrame { tap, mut frame, .. } => {
                let Some(t) = self.taps.get_mut(&tap) else { return };
                frame.contiguous &= !t.lost;
                match t.tx.try_send(frame) {
                    Ok(()) => t.lost = false,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if !t.lost {
                            debug!(?tap, "a tap's consumer fell behind: frames dropped");
                        }
                        t.lost = true;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.taps.remove(&tap);
                        self.router.untap(tap);
                    }
                }
            }
            RouterEvent::KeyframeRequested { stream } => {
                if let Some(tx) = self.keyframe_wanted.get(&stream) {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn on_room_event(&mut self, e: Event, _now: Instant) {
        // Keep the router in step.
        match &e.kind {
            EventKind::StreamDestroyed { stream, .. } => {
                // Its taps' senders go with it: their receivers see the stream end.
                for tap in self.router.remove_stream(&stream.id) {
                    self.taps.remove(&tap);
                }
                self.keyframe_wanted.remove(&stream.id);
            }
            EventKind::ConnectionDestroyed { connection, .. } => {
                for p in self.router.peers_of(&connection.id) {
                    let _ = self.router.remove_peer(p);
                }
            }
            _ => {}
        }
        // Tell the participants.
        self.deliver_to_participants(&e);
        // Tell the other crates.
        let shared = Arc::new(e);
        self.subscribers.retain(|tx| tx.send(shared.clone()).is_ok());
    }

    fn deliver_to_participants(&mut self, e: &Event) {
        let everyone = |rooms: &Rooms| -> Vec<ConnectionId> {
            rooms.connections(&e.session).iter().map(|c| c.id.clone()).collect()
        };
        match &e.kind {
            EventKind::ConnectionCreated(c) => {
                let msg = json!({"type": "event", "event": "connectionCreated", "connection": connection_json(c)});
                let msg = msg.to_string();
                for id in everyone(&self.rooms).iter().filter(|id| **id != c.id) {
                    self.send_to(id, &msg);
                }
            }
            EventKind::ConnectionDestroyed { connection, reason } => {
                let msg = json!({"type": "event", "event": "connectionDestroyed", "connection": connection_json(connection),
                    "reason": reason.as_wire()});
                let msg = msg.to_string();
                for id in everyone(&self.rooms) {
                    self.send_to(&id, &msg);
                }
                // The connection itself: told why, then its channel is closed.
                if let Some(handle) = self.clients.remove(&connection.id) {
                    let bye = json!({"type": "event", "event": "sessionDisconnected", "reason": reason.as_wire()});
                    let _ = handle.tx.try_send(bye.to_string());
                    handle.kicked.notify_one();
                }
            }
            EventKind::StreamCreated { stream, .. } => {
                let msg = json!({"type": "event", "event": "streamCreated", "stream": stream_json(stream)});
                let msg = msg.to_string();
                for id in everyone(&self.rooms).iter().filter(|id| **id != stream.connection) {
                    self.send_to(id, &msg);
                }
            }
            EventKind::StreamDestroyed { stream, reason, .. } => {
                let msg = json!({"type": "event", "event": "streamDestroyed", "stream": stream_json(stream),
                    "reason": reason.as_wire()});
                let msg = msg.to_string();
                let own_choice = *reason == StreamEndReason::Connection(DisconnectReason::ClientDisconnected);
                for id in everyone(&self.rooms).iter().filter(|id| !own_choice || **id != stream.connection) {
                    self.send_to(id, &msg);
                }
            }
            EventKind::Signal { from, to, signal_type, data } => {
                let msg = json!({"type": "event", "event": "signal", "from": from.as_ref().map(|f| f.as_str()),
                    "signalType": signal_type, "data": data});
                let msg = msg.to_string();
                let targets = match to {
                    Some(t) => vec![t.clone()],
                    None => everyone(&self.rooms),
                };
                for id in targets {
                    self.send_to(&id, &msg);
                }
            }
            EventKind::MuteForced { target: MuteTarget::Stream(stream), .. } => {
                if let Some(owner) = self.rooms.stream(stream).map(|s| s.connection.clone()) {
                    let msg = json!({"type": "event", "event": "muteForced", "streamId": stream.as_str()});
                    let msg = msg.to_string();
                    self.send_to(&owner, &msg);
                }
            }
            EventKind::MuteForced { target: MuteTarget::Session { active, excluded }, .. } => {
                let excluded: Vec<&str> = excluded.iter().map(|s| s.as_str()).collect();
                let msg =
                    json!({"type": "event", "event": "muteForced", "active": active, "excludedStreamIds": excluded})
                        .to_string();
                for id in everyone(&self.rooms) {
                    self.send_to(&id, &msg);
                }
            }
            EventKind::AudioUnmuted { .. } | EventKind::AudioMuted { .. } | EventKind::SessionEnded => {}
        }
    }

    /// Queues a message (serialised once for all its recipients) for a participant; one that
    /// cannot keep up is disconnected.
    fn send_to(&mut self, id: &ConnectionId, msg: &str) {
        let Some(handle) = self.clients.get(id) else { return };
        if handle.tx.try_send(msg.to_owned()).is_err() {
            warn!(connection = %id, "participant's queue is full or closed; disconnecting it");
            if let Some(h) = self.clients.remove(id) {
                h.kicked.notify_one();
            }
            let _ = self.rooms.disconnect(id, DisconnectReason::NetworkDisconnected, SystemTime::now());
        }
    }
}

/// A connection as the signalling protocol writes it.
pub fn connection_json(c: &Connection) -> Value {
    json!({"id": c.id.as_str(), "createdAt": c.created_ms, "data": c.data, "kind": c.kind.as_wire()})
}

/// A stream as the signalling protocol writes it.
pub fn stream_json(s: &Stream) -> Value {
    let mut v = json!({"id": s.id.as_str(), "connectionId": s.connection.as_str(), "createdAt": s.created_ms,
        "name": s.name, "hasAudio": s.has_audio, "hasVideo": s.has_video, "layoutClassList": s.layout_class_list});
    if let (Some(t), Some(obj)) = (s.video_type, v.as_object_mut()) {
        obj.insert("videoType".into(), Value::from(t.as_wire()));
    }
    v
}

async fn receive_loop(inner: std::sync::Weak<Inner>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some systems; they concern one peer, not the socket.
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let service = SessionService { inner };
        service.with(|s| s.router.handle_receive(Instant::now(), from, &buf[..n]));
    }
}

async fn timer_loop(inner: std::sync::Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let deadline = {
            let Some(inner) = inner.upgrade() else { return };
            let service = SessionService { inner };
            let now = Instant::now();
            let wall = SystemTime::now();
            let mut s = service.lock();
            s.router.handle_timeout(now);
            s.rooms.handle_timeout(wall);
            s.flush(now, wall);
            let next = s.next_deadline(now, wall).unwrap_or(now + std::time::Duration::from_secs(1));
            s.timer_deadline = Some(next);
            next
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            _ = wake.notified() => {}
        }
    }
}
