//! The live state of routed sessions: who is connected, what is published, the mute state, and
//! the events that participants and other crates (the SIP bridge, the callbacks) see, in order.
//!
//! [`Rooms`] is sans-IO: time comes in as `now: SystemTime`, randomness as an `Rng`, and what
//! happened comes out of [`Rooms::poll_event`]. A session becomes *live* with its first connection
//! and *ends* when it has had no client connection for [`RoomsConfig::empty_timeout`]: its
//! remaining (SIP) connections are then destroyed, after a [`EventKind::SessionEnded`] that tells
//! the bridge to hang up.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::client_token::Role;
use crate::error::RoomError;
use crate::session_id::SessionId;

/// Largest signal `type`, in bytes (contract §5).
pub const MAX_SIGNAL_TYPE: usize = 128;
/// Largest signal `data`, in bytes (contract §5).
pub const MAX_SIGNAL_DATA: usize = 8 * 1024;
/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME: usize = 1000;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A fresh random (version 4) UUID.
            pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
                $name(random_uuid(rng))
            }

            /// Wraps an ID received from outside; it is only ever compared, never trusted.
            pub fn from_wire(text: &str) -> Self {
                $name(text.to_owned())
            }

            /// The ID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(
    /// A connection's ID (a UUID, as the service hands them out).
    ConnectionId
);
uuid_id!(
    /// A stream's ID (a UUID).
    StreamId
);

fn random_uuid<R: RngCore + ?Sized>(rng: &mut R) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Milliseconds since the Unix epoch (the wire's `createdAt`).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// A client (browser, SDK) that joined with a token.
    Client,
    /// A SIP call dialled into the session.
    Sip,
}

impl ConnectionKind {
    /// `client` or `sip`.
    pub fn as_wire(self) -> &'static str {
        match self {
            ConnectionKind::Client => "client",
            ConnectionKind::Sip => "sip",
        }
    }
}

/// One participant in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its ID.
    pub id: ConnectionId,
    /// The session it is in.
    pub session: SessionId,
    /// Client or SIP.
    pub kind: ConnectionKind,
    /// When it was created, ms since the epoch.
    pub created_ms: u64,
    /// The token's `connection_data` (or what the bridge sets for a SIP call).
    pub data: String,
    /// What it may do.
    pub role: Role,
}

/// The `videoType` of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoType {
    /// A camera.
    Camera,
    /// A screen share.
    Screen,
    /// Anything else.
    Custom,
}

impl VideoType {
    /// Parses `camera`, `screen` or `custom`.
    pub fn from_wire(s: &str) -> Option<VideoType> {
        match s {
            "camera" => Some(VideoType::Camera),
            "screen" => Some(VideoType::Screen),
            "custom" => Some(VideoType::Custom),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_wire(self) -> &'static str {
        match self {
            VideoType::Camera => "camera",
            VideoType::Screen => "screen",
            VideoType::Custom => "custom",
        }
    }
}

/// What a publisher asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamSpec {
    /// Display name.
    pub name: String,
    /// Carries audio.
    pub has_audio: bool,
    /// Carries video.
    pub has_video: bool,
    /// The kind of video (ignored without video; camera when video and none given).
    pub video_type: Option<VideoType>,
}

/// A published stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Its ID.
    pub id: StreamId,
    /// The publishing connection.
    pub connection: ConnectionId,
    /// When it was published, ms since the epoch.
    pub created_ms: u64,
    /// Display name.
    pub name: String,
    /// Carries audio.
    pub has_audio: bool,
    /// Carries video.
    pub has_video: bool,
    /// `None` for an audio-only stream.
    pub video_type: Option<VideoType>,
    /// The publisher's token layout classes.
    pub layout_class_list: Vec<String>,
    /// Its audio is force-muted (by a moderator, REST, or a session-wide mute).
    pub audio_muted: bool,
}

/// Why a connection ended (the contract's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left (or the SIP call hung up normally).
    ClientDisconnected,
    /// A moderator or the REST API removed it.
    ForceDisconnected,
    /// The network failed (WebSocket or ICE lost, SIP transport failed).
    NetworkDisconnected,
}

impl DisconnectReason {
    /// The contract's spelling.
    pub fn as_wire(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnected => "clientDisconnected",
            DisconnectReason::ForceDisconnected => "forceDisconnected",
            DisconnectReason::NetworkDisconnected => "networkDisconnected",
        }
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEndReason {
    /// Its connection ended (or the publisher unpublished) for this reason.
    Connection(DisconnectReason),
    /// A moderator unpublished it.
    ForceUnpublished,
    /// Its media stopped.
    MediaStopped,
}

impl StreamEndReason {
    /// The contract's spelling.
    pub fn as_wire(self) -> &'static str {
        match self {
            StreamEndReason::Connection(r) => r.as_wire(),
            StreamEndReason::ForceUnpublished => "forceUnpublished",
            StreamEndReason::MediaStopped => "mediaStopped",
        }
    }
}

/// What a force mute applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuteTarget {
    /// One stream.
    Stream(StreamId),
    /// The whole session, except the listed streams. `active: false` ends the mute state for
    /// streams published later (it unmutes nobody).
    Session {
        /// Whether the session-wide mute is now on.
        active: bool,
        /// Streams left alone.
        excluded: Vec<StreamId>,
    },
}

/// Something that happened in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The session.
    pub session: SessionId,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// What.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A connection joined.
    ConnectionCreated(Connection),
    /// A connection left.
    ConnectionDestroyed {
        /// Who.
        connection: Connection,
        /// Why.
        reason: DisconnectReason,
    },
    /// A stream was published.
    StreamCreated {
        /// The stream.
        stream: Stream,
        /// Its publisher.
        connection: Connection,
    },
    /// A stream ended.
    StreamDestroyed {
        /// The stream.
        stream: Stream,
        /// Its publisher.
        connection: Connection,
        /// Why.
        reason: StreamEndReason,
    },
    /// A signal to one connection (`to`) or to all of them.
    Signal {
        /// The sender, `None` when sent through REST.
        from: Option<ConnectionId>,
        /// The one recipient, or everyone.
        to: Option<ConnectionId>,
        /// The application's type.
        signal_type: String,
        /// The payload.
        data: String,
    },
    /// Audio was force-muted (the streams' `audio_muted` is already set).
    MuteForced {
        /// What the mute applied to.
        target: MuteTarget,
        /// The streams that this mute newly muted.
        muted: Vec<StreamId>,
    },
    /// A stream's `audio_muted` was cleared (its publisher unmuted after a force mute).
    AudioUnmuted {
        /// The stream.
        stream: StreamId,
    },
    /// A stream's publisher muted it itself (the SIP party pressed `*6`): not a force mute, so
    /// nobody is told of one.
    AudioMuted {
        /// The stream.
        stream: StreamId,
    },
    /// The session had no client for the configured time; what is left in it is destroyed next.
    SessionEnded,
}

/// Limits and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsConfig {
    /// How long a session may stay without a client connection before it ends.
    pub empty_timeout: Duration,
    /// Connections per session.
    pub max_connections: usize,
    /// Streams per connection.
    pub max_streams_per_connection: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig { empty_timeout: Duration::from_secs(60), max_connections: 500, max_streams_per_connection: 4 }
    }
}

#[derive(Debug)]
struct Room {
    id: SessionId,
    /// Connections in join order.
    connections: Vec<Connection>,
    /// Streams in publish order.
    streams: Vec<Stream>,
    /// Since when there has been no client connection.
    empty_since: Option<SystemTime>,
}

impl Room {
    fn connection(&self, id: &ConnectionId) -> Option<&Connection> {
        self.connections.iter().find(|c| &c.id == id)
    }

    fn has_client(&self) -> bool {
        self.connections.iter().any(|c| c.kind == ConnectionKind::Client)
    }
}

/// Every live session (see the module docs).
#[derive(Debug)]
pub struct Rooms {
    config: RoomsConfig,
    rooms: HashMap<String, Room>,
    /// Connection → its session's canonical ID.
    by_connection: HashMap<ConnectionId, String>,
    /// Stream → its session's canonical ID.
    by_stream: HashMap<StreamId, String>,
    /// Session-wide mutes in force, by session (live or not): the excluded streams. They belong to
    /// the session, not to its current participants, so they outlive an empty room.
    mutes: HashMap<String, Vec<StreamId>>,
    events: VecDeque<Event>,
    /// When the next session may end (recomputed when a session's emptiness changes).
    deadline: Option<SystemTime>,
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms::new(RoomsConfig::default())
    }
}

impl Rooms {
    /// No live sessions.
    pub fn new(config: RoomsConfig) -> Rooms {
        Rooms {
            config,
            rooms: HashMap::new(),
            by_connection: HashMap::new(),
            by_stream: HashMap::new(),
            mutes: HashMap::new(),
            events: VecDeque::new(),
            deadline: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RoomsConfig {
        &self.config
    }

    /// Adds a connection to `session` (making the session live if it was not).
    pub fn connect<R: RngCore + ?Sized>(
        &mut self,
        session: &SessionId,
        kind: ConnectionKind,
        role: Role,
        data: String,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Connection, RoomError> {
        let max = self.config.max_connections;
        let room = self.rooms.entry(session.as_str().to_owned()).or_insert_with(|| Room {
            id: session.clone(),
            connections: Vec::new(),
            streams: Vec::new(),
            empty_since: Some(now),
        });
        if room.connections.len() >= max {
            return Err(RoomError::Full);
        }
        let connection = Connection {
            id: ConnectionId::random(rng),
            session: session.clone(),
            kind,
            created_ms: unix_ms(now),
            data,
            role,
        };
        room.connections.push(connection.clone());
        if kind == ConnectionKind::Client {
            room.empty_since = None;
        }
        self.by_connection.insert(connection.id.clone(), session.as_str().to_owned());
        self.push(session, now, EventKind::ConnectionCreated(connection.clone()));
        self.recompute_deadline();
        Ok(connection)
    }

    /// Removes a connection and, first, each of its streams (with the same reason).
    pub fn disconnect(
        &mut self,
        connection: &ConnectionId,
        reason: DisconnectReason,
        now: SystemTime,
    ) -> Result<Connection, RoomError> {
        let key = self.by_connection.get(connection).ok_or(RoomError::UnknownConnection)?.clone();
        let own: Vec<StreamId> = self
            .rooms
            .get(&key)
            .map(|r| r.streams.iter().filter(|s| &s.connection == connection).map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        for stream in own {
            self.unpublish(&stream, StreamEndReason::Connection(reason), now)?;
        }
        let room = self.rooms.get_mut(&key).ok_or(RoomError::UnknownConnection)?;
        let at = room.connections.iter().position(|c| &c.id == connection).ok_or(RoomError::UnknownConnection)?;
        let gone = room.connections.remove(at);
        if !room.has_client() && room.empty_since.is_none() {
            room.empty_since = Some(now);
        }
        let session = room.id.clone();
        self.by_connection.remove(connection);
        self.push(&session, now, EventKind::ConnectionDestroyed { connection: gone.clone(), reason });
        self.recompute_deadline();
        Ok(gone)
    }

    /// Whether `connection` may publish one more stream (it exists, is not a subscriber, and has
    /// fewer than the most streams a connection may have): checked before the costly part of a
    /// publish (its WebRTC peer), and again by [`publish`](Self::publish).
    pub fn may_publish(&self, connection: &ConnectionId) -> Result<(), RoomError> {
        let key = self.by_connection.get(connection).ok_or(RoomError::UnknownConnection)?;
        let room = self.rooms.get(key).ok_or(RoomError::UnknownConnection)?;
        let owner = room.connection(connection).ok_or(RoomError::UnknownConnection)?;
        if owner.role == Role::Subscriber {
            return Err(RoomError::Forbidden("a subscriber may not publish"));
        }
        let max = self.config.max_streams_per_connection;
        if room.streams.iter().filter(|s| &s.connection == connection).count() >= max {
            return Err(RoomError::Invalid(format!("a connection may publish at most {max} streams")));
        }
        Ok(())
    }

    /// Publishes a stream for `connection`. A `subscriber` may not publish; a session-wide mute
    /// that is active mutes the new stream's audio at once.
    /// The caller picks the stream's ID (with [`StreamId::random`]) so that it can prepare the
    /// media path first; an ID in use is refused.
    pub fn publish(
        &mut self,
        connection: &ConnectionId,
        id: StreamId,
        spec: StreamSpec,
        layout_class_list: Vec<String>,
        now: SystemTime,
    ) -> Result<Stream, RoomError> {
        if !spec.has_audio && !spec.has_video {
            return Err(RoomError::Invalid("a stream needs audio or video".into()));
        }
        if spec.name.len() > MAX_STREAM_NAME {
            return Err(RoomError::Invalid(format!("stream name longer than {MAX_STREAM_NAME} bytes")));
        }
        if self.by_stream.contains_key(&id) {
            return Err(RoomError::Invalid("stream id in use".into()));
        }
        self.may_publish(connection)?;
        let key = self.by_connection.get(connection).ok_or(RoomError::UnknownConnection)?.clone();
        let room = self.rooms.get_mut(&key).ok_or(RoomError::UnknownConnection)?;
        let owner = room.connection(connection).ok_or(RoomError::UnknownConnection)?.clone();
        let audio_muted = spec.has_audio && self.mutes.get(&key).is_some_and(|excluded| !excluded.contains(&id));
        let stream = Stream {
            id,
            connection: connection.clone(),
            created_ms: unix_ms(now),
            name: spec.name,
            has_audio: spec.has_audio,
            has_video: spec.has_video,
            video_type: spec.has_video.then(|| spec.video_type.unwrap_or(VideoType::Camera)),
            layout_class_list,
            audio_muted,
        };
        room.streams.push(stream.clone());
        let session = room.id.clone();
        self.by_stream.insert(stream.id.clone(), key);
        self.push(&session, now, EventKind::StreamCreated { stream: stream.clone(), connection: owner });
        if audio_muted {
            let target = MuteTarget::Stream(stream.id.clone());
            self.push(&session, now, EventKind::MuteForced { target, muted: vec![stream.id.clone()] });
        }
        Ok(stream)
    }

    /// Ends a stream.
    pub fn unpublish(
        &mut self,
        stream: &StreamId,
        reason: StreamEndReason,
        now: SystemTime,
    ) -> Result<Stream, RoomError> {
        let key = self.by_stream.get(stream).ok_or(RoomError::UnknownStream)?.clone();
        let room = self.rooms.get_mut(&key).ok_or(RoomError::UnknownStream)?;
        let at = room.streams.iter().position(|s| &s.id == stream).ok_or(RoomError::UnknownStream)?;
        let gone = room.streams.remove(at);
        let connection = room.connection(&gone.connection).cloned().ok_or(RoomError::UnknownConnection)?;
        let session = room.id.clone();
        self.by_stream.remove(stream);
        self.push(&session, now, EventKind::StreamDestroyed { stream: gone.clone(), connection, reason });
        Ok(gone)
    }

    /// Force-mutes one stream's audio. Muting a stream that is muted already is not an error
    /// (the event is sent again, as the service does).
    pub fn mute_stream(&mut self, session: &SessionId, stream: &StreamId, now: SystemTime) -> Result<(), RoomError> {
        let room = self.rooms.get_mut(session.as_str()).ok_or(RoomError::UnknownSession)?;
        let s = room.streams.iter_mut().find(|s| &s.id == stream).ok_or(RoomError::UnknownStream)?;
        let newly = s.has_audio && !s.audio_muted;
        s.audio_muted |= s.has_audio;
        let muted = if newly { vec![stream.clone()] } else { Vec::new() };
        self.push(session, now, EventKind::MuteForced { target: MuteTarget::Stream(stream.clone()), muted });
        Ok(())
    }

    /// The session-wide mute: with `active`, mutes every stream not in `excluded` and keeps
    /// muting streams published later; without, ends that state (muting nobody, unmuting nobody).
    /// The session need not be live: the state waits for those who join later.
    pub fn mute_all(&mut self, session: &SessionId, active: bool, excluded: Vec<StreamId>, now: SystemTime) {
        let mut muted = Vec::new();
        if let Some(room) = self.rooms.get_mut(session.as_str()).filter(|_| active) {
            for s in room.streams.iter_mut().filter(|s| s.has_audio && !excluded.contains(&s.id)) {
                if !s.audio_muted {
                    s.audio_muted = true;
                    muted.push(s.id.clone());
                }
            }
        }
        if active {
            self.mutes.insert(session.as_str().to_owned(), excluded.clone());
        } else {
            self.mutes.remove(session.as_str());
        }
        self.push(session, now, EventKind::MuteForced { target: MuteTarget::Session { active, excluded }, muted });
    }

    /// Mutes a stream at its publisher's own wish (the SIP party pressed `*6`): `audio_muted` set,
    /// [`EventKind::AudioMuted`] rather than a force mute.
    pub fn mute_own_stream(&mut self, stream: &StreamId, now: SystemTime) -> Result<(), RoomError> {
        let key = self.by_stream.get(stream).ok_or(RoomError::UnknownStream)?.clone();
        let room = self.rooms.get_mut(&key).ok_or(RoomError::UnknownStream)?;
        let s = room.streams.iter_mut().find(|s| &s.id == stream).ok_or(RoomError::UnknownStream)?;
        if s.has_audio && !s.audio_muted {
            s.audio_muted = true;
            let session = room.id.clone();
            self.push(&session, now, EventKind::AudioMuted { stream: stream.clone() });
        }
        Ok(())
    }

    /// Clears a stream's force mute (its publisher chose to unmute, or the SIP party pressed `*6`).
    pub fn unmute_stream(&mut self, stream: &StreamId, now: SystemTime) -> Result<(), RoomError> {
        let key = self.by_stream.get(stream).ok_or(RoomError::UnknownStream)?.clone();
        let room = self.rooms.get_mut(&key).ok_or(RoomError::UnknownStream)?;
        let s = room.streams.iter_mut().find(|s| &s.id == stream).ok_or(RoomError::UnknownStream)?;
        if s.audio_muted {
            s.audio_muted = false;
            let session = room.id.clone();
            self.push(&session, now, EventKind::AudioUnmuted { stream: stream.clone() });
        }
        Ok(())
    }

    /// Sends a signal to one connection of the session or to all of them. `from` is `None` for a
    /// REST signal; when given it must be a connection of this session.
    pub fn signal(
        &mut self,
        session: &SessionId,
        from: Option<&ConnectionId>,
        to: Option<&ConnectionId>,
        signal_type: &str,
        data: &str,
        now: SystemTime,
    ) -> Result<(), RoomError> {
        if signal_type.len() > MAX_SIGNAL_TYPE {
            return Err(RoomError::TooLarge("signal type longer than 128 bytes"));
        }
        if data.len() > MAX_SIGNAL_DATA {
            return Err(RoomError::TooLarge("signal data longer than 8 KiB"));
        }
        if signal_type.chars().any(char::is_control) {
            return Err(RoomError::Invalid("signal type contains control characters".into()));
        }
        let room = self.rooms.get(session.as_str()).ok_or(RoomError::UnknownSession)?;
        for id in from.into_iter().chain(to) {
            room.connection(id).ok_or(RoomError::UnknownConnection)?;
        }
        let kind = EventKind::Signal {
            from: from.cloned(),
            to: to.cloned(),
            signal_type: signal_type.to_owned(),
            data: data.to_owned(),
        };
        self.push(session, now, kind);
        Ok(())
    }

    /// Whether the session is live (has had a connection and has not ended).
    pub fn is_live(&self, session: &SessionId) -> bool {
        self.rooms.contains_key(session.as_str())
    }

    /// The session's connections in join order (empty when not live).
    pub fn connections(&self, session: &SessionId) -> &[Connection] {
        self.rooms.get(session.as_str()).map(|r| r.connections.as_slice()).unwrap_or(&[])
    }

    /// The session's streams in publish order (empty when not live).
    pub fn streams(&self, session: &SessionId) -> &[Stream] {
        self.rooms.get(session.as_str()).map(|r| r.streams.as_slice()).unwrap_or(&[])
    }

    /// One connection, wherever it is.
    pub fn connection(&self, id: &ConnectionId) -> Option<&Connection> {
        let key = self.by_connection.get(id)?;
        self.rooms.get(key)?.connection(id)
    }

    /// One stream, wherever it is.
    pub fn stream(&self, id: &StreamId) -> Option<&Stream> {
        let key = self.by_stream.get(id)?;
        self.rooms.get(key)?.streams.iter().find(|s| &s.id == id)
    }

    /// Whether a session-wide mute is active, and what it excludes.
    pub fn mute_all_state(&self, session: &SessionId) -> Option<&[StreamId]> {
        self.mutes.get(session.as_str()).map(Vec::as_slice)
    }

    /// When the next session may end (constant time).
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.deadline
    }

    fn recompute_deadline(&mut self) {
        self.deadline = self.rooms.values().filter_map(|r| r.empty_since).min().map(|t| t + self.config.empty_timeout);
    }

    /// Ends the sessions that have been without a client for the configured time: a
    /// [`EventKind::SessionEnded`], then each remaining connection destroyed
    /// (`clientDisconnected`), then the session is forgotten.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        let timeout = self.config.empty_timeout;
        let due: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.empty_since.is_some_and(|t| t + timeout <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(session) = self.rooms.get(&key).map(|r| r.id.clone()) else { continue };
            self.push(&session, now, EventKind::SessionEnded);
            let ids: Vec<ConnectionId> = self.connections(&session).iter().map(|c| c.id.clone()).collect();
            for id in ids {
                // Cannot fail: the connection was listed just above.
                let _ = self.disconnect(&id, DisconnectReason::ClientDisconnected, now);
            }
            self.rooms.remove(&key);
        }
        self.recompute_deadline();
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push(&mut self, session: &SessionId, now: SystemTime, kind: EventKind) {
        self.events.push_back(Event { session: session.clone(), at_ms: unix_ms(now), kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::ProjectId;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn setup() -> (Rooms, SessionId, StdRng) {
        let mut rng = StdRng::seed_from_u64(7);
        let key = ProjectId::api_key("123456").expect("key");
        let sid = SessionId::mint(&key, None, at(0), &mut rng);
        (Rooms::default(), sid, rng)
    }

    fn drain(rooms: &mut Rooms) -> Vec<EventKind> {
        std::iter::from_fn(|| rooms.poll_event()).map(|e| e.kind).collect()
    }

    fn av(name: &str) -> StreamSpec {
        StreamSpec { name: name.into(), has_audio: true, has_video: true, video_type: None }
    }

    #[test]
    fn uuids_are_v4() {
        let mut rng = StdRng::seed_from_u64(1);
        let id = ConnectionId::random(&mut rng);
        let s = id.as_str();
        assert_eq!(s.len(), 36);
        assert_eq!(s.as_bytes()[14], b'4');
        assert!(matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(id, ConnectionId::random(&mut rng));
    }

    #[test]
    fn events_in_order_and_streams_die_before_their_connection() {
        let (mut rooms, sid, mut rng) = setup();
        let a = rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, "a".into(), at(1), &mut rng).expect("a");
        let s =
            rooms.publish(&a.id, StreamId::random(&mut rng), av("cam"), vec!["full".into()], at(2)).expect("publish");
        assert_eq!(s.video_type, Some(VideoType::Camera));
        assert_eq!(s.created_ms, unix_ms(at(2)));
        rooms.disconnect(&a.id, DisconnectReason::NetworkDisconnected, at(3)).expect("disconnect");
        let ev = drain(&mut rooms);
        assert!(matches!(&ev[0], EventKind::ConnectionCreated(c) if c.id == a.id && c.data == "a"));
        assert!(matches!(&ev[1], EventKind::StreamCreated { stream, .. } if stream.id == s.id));
        assert!(
            matches!(&ev[2], EventKind::StreamDestroyed { stream, reason: StreamEndReason::Connection(DisconnectReason::NetworkDisconnected), .. } if stream.id == s.id)
        );
        assert!(
            matches!(&ev[3], EventKind::ConnectionDestroyed { connection, reason: DisconnectReason::NetworkDisconnected } if connection.id == a.id)
        );
        assert_eq!(ev.len(), 4);
        assert!(rooms.streams(&sid).is_empty());
        assert!(rooms.stream(&s.id).is_none());
        assert_eq!(
            rooms.disconnect(&a.id, DisconnectReason::ClientDisconnected, at(4)),
            Err(RoomError::UnknownConnection)
        );
    }

    #[test]
    fn roles_and_limits() {
        let (mut rooms, sid, mut rng) = setup();
        let sub =
            rooms.connect(&sid, ConnectionKind::Client, Role::Subscriber, String::new(), at(1), &mut rng).expect("c");
        assert_eq!(
            rooms.publish(&sub.id, StreamId::random(&mut rng), av("x"), vec![], at(1)),
            Err(RoomError::Forbidden("a subscriber may not publish"))
        );
        let p =
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(1), &mut rng).expect("c");
        let empty = StreamSpec { name: "n".into(), ..StreamSpec::default() };
        assert!(matches!(
            rooms.publish(&p.id, StreamId::random(&mut rng), empty, vec![], at(1)),
            Err(RoomError::Invalid(_))
        ));
        for _ in 0..4 {
            rooms.publish(&p.id, StreamId::random(&mut rng), av("x"), vec![], at(1)).expect("within limit");
        }
        assert!(matches!(
            rooms.publish(&p.id, StreamId::random(&mut rng), av("x"), vec![], at(1)),
            Err(RoomError::Invalid(_))
        ));
        let audio =
            StreamSpec { name: "a".into(), has_audio: true, has_video: false, video_type: Some(VideoType::Screen) };
        let q =
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(1), &mut rng).expect("c");
        assert_eq!(
            rooms.publish(&q.id, StreamId::random(&mut rng), audio, vec![], at(1)).expect("audio").video_type,
            None
        );
    }

    #[test]
    fn signals_are_checked() {
        let (mut rooms, sid, mut rng) = setup();
        let a =
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(1), &mut rng).expect("c");
        drain(&mut rooms);
        let long_type = "t".repeat(129);
        assert!(matches!(rooms.signal(&sid, None, None, &long_type, "", at(2)), Err(RoomError::TooLarge(_))));
        let big = "d".repeat(8 * 1024 + 1);
        assert!(matches!(rooms.signal(&sid, None, None, "chat", &big, at(2)), Err(RoomError::TooLarge(_))));
        let stranger = ConnectionId::from_wire("nobody");
        assert_eq!(rooms.signal(&sid, None, Some(&stranger), "chat", "x", at(2)), Err(RoomError::UnknownConnection));
        rooms.signal(&sid, Some(&a.id), None, "chat", &"d".repeat(8 * 1024), at(2)).expect("at the limit");
        let ev = drain(&mut rooms);
        assert!(
            matches!(&ev[..], [EventKind::Signal { from: Some(f), to: None, signal_type, .. }] if *f == a.id && signal_type == "chat")
        );
    }

    #[test]
    fn mute_all_applies_to_later_streams_until_ended() {
        let (mut rooms, sid, mut rng) = setup();
        let a =
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(1), &mut rng).expect("c");
        let s1 = rooms.publish(&a.id, StreamId::random(&mut rng), av("1"), vec![], at(1)).expect("s1");
        let s2 = rooms.publish(&a.id, StreamId::random(&mut rng), av("2"), vec![], at(1)).expect("s2");
        drain(&mut rooms);
        rooms.mute_all(&sid, true, vec![s2.id.clone()], at(2));
        assert!(rooms.stream(&s1.id).expect("s1").audio_muted);
        assert!(!rooms.stream(&s2.id).expect("s2").audio_muted);
        let ev = drain(&mut rooms);
        assert!(
            matches!(&ev[..], [EventKind::MuteForced { target: MuteTarget::Session { active: true, .. }, muted }] if *muted == vec![s1.id.clone()])
        );
        let s3 = rooms.publish(&a.id, StreamId::random(&mut rng), av("3"), vec![], at(3)).expect("s3");
        assert!(s3.audio_muted, "a session-wide mute still active mutes later streams");
        let ev = drain(&mut rooms);
        assert!(matches!(&ev[1], EventKind::MuteForced { target: MuteTarget::Stream(id), .. } if *id == s3.id));
        rooms.mute_all(&sid, false, vec![], at(4));
        assert!(rooms.stream(&s1.id).expect("s1").audio_muted, "ending the state unmutes nobody");
        let s4 = rooms.publish(&a.id, StreamId::random(&mut rng), av("4"), vec![], at(5)).expect("s4");
        assert!(!s4.audio_muted);
        rooms.unmute_stream(&s1.id, at(6)).expect("unmute");
        assert!(!rooms.stream(&s1.id).expect("s1").audio_muted);
        let unknown = StreamId::from_wire("x");
        assert_eq!(rooms.mute_stream(&sid, &unknown, at(6)), Err(RoomError::UnknownStream));
    }

    /// A publisher's own mute (`*6`) sets `audio_muted` with its own event, never a force mute;
    /// a moderator's mute of the stream after it mutes nothing more, and one before it makes the
    /// own mute a no-op.
    #[test]
    fn an_own_mute_is_no_force_mute() {
        let (mut rooms, sid, mut rng) = setup();
        let a = rooms.connect(&sid, ConnectionKind::Sip, Role::Publisher, String::new(), at(1), &mut rng).expect("c");
        let s = rooms.publish(&a.id, StreamId::random(&mut rng), av("1"), vec![], at(1)).expect("s");
        drain(&mut rooms);
        rooms.mute_own_stream(&s.id, at(2)).expect("own mute");
        assert!(rooms.stream(&s.id).expect("s").audio_muted);
        assert!(matches!(&drain(&mut rooms)[..], [EventKind::AudioMuted { stream }] if *stream == s.id));
        rooms.mute_stream(&sid, &s.id, at(3)).expect("moderator");
        assert!(matches!(&drain(&mut rooms)[..], [EventKind::MuteForced { muted, .. }] if muted.is_empty()));
        rooms.unmute_stream(&s.id, at(4)).expect("unmute");
        rooms.mute_stream(&sid, &s.id, at(5)).expect("moderator first");
        drain(&mut rooms);
        rooms.mute_own_stream(&s.id, at(6)).expect("own mute");
        assert!(drain(&mut rooms).is_empty(), "already muted: nothing happens");
        assert_eq!(rooms.mute_own_stream(&StreamId::from_wire("x"), at(7)), Err(RoomError::UnknownStream));
    }

    #[test]
    fn a_mute_set_before_anyone_joins_waits_for_them() {
        let (mut rooms, sid, mut rng) = setup();
        rooms.mute_all(&sid, true, vec![], at(0));
        assert!(!rooms.is_live(&sid), "muting does not make the session live");
        let a = rooms.connect(&sid, ConnectionKind::Sip, Role::Publisher, String::new(), at(1), &mut rng).expect("c");
        let s = rooms.publish(&a.id, StreamId::random(&mut rng), av("sip"), vec![], at(1)).expect("s");
        assert!(s.audio_muted);
        assert_eq!(rooms.mute_all_state(&sid), Some(&[][..]));
    }

    #[test]
    fn session_ends_after_being_without_clients() {
        let (mut rooms, sid, mut rng) = setup();
        let sip =
            rooms.connect(&sid, ConnectionKind::Sip, Role::Publisher, String::new(), at(0), &mut rng).expect("sip");
        assert_eq!(rooms.poll_timeout(), Some(at(60)), "a session with only SIP connections is empty");
        let c =
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(10), &mut rng).expect("c");
        assert_eq!(rooms.poll_timeout(), None);
        rooms.disconnect(&c.id, DisconnectReason::ClientDisconnected, at(20)).expect("leave");
        assert_eq!(rooms.poll_timeout(), Some(at(80)));
        drain(&mut rooms);
        rooms.handle_timeout(at(79));
        assert!(rooms.is_live(&sid));
        rooms.handle_timeout(at(80));
        assert!(!rooms.is_live(&sid));
        let ev = drain(&mut rooms);
        assert_eq!(ev[0], EventKind::SessionEnded);
        assert!(matches!(&ev[1], EventKind::ConnectionDestroyed { connection, .. } if connection.id == sip.id));
        assert_eq!(rooms.poll_timeout(), None);
        assert!(rooms.connection(&sip.id).is_none());
    }

    #[test]
    fn a_session_cannot_overflow() {
        let (_, sid, mut rng) = setup();
        let mut rooms = Rooms::new(RoomsConfig { max_connections: 2, ..RoomsConfig::default() });
        for _ in 0..2 {
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(0), &mut rng).expect("c");
        }
        assert_eq!(
            rooms.connect(&sid, ConnectionKind::Client, Role::Publisher, String::new(), at(0), &mut rng),
            Err(RoomError::Full)
        );
    }
}
