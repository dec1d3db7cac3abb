//! Test participants: a signalling client over a real WebSocket and a WebRTC peer built on str0m
//! (the browser's role: it offers, the gateway answers), driven on real loopback UDP.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A signalling client.
pub struct Signal {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// Events received, in order, not yet taken.
    pub pending: Vec<Value>,
    /// Every event received, in order.
    pub log: Vec<Value>,
    pub closed: bool,
}

impl Signal {
    pub async fn connect(port: u16) -> Signal {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp connect");
        let url = format!("ws://127.0.0.1:{port}/rtc/v1/signal");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.expect("ws handshake");
        Signal { ws, next_id: 1, pending: Vec::new(), log: Vec::new(), closed: false }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("ws send");
    }

    /// The next message of any kind, within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(limit, self.ws.next()).await.ok()?;
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server sends JSON"))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    self.closed = true;
                    return None;
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends a request and waits for its reply (events on the way are kept).
    pub async fn request(&mut self, mut msg: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        msg["id"] = json!(id);
        self.send_raw(&msg.to_string()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.next(left).await.unwrap_or_else(|| panic!("no reply to {msg}"));
            if m["type"] == "event" {
                self.pending.push(m.clone());
                self.log.push(m);
            } else if m["id"] == json!(id) {
                return m;
            } else {
                panic!("reply to another request: {m}");
            }
        }
    }

    /// Waits for an event by name (earlier ones of other names stay pending).
    pub async fn event(&mut self, name: &str, limit: Duration) -> Value {
        if let Some(at) = self.pending.iter().position(|e| e["event"] == name) {
            return self.pending.remove(at);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m =
                self.next(left).await.unwrap_or_else(|| panic!("no {name} event within {limit:?}; got {:?}", self.log));
            if m["type"] == "event" {
                self.log.push(m.clone());
                if m["event"] == name {
                    return m;
                }
                self.pending.push(m);
            }
        }
    }
}

/// What a peer saw.
#[derive(Debug, Default)]
pub struct PeerLog {
    pub connected: bool,
    pub audio_frames: Vec<Vec<u8>>,
    pub video_frames: Vec<Vec<u8>>,
    pub sent_audio: Vec<Vec<u8>>,
    pub sent_video: Vec<Vec<u8>>,
    pub keyframe_requests: usize,
    pub failed: Option<String>,
}

/// What a peer does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sends numbered audio frames every 20 ms and video frames every 33 ms on its send lines.
    Publish,
    /// Receives.
    Subscribe,
}

/// An offered, not yet answered peer.
pub struct Offer {
    rtc: Rtc,
    pending: SdpPendingOffer,
    socket: UdpSocket,
    pub sdp: String,
    mode: Mode,
    lines: Vec<(Mid, MediaKind)>,
    codec: Codec,
    audio_source: Option<AudioSource>,
    video_source: Option<VideoSource>,
}

/// Makes the publisher's video frame number `n`; the flag says a keyframe was asked for since the
/// last frame (real VP8, for instance); without one, numbered test frames are sent.
pub type VideoSource = Box<dyn FnMut(u32, bool) -> Vec<u8> + Send>;

/// Makes the publisher's audio frame number `n` (real Opus, for instance); without one, numbered
/// test frames are sent.
pub type AudioSource = Box<dyn FnMut(u32) -> Vec<u8> + Send>;

impl Offer {
    /// Sends audio frames made by `source` instead of numbered test frames.
    pub fn with_audio_source(mut self, source: AudioSource) -> Offer {
        self.audio_source = Some(source);
        self
    }

    /// Sends video frames made by `source` instead of numbered test frames.
    #[allow(dead_code)]
    pub fn with_video_source(mut self, source: VideoSource) -> Offer {
        self.video_source = Some(source);
        self
    }

    /// Offers one line per kind, sending (publish) or receiving (subscribe).
    pub async fn new(mode: Mode, audio: bool, video: bool) -> Offer {
        Offer::with_video_codec(mode, audio, video, Codec::Vp8).await
    }

    /// Like [`Offer::new`]; a publisher sends its video in `codec` (VP8 or H.264).
    pub async fn with_video_codec(mode: Mode, audio: bool, video: bool, codec: Codec) -> Offer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let local = socket.local_addr().expect("addr");
        let mut rtc =
            Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        let dir = if mode == Mode::Publish { Direction::SendOnly } else { Direction::RecvOnly };
        let mut api = rtc.sdp_api();
        let mut lines = Vec::new();
        if audio {
            lines.push((api.add_media(MediaKind::Audio, dir, None, None, None), MediaKind::Audio));
        }
        if video {
            lines.push((api.add_media(MediaKind::Video, dir, None, None, None), MediaKind::Video));
        }
        let (offer, pending) = api.apply().expect("changes");
        Offer {
            rtc,
            pending,
            socket,
            sdp: offer.to_sdp_string(),
            mode,
            lines,
            codec,
            audio_source: None,
            video_source: None,
        }
    }

    /// Applies the gateway's answer and starts driving the peer.
    pub fn answer(mut self, sdp: &str) -> Peer {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
        self.rtc.sdp_api().accept_answer(self.pending, answer).expect("answer accepted");
        let log = Arc::new(Mutex::new(PeerLog::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let setup = Setup {
            mode: self.mode,
            lines: self.lines,
            video_codec: self.codec,
            audio_source: self.audio_source,
            video_source: self.video_source,
        };
        let task = tokio::spawn(drive(self.rtc, self.socket, setup, log.clone(), rx));
        Peer { log, commands: tx, task }
    }
}

/// A running peer.
pub struct Peer {
    pub log: Arc<Mutex<PeerLog>>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

enum Command {
    RequestKeyframe,
    Stop,
}

impl Peer {
    pub fn with<T>(&self, f: impl FnOnce(&PeerLog) -> T) -> T {
        f(&self.log.lock().expect("log"))
    }

    /// Polls `cond` every 20 ms until it holds or `limit` passes.
    pub async fn wait(&self, limit: Duration, cond: impl Fn(&PeerLog) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.with(&cond) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.with(&cond)
    }

    pub fn request_keyframe(&self) {
        let _ = self.commands.send(Command::RequestKeyframe);
    }

    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.task.await;
    }
}

/// A numbered test frame: `tag`, the number (4 bytes), then a pattern.
/// The audio level (dBov, RFC 6464's header extension as str0m takes it) the publisher gives its
/// audio frame `n`.
pub fn audio_level(n: u32) -> i8 {
    -((n % 128) as i8)
}

pub fn frame(tag: u8, n: u32, len: usize) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&n.to_be_bytes());
    f.extend((0..len.saturating_sub(5)).map(|i| (i as u32).wrapping_mul(31).wrapping_add(n) as u8));
    f
}

/// A numbered H.264 access unit in Annex B form (one IDR slice NAL unit) whose bytes never form a
/// start code: the number in 7-bit groups with the top bit set, a pattern without two zeros in a row.
pub fn h264_frame(n: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0x65];
    f.extend((0..4).rev().map(|i| 0x80 | ((n >> (7 * i)) & 0x7f) as u8));
    f.extend((0..len.saturating_sub(9)).map(|i| (i as u32).wrapping_mul(31).wrapping_add(n) as u8));
    f
}

/// The number of a frame made by [`frame`] or [`h264_frame`].
pub fn frame_number(f: &[u8]) -> u32 {
    if f.starts_with(&[0, 0, 0, 1]) {
        f[5..9].iter().fold(0, |acc, b| (acc << 7) | u32::from(b & 0x7f))
    } else {
        u32::from_be_bytes([f[1], f[2], f[3], f[4]])
    }
}

/// What a peer sends and on which lines.
struct Setup {
    mode: Mode,
    lines: Vec<(Mid, MediaKind)>,
    video_codec: Codec,
    audio_source: Option<AudioSource>,
    video_source: Option<VideoSource>,
}

async fn drive(
    mut rtc: Rtc,
    socket: UdpSocket,
    setup: Setup,
    log: Arc<Mutex<PeerLog>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let Setup { mode, mut lines, video_codec, mut audio_source, mut video_source } = setup;
    let mut keyframe_asked = false;
    let local: SocketAddr = socket.local_addr().expect("addr");
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let (mut next_audio, mut next_video) = (start, start);
    let (mut n_audio, mut n_video) = (0u32, 0u32);
    loop {
        // Drain output.
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Event(e)) => {
                    let mut l = log.lock().expect("log");
                    match e {
                        Event::Connected => l.connected = true,
                        Event::MediaAdded(m) if !lines.iter().any(|(mid, _)| *mid == m.mid) => {
                            lines.push((m.mid, m.kind))
                        }
                        Event::MediaData(d) => {
                            let kind = lines.iter().find(|(mid, _)| *mid == d.mid).map(|(_, k)| *k);
                            match kind {
                                Some(MediaKind::Audio) => l.audio_frames.push(d.data.to_vec()),
                                Some(MediaKind::Video) => l.video_frames.push(d.data.to_vec()),
                                None => {}
                            }
                        }
                        Event::KeyframeRequest(_) => {
                            l.keyframe_requests += 1;
                            keyframe_asked = true;
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    log.lock().expect("log").failed = Some(e.to_string());
                    return;
                }
            }
        };
        if !rtc.is_alive() {
            log.lock().expect("log").failed.get_or_insert_with(|| "peer closed".into());
            return;
        }
        let now = Instant::now();
        let connected = log.lock().expect("log").connected;
        if mode == Mode::Publish && connected {
            for (mid, kind) in lines.clone() {
                let (due, n, tag, len, codec, step) = match kind {
                    MediaKind::Audio => (&mut next_audio, &mut n_audio, b'A', 80, Codec::Opus, 20u64),
                    MediaKind::Video => (&mut next_video, &mut n_video, b'V', 3000, video_codec, 33u64),
                };
                if now < *due {
                    continue;
                }
                let Some(writer) = rtc.writer(mid) else { continue };
                let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else {
                    continue;
                };
                let data = match (&mut audio_source, &mut video_source, kind) {
                    (Some(source), _, MediaKind::Audio) => source(*n),
                    (_, Some(source), MediaKind::Video) => source(*n, std::mem::take(&mut keyframe_asked)),
                    _ if codec == Codec::H264 => h264_frame(*n, len),
                    _ => frame(tag, *n, len),
                };
                let clock = if kind == MediaKind::Audio { 48 } else { 90 };
                let time = MediaTime::new(
                    u64::from(*n) * step * clock,
                    str0m::media::Frequency::new(clock as u32 * 1000).expect("clock"),
                );
                // Audio says its level in the RFC 6464 header extension, as browsers do (here a
                // level the receiver can check: the frame's number modulo 128, in -dBov).
                let writer = if kind == MediaKind::Audio { writer.audio_level(audio_level(*n), true) } else { writer };
                if writer.write(pt, now, time, data.clone()).is_ok() {
                    let mut l = log.lock().expect("log");
                    if kind == MediaKind::Audio {
                        l.sent_audio.push(data)
                    } else {
                        l.sent_video.push(data)
                    }
                }
                *n += 1;
                *due += Duration::from_millis(step);
            }
        }
        let mut wake = timeout;
        if mode == Mode::Publish && connected {
            wake = wake.min(next_audio).min(next_video);
        }
        let sleep = wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    if let Ok(contents) = buf[..n].try_into() {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                        if rtc.handle_input(input).is_err() {
                            log.lock().expect("log").failed = Some("input refused".into());
                            return;
                        }
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
            c = commands.recv() => match c {
                Some(Command::RequestKeyframe) => {
                    if let Some((mid, _)) = lines.iter().find(|(_, k)| *k == MediaKind::Video) {
                        if let Some(mut w) = rtc.writer(*mid) {
                            let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                        }
                    }
                }
                Some(Command::Stop) | None => {
                    rtc.disconnect();
                    return;
                }
            }
        }
    }
}
