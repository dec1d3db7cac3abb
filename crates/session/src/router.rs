//! The media router: WebRTC peer connections (str0m, ICE-lite, DTLS-SRTP) and the forwarding of
//! media from each stream's source to its subscribers, without decoding.
//!
//! Sans-IO like the rest of the crate: datagrams go in with [`Router::handle_receive`], time with
//! [`Router::handle_timeout`]; datagrams to send come out of [`Router::poll_transmit`], happenings
//! out of [`Router::poll_event`], the next deadline out of [`Router::poll_timeout`]. One UDP
//! socket serves every peer (demultiplexed by the sender's address and ICE credentials).
//!
//! Every peer connection is offered by the client and answered here: one per published stream
//! (the client sends) and one per subscription (the client receives). A stream's source is such a
//! publishing peer, or an *external* source (the SIP bridge) that writes frames with
//! [`Router::write_external`]. Other crates can also *tap* any stream ([`Router::tap`]) and receive
//! its frames as [`RouterEvent::TapFrame`] (depacketised codec frames, ready for a decoder).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::crypto::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tracing::{debug, warn};

use crate::room::{ConnectionId, StreamId};

/// Longest offer accepted, in bytes.
pub const MAX_SDP: usize = 32 * 1024;
/// Keyframe requests towards one source are sent at most this often.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Why the router refused something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterError {
    /// The SDP offer is not usable (text, shape, or directions).
    BadOffer(String),
    /// The stream has no source here.
    UnknownStream,
    /// No such peer.
    UnknownPeer,
    /// str0m refused (the message says why).
    Rtc(String),
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterError::BadOffer(why) => write!(f, "unusable SDP offer: {why}"),
            RouterError::UnknownStream => f.write_str("stream has no media source"),
            RouterError::UnknownPeer => f.write_str("no such peer connection"),
            RouterError::Rtc(why) => write!(f, "WebRTC failure: {why}"),
        }
    }
}

impl std::error::Error for RouterError {}

/// A peer connection's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// A tap's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TapId(pub u64);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl Kind {
    fn of(kind: MediaKind) -> Kind {
        if kind == MediaKind::Audio {
            Kind::Audio
        } else {
            Kind::Video
        }
    }
}

/// The codecs the router carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameCodec {
    /// Opus, 48 kHz.
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// VP8.
    Vp8,
    /// H.264.
    H264,
}

impl FrameCodec {
    fn from_str0m(c: Codec) -> Option<FrameCodec> {
        Some(match c {
            Codec::Opus => FrameCodec::Opus,
            Codec::PCMU => FrameCodec::Pcmu,
            Codec::PCMA => FrameCodec::Pcma,
            Codec::Vp8 => FrameCodec::Vp8,
            Codec::H264 => FrameCodec::H264,
            _ => return None,
        })
    }

    fn to_str0m(self) -> Codec {
        match self {
            FrameCodec::Opus => Codec::Opus,
            FrameCodec::Pcmu => Codec::PCMU,
            FrameCodec::Pcma => Codec::PCMA,
            FrameCodec::Vp8 => Codec::Vp8,
            FrameCodec::H264 => Codec::H264,
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            FrameCodec::Opus => 48_000,
            FrameCodec::Pcmu | FrameCodec::Pcma => 8_000,
            FrameCodec::Vp8 | FrameCodec::H264 => 90_000,
        }
    }

    /// Audio or video.
    pub fn kind(self) -> Kind {
        match self {
            FrameCodec::Opus | FrameCodec::Pcmu | FrameCodec::Pcma => Kind::Audio,
            FrameCodec::Vp8 | FrameCodec::H264 => Kind::Video,
        }
    }
}

/// One depacketised codec frame (an Opus packet, a whole VP8 or H.264 access unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// Its codec.
    pub codec: FrameCodec,
    /// RTP time in the codec's clock (extended past wrap-around by the source).
    pub rtp_time: u64,
    /// The frame.
    pub data: Arc<[u8]>,
    /// False when frames were lost just before this one (a video decoder may need a keyframe).
    pub contiguous: bool,
    /// The audio's level as RFC 6464 puts it (0 loudest to 127 silence, in -dBov), when the
    /// source says: the RTP audio-level header extension of a WebRTC publisher, or measured by
    /// whoever decoded the audio. A mixer need not decode a packet that says it is silent.
    pub audio_level: Option<u8>,
    /// When its packet arrived from the network (the last of them, for a frame of several), or,
    /// for a frame made here, when it was made: what a jitter buffer measures jitter with.
    pub arrival: Instant,
}

/// What a peer connection is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRole {
    /// The client sends this stream.
    Publisher(StreamId),
    /// The client receives this stream.
    Subscriber(StreamId),
}

/// What happened in the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// ICE and DTLS completed: media flows.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its connection.
        owner: ConnectionId,
    },
    /// The peer connection failed or timed out; it has been removed.
    PeerFailed {
        /// The peer.
        peer: PeerId,
        /// Its connection.
        owner: ConnectionId,
        /// What it was for.
        role: PeerRole,
    },
    /// A frame of a tapped stream.
    TapFrame {
        /// The tap (it names the stream: see [`Router::tap`]).
        tap: TapId,
        /// The frame.
        frame: MediaFrame,
    },
    /// A subscriber asked for a keyframe of a stream whose source is external.
    KeyframeRequested {
        /// The stream.
        stream: StreamId,
    },
}

/// How the router presents itself.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The address of the UDP socket (a host candidate).
    pub local: SocketAddr,
    /// Further addresses to advertise as candidates (a public address in front of `local`).
    pub public: Vec<SocketAddr>,
}

/// A peer's media line of one kind.
#[derive(Debug, Clone, Copy)]
struct Line {
    mid: Mid,
    kind: Kind,
}

struct Peer {
    rtc: Rtc,
    owner: ConnectionId,
    role: PeerRole,
    lines: Vec<Line>,
    connected: bool,
    /// Until when it may take to connect (see [`CONNECT_WITHIN`]).
    connect_by: Instant,
    timeout: Option<Instant>,
    last_keyframe_request: Option<Instant>,
    /// Source addresses it has been reached from (see [`MAX_PEER_ADDRESSES`]), and when the last
    /// new one came.
    addresses: usize,
    new_address_at: Option<Instant>,
}

/// Source addresses one peer is taken from freely. Its browser knows the ICE password, and every
/// new address its checks come from is one more peer-reflexive candidate kept for the peer's life;
/// a NAT rebinding or a change of network now and then is far below this. Past it, one new address
/// is taken every [`NEW_ADDRESS_EVERY`], so a participant moving between networks for hours still
/// reaches us, and one spraying checks from new ports grows nothing.
const MAX_PEER_ADDRESSES: usize = 16;
const NEW_ADDRESS_EVERY: Duration = Duration::from_secs(10);

/// Audio levels (in -dBov, RFC 6464) below this are said to be voice, when the source does not
/// say (-50 dBov, where the bridge takes a packet for quiet).
const VOICE_BELOW: u8 = 50;

/// How long a peer may take to connect (ICE and DTLS) before it is given up: an offer whose
/// candidates never answer would otherwise keep its peer (and its subscription) forever.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

impl Peer {
    /// Its next deadline: str0m's, or the end of its time to connect.
    fn deadline(&self) -> Option<Instant> {
        let connect = (!self.connected).then_some(self.connect_by);
        [self.timeout, connect].into_iter().flatten().min()
    }

    fn mid(&self, kind: Kind) -> Option<Mid> {
        self.lines.iter().find(|l| l.kind == kind).map(|l| l.mid)
    }
}

enum Source {
    Peer(PeerId),
    External { last_keyframe_request: Option<Instant> },
}

/// Work found while draining one peer that involves others.
enum Work {
    Media(PeerId, Box<MediaData>),
    KeyframeRequest(PeerId, KeyframeRequestKind),
    SubscriberConnected(PeerId),
}

/// Sent datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// The router (see the module docs).
pub struct Router {
    config: RouterConfig,
    crypto: Arc<CryptoProvider>,
    peers: HashMap<PeerId, Peer>,
    next_id: u64,
    /// Remote address → the peer that accepted traffic from it.
    by_remote: HashMap<SocketAddr, PeerId>,
    sources: HashMap<StreamId, Source>,
    subscribers: HashMap<StreamId, Vec<PeerId>>,
    taps: HashMap<StreamId, Vec<TapId>>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<RouterEvent>,
    /// No later than the earliest peer deadline (kept as deadlines come out of the peers, so that
    /// asking costs nothing; recomputed exactly after each [`Router::handle_timeout`]).
    earliest: Option<Instant>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").field("local", &self.config.local).field("peers", &self.peers.len()).finish()
    }
}

/// Which kinds an offer sends (for a publisher) or wants (for a subscriber): the m-lines with a
/// non-zero port, by media type. A quick read to size the stream before str0m parses the offer.
pub fn offer_kinds(sdp: &str) -> (bool, bool) {
    let mut audio = false;
    let mut video = false;
    for line in sdp.lines() {
        let mut words = line.trim().strip_prefix("m=").unwrap_or("").split_whitespace();
        let (Some(media), Some(port)) = (words.next(), words.next()) else { continue };
        if port == "0" {
            continue;
        }
        match media {
            "audio" => audio = true,
            "video" => video = true,
            _ => {}
        }
    }
    (audio, video)
}

impl Router {
    /// A router with no peers.
    pub fn new(config: RouterConfig) -> Router {
        Router {
            config,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            peers: HashMap::new(),
            next_id: 1,
            by_remote: HashMap::new(),
            sources: HashMap::new(),
            subscribers: HashMap::new(),
            taps: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            earliest: None,
        }
    }

    /// The socket address peers reach us on.
    pub fn local_addr(&self) -> SocketAddr {
        self.config.local
    }

    fn new_rtc(&self, now: Instant) -> Result<Rtc, RouterError> {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .build(now);
        for addr in std::iter::once(&self.config.local).chain(&self.config.public) {
            let candidate = Candidate::host(*addr, "udp").map_err(|e| RouterError::Rtc(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        Ok(rtc)
    }

    fn accept(
        &mut self,
        now: Instant,
        owner: ConnectionId,
        role: PeerRole,
        offer: &str,
    ) -> Result<(PeerId, String), RouterError> {
        if offer.len() > MAX_SDP {
            return Err(RouterError::BadOffer(format!("longer than {MAX_SDP} bytes")));
        }
        let parsed = SdpOffer::from_sdp_string(offer).map_err(|e| RouterError::BadOffer(e.to_string()))?;
        let mut rtc = self.new_rtc(now)?;
        let answer = rtc.sdp_api().accept_offer(parsed).map_err(|e| RouterError::BadOffer(e.to_string()))?;
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let peer = Peer {
            rtc,
            owner,
            role,
            lines: Vec::new(),
            connected: false,
            connect_by: now + CONNECT_WITHIN,
            timeout: None,
            last_keyframe_request: None,
            addresses: 0,
            new_address_at: None,
        };
        self.peers.insert(id, peer);
        self.run(now, vec![id]);
        Ok((id, answer.to_sdp_string()))
    }

    /// Accepts a publisher's offer (its m-lines `sendonly` or `sendrecv`) for `stream`, which must
    /// not have a source yet. Returns the peer and the SDP answer.
    pub fn add_publisher(
        &mut self,
        now: Instant,
        owner: ConnectionId,
        stream: StreamId,
        offer: &str,
    ) -> Result<(PeerId, String), RouterError> {
        if self.sources.contains_key(&stream) {
            return Err(RouterError::BadOffer("the stream has a source already".into()));
        }
        if offer.lines().any(|l| l.trim() == "a=recvonly") {
            return Err(RouterError::BadOffer("a publisher's media lines must send (sendonly), not recvonly".into()));
        }
        let (id, answer) = self.accept(now, owner, PeerRole::Publisher(stream.clone()), offer)?;
        self.sources.insert(stream, Source::Peer(id));
        Ok((id, answer))
    }

    /// Accepts a subscriber's offer (its m-lines `recvonly`) for `stream`.
    pub fn add_subscriber(
        &mut self,
        now: Instant,
        owner: ConnectionId,
        stream: StreamId,
        offer: &str,
    ) -> Result<(PeerId, String), RouterError> {
        if !self.sources.contains_key(&stream) {
            return Err(RouterError::UnknownStream);
        }
        if offer.lines().any(|l| l.trim() == "a=sendonly") {
            return Err(RouterError::BadOffer(
                "a subscriber's media lines must receive (recvonly), not sendonly".into(),
            ));
        }
        let (id, answer) = self.accept(now, owner, PeerRole::Subscriber(stream.clone()), offer)?;
        self.subscribers.entry(stream).or_default().push(id);
        Ok((id, answer))
    }

    /// Declares `stream`'s source external (frames come from [`Router::write_external`]).
    pub fn add_external(&mut self, stream: StreamId) -> Result<(), RouterError> {
        if self.sources.contains_key(&stream) {
            return Err(RouterError::BadOffer("the stream has a source already".into()));
        }
        self.sources.insert(stream, Source::External { last_keyframe_request: None });
        Ok(())
    }

    /// Sends a frame of an external stream to its subscribers (and taps). Subscribers that did not
    /// negotiate the codec skip it.
    pub fn write_external(&mut self, now: Instant, stream: &StreamId, frame: MediaFrame) -> Result<(), RouterError> {
        if !matches!(self.sources.get(stream), Some(Source::External { .. })) {
            return Err(RouterError::UnknownStream);
        }
        self.emit_taps(stream, &frame);
        let subs = self.subscribers.get(stream).cloned().unwrap_or_default();
        let codec = frame.codec.to_str0m();
        let time = MediaTime::new(
            frame.rtp_time,
            str0m::media::Frequency::new(frame.codec.clock_rate()).unwrap_or(str0m::media::Frequency::MICROS),
        );
        for id in &subs {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            if !peer.connected {
                continue;
            }
            let Some(mid) = peer.mid(frame.codec.kind()) else { continue };
            let Some(mut writer) = peer.rtc.writer(mid) else { continue };
            let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else { continue };
            if let Some(level) = frame.audio_level {
                // RFC 6464 carries -dBov; voice is said above -50 dBov.
                let level = level.min(127);
                writer = writer.audio_level(-(level as i8), level < VOICE_BELOW);
            }
            if let Err(e) = writer.write(pt, now, time, frame.data.clone()) {
                debug!(peer = id.0, error = %e, "write to subscriber failed");
            }
        }
        self.run(now, subs);
        Ok(())
    }

    /// Starts receiving `stream`'s frames as [`RouterEvent::TapFrame`]s.
    pub fn tap(&mut self, stream: &StreamId) -> Result<TapId, RouterError> {
        if !self.sources.contains_key(stream) {
            return Err(RouterError::UnknownStream);
        }
        let id = TapId(self.next_id);
        self.next_id += 1;
        self.taps.entry(stream.clone()).or_default().push(id);
        Ok(id)
    }

    /// Stops a tap.
    pub fn untap(&mut self, tap: TapId) {
        for list in self.taps.values_mut() {
            list.retain(|t| *t != tap);
        }
        self.taps.retain(|_, l| !l.is_empty());
    }

    /// Asks `stream`'s source for a keyframe (PLI), at most every [`KEYFRAME_REQUEST_INTERVAL`].
    pub fn request_keyframe(&mut self, now: Instant, stream: &StreamId) {
        match self.sources.get_mut(stream) {
            Some(Source::Peer(p)) => {
                let p = *p;
                self.keyframe_from_peer(now, p, KeyframeRequestKind::Pli);
                self.run(now, vec![p]);
            }
            Some(Source::External { last_keyframe_request })
                if last_keyframe_request
                    .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL) =>
            {
                *last_keyframe_request = Some(now);
                self.events.push_back(RouterEvent::KeyframeRequested { stream: stream.clone() });
            }
            Some(Source::External { .. }) => {}
            None => {}
        }
    }

    /// Closes one peer connection (no event).
    pub fn remove_peer(&mut self, peer: PeerId) -> Result<(), RouterError> {
        let mut p = self.peers.remove(&peer).ok_or(RouterError::UnknownPeer)?;
        p.rtc.disconnect();
        self.forget(peer, &p.role);
        Ok(())
    }

    /// Ends a stream: its source (a publishing peer is closed), its subscriber peers and its taps
    /// (returned, for whoever holds their receivers' senders).
    pub fn remove_stream(&mut self, stream: &StreamId) -> Vec<TapId> {
        if let Some(Source::Peer(p)) = self.sources.remove(stream) {
            if let Some(mut peer) = self.peers.remove(&p) {
                peer.rtc.disconnect();
            }
        }
        for p in self.subscribers.remove(stream).unwrap_or_default() {
            if let Some(mut peer) = self.peers.remove(&p) {
                peer.rtc.disconnect();
            }
        }
        let taps = self.taps.remove(stream).unwrap_or_default();
        self.by_remote.retain(|_, p| self_has(&self.peers, p));
        taps
    }

    fn forget(&mut self, peer: PeerId, role: &PeerRole) {
        match role {
            PeerRole::Publisher(s) => {
                if matches!(self.sources.get(s), Some(Source::Peer(p)) if *p == peer) {
                    self.sources.remove(s);
                }
            }
            PeerRole::Subscriber(s) => {
                if let Some(list) = self.subscribers.get_mut(s) {
                    list.retain(|p| *p != peer);
                }
            }
        }
        self.by_remote.retain(|_, p| *p != peer);
    }

    /// The peers of a connection.
    pub fn peers_of(&self, owner: &ConnectionId) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self.peers.iter().filter(|(_, p)| &p.owner == owner).map(|(id, _)| *id).collect();
        v.sort();
        v
    }

    /// What a peer is for.
    pub fn peer_role(&self, peer: PeerId) -> Option<&PeerRole> {
        self.peers.get(&peer).map(|p| &p.role)
    }

    /// Number of peer connections.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Feeds one received datagram.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        let contents_first_byte = contents.first().copied().unwrap_or(u8::MAX);
        let Ok(contents) = contents.try_into() else {
            debug!(%source, "datagram that is neither STUN, DTLS nor RTP ignored");
            return;
        };
        let input =
            Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.config.local, contents });
        let cached = self
            .by_remote
            .get(&source)
            .copied()
            .filter(|p| self.peers.get(p).is_some_and(|peer| peer.rtc.accepts(&input)));
        // Only STUN (RFC 7983: a first byte of 0 to 3) may look for its peer among all of them: a
        // peer's address is learnt from its connectivity checks, so DTLS or media from an address
        // no check came from belongs to nobody, and junk from spoofed addresses costs no scan.
        let stun = contents_first_byte <= 3;
        let target = cached.or_else(|| {
            stun.then(|| self.peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(id, _)| *id)).flatten()
        });
        let Some(id) = target else {
            debug!(%source, "datagram for no peer");
            return;
        };
        if cached.is_none() {
            let Some(peer) = self.peers.get_mut(&id) else { return };
            let recent = peer.new_address_at.is_some_and(|t| now.saturating_duration_since(t) < NEW_ADDRESS_EVERY);
            if peer.addresses >= MAX_PEER_ADDRESSES && recent {
                debug!(%source, peer = id.0, "a peer's checks from one new address too many: ignored");
                return;
            }
            peer.addresses += 1;
            peer.new_address_at = Some(now);
            self.by_remote.insert(source, id);
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            if let Err(e) = peer.rtc.handle_input(input) {
                warn!(peer = id.0, error = %e, "peer input failed; closing it");
                peer.rtc.disconnect();
            }
        }
        self.run(now, vec![id]);
    }

    /// Advances time: every peer whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.timeout.is_none_or(|t| t <= now) || (!p.connected && p.connect_by <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            if let Some(peer) = self.peers.get_mut(id) {
                if !peer.connected && peer.connect_by <= now {
                    debug!(peer = id.0, "peer not connected within 30 s: given up");
                    peer.rtc.disconnect();
                } else if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                    warn!(peer = id.0, error = %e, "peer timeout handling failed; closing it");
                    peer.rtc.disconnect();
                }
            }
        }
        self.run(now, due);
        self.earliest = self.peers.values().filter_map(Peer::deadline).min();
    }

    /// The earliest deadline of any peer (possibly a little early after peers went away, never
    /// late). Constant time: the driver asks after every change.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.earliest
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RouterEvent> {
        self.events.pop_front()
    }

    /// Drains the given peers' output, and that of every peer the resulting forwarding touched.
    fn run(&mut self, now: Instant, start: Vec<PeerId>) {
        let mut to_drain: VecDeque<PeerId> = start.into();
        let mut work: Vec<Work> = Vec::new();
        while let Some(id) = to_drain.pop_front() {
            self.drain(now, id, &mut work);
            for w in work.drain(..) {
                match w {
                    Work::Media(from, data) => to_drain.extend(self.forward(from, *data, now)),
                    Work::KeyframeRequest(from, kind) => {
                        if let Some(p) = self.source_peer_of_subscriber(from) {
                            self.keyframe_from_peer(now, p, kind);
                            to_drain.push_back(p);
                        } else if let Some(PeerRole::Subscriber(s)) = self.peers.get(&from).map(|p| p.role.clone()) {
                            self.request_keyframe(now, &s);
                        }
                    }
                    Work::SubscriberConnected(sub) => {
                        // A new subscriber needs a picture now, not at the next periodic keyframe.
                        if let Some(p) = self.source_peer_of_subscriber(sub) {
                            self.keyframe_from_peer(now, p, KeyframeRequestKind::Pli);
                            to_drain.push_back(p);
                        } else if let Some(PeerRole::Subscriber(s)) = self.peers.get(&sub).map(|p| p.role.clone()) {
                            self.request_keyframe(now, &s);
                        }
                    }
                }
            }
        }
    }

    fn source_peer_of_subscriber(&self, sub: PeerId) -> Option<PeerId> {
        let PeerRole::Subscriber(stream) = &self.peers.get(&sub)?.role else { return None };
        match self.sources.get(stream)? {
            Source::Peer(p) => Some(*p),
            Source::External { .. } => None,
        }
    }

    fn keyframe_from_peer(&mut self, now: Instant, peer: PeerId, kind: KeyframeRequestKind) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.last_keyframe_request.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL) {
            return;
        }
        let Some(mid) = p.mid(Kind::Video) else { return };
        let Some(mut writer) = p.rtc.writer(mid) else { return };
        if writer.is_request_keyframe_possible(kind) && writer.request_keyframe(None, kind).is_ok() {
            p.last_keyframe_request = Some(now);
        }
    }

    /// Drains one peer's output into transmits, events and `work`; removes it when dead.
    fn drain(&mut self, now: Instant, id: PeerId, work: &mut Vec<Work>) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        loop {
            if !peer.rtc.is_alive() {
                break;
            }
            let out = match peer.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    warn!(peer = id.0, error = %e, "peer failed; closing it");
                    peer.rtc.disconnect();
                    break;
                }
            };
            match out {
                Output::Timeout(t) => {
                    peer.timeout = Some(t);
                    self.earliest = Some(self.earliest.map_or(t, |e| e.min(t)));
                    break;
                }
                Output::Transmit(t) => {
                    self.transmits.push_back(Datagram { destination: t.destination, contents: t.contents.into() })
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        peer.connected = true;
                        self.events.push_back(RouterEvent::PeerConnected { peer: id, owner: peer.owner.clone() });
                        if matches!(peer.role, PeerRole::Subscriber(_)) {
                            work.push(Work::SubscriberConnected(id));
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => peer.rtc.disconnect(),
                    Event::MediaAdded(m) => {
                        let wanted = match peer.role {
                            PeerRole::Publisher(_) => matches!(m.direction, Direction::RecvOnly | Direction::SendRecv),
                            PeerRole::Subscriber(_) => matches!(m.direction, Direction::SendOnly | Direction::SendRecv),
                        };
                        let kind = Kind::of(m.kind);
                        if wanted && peer.mid(kind).is_none() {
                            peer.lines.push(Line { mid: m.mid, kind });
                        }
                    }
                    Event::MediaData(d) if matches!(peer.role, PeerRole::Publisher(_)) => {
                        work.push(Work::Media(id, Box::new(d)))
                    }
                    Event::KeyframeRequest(r) if matches!(peer.role, PeerRole::Subscriber(_)) => {
                        work.push(Work::KeyframeRequest(id, r.kind))
                    }
                    _ => {}
                },
            }
        }
        if !peer.rtc.is_alive() {
            if let Some(p) = self.peers.remove(&id) {
                self.forget(id, &p.role);
                self.events.push_back(RouterEvent::PeerFailed { peer: id, owner: p.owner, role: p.role });
            }
        }
        let _ = now;
    }

    /// Forwards one frame from a publishing peer to the stream's subscribers and taps; returns the
    /// subscribers written to (their output needs draining).
    fn forward(&mut self, from: PeerId, data: MediaData, now: Instant) -> Vec<PeerId> {
        let Some(PeerRole::Publisher(stream)) = self.peers.get(&from).map(|p| p.role.clone()) else {
            return Vec::new();
        };
        let kind = self.peers.get(&from).and_then(|p| p.lines.iter().find(|l| l.mid == data.mid)).map(|l| l.kind);
        let Some(kind) = kind else { return Vec::new() };
        if !data.contiguous && kind == Kind::Video {
            self.keyframe_from_peer(now, from, KeyframeRequestKind::Fir);
        }
        if let Some(codec) = FrameCodec::from_str0m(data.params.spec().codec) {
            if self.taps.contains_key(&stream) {
                let frame = MediaFrame {
                    codec,
                    rtp_time: data.time.numer(),
                    data: data.data.clone(),
                    contiguous: data.contiguous,
                    audio_level: data.ext_vals.audio_level.map(|l| l.unsigned_abs().min(127)),
                    arrival: data.network_time,
                };
                self.emit_taps(&stream, &frame);
            }
        }
        let subs = self.subscribers.get(&stream).cloned().unwrap_or_default();
        let mut touched = Vec::with_capacity(subs.len());
        for id in subs {
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            if !peer.connected {
                continue;
            }
            let Some(mid) = peer.mid(kind) else { continue };
            let Some(mut writer) = peer.rtc.writer(mid) else { continue };
            let Some(pt) = writer.match_params(data.params) else { continue };
            if let Some(level) = data.ext_vals.audio_level {
                // The publisher's level and voice flag, as it sent them.
                let voice = data.ext_vals.voice_activity.unwrap_or(level > -(VOICE_BELOW as i8));
                writer = writer.audio_level(level, voice);
            }
            match writer.write(pt, data.network_time, data.time, data.data.clone()) {
                Ok(()) => touched.push(id),
                Err(e) => debug!(peer = id.0, error = %e, "forwarding to subscriber failed"),
            }
        }
        touched
    }

    fn emit_taps(&mut self, stream: &StreamId, frame: &MediaFrame) {
        for tap in self.taps.get(stream).into_iter().flatten() {
            self.events.push_back(RouterEvent::TapFrame { tap: *tap, frame: frame.clone() });
        }
    }
}

fn self_has(peers: &HashMap<PeerId, Peer>, p: &PeerId) -> bool {
    peers.contains_key(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_an_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n";
        assert_eq!(offer_kinds(sdp), (true, false));
        assert_eq!(offer_kinds("m=video 9 x 96\nm=audio 9 x 0"), (true, true));
        assert_eq!(offer_kinds("garbage\nm=\nm=audio"), (false, false));
    }

    #[test]
    fn hostile_offers_are_errors() {
        let mut r = Router::new(RouterConfig { local: "127.0.0.1:40000".parse().expect("addr"), public: vec![] });
        let owner = ConnectionId::from_wire("c");
        let s = StreamId::from_wire("s");
        for offer in ["", "v=0", "\u{0}\u{1}", &"a".repeat(MAX_SDP + 1)] {
            assert!(matches!(
                r.add_publisher(Instant::now(), owner.clone(), s.clone(), offer),
                Err(RouterError::BadOffer(_))
            ));
        }
        assert_eq!(r.add_subscriber(Instant::now(), owner, s, "v=0"), Err(RouterError::UnknownStream));
        assert_eq!(r.peer_count(), 0);
        r.handle_receive(Instant::now(), "127.0.0.1:1".parse().expect("addr"), &[0xff; 3]);
        assert!(r.poll_transmit().is_none());
    }

    #[test]
    fn answers_advertise_the_local_and_public_addresses() {
        let local: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let public: SocketAddr = "203.0.113.7:3478".parse().expect("addr");
        let mut r = Router::new(RouterConfig { local, public: vec![public] });
        let now = Instant::now();
        let mut client = Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(now);
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _) = api.apply().expect("offer");
        let (peer, answer) = r
            .add_publisher(now, ConnectionId::from_wire("c"), StreamId::from_wire("s"), &offer.to_sdp_string())
            .expect("accepted");
        assert!(answer.contains("127.0.0.1 40000 typ host"), "{answer}");
        assert!(answer.contains("203.0.113.7 3478 typ host"), "{answer}");
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("a=recvonly"), "we receive what a publisher sends: {answer}");
        assert_eq!(r.peer_role(peer), Some(&PeerRole::Publisher(StreamId::from_wire("s"))));
        // A second source for the same stream is refused; ending the stream frees everything.
        let again =
            r.add_publisher(now, ConnectionId::from_wire("c"), StreamId::from_wire("s"), &offer.to_sdp_string());
        assert!(matches!(again, Err(RouterError::BadOffer(_))));
        r.remove_stream(&StreamId::from_wire("s"));
        assert_eq!(r.peer_count(), 0);
        assert_eq!(r.tap(&StreamId::from_wire("s")), Err(RouterError::UnknownStream));
    }

    /// A peer's connectivity checks (valid, with its ICE password) coming from ever more source
    /// addresses are taken from sixteen freely, then from one new address every ten seconds: each
    /// is a candidate kept for the peer's life.
    #[test]
    fn a_peer_is_taken_from_sixteen_addresses_then_one_every_ten_seconds() {
        let mut r = Router::new(RouterConfig { local: "127.0.0.1:40000".parse().expect("addr"), public: vec![] });
        let now = Instant::now();
        let mut client = Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(now);
        let host = str0m::Candidate::host("127.0.0.1:50000".parse().expect("addr"), "udp").expect("candidate");
        client.add_local_candidate(host);
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let (peer, answer) = r
            .add_publisher(now, ConnectionId::from_wire("c"), StreamId::from_wire("s"), &offer.to_sdp_string())
            .expect("accepted");
        let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).expect("answer");
        client.sdp_api().accept_answer(pending, answer).expect("accepted answer");
        let mut t = now;
        let mut check = None;
        for _ in 0..200 {
            match client.poll_output().expect("output") {
                str0m::Output::Transmit(tx) => {
                    check = Some(tx.contents.to_vec());
                    break;
                }
                str0m::Output::Timeout(at) => {
                    t = at.max(t + Duration::from_millis(1));
                    client.handle_input(str0m::Input::Timeout(t)).expect("timeout");
                }
                str0m::Output::Event(_) => {}
            }
        }
        let check = check.expect("the client's connectivity check");
        for port in 50_000..50_040u16 {
            r.handle_receive(t, SocketAddr::from(([127, 0, 0, 1], port)), &check);
        }
        assert_eq!(r.by_remote.values().filter(|p| **p == peer).count(), MAX_PEER_ADDRESSES);
        // The addresses it has still reach it.
        r.handle_receive(t, SocketAddr::from(([127, 0, 0, 1], 50_000)), &check);
        assert_eq!(r.by_remote.get(&SocketAddr::from(([127, 0, 0, 1], 50_000))), Some(&peer));
        // Ten seconds on, one new address more, not two.
        let later = t + NEW_ADDRESS_EVERY;
        for port in 50_100..50_110u16 {
            r.handle_receive(later, SocketAddr::from(([127, 0, 0, 1], port)), &check);
        }
        assert_eq!(r.by_remote.values().filter(|p| **p == peer).count(), MAX_PEER_ADDRESSES + 1);
    }

    /// A peer whose browser never connects (an offer without candidates, a client gone at once)
    /// is given up 30 s after its offer, not kept forever.
    #[test]
    fn a_peer_that_never_connects_is_given_up() {
        let mut r = Router::new(RouterConfig { local: "127.0.0.1:40000".parse().expect("addr"), public: vec![] });
        let now = Instant::now();
        let mut client = Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(now);
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _) = api.apply().expect("offer");
        r.add_publisher(now, ConnectionId::from_wire("c"), StreamId::from_wire("s"), &offer.to_sdp_string())
            .expect("accepted");
        assert_eq!(r.peer_count(), 1);
        let mut t = now;
        while t < now + Duration::from_secs(29) {
            t = r.poll_timeout().unwrap_or(t + Duration::from_secs(1)).max(t + Duration::from_millis(50));
            r.handle_timeout(t.min(now + Duration::from_secs(29)));
        }
        assert_eq!(r.peer_count(), 1, "still waiting at 29 s");
        assert!(r.poll_timeout().is_some_and(|d| d <= now + CONNECT_WITHIN), "a deadline at 30 s at the latest");
        r.handle_timeout(now + CONNECT_WITHIN);
        assert_eq!(r.peer_count(), 0, "given up at 30 s");
    }
}
