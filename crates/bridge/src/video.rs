//! The session's video as the SIP calls see it (`video: true`).
//!
//! One thread per session with video calls in it, the **hub**, taps every video stream of the
//! session, decodes each **once** (VP8 or H.264, whatever its publisher sends), and at the output
//! frame rate composes each call's grid (its own stream left out, the `streams` subset honoured,
//! at most nine tiles) and encodes it in the call's codec and size. Only tiles whose source
//! produced a new picture are re-scaled; the encoder runs at the output rate, not the inputs',
//! and once a second for a grid in which nothing has changed for half a second.
//! Video work is CPU-bound, so it runs on its own thread rather than on the async runtime.
//!
//! Each call has a small async task ([`run_call_video`]) on its video RTP port: it packetises
//! the hub's frames (RFC 6184 / RFC 7741) and sends them, turns the SIP party's PLI/FIR into a
//! keyframe of the next grid, depacketises the SIP party's video and publishes it into the
//! session as its stream's video, and sends PLIs to the SIP party when subscribers (or a lost
//! packet) need a keyframe.
//!
//! Tiles: the session's streams in the order they were published (an audio-only stream shows the
//! placeholder); with more than nine, the
//! first nine are shown and a later stream takes the first tile that frees up. A stream no call
//! shows is not decoded at all. A stream whose
//! picture has not arrived yet shows the placeholder; a stream that pauses keeps its last picture;
//! after a loss or a decoder error the last good picture stays until the publisher's next
//! keyframe, which is asked for (`media_mixer::video_input`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media_mixer::grid::{Compositor, Source};
use media_mixer::h264::H264Encoder;
use media_mixer::jitter::TimestampExtender;
use media_mixer::packetize::{self, Depacketized, H264Depacketizer, Vp8Depacketizer};
use media_mixer::reorder::{Pushed as ReorderPushed, Released, Reorder, ReorderConfig};
use media_mixer::video_input::{Pushed, VideoCodec, VideoInput};
use media_mixer::vp8::Vp8Encoder;
use sdp_negotiation::{Codec, MediaAgreement};
use session::router::{FrameCodec, MediaFrame};
use session::service::SessionService;
use session::{EventKind, SessionId, StreamId};
use srtp_transport::driver::{Inbound, LegHandle};
use srtp_transport::rtcp::{self, RtcpPacket};

use crate::rtcp::Rtcp;
use crate::video_rate::{Resend, SendRate};
use srtp_transport::rtp::{RtpHeader, RtpPacket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// RTP payload budget per packet (an IPv4 path MTU of 1500 less IP, UDP, RTP and SRTP overhead,
/// with room to spare for tunnels).
pub(crate) const VIDEO_MTU: usize = 1200;
/// PLIs towards the SIP party at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// The least time between two keyframes the SIP party's requests force: a party that puts a PLI
/// in every compound packet would otherwise make every picture a keyframe.
const KEYFRAME_ASK_INTERVAL: Duration = Duration::from_millis(300);

/// How long after a forced keyframe a new request shows it was lost (or not enough), rather than
/// crossing it on the way.
const KEYFRAME_OWED_AFTER: Duration = Duration::from_millis(100);

/// The SIP party's keyframe requests, told from their repeats (RFC 5104 §4.3.1.2: a FIR sent
/// again with the same sequence number asks for nothing new) and from a storm of them (at most
/// one forced keyframe per [`KEYFRAME_ASK_INTERVAL`]; a request inside that time is answered at
/// its end, not dropped: the keyframe before it may be the one that was lost).
#[derive(Debug, Default)]
struct KeyframeAsks {
    /// The last FIR sequence number of each sender (a few senders at most: bounded).
    firs: Vec<(u32, u8)>,
    last: Option<Instant>,
    /// A request came inside the interval: a keyframe is owed at its end.
    owed: bool,
}

impl KeyframeAsks {
    /// A PLI: whether it forces a keyframe now.
    fn pli(&mut self, now: Instant) -> bool {
        self.allow(now)
    }

    /// A FIR entry for our stream from `sender` with sequence number `seq`.
    fn fir(&mut self, now: Instant, sender: u32, seq: u8) -> bool {
        match self.firs.iter_mut().find(|(s, _)| *s == sender) {
            Some((_, last)) if *last == seq => return false,
            Some((_, last)) => *last = seq,
            None => {
                if self.firs.len() >= 4 {
                    self.firs.remove(0);
                }
                self.firs.push((sender, seq));
            }
        }
        self.allow(now)
    }

    fn allow(&mut self, now: Instant) -> bool {
        if let Some(since) = self.last.map(|t| now.saturating_duration_since(t)) {
            if since < KEYFRAME_ASK_INTERVAL {
                // Asked again well after the last keyframe went (it may be the lost one): owed.
                // Asked at once again (a PLI and a FIR in one packet, an INFO beside them, a
                // repeat before the keyframe could arrive): that keyframe answers it.
                self.owed |= since >= KEYFRAME_OWED_AFTER;
                return false;
            }
        }
        self.last = Some(now);
        self.owed = false;
        true
    }

    /// Whether a keyframe owed to a request that came inside the interval is due now.
    fn owed_now(&mut self, now: Instant) -> bool {
        if !self.owed || self.last.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_ASK_INTERVAL) {
            return false;
        }
        self.owed = false;
        self.last = Some(now);
        true
    }
}

/// How the grid sent to SIP parties is made.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// Video codecs offered when a dial asks for video, in preference order (H.264 and VP8; H.264
    /// is offered in packetization-mode 1 and, right after it, mode 0 for endpoints that take
    /// single NAL units only).
    pub codecs: Vec<Codec>,
    /// Canvas width (even); lowered for a call whose peer's profile level or `max-fs` asks.
    pub width: u32,
    /// Canvas height (even).
    pub height: u32,
    /// Output frames per second.
    pub fps: u32,
    /// Encoder target bitrate, bit/s.
    pub bitrate: u32,
    /// The most video bitrate asked of SIP parties, bit/s: `b=TIAS` (and `b=AS`) on our video
    /// m-line. `None`: no limit asked.
    pub receive_bitrate: Option<u32>,
    /// A keyframe at least this often, for endpoints that never send PLI or FIR (many SIP phones
    /// do not) and for receivers that join the stream late.
    pub keyframe_interval: Duration,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            codecs: vec![Codec::H264, Codec::Vp8],
            width: 1280,
            height: 720,
            fps: 30,
            bitrate: 1_500_000,
            receive_bitrate: None,
            keyframe_interval: Duration::from_secs(5),
        }
    }
}

/// The canvas sizes we step down through, largest first.
const SIZES: [(u32, u32); 6] = [(1920, 1080), (1280, 720), (960, 540), (640, 360), (480, 270), (320, 180)];

/// The canvas for a call: the configured size, or the largest smaller 16:9 size whose macroblock
/// count the peer can decode (H.264 `profile-level-id` level, or `max-fs` for either codec) and
/// that fits the largest picture it says it receives (`a=imageattr`, `recv_max`).
pub(crate) fn canvas_for(
    config: &VideoConfig,
    codec: Codec,
    fmtp: Option<&str>,
    recv_max: Option<(u32, u32)>,
) -> (u32, u32) {
    let limit = decoder_limit(codec, fmtp, h264_level_max_fs, "max-fs");
    let (w, h) = (config.width & !1, config.height & !1);
    let fits = |(w, h): (u32, u32)| {
        limit.is_none_or(|l| w.div_ceil(16) * h.div_ceil(16) <= l) && recv_max.is_none_or(|(mw, mh)| w <= mw && h <= mh)
    };
    if fits((w, h)) {
        return (w.max(2), h.max(2));
    }
    SIZES.into_iter().find(|&(sw, sh)| sw <= w && sh <= h && fits((sw, sh))).unwrap_or_else(|| {
        // Smaller than every step: QCIF, or less when the peer says it receives less.
        let (qw, qh) = recv_max.map_or((176, 144), |(mw, mh)| ((mw & !1).min(176), (mh & !1).min(144)));
        (qw.max(16), qh.max(16))
    })
}

/// The level of a `profile-level-id` as `level_idc` (RFC 6184 §8.1), with level 1b, which
/// Baseline, Main and Extended write as 11 with constraint_set3 set, read as 9 (High's own 1b).
fn h264_level(profile_level_id: &str) -> Option<u32> {
    let byte = |i: usize| u8::from_str_radix(profile_level_id.get(i..i + 2)?, 16).ok();
    let (profile, iop, level) = (byte(0)?, byte(2)?, byte(4)?);
    let one_b = level == 11 && matches!(profile, 66 | 77 | 88) && iop & 0x10 != 0;
    Some(if one_b { 9 } else { u32::from(level) })
}

/// H.264 Table A-1: the largest frame (in macroblocks) a level decodes.
fn h264_level_max_fs(level_idc: u32) -> u32 {
    match level_idc {
        0..=10 => 99,
        11..=20 => 396,
        21 => 792,
        22..=30 => 1620,
        31 => 3600,
        32 => 5120,
        40..=42 => 8192,
        50 => 22_080,
        _ => 36_864,
    }
}

/// The frames a second a call's grid is sent at: the configured rate, lowered to what the SIP
/// party decodes at the canvas's size: H.264's macroblocks a second (its level's, Table A-1, or a
/// higher `max-mbps`, RFC 6184 §8.1), VP8's `max-fr` (RFC 7741 §6.1).
pub(crate) fn frame_rate_for(config: &VideoConfig, codec: Codec, fmtp: Option<&str>, size: (u32, u32)) -> u32 {
    let fps = config.fps.clamp(1, 60);
    let limit = if codec.is_h264() {
        let macroblocks = u64::from(size.0.div_ceil(16)) * u64::from(size.1.div_ceil(16));
        decoder_limit(codec, fmtp, h264_level_max_mbps, "max-mbps")
            .map(|m| (u64::from(m) / macroblocks.max(1)).min(u64::from(u32::MAX)) as u32)
    } else {
        decoder_limit(codec, fmtp, h264_level_max_mbps, "max-fr")
    };
    limit.map_or(fps, |l| fps.min(l)).max(1)
}

/// What the far end's fmtp says it decodes at most, by one of Table A-1's columns (`by_level`)
/// and the fmtp parameter `param`. For H.264 the parameter only ever raises the level's limit
/// (RFC 6184 §8.1: `max-fs`, `max-mbps`); for VP8 it is the limit itself (RFC 7741 §6.1:
/// `max-fs`, `max-fr`). `None`: nothing said.
fn decoder_limit(codec: Codec, fmtp: Option<&str>, by_level: fn(u32) -> u32, param: &str) -> Option<u32> {
    let value = |name: &str| fmtp.and_then(|f| sdp_negotiation::codec::fmtp_param(f, name));
    let given = value(param).and_then(|v| v.parse::<u32>().ok());
    if !codec.is_h264() {
        return given;
    }
    let level = value("profile-level-id").and_then(h264_level).map(by_level);
    match (level, given) {
        (Some(level), Some(given)) => Some(level.max(given)),
        (level, given) => level.or(given),
    }
}

/// H.264 Table A-1: the most macroblocks a second a level decodes.
fn h264_level_max_mbps(level_idc: u32) -> u32 {
    match level_idc {
        0..=10 => 1_485,
        11 => 3_000,
        12 => 6_000,
        13 | 20 => 11_880,
        21 => 19_800,
        22 => 20_250,
        30 => 40_500,
        31 => 108_000,
        32 => 216_000,
        40 | 41 => 245_760,
        42 => 522_240,
        50 => 589_824,
        _ => 983_040,
    }
}

/// One encoded grid frame for a call.
#[derive(Debug)]
pub(crate) struct EncodedFrame {
    /// H.264 Annex B access unit or VP8 frame.
    pub(crate) data: Vec<u8>,
    /// When the grid was composed (for the RTP timestamp).
    pub(crate) at: Instant,
    /// The codec it is in (the call's, unless a codec change could not be made).
    pub(crate) codec: Codec,
}

/// What a call asks of its session's video hub.
pub(crate) enum VideoCommand {
    /// Start receiving the grid: `own` is excluded, `subset` (when given) limits the tiles.
    Watch {
        call: u64,
        own: StreamId,
        subset: Option<Vec<StreamId>>,
        codec: Codec,
        size: (u32, u32),
        /// Set by the call when its peer asks for a keyframe (PLI/FIR).
        keyframe: Arc<AtomicBool>,
        /// The bitrate to encode at, bit/s: set by the call as the SIP party's limits and losses
        /// say ([`crate::video_rate::SendRate`]), read by the hub before each frame; 0 pauses the
        /// grid.
        bitrate: Arc<AtomicU32>,
        frames: mpsc::Sender<EncodedFrame>,
        /// Frames a second the SIP party decodes (see [`frame_rate_for`]); at most the hub's.
        fps: u32,
    },
    /// Stop.
    Leave { call: u64 },
    /// A re-offer changed the call's codec (H.264 in the other packetization mode, or another
    /// codec) or what the far end decodes: a new encoder (and canvas), and a keyframe.
    Codec { call: u64, codec: Codec, size: (u32, u32), fps: u32 },
}

/// A handle on a session's video hub.
#[derive(Clone)]
pub(crate) struct SessionVideo {
    pub(crate) commands: std::sync::mpsc::Sender<VideoCommand>,
}

impl SessionVideo {
    /// Starts the hub thread of `session`; it ends with the session or when every handle is gone.
    pub(crate) fn start(service: SessionService, session: SessionId, config: &VideoConfig) -> SessionVideo {
        let (tx, rx) = std::sync::mpsc::channel();
        let settings = HubSettings {
            fps: config.fps.clamp(1, 60),
            keyframe_interval: config.keyframe_interval.max(Duration::from_millis(500)),
        };
        let spawned =
            std::thread::Builder::new().name("video-hub".into()).spawn(move || hub(service, session, settings, rx));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the video thread: calls get no grid");
        }
        SessionVideo { commands: tx }
    }
}

/// One video stream of the session.
struct Input {
    id: StreamId,
    /// Stable tile identity for the compositor.
    number: u64,
    /// Its frames (`None` for a stream without video: its tile shows the placeholder).
    frames: Option<mpsc::Receiver<MediaFrame>>,
    /// The decoder, the last good picture and whether a keyframe is wanted.
    video: VideoInput,
    /// When a keyframe was last asked for (a request can be lost: a tile still waiting for one
    /// asks again every [`KEYFRAME_RETRY`]).
    asked: Option<Instant>,
}

/// How often a shown stream still waiting for a keyframe is asked again.
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);

/// Whether a shown stream's source is asked for a keyframe now: when one is `wanted` (a loss, a
/// corrupt frame, the start) and none was asked for since the last one came; while `waiting` for
/// the one asked for, again only [`KEYFRAME_RETRY`] after the last request (every frame skipped
/// meanwhile wants that same keyframe: asking thirty times a second would cost the service's lock
/// each time for nothing).
fn keyframe_due(wanted: bool, waiting: bool, asked: Option<Instant>, now: Instant) -> bool {
    match asked {
        Some(t) if waiting => now.saturating_duration_since(t) >= KEYFRAME_RETRY,
        _ => wanted,
    }
}
/// How long a grid is still encoded at the full rate after its last change: the encoder spends
/// those frames sharpening the still picture.
const SETTLE: Duration = Duration::from_millis(500);
/// While nothing in a grid changes, how often a frame is still sent (RTP keeps flowing, and a
/// receiver's picture keeps converging to the still one).
const IDLE_REFRESH: Duration = Duration::from_secs(1);

enum Encoder {
    H264(Box<H264Encoder>),
    Vp8(Vp8Encoder),
}

/// What the hub applies to every call.
#[derive(Debug, Clone, Copy)]
struct HubSettings {
    fps: u32,
    keyframe_interval: Duration,
}

/// One call watching.
struct Watcher {
    own: StreamId,
    subset: Option<Vec<StreamId>>,
    compositor: Compositor,
    encoder: Encoder,
    /// The codec `encoder` makes.
    codec: Codec,
    keyframe: Arc<AtomicBool>,
    /// The bitrate the call asks for, and the one last asked of the encoder.
    bitrate: Arc<AtomicU32>,
    encoding_at: u32,
    frames: mpsc::Sender<EncodedFrame>,
    /// When the last keyframe was sent (`None`: never).
    last_keyframe: Option<Instant>,
    /// When the grid last changed (or the call started watching).
    last_change: Instant,
    /// When the last frame was sent (`None`: never).
    last_sent: Option<Instant>,
    /// Frames a second the party takes (at most the hub's ticks), and the credit that spreads
    /// them over the ticks: a tick adds `fps`; a frame is made when the credit reaches the hub's
    /// rate, which it then costs (22 of every 30 ticks for a party at 22).
    fps: u32,
    credit: u32,
}

impl Watcher {
    fn sees(&self, id: &StreamId) -> bool {
        *id != self.own && self.subset.as_ref().is_none_or(|s| s.contains(id))
    }
}

struct Hub {
    service: SessionService,
    keyframe_interval: Duration,
    /// Ticks a second.
    fps: u32,
    /// In publication order.
    inputs: Vec<Input>,
    next_number: u64,
    watchers: HashMap<u64, Watcher>,
}

impl Hub {
    /// A stream of the session gets a tile: with its pictures when it carries video, the
    /// placeholder when it does not (an audio-only participant is still in the grid).
    fn add_input(&mut self, stream: &StreamId, has_video: bool) {
        if self.inputs.iter().any(|i| i.id == *stream) {
            return;
        }
        let frames = if has_video {
            match self.service.tap(stream) {
                Ok((_, frames)) => Some(frames),
                Err(_) => return,
            }
        } else {
            None
        };
        self.next_number += 1;
        debug!(%stream, has_video, "a stream for the grid");
        self.inputs.push(Input {
            id: stream.clone(),
            number: self.next_number,
            frames,
            video: VideoInput::new(),
            asked: None,
        });
    }

    fn remove_input(&mut self, stream: &StreamId) {
        self.inputs.retain(|i| i.id != *stream);
    }

    /// A call starts watching at `now`.
    fn watch(&mut self, call: u64, w: WatchRequest, now: Instant) {
        let (width, height) = w.size;
        let bitrate = w.bitrate.load(Ordering::Relaxed);
        let encoder = match w.codec {
            Codec::H264 => H264Encoder::new(width, height, bitrate, w.fps as f32).map(|e| Encoder::H264(Box::new(e))),
            // Packetization-mode 0: every NAL unit must fit one packet.
            Codec::H264SingleNal => {
                H264Encoder::with_max_nal(width, height, bitrate, w.fps as f32, Some(VIDEO_MTU as u32))
                    .map(|e| Encoder::H264(Box::new(e)))
            }
            _ => Vp8Encoder::new(width, height, bitrate, w.fps).map(Encoder::Vp8),
        };
        let (encoder, compositor) = match (encoder, Compositor::new(width, height)) {
            (Ok(e), Ok(c)) => (e, c),
            (Err(e), _) | (_, Err(e)) => {
                warn!(call, error = %e, "no video encoder for the call");
                return;
            }
        };
        self.watchers.insert(
            call,
            Watcher {
                own: w.own,
                subset: w.subset,
                compositor,
                encoder,
                codec: w.codec,
                keyframe: w.keyframe,
                bitrate: w.bitrate,
                encoding_at: bitrate,
                frames: w.frames,
                last_keyframe: None,
                last_change: now,
                last_sent: None,
                fps: w.fps.max(1),
                // The first tick makes a frame.
                credit: self.fps.saturating_sub(w.fps),
            },
        );
    }

    /// A new encoder for a call whose codec changed, at its canvas size and bitrate; its next
    /// frame a keyframe.
    fn recode(&mut self, call: u64, codec: Codec, size: (u32, u32), fps: u32) {
        let Some(w) = self.watchers.get_mut(&call) else { return };
        let (width, height) = size;
        let compositor = if w.compositor.canvas().has_size(width, height) {
            None
        } else {
            match Compositor::new(width, height) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(call, error = %e, "no canvas of the new size: the old codec and size stay");
                    return;
                }
            }
        };
        let encoder = match codec {
            Codec::H264 => {
                H264Encoder::new(width, height, w.encoding_at, fps as f32).map(|e| Encoder::H264(Box::new(e)))
            }
            Codec::H264SingleNal => {
                H264Encoder::with_max_nal(width, height, w.encoding_at, fps as f32, Some(VIDEO_MTU as u32))
                    .map(|e| Encoder::H264(Box::new(e)))
            }
            _ => Vp8Encoder::new(width, height, w.encoding_at, fps).map(Encoder::Vp8),
        };
        match encoder {
            Ok(e) => {
                w.encoder = e;
                w.codec = codec;
                w.fps = fps.max(1);
                if let Some(c) = compositor {
                    debug!(call, width, height, "the grid follows the SIP party's new limits");
                    w.compositor = c;
                }
                w.keyframe.store(true, Ordering::Relaxed);
            }
            Err(e) => warn!(call, error = %e, "no encoder for the new codec: the old one stays"),
        }
    }

    /// Decodes what arrived, then composes and encodes each watcher's grid (`now` is the tick's
    /// time).
    fn tick(&mut self, now: Instant) {
        // The streams some call shows: each call's first nine. The others (nobody watches them,
        // or they wait for a free tile) are drained undecoded and cost next to nothing.
        let shown: std::collections::HashSet<u64> = self
            .watchers
            .values()
            // A paused grid (held, its video removed, a TMMBR below the floor) needs nothing decoded.
            .filter(|w| w.bitrate.load(Ordering::Relaxed) != 0)
            .flat_map(|w| self.inputs.iter().filter(|i| w.sees(&i.id)).take(9).map(|i| i.number))
            .collect();
        for input in &mut self.inputs {
            let Some(frames) = input.frames.as_mut() else { continue };
            if !shown.contains(&input.number) {
                if frames.try_recv().is_ok() {
                    while frames.try_recv().is_ok() {}
                    // What it showed is out of date by the time it gets a tile again.
                    input.video.skipped();
                }
                continue;
            }
            while let Ok(f) = frames.try_recv() {
                let codec = match f.codec {
                    FrameCodec::Vp8 => VideoCodec::Vp8,
                    FrameCodec::H264 => VideoCodec::H264,
                    _ => continue,
                };
                if input.video.push(codec, &f.data, f.contiguous) == Pushed::Corrupt {
                    debug!(stream = %input.id, "corrupt video frame: the last good picture stays");
                }
            }
            // A keyframe is wanted (start, loss, corruption, frames skipped), or still awaited a
            // second after it was asked for (requests get lost).
            let wanted = input.video.take_keyframe_request();
            let waiting = input.video.waiting_for_keyframe();
            if !waiting {
                input.asked = None;
            }
            if keyframe_due(wanted, waiting, input.asked, now) {
                debug!(stream = %input.id, "keyframe asked for the grid");
                self.service.request_keyframe(&input.id);
                input.asked = Some(now);
            }
        }
        // A call whose video task has ended stops costing anything at once.
        self.watchers.retain(|_, w| !w.frames.is_closed());
        for (call, w) in &mut self.watchers {
            // The call is behind: skip this frame (nothing composed or encoded, so the next one
            // still follows the last one sent; the compositor catches up on what changed
            // meanwhile). Its grid paused (bitrate 0: a TMMBR below what the encoders can do):
            // skip too, and make the first one after the pause stand alone.
            if w.frames.capacity() == 0 {
                continue;
            }
            if w.bitrate.load(Ordering::Relaxed) == 0 {
                w.keyframe.store(true, Ordering::Relaxed);
                continue;
            }
            // A party that decodes fewer frames a second (its level's macroblock rate, VP8's
            // max-fr) gets that many of the hub's ticks, spread evenly.
            if w.fps < self.fps {
                w.credit = (w.credit + w.fps).min(2 * self.fps);
                if w.credit < self.fps {
                    continue;
                }
                w.credit -= self.fps;
            }
            let sources: Vec<Source<'_>> = self
                .inputs
                .iter()
                .filter(|i| w.sees(&i.id))
                .take(9)
                .map(|i| Source { id: i.number, generation: i.video.generation(), picture: i.video.picture() })
                .collect();
            let stats = match w.compositor.compose(&sources) {
                Ok(s) => s,
                Err(e) => {
                    warn!(call, error = %e, "composition failed");
                    continue;
                }
            };
            if stats.changed {
                w.last_change = now;
            }
            let due = w.last_keyframe.is_none_or(|t| now.saturating_duration_since(t) >= self.keyframe_interval);
            let asked = w.keyframe.swap(false, Ordering::Relaxed);
            let keyframe = asked || stats.layout_changed || due;
            if keyframe {
                debug!(call, asked, layout = stats.layout_changed, due, "a keyframe of the grid");
            }
            // A grid that has not changed for a while (cameras off, video paused, every source
            // stalled) is not encoded again at the full rate: one frame a second keeps the call's
            // video alive, and a keyframe asked for goes out at once.
            let settled = now.saturating_duration_since(w.last_change) >= SETTLE;
            let refreshed = w.last_sent.is_some_and(|t| now.saturating_duration_since(t) < IDLE_REFRESH);
            if !keyframe && settled && refreshed {
                continue;
            }
            if keyframe {
                w.last_keyframe = Some(now);
            }
            let bitrate = w.bitrate.load(Ordering::Relaxed);
            if bitrate != w.encoding_at {
                let set = match &mut w.encoder {
                    Encoder::H264(e) => e.set_bitrate(bitrate),
                    Encoder::Vp8(e) => e.set_bitrate(bitrate),
                };
                match set {
                    Ok(()) => debug!(call, bitrate, "the grid's bitrate changes"),
                    Err(e) => warn!(call, bitrate, error = %e, "the encoder keeps its bitrate"),
                }
                w.encoding_at = bitrate;
            }
            let encoded = match &mut w.encoder {
                Encoder::H264(e) => e.encode(w.compositor.canvas(), keyframe),
                Encoder::Vp8(e) => e.encode(w.compositor.canvas(), keyframe),
            };
            match encoded {
                Ok(data) if !data.is_empty() => {
                    if w.frames.try_send(EncodedFrame { data, at: now, codec: w.codec }).is_ok() {
                        w.last_sent = Some(now);
                    } else {
                        // An encoded frame lost: what follows it would refer to it.
                        w.keyframe.store(true, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(call, error = %e, "grid encode failed"),
            }
        }
    }
}

/// What [`VideoCommand::Watch`] carries, less the call number.
struct WatchRequest {
    own: StreamId,
    subset: Option<Vec<StreamId>>,
    codec: Codec,
    size: (u32, u32),
    bitrate: Arc<AtomicU32>,
    fps: u32,
    keyframe: Arc<AtomicBool>,
    frames: mpsc::Sender<EncodedFrame>,
}

fn hub(
    service: SessionService,
    session: SessionId,
    settings: HubSettings,
    commands: std::sync::mpsc::Receiver<VideoCommand>,
) {
    let HubSettings { fps, keyframe_interval } = settings;
    // Subscribe before listing, so that no stream falls between the two.
    let mut events = service.subscribe();
    let mut hub = Hub {
        service: service.clone(),
        keyframe_interval,
        fps,
        inputs: Vec::new(),
        next_number: 0,
        watchers: HashMap::new(),
    };
    for s in service.streams(&session).iter() {
        hub.add_input(&s.id, s.has_video);
    }
    let period = Duration::from_secs_f64(1.0 / f64::from(fps));
    let mut next = Instant::now();
    loop {
        loop {
            match commands.try_recv() {
                Ok(VideoCommand::Watch { call, own, subset, codec, size, keyframe, bitrate, frames, fps: theirs }) => {
                    let fps = theirs.clamp(1, fps);
                    let request = WatchRequest { own, subset, codec, size, bitrate, fps, keyframe, frames };
                    hub.watch(call, request, Instant::now());
                }
                Ok(VideoCommand::Leave { call }) => {
                    hub.watchers.remove(&call);
                }
                Ok(VideoCommand::Codec { call, codec, size, fps: theirs }) => {
                    hub.recode(call, codec, size, theirs.clamp(1, fps));
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        loop {
            match events.try_recv() {
                Ok(e) if e.session == session => match &e.kind {
                    EventKind::StreamCreated { stream, .. } => hub.add_input(&stream.id, stream.has_video),
                    EventKind::StreamDestroyed { stream, .. } => hub.remove_input(&stream.id),
                    EventKind::SessionEnded => return,
                    _ => {}
                },
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        hub.tick(Instant::now());
        next += period;
        let now = Instant::now();
        if next < now {
            // Behind (a slow encode): skip the missed frames rather than burst.
            next = now;
        }
        std::thread::sleep(next - now);
    }
}

/// What the call task tells its video task.
#[derive(Debug)]
pub(crate) enum VideoControl {
    /// A re-offer's agreement: the SIP party's video address (and whether it holds the call), the
    /// bandwidth its SDP says it receives, whether it takes NACKs, and the codec and payload
    /// types, which may have changed.
    Remote(Box<MediaAgreement>),
    /// The far end removed the video stream (port 0, RFC 3264 §8.2): nothing more is sent on it
    /// until a `Remote` brings it back.
    Removed,
    /// The far end asked for a keyframe in a SIP INFO (RFC 5168 `picture_fast_update`).
    Keyframe,
}

/// Whether a SIP INFO asks for a keyframe: RFC 5168's `application/media_control+xml` with a
/// `picture_fast_update` (what many hardware endpoints send instead of an RTCP PLI or FIR).
pub(crate) fn asks_picture_fast_update(content_type: &str, body: &[u8]) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/media_control+xml")
        && body.len() <= 4096
        && String::from_utf8_lossy(body).contains("picture_fast_update")
}

/// The content type of RFC 5168's keyframe requests.
pub(crate) const MEDIA_CONTROL: &str = "application/media_control+xml";

/// RFC 5168's keyframe request, as the INFO to a SIP party carries it.
pub(crate) const PICTURE_FAST_UPDATE: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n\
<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>";

/// What a call's video task asks of the call's SIP dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoAsk {
    /// A keyframe, by an RFC 5168 `picture_fast_update` INFO: the party agreed to neither
    /// `nack pli` nor `ccm fir`.
    PictureFastUpdate,
}

/// How a keyframe is asked of a SIP party, by what its SDP agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyframeRequest {
    /// An RTCP PLI (RFC 4585): it agreed to `nack pli`.
    Pli,
    /// An RTCP FIR (RFC 5104): it agreed to `ccm fir` but not to `nack pli` (such endpoints may
    /// ignore a PLI).
    Fir,
    /// It agreed to neither: a PLI, which most take anyway, and an RFC 5168 INFO, which hardware
    /// endpoints that negotiate no RTCP feedback (many SIP phones and room systems) act on.
    PliAndInfo,
}

/// The RFC 5168 INFOs a call sends its SIP party: at most one in flight, at most one every
/// [`FastUpdateInfos::INTERVAL`], and none after the party refused one (a 4xx but 408 and 491, a
/// 501 or 505, a 6xx: it does not take `application/media_control+xml`, or INFO at all). A 5xx
/// other than those is taken as passing.
#[derive(Debug, Default)]
pub(crate) struct FastUpdateInfos {
    last: Option<Instant>,
    in_flight: bool,
    refused: bool,
}

impl FastUpdateInfos {
    /// The least time between two INFOs.
    pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

    /// Whether an INFO may go at `now`; when it may, it counts as sent.
    pub(crate) fn may_send(&mut self, now: Instant) -> bool {
        if self.refused
            || self.in_flight
            || self.last.is_some_and(|t| now.saturating_duration_since(t) < Self::INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        self.in_flight = true;
        true
    }

    /// The INFO [`may_send`](Self::may_send) allowed could not be sent.
    pub(crate) fn not_sent(&mut self) {
        self.in_flight = false;
    }

    /// The final answer to the INFO in flight; true when it is the party's first refusal.
    pub(crate) fn answered(&mut self, code: u16) -> bool {
        self.in_flight = false;
        let refusal = dtmf_rfc4733::refuses_info(code);
        let first = refusal && !self.refused;
        self.refused |= refusal;
        first
    }
}

fn keyframe_request(agreement: &MediaAgreement) -> KeyframeRequest {
    match (agreement.takes_feedback("nack pli"), agreement.takes_feedback("ccm fir")) {
        (true, _) => KeyframeRequest::Pli,
        (false, true) => KeyframeRequest::Fir,
        (false, false) => KeyframeRequest::PliAndInfo,
    }
}

/// Everything a call's video task needs.
pub(crate) struct CallVideo {
    pub(crate) service: SessionService,
    /// The call's own stream: the SIP party's video is published into it.
    pub(crate) stream: StreamId,
    pub(crate) call: String,
    pub(crate) agreement: MediaAgreement,
    pub(crate) leg: LegHandle,
    pub(crate) inbound: mpsc::Receiver<Inbound>,
    /// Grid frames from the hub.
    pub(crate) frames: mpsc::Receiver<EncodedFrame>,
    /// Raised here when the SIP party asks for a keyframe; read by the hub.
    pub(crate) keyframe: Arc<AtomicBool>,
    /// Subscribers of the call's stream want a keyframe from the SIP party.
    pub(crate) keyframe_wanted: Option<mpsc::UnboundedReceiver<()>>,
    /// The grid's bitrate, as the SIP party's limits and losses have it.
    pub(crate) rate: SendRate,
    /// Where the hub reads that bitrate.
    pub(crate) bitrate: Arc<AtomicU32>,
    /// Where the call's video quality goes when it ends.
    pub(crate) reporter: Arc<dyn crate::CallReporter>,
    pub(crate) project: session::ProjectId,
    /// What is counted for it.
    pub(crate) quality: crate::VideoQuality,
    /// The session's hub and the call's number there (a re-offer may change the codec).
    pub(crate) hub: std::sync::mpsc::Sender<VideoCommand>,
    pub(crate) number: u64,
    pub(crate) control: mpsc::UnboundedReceiver<VideoControl>,
    /// What this task asks of the call's SIP dialog. Closed when the task ends, which tells the
    /// call its video is gone.
    pub(crate) asks: mpsc::UnboundedSender<VideoAsk>,
    /// DTLS-SRTP on the video m-line: no media until its keys are in place.
    pub(crate) dtls: Option<crate::call::DtlsState>,
    /// Our certificate, for a new association a re-offer asks for.
    pub(crate) dtls_identity: Option<srtp_transport::dtls::DtlsIdentity>,
    /// The call's CNAME (its audio's): the far end syncs the two streams by it.
    pub(crate) cname: Vec<u8>,
    /// How grids are made (the canvas a re-offer's limits allow is worked out from it).
    pub(crate) config: VideoConfig,
    /// The grid's size and frame rate now.
    pub(crate) size: (u32, u32),
    pub(crate) fps: u32,
    /// The sequence number of our last FIR to the party (RFC 5104: one more per new request).
    pub(crate) fir_seq: u8,
    /// How often, on average, RTCP reports go out.
    pub(crate) rtcp_interval: Duration,
}

enum Depacketizer {
    H264(H264Depacketizer),
    Vp8(Vp8Depacketizer),
}

/// How long a missing packet of the SIP party's video is waited for when the party does not
/// resend (reordering on the path only).
const REORDER_WAIT: Duration = Duration::from_millis(40);

/// The SIP party's video on its way into the session: put back in order (a missing packet is
/// waited for a little, and asked for again when the party resends on NACK,
/// `media_mixer::reorder`), depacketised, and after a lost frame published again only from a
/// keyframe on (what follows a loss refers to a picture nobody has: decoded, it is a smear).
struct Incoming {
    reorder: Reorder<Vec<u8>>,
    depacketizers: HashMap<u8, Depacketizer>,
    ts_ext: TimestampExtender,
    /// Added to the extended RTP time of what is published: a new source (or a numbering that
    /// restarted) continues the published clock where the last one stopped, a frame later,
    /// instead of jumping to its own random timestamp, possibly hours back.
    offset: u64,
    /// The next published frame starts a new source's clock.
    rebase: bool,
    last_published: Option<u64>,
    /// The party takes generic NACKs (`a=rtcp-fb:<pt> nack`).
    nack: bool,
    /// The source whose packets are being put in order.
    ssrc: Option<u32>,
    awaiting_keyframe: bool,
    /// Frames published, and frames left out while waiting for a keyframe.
    frames: u64,
    skipped: u64,
}

impl Incoming {
    fn new(agreement: &MediaAgreement) -> Incoming {
        let nack = agreement.takes_feedback("nack");
        let config = ReorderConfig { max_wait: REORDER_WAIT, ..ReorderConfig::default() };
        Incoming {
            reorder: Reorder::new(config),
            depacketizers: HashMap::new(),
            ts_ext: TimestampExtender::new(),
            offset: 0,
            rebase: false,
            last_published: None,
            nack,
            ssrc: None,
            // Nothing decodes before a keyframe: a first frame that is not one (its start lost,
            // or dropped before the keys were agreed) is left out and one is asked for.
            awaiting_keyframe: true,
            frames: 0,
            skipped: 0,
        }
    }

    /// An accepted packet of `ssrc` (a new source, or a numbering that restarted, starts the
    /// order afresh and waits for a keyframe). With NACK, the wait follows the round trip: long
    /// enough for a NACK to go and the packet to come back.
    fn push(&mut self, now: Instant, ssrc: u32, seq: u16, packet: Vec<u8>, round_trip: Option<Duration>) {
        if self.ssrc.is_some_and(|s| s != ssrc) {
            self.reorder.reset();
            self.new_source();
        }
        self.ssrc = Some(ssrc);
        if self.nack {
            let rtt = round_trip.unwrap_or(Duration::from_millis(100));
            let wait = (rtt.mul_f64(1.5) + Duration::from_millis(20))
                .clamp(Duration::from_millis(60), Duration::from_millis(300));
            self.reorder.set_max_wait(wait);
        }
        if self.reorder.push(now, seq, packet) == ReorderPushed::Restarted {
            self.new_source();
        }
    }

    /// A new source, or one that started over: nothing of the old one's frames or clock holds.
    fn new_source(&mut self) {
        self.depacketizers.clear();
        self.awaiting_keyframe = true;
        self.ts_ext = TimestampExtender::new();
        self.rebase = true;
    }

    /// The time a frame of RTP timestamp `timestamp` is published with (90 kHz, extended).
    fn published_time(&mut self, timestamp: u32) -> u64 {
        /// A frame at 30 frames a second, in the 90 kHz clock.
        const FRAME: u64 = 3000;
        let ext = self.ts_ext.extend(timestamp);
        if std::mem::take(&mut self.rebase) {
            if let Some(last) = self.last_published {
                self.offset = last.wrapping_add(FRAME).wrapping_sub(ext);
            }
        }
        let t = ext.wrapping_add(self.offset);
        self.last_published = Some(t);
        t
    }

    /// The sequence numbers to NACK now (none when the party does not take NACKs).
    fn nacks(&mut self, now: Instant, round_trip: Option<Duration>) -> Vec<u16> {
        if !self.nack {
            return Vec::new();
        }
        let retry = round_trip
            .unwrap_or(Duration::from_millis(100))
            .clamp(Duration::from_millis(20), Duration::from_millis(300));
        self.reorder.nacks(now, retry)
    }

    /// Depacketises what is due at `now` into `out`; true when a keyframe is wanted (a frame was
    /// lost, or one was left out while waiting for the keyframe a PLI asked for: PLIs are
    /// repeated until it comes, at their own pace).
    fn release(&mut self, now: Instant, agreement: &MediaAgreement, out: &mut Vec<MediaFrame>) -> bool {
        let mut lost = false;
        while let Some(released) = self.reorder.pop(now) {
            let bytes = match released {
                Released::Packet { item, .. } => item,
                // Whole frames may have gone with the packets (a depacketiser sees a gap only
                // within a frame): what follows waits for a keyframe.
                Released::Lost { .. } => {
                    self.awaiting_keyframe = true;
                    lost = true;
                    continue;
                }
            };
            let Ok(pkt) = RtpPacket::parse(&bytes) else { continue };
            let pt = pkt.payload_type().0;
            let Some(codec) = agreement.received_codec(pt) else { continue };
            let d = self.depacketizers.entry(pt).or_insert_with(|| match codec {
                Codec::H264 | Codec::H264SingleNal => {
                    Depacketizer::H264(H264Depacketizer::with_fmtp(agreement.fmtp.as_deref()))
                }
                _ => Depacketizer::Vp8(Vp8Depacketizer::default()),
            });
            let (result, codec, timestamp, held) = match d {
                Depacketizer::H264(d) => {
                    let result = d.push(pkt.seq(), pkt.timestamp(), pkt.marker(), pkt.payload());
                    let timestamp = d.frame_timestamp().unwrap_or(pkt.timestamp());
                    (result, FrameCodec::H264, timestamp, d.take_held())
                }
                Depacketizer::Vp8(d) => {
                    (d.push(pkt.seq(), pkt.marker(), pkt.payload()), FrameCodec::Vp8, pkt.timestamp(), None)
                }
            };
            let results =
                std::iter::once((result, timestamp)).chain(held.map(|(frame, at)| (Depacketized::Frame(frame), at)));
            for (result, timestamp) in results {
                match result {
                    Depacketized::Pending => {}
                    Depacketized::Frame(f) if self.awaiting_keyframe && !f.keyframe => {
                        self.skipped += 1;
                        lost = true;
                    }
                    Depacketized::Frame(f) => {
                        self.awaiting_keyframe = false;
                        self.frames += 1;
                        out.push(MediaFrame {
                            codec,
                            rtp_time: self.published_time(timestamp),
                            data: f.data.into(),
                            contiguous: true,
                            audio_level: None,
                            arrival: now,
                        });
                    }
                    Depacketized::Dropped => {
                        self.awaiting_keyframe = true;
                        lost = true;
                    }
                }
            }
        }
        lost
    }
}

/// Runs a call's video RTP until the call task drops its control sender.
pub(crate) async fn run_call_video(mut v: CallVideo) {
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let base_ts: u32 = rand::random();
    let started = Instant::now();
    let mut picture_id: u16 = rand::random::<u16>() & 0x7fff;
    let mut hold = v.agreement.remote_hold;
    let mut removed = false;
    let mut grid_open = true;
    let mut remote_ssrc: Option<u32> = None;
    let mut last_pli: Option<Instant> = None;
    let mut keyframe_asks = KeyframeAsks::default();
    let mut incoming = Incoming::new(&v.agreement);
    let mut published = Vec::new();
    let mut frames_sent = 0u64;
    let mut wanted = v.keyframe_wanted.take();
    info!(call = %v.call, codec = ?v.agreement.codec, pt = v.agreement.payload_type, "video started");
    let mut dtls = v.dtls.take();
    let mut reports = Rtcp::with_cname(ssrc, 90_000, v.rtcp_interval, started, std::mem::take(&mut v.cname));
    let mut source = crate::rtcp::SourceLock::default();
    let mut resend = Resend::default();
    let mut far_end_blocks = 0u64;
    let mut rtcp_tick = tokio::time::interval(Duration::from_millis(100));
    rtcp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (records, handshaking) = match dtls.as_mut() {
            Some(d) => (d.records_open.then_some(&mut d.from_handshake), (!d.ready).then_some(&mut d.done)),
            None => (None, None),
        };
        let (has_records, is_handshaking) = (records.is_some(), handshaking.is_some());
        tokio::select! {
            // Records first: the handshake's last flight goes out before its success is acted on.
            biased;
            r = async { records?.recv().await }, if has_records => {
                match r {
                    Some(record) => {
                        let _ = v.leg.send_raw(record);
                    }
                    // The association is gone: nothing more to forward.
                    None => {
                        if let Some(d) = dtls.as_mut() {
                            d.records_open = false;
                        }
                    }
                }
            }
            d = async {
                match handshaking {
                    Some(done) => done.await.unwrap_or_else(|_| Err("the handshake task ended".into())),
                    None => std::future::pending().await,
                }
            }, if is_handshaking => match d {
                Ok((keys, association)) => match dtls.as_mut().map(|d| d.keyed(&v.leg, &keys, association)) {
                    Some(Ok(())) => {
                        // The frames sent so far were dropped: start the picture afresh.
                        v.keyframe.store(true, Ordering::Relaxed);
                        follow_rate(&mut v, hold || removed);
                        info!(call = %v.call, suite = ?keys.suite, "video DTLS-SRTP established");
                    }
                    Some(Err(e)) => {
                        warn!(call = %v.call, error = %e, "unusable video DTLS-SRTP keys: no video");
                        break;
                    }
                    None => {}
                },
                Err(why) => {
                    warn!(call = %v.call, %why, "video DTLS-SRTP handshake failed: no video");
                    break;
                }
            },
            c = v.control.recv() => match c {
                Some(VideoControl::Keyframe) => {
                    // Counted and rate-limited like the RTCP requests.
                    if keyframe_asks.pli(Instant::now()) {
                        keyframe_asked(&mut v, "SIP INFO");
                    }
                }
                Some(VideoControl::Removed) => {
                    if !removed {
                        info!(call = %v.call, "the far end removed the video stream: nothing more is sent on it");
                    }
                    removed = true;
                    follow_rate(&mut v, true);
                }
                Some(VideoControl::Remote(agreed)) => {
                    if removed {
                        // Back: the next frame stands alone.
                        removed = false;
                        v.keyframe.store(true, Ordering::Relaxed);
                    }
                    incoming.nack = agreed.takes_feedback("nack");
                    let h = agreed.remote_hold;
                    if hold && !h {
                        // Resumed: nothing was sent while on hold, so the next frame stands alone.
                        v.keyframe.store(true, Ordering::Relaxed);
                    }
                    hold = h;
                    match crate::call::follow_keys(&v.leg, &v.agreement, &agreed) {
                        Ok(true) => info!(call = %v.call, "the re-offer re-keys the video's SRTP"),
                        Ok(false) => {}
                        Err(why) => warn!(call = %v.call, %why, "the re-offer's SRTP keys cannot be used: the old ones stay"),
                    }
                    if let Some(d) = crate::call::new_association(v.dtls_identity.as_ref(), &v.agreement, &agreed) {
                        info!(call = %v.call, "the re-offer asks for a new DTLS association: no video until it is keyed");
                        dtls = Some(d);
                    }
                    let _ = v.leg.set_remote(agreed.remote_rtp, agreed.remote_rtcp);
                    if agreed.remote_rtp != v.agreement.remote_rtp {
                        // Another receiver (a transfer, a media server re-anchoring): it has had
                        // no picture to build on, and may bring another source, whose first
                        // packet takes the video over.
                        v.keyframe.store(true, Ordering::Relaxed);
                        source.reset();
                    }
                    if agreed.codecs != v.agreement.codecs || agreed.fmtp != v.agreement.fmtp {
                        // Payload types renumbered or parameter sets changed: depacketisers are
                        // made again for what the numbers now mean.
                        incoming.depacketizers.clear();
                        // A frame half gathered is gone with them: the next one stands alone.
                        incoming.awaiting_keyframe = true;
                    }
                    v.rate.set_sdp_limit(agreed.remote_bandwidth.map(|b| b.video_bitrate()));
                    follow_rate(&mut v, idle(hold, removed, dtls.as_ref()));
                    // The codec, or what the far end decodes (its level, max-fs, imageattr), changed:
                    // a new encoder, and a canvas of the size it now takes.
                    let size = canvas_for(&v.config, agreed.codec, agreed.fmtp.as_deref(), agreed.recv_max_picture);
                    let fps = frame_rate_for(&v.config, agreed.codec, agreed.fmtp.as_deref(), size);
                    if agreed.codec != v.agreement.codec || size != v.size || fps != v.fps {
                        info!(call = %v.call, from = ?v.agreement.codec, to = ?agreed.codec, ?size, fps, "the re-offer changes the video codec, size or frame rate");
                        let _ = v.hub.send(VideoCommand::Codec { call: v.number, codec: agreed.codec, size, fps });
                        v.keyframe.store(true, Ordering::Relaxed);
                        v.size = size;
                        v.fps = fps;
                    }
                    v.agreement = *agreed;
                }
                None => break,
            },
            f = v.frames.recv(), if grid_open => {
                let Some(frame) = f else {
                    // The hub could not make this call's grid (or is gone): the SIP party's own
                    // video and the RTCP go on; only the grid stops.
                    warn!(call = %v.call, "no grid for the SIP party any more: its video still reaches the session");
                    grid_open = false;
                    continue;
                };
                if idle(hold, removed, dtls.as_ref()) {
                    continue;
                }
                let ts = base_ts.wrapping_add((frame.at.saturating_duration_since(started).as_micros() * 9 / 100) as u32);
                // Labelled by the codec it is in: the call's, or (a codec change whose encoder
                // could not be made) another the far end also agreed to, else it is not sent.
                let payload_type = if frame.codec == v.agreement.codec {
                    Some(v.agreement.payload_type)
                } else {
                    v.agreement.codecs.iter().find(|(c, _)| *c == frame.codec).map(|(_, pt)| *pt)
                };
                let Some(payload_type) = payload_type else { continue };
                let payloads = match frame.codec {
                    Codec::H264 => packetize::h264_packetize(&packetize::split_annex_b(&frame.data), VIDEO_MTU),
                    Codec::H264SingleNal => packetize::h264_packetize_single_nal(&packetize::split_annex_b(&frame.data)),
                    _ => {
                        picture_id = (picture_id + 1) & 0x7fff;
                        packetize::vp8_packetize(&frame.data, picture_id, VIDEO_MTU)
                    }
                };
                let last = payloads.len().saturating_sub(1);
                for (i, p) in payloads.iter().enumerate() {
                    let header = RtpHeader {
                        marker: i == last,
                        payload_type,
                        seq,
                        timestamp: ts,
                        ssrc,
                        ..RtpHeader::default()
                    };
                    let mut out = Vec::with_capacity(p.len() + 12);
                    if header.write(p, 0, &mut out).is_err() {
                        continue;
                    }
                    resend.on_sent(Instant::now(), seq, &out);
                    seq = seq.wrapping_add(1);
                    if v.leg.send_rtp(out).is_ok() {
                        // Sampled at the frame's time: the sender reports map that to the clock.
                        reports.on_sent(frame.at, ts, p.len(), true);
                    }
                }
                frames_sent += 1;
            }
            i = v.inbound.recv() => {
                let Some(inbound) = i else { break };
                match inbound {
                    Inbound::Rtp(bytes) => {
                        let Ok(pkt) = RtpPacket::parse(&bytes) else { continue };
                        let pt = pkt.payload_type().0;
                        if v.agreement.received_codec(pt).is_none() {
                            continue;
                        }
                        // One source at a time, sequence jumps held back until confirmed (as for
                        // the audio): a stray or hostile packet never reaches the depacketiser.
                        let now = Instant::now();
                        let (from, seq) = (pkt.ssrc().0, pkt.seq());
                        if !source.accept(now, from, seq) || !reports.on_received(now, from, seq, pkt.timestamp(), true) {
                            continue;
                        }
                        remote_ssrc = Some(from);
                        let rtt = reports.far_end.round_trip;
                        incoming.push(now, from, seq, bytes, rtt);
                        let lost = incoming.nacks(now, rtt);
                        if !lost.is_empty() {
                            let nack = RtcpPacket::Nack { sender: ssrc, media: from, lost };
                            let _ = v.leg.send_rtcp(reports.with_feedback(now, std::time::SystemTime::now(), nack));
                        }
                        deliver(&mut v, &mut incoming, &mut published, &mut reports, remote_ssrc, &mut last_pli);
                    }
                    Inbound::Rtcp(bytes) => {
                        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
                        let Ok(packets) = rtcp::parse_compound(&bytes) else { continue };
                        let byes = reports.on_packets(now, wall, &packets);
                        if byes.iter().any(|s| source.current() == Some(*s)) {
                            // Its video's source said BYE: the next source's packets take over.
                            source.reset();
                        }
                        for owner in byes {
                            v.rate.on_bye(owner);
                        }
                        if reports.far_end.blocks != far_end_blocks {
                            far_end_blocks = reports.far_end.blocks;
                            v.rate.on_loss(now, reports.far_end.fraction_lost);
                        }
                        let mut asks = false;
                        // One TMMBN for the compound, however many requests it holds.
                        let mut notification = None;
                        if let Some(RtcpPacket::SenderReport { ssrc: from, .. } | RtcpPacket::ReceiverReport { ssrc: from, .. }) = packets.first() {
                            v.rate.heard_from(now, *from);
                        }
                        for p in &packets {
                            match p {
                                RtcpPacket::Pli { media, .. } if *media == ssrc || *media == 0 => {
                                    asks |= keyframe_asks.pli(now);
                                }
                                RtcpPacket::Fir { sender, entries } => {
                                    for (_, seq) in entries.iter().filter(|(m, _)| *m == ssrc) {
                                        asks |= keyframe_asks.fir(now, *sender, *seq);
                                    }
                                }
                                RtcpPacket::Nack { media, lost, .. } if *media == ssrc => {
                                    let rtt = reports.far_end.round_trip;
                                    for packet in resend.on_nack(now, lost, v.rate.target(), rtt) {
                                        let len = packet.len().saturating_sub(12);
                                        if v.leg.send_rtp(packet).is_ok() {
                                            reports.on_sent(now, 0, len, false);
                                        }
                                    }
                                }
                                RtcpPacket::Tmmbr { sender, entries } => {
                                    if let Some(n) = v.rate.on_tmmbr(now, ssrc, *sender, entries) {
                                        debug!(call = %v.call, ?entries, "the SIP party limits the grid's bitrate (TMMBR)");
                                        notification = Some(n);
                                    }
                                }
                                _ => {}
                            }
                        }
                        if let Some(n) = notification {
                            let _ = v.leg.send_rtcp(reports.with_feedback(now, wall, n));
                        }
                        follow_rate(&mut v, idle(hold, removed, dtls.as_ref()));
                        if asks {
                            keyframe_asked(&mut v, "RTCP");
                        }
                    }
                    Inbound::Dtls(record) => {
                        if let Some(d) = dtls.as_ref() {
                            let _ = d.to_handshake.try_send(record);
                        }
                    }
                }
            }
            w = async {
                match wanted.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match w {
                    Some(()) => send_pli(&mut v, &mut reports, remote_ssrc, &mut last_pli),
                    None => wanted = None,
                }
            }
            _ = async {
                match incoming.reorder.deadline() {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                // A missing packet's wait is over.
                deliver(&mut v, &mut incoming, &mut published, &mut reports, remote_ssrc, &mut last_pli);
            }
            _ = rtcp_tick.tick() => {
                let now = Instant::now();
                if keyframe_asks.owed_now(now) {
                    keyframe_asked(&mut v, "a request inside the interval");
                }
                v.rate.expire(now);
                follow_rate(&mut v, idle(hold, removed, dtls.as_ref()));
                if removed {
                    continue;
                }
                let lost = incoming.nacks(now, reports.far_end.round_trip);
                if let (false, Some(media)) = (lost.is_empty(), remote_ssrc) {
                    let nack = RtcpPacket::Nack { sender: ssrc, media, lost };
                    let _ = v.leg.send_rtcp(reports.with_feedback(now, std::time::SystemTime::now(), nack));
                }
                if dtls.as_ref().is_none_or(|d| d.ready) {
                    if let Some(report) = reports.due(Instant::now(), std::time::SystemTime::now()) {
                        let _ = v.leg.send_rtcp(report);
                    }
                }
            }
        }
    }
    if !removed && dtls.as_ref().is_none_or(|d| d.ready) {
        let _ = v.leg.send_rtcp(reports.bye(Instant::now(), std::time::SystemTime::now()));
    }
    let _ = v.leg.shutdown().await;
    let (resent, refused) = (resend.resent, resend.refused);
    let (frames_in, skipped) = (incoming.frames, incoming.skipped);
    let r = incoming.reorder.stats();
    v.quality = crate::VideoQuality {
        frames_sent,
        frames_received: frames_in,
        frames_skipped: skipped,
        packets_lost: r.lost,
        packets_reordered: r.reordered,
        packets_nacked: r.nacked,
        packets_resent: resent,
        ..v.quality
    };
    v.reporter.video_quality(&v.project, &v.quality);
    info!(
        call = %v.call,
        frames_sent,
        resent,
        refused,
        bitrate = v.rate.target(),
        frames_in,
        skipped,
        reordered = r.reordered,
        lost = r.lost,
        nacked = r.nacked,
        "video ended"
    );
}

/// Publishes what the SIP party's video has ready into the session, and asks for a keyframe when
/// a frame was lost.
fn deliver(
    v: &mut CallVideo,
    incoming: &mut Incoming,
    published: &mut Vec<MediaFrame>,
    reports: &mut Rtcp,
    remote_ssrc: Option<u32>,
    last_pli: &mut Option<Instant>,
) {
    if incoming.release(Instant::now(), &v.agreement, published) {
        send_pli(v, reports, remote_ssrc, last_pli);
    }
    for frame in published.drain(..) {
        let _ = v.service.write_frame(&v.stream, frame);
    }
}

/// Whether a call's grid has nowhere to go: held, its video removed, or its DTLS-SRTP keys not
/// agreed yet.
fn idle(hold: bool, removed: bool, dtls: Option<&crate::call::DtlsState>) -> bool {
    hold || removed || dtls.is_some_and(|d| !d.ready)
}

/// A keyframe the SIP party asked for (`how`), counted; the hub makes the next grid one.
fn keyframe_asked(v: &mut CallVideo, how: &str) {
    v.quality.keyframes_asked_by_party += 1;
    debug!(call = %v.call, how, "the SIP party asks for a keyframe");
    v.keyframe.store(true, Ordering::Relaxed);
}

/// Hands the hub the bitrate the call's limits and losses now give, when it changed.
fn follow_rate(v: &mut CallVideo, idle: bool) {
    let target = v.rate.target();
    v.quality.lowest_bitrate = v.quality.lowest_bitrate.min(target);
    // 0 tells the hub the grid is paused (a TMMBR below what the encoders can do, or nothing to
    // send it to: held, the stream removed, the keys not agreed yet), so it composes and encodes
    // nothing for this call, and the first grid after the pause is a keyframe.
    let asked = if v.rate.paused() || idle { 0 } else { target };
    if v.bitrate.swap(asked, Ordering::Relaxed) != asked {
        debug!(call = %v.call, bitrate = target, paused = v.rate.paused(), idle, "the grid's bitrate follows the SIP party");
    }
}

/// A keyframe request (in a compound packet led by our report and CNAME, RFC 4585 section 3.1)
/// to the SIP party, at most every [`PLI_INTERVAL`], once its SSRC is known: a PLI, or a FIR
/// (RFC 5104 §4.3.1, a new sequence number each time), as [`KeyframeRequest`] says. A party that
/// agreed to neither also gets an RFC 5168 INFO, which the call sends (at most one a second, one
/// at a time, none after the party refused one).
fn send_pli(v: &mut CallVideo, reports: &mut Rtcp, remote: Option<u32>, last: &mut Option<Instant>) {
    let Some(media) = remote else { return };
    let now = Instant::now();
    if last.is_some_and(|t| now.saturating_duration_since(t) < PLI_INTERVAL) {
        return;
    }
    *last = Some(now);
    v.quality.keyframes_asked_of_party += 1;
    let request = match keyframe_request(&v.agreement) {
        KeyframeRequest::Fir => {
            v.fir_seq = v.fir_seq.wrapping_add(1);
            RtcpPacket::Fir { sender: reports.ssrc(), entries: vec![(media, v.fir_seq)] }
        }
        KeyframeRequest::PliAndInfo => {
            let _ = v.asks.send(VideoAsk::PictureFastUpdate);
            RtcpPacket::Pli { sender: reports.ssrc(), media }
        }
        KeyframeRequest::Pli => RtcpPacket::Pli { sender: reports.ssrc(), media },
    };
    let _ = v.leg.send_rtcp(reports.with_feedback(now, std::time::SystemTime::now(), request));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A video agreement for H.264 in payload type 97, with NACK.
    fn h264_agreement() -> MediaAgreement {
        let opts = sdp_negotiation::OfferOptions {
            video: Some((40002, vec![Codec::H264])),
            ..sdp_negotiation::OfferOptions::default()
        };
        let mut s = sdp_negotiation::LocalSession::new(opts, 1);
        let offer: &[u8] =
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n\
m=video 6002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\na=rtcp-fb:97 nack\r\n";
        let (_, a) = s.answer_offer(offer).expect("answer");
        a.video.expect("video")
    }

    /// The SIP party's camera restarts as a new source (SSRC and timestamps random again): what is
    /// published goes on a frame after the last one, never back in time, and from its keyframe.
    #[test]
    fn a_new_source_continues_the_published_clock() {
        let agreement = h264_agreement();
        let mut incoming = Incoming::new(&agreement);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut send = |incoming: &mut Incoming, ssrc: u32, seq: u16, ts: u32, nal: &[u8], at: u64| {
            let header = RtpHeader { marker: true, payload_type: 97, seq, timestamp: ts, ssrc, ..RtpHeader::default() };
            let mut bytes = Vec::new();
            header.write(nal, 0, &mut bytes).expect("packet");
            let now = t0 + Duration::from_millis(at);
            incoming.push(now, ssrc, seq, bytes, None);
            incoming.release(now + Duration::from_secs(1), &agreement, &mut out);
        };
        send(&mut incoming, 1, 10, 3_000_000_000, &[0x65, 1], 0);
        send(&mut incoming, 1, 11, 3_000_003_000, &[0x41, 2], 33);
        // The new source, its clock 3 billion ticks behind: first an inter frame (skipped), then
        // its keyframe.
        send(&mut incoming, 2, 500, 5, &[0x41, 3], 66);
        send(&mut incoming, 2, 501, 3005, &[0x65, 4], 100);
        send(&mut incoming, 2, 502, 6005, &[0x41, 5], 133);
        let times: Vec<u64> = out.iter().map(|f| f.rtp_time).collect();
        assert_eq!(times.len(), 4, "{times:?}");
        assert_eq!(times[1] - times[0], 3000);
        assert_eq!(times[2], times[1] + 3000, "a frame after the old source's last: {times:?}");
        assert_eq!(times[3], times[2] + 3000, "then the new source's own pace");
    }

    /// A video agreement for H.264 whose answer carries these `a=rtcp-fb` values.
    fn agreement_with_feedback(feedback: &[&str]) -> MediaAgreement {
        let opts = sdp_negotiation::OfferOptions {
            video: Some((40002, vec![Codec::H264])),
            ..sdp_negotiation::OfferOptions::default()
        };
        let mut s = sdp_negotiation::LocalSession::new(opts, 1);
        let offer = s.create_offer().to_bytes();
        let pt = String::from_utf8_lossy(&offer)
            .lines()
            .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" H264/90000").map(str::to_owned))
            .expect("H.264 offered");
        let mut answer = format!(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n\
m=video 6002 RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1\r\n"
        );
        for fb in feedback {
            answer.push_str(&format!("a=rtcp-fb:{pt} {fb}\r\n"));
        }
        s.process_answer(answer.as_bytes()).expect("answer").video.expect("video")
    }

    /// A party is asked for keyframes the way its SDP agreed to: a PLI with `nack pli`, a FIR
    /// with `ccm fir` alone, and with neither a PLI and an RFC 5168 INFO.
    #[test]
    fn keyframes_are_asked_the_way_the_party_agreed_to() {
        assert_eq!(keyframe_request(&agreement_with_feedback(&["nack", "nack pli", "ccm fir"])), KeyframeRequest::Pli);
        assert_eq!(keyframe_request(&agreement_with_feedback(&["ccm fir"])), KeyframeRequest::Fir);
        assert_eq!(keyframe_request(&agreement_with_feedback(&["nack"])), KeyframeRequest::PliAndInfo);
        assert_eq!(keyframe_request(&agreement_with_feedback(&[])), KeyframeRequest::PliAndInfo);
        // What we send parses as the request we take.
        assert!(asks_picture_fast_update(MEDIA_CONTROL, PICTURE_FAST_UPDATE));
    }

    /// Keyframe INFOs: one at a time, one a second, none after a refusal; a passing failure does
    /// not stop them.
    #[test]
    fn keyframe_infos_are_paced_and_stop_when_refused() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut infos = FastUpdateInfos::default();
        assert!(infos.may_send(at(0)));
        assert!(!infos.may_send(at(1500)), "one in flight at a time");
        assert!(!infos.answered(200));
        assert!(infos.may_send(at(1500)));
        assert!(!infos.answered(200));
        assert!(!infos.may_send(at(2400)), "one a second");
        assert!(infos.may_send(at(2500)));
        infos.not_sent();
        assert!(!infos.may_send(at(2600)), "an INFO that could not be sent still counts for the pace");
        assert!(infos.may_send(at(3500)));
        assert!(!infos.answered(503), "passing");
        assert!(infos.may_send(at(4500)));
        assert!(!infos.answered(491));
        assert!(infos.may_send(at(5500)));
        assert!(infos.answered(415), "refused");
        assert!(!infos.may_send(at(60_000)));
        assert!(!infos.answered(415), "told once");
        for code in [400, 403, 405, 469, 488, 501, 505, 603] {
            let mut infos = FastUpdateInfos::default();
            assert!(infos.may_send(t0));
            assert!(infos.answered(code), "{code} refuses");
        }
        for code in [200, 202, 408, 491, 500, 503, 504] {
            let mut infos = FastUpdateInfos::default();
            assert!(infos.may_send(t0));
            assert!(!infos.answered(code), "{code} does not refuse");
        }
    }

    /// RFC 5168's keyframe request in a SIP INFO is told from DTMF and anything else.
    #[test]
    fn a_picture_fast_update_info_asks_for_a_keyframe() {
        let xml = b"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control><vc_primitive><to_encoder>\
<picture_fast_update/></to_encoder></vc_primitive></media_control>";
        assert!(asks_picture_fast_update("application/media_control+xml", xml));
        assert!(asks_picture_fast_update("Application/Media_Control+XML; charset=utf-8", xml));
        assert!(!asks_picture_fast_update("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"));
        assert!(!asks_picture_fast_update("application/media_control+xml", b"<media_control/>"));
        assert!(!asks_picture_fast_update("application/media_control+xml", &[b'x'; 5000]));
    }

    /// A stream waiting for the keyframe asked for is asked again a second later, not at every
    /// frame it skips; once it has one, a new loss is asked for at once.
    #[test]
    fn keyframes_are_asked_for_once_then_a_second_apart() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(keyframe_due(true, true, None, ms(0)), "the first want is asked at once");
        assert!(!keyframe_due(true, true, Some(ms(0)), ms(33)), "skipped frames want the same keyframe");
        assert!(!keyframe_due(true, true, Some(ms(0)), ms(999)));
        assert!(keyframe_due(false, true, Some(ms(0)), ms(1000)), "still waiting a second later: asked again");
        assert!(!keyframe_due(false, false, None, ms(1500)), "nothing wanted, nothing asked");
        assert!(keyframe_due(true, true, None, ms(1600)), "a new loss after the keyframe came: at once");
    }

    /// The SIP party's first frames are published only from a keyframe: an inter frame first (its
    /// keyframe lost, or sent before the keys were agreed) is left out and one is asked for.
    #[test]
    fn the_first_frames_wait_for_a_keyframe() {
        let agreement = h264_agreement();
        let mut incoming = Incoming::new(&agreement);
        let t0 = Instant::now();
        let send = |incoming: &mut Incoming, out: &mut Vec<MediaFrame>, seq: u16, nal: &[u8]| {
            let timestamp = u32::from(seq) * 3000;
            let header = RtpHeader { marker: true, payload_type: 97, seq, timestamp, ssrc: 9, ..RtpHeader::default() };
            let mut bytes = Vec::new();
            header.write(nal, 0, &mut bytes).expect("packet");
            incoming.push(t0, 9, seq, bytes, None);
            incoming.release(t0 + Duration::from_secs(1), &agreement, out)
        };
        let mut out = Vec::new();
        assert!(send(&mut incoming, &mut out, 1, &[0x41, 1]), "an inter frame first: a keyframe is asked for");
        assert!(out.is_empty(), "and it is not published");
        assert!(!send(&mut incoming, &mut out, 2, &[0x65, 2]));
        assert!(!send(&mut incoming, &mut out, 3, &[0x41, 3]));
        assert_eq!(out.len(), 2, "from the keyframe on");
    }

    /// A FIR sent again with its sequence number forces nothing (RFC 5104 §4.3.1.2), a new one
    /// does; PLIs and FIRs force at most one keyframe per 300 ms, however many arrive.
    #[test]
    fn keyframe_requests_are_told_from_repeats_and_storms() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut a = KeyframeAsks::default();
        assert!(a.fir(ms(0), 7, 1));
        assert!(!a.fir(ms(400), 7, 1), "the same FIR again");
        assert!(!a.owed_now(ms(1000)), "nothing owed");
        assert!(a.fir(ms(1100), 7, 2), "a new FIR");
        assert!(!a.fir(ms(1200), 8, 1), "another sender's, within 300 ms: not at once");
        assert!(!a.owed_now(ms(1399)), "nor before the interval ends");
        assert!(a.owed_now(ms(1400)), "but owed at its end (the keyframe before may be the lost one)");
        assert!(!a.owed_now(ms(1800)), "once");
        assert!(!a.fir(ms(1800), 8, 1), "its repeat is a repeat");
        assert!(a.fir(ms(1800), 8, 2), "and its next one counts");
        // A PLI and a FIR in one packet, or a repeat before the keyframe could arrive: one.
        assert!(!a.pli(ms(1800)) && !a.pli(ms(1850)), "crossing the keyframe on its way");
        assert!(!a.owed_now(ms(2200)), "nothing owed for them");
        let mut a = KeyframeAsks::default();
        let t = |i: u64| ms(3000 + i * 33);
        let forced = (0..30).filter(|i| a.pli(t(*i)) || a.owed_now(t(*i))).count();
        assert_eq!(forced, 3, "30 PLIs 33 ms apart (957 ms): keyframes at 0, 330 and 660 ms");
        assert!(a.owed_now(ms(3990)), "and one more at 990 ms for those after 660");
        for sender in 0..10 {
            a.fir(ms(5000), sender, 0);
        }
        assert!(a.firs.len() <= 4, "bounded by sender");
    }

    /// What call `sip-1` asks of the hub: a 320x180 grid in `codec` at 30 frames a second.
    fn watch_request(
        codec: Codec,
        keyframe: &Arc<AtomicBool>,
        bitrate: &Arc<AtomicU32>,
        frames: mpsc::Sender<EncodedFrame>,
    ) -> WatchRequest {
        WatchRequest {
            own: StreamId::from_wire("sip-1"),
            subset: None,
            codec,
            size: (320, 180),
            bitrate: bitrate.clone(),
            fps: 30,
            keyframe: keyframe.clone(),
            frames,
        }
    }

    /// A hub with no stream and no watcher, and no periodic keyframe.
    async fn empty_hub() -> Hub {
        let service = session::service::SessionService::start(
            session::service::ServiceConfig::default(),
            session::project::Projects::new(),
        )
        .await
        .expect("service");
        Hub {
            service,
            keyframe_interval: Duration::from_secs(3600),
            fps: 30,
            inputs: Vec::new(),
            next_number: 0,
            watchers: HashMap::new(),
        }
    }

    /// A grid where nothing changes (here: no source at all) is encoded at the full rate for
    /// half a second, then once a second; a keyframe asked for meanwhile goes out at once.
    #[tokio::test]
    async fn a_grid_that_does_not_change_is_sent_once_a_second() {
        let mut hub = empty_hub().await;
        let (frames, mut rx) = mpsc::channel(1000);
        let keyframe = Arc::new(AtomicBool::new(false));
        let request = watch_request(Codec::Vp8, &keyframe, &Arc::new(AtomicU32::new(300_000)), frames);
        let start = Instant::now();
        hub.watch(1, request, start);
        let mut sent = Vec::new();
        // Five seconds at 30 frames a second; a picture loss reported at 3.3 s.
        for tick in 0..150u32 {
            if tick == 100 {
                keyframe.store(true, Ordering::Relaxed);
            }
            hub.tick(start + Duration::from_millis(u64::from(tick) * 100 / 3));
            while rx.try_recv().is_ok() {
                sent.push(tick);
            }
        }
        let early = sent.iter().filter(|t| **t < 15).count();
        assert_eq!(early, 15, "full rate while the grid settles: {sent:?}");
        let idle: Vec<u32> = sent.iter().copied().filter(|t| *t >= 15).collect();
        assert!(idle.contains(&100), "the keyframe asked for went out at once: {sent:?}");
        assert!((4..=6).contains(&idle.len()), "about one a second after that: {sent:?}");
    }

    /// A call that is behind (its channel full) skips frames without a keyframe: nothing was
    /// encoded, so the next frame still follows the last one sent; the grid goes on with inter
    /// frames once the call has caught up.
    #[tokio::test]
    async fn a_call_behind_skips_frames_without_a_keyframe() {
        let mut hub = empty_hub().await;
        let (frames, mut rx) = mpsc::channel(2);
        let keyframe = Arc::new(AtomicBool::new(false));
        let request = watch_request(Codec::H264, &keyframe, &Arc::new(AtomicU32::new(300_000)), frames);
        let t0 = Instant::now();
        hub.watch(1, request, t0);
        let idr = |f: &EncodedFrame| {
            packetize::split_annex_b(&f.data).iter().any(|n| n.first().is_some_and(|b| b & 0x1f == 5))
        };
        // Four ticks, nothing read: two frames wait, two are skipped.
        for tick in 0..4u64 {
            hub.tick(t0 + Duration::from_millis(tick * 33));
        }
        let waiting: Vec<bool> = std::iter::from_fn(|| rx.try_recv().ok()).map(|f| idr(&f)).collect();
        assert_eq!(waiting, [true, false], "the first is the keyframe, the second follows it");
        assert!(!keyframe.load(Ordering::Relaxed), "no keyframe asked for by the skips");
        hub.tick(t0 + Duration::from_millis(4 * 33));
        let next = rx.try_recv().expect("a frame once the call caught up");
        assert!(!idr(&next), "an inter frame");
    }

    /// A re-offer's new codec: the watcher gets a new encoder and its next frame is a keyframe
    /// in that codec. A paused grid (bitrate 0) is not made at all, and resumes with a keyframe.
    #[tokio::test]
    async fn a_new_codec_gets_a_new_encoder_and_a_keyframe() {
        let mut hub = empty_hub().await;
        let (frames, mut rx) = mpsc::channel(1000);
        let keyframe = Arc::new(AtomicBool::new(false));
        let bitrate = Arc::new(AtomicU32::new(300_000));
        let request = watch_request(Codec::H264, &keyframe, &bitrate, frames);
        let t0 = Instant::now();
        hub.watch(1, request, t0);
        hub.tick(t0);
        let first = rx.try_recv().expect("a frame");
        assert!(packetize::split_annex_b(&first.data).iter().any(|n| n.first().is_some_and(|b| b & 0x1f == 5)));
        assert_eq!(first.codec, Codec::H264, "frames say their codec");
        hub.tick(t0 + Duration::from_millis(33));
        assert!(rx.try_recv().is_ok());
        hub.recode(1, Codec::Vp8, (320, 180), 30);
        hub.tick(t0 + Duration::from_millis(66));
        let vp8 = rx.try_recv().expect("a frame");
        assert!(vp8.data.first().is_some_and(|b| b & 1 == 0), "a VP8 keyframe");
        assert_eq!(vp8.codec, Codec::Vp8, "labelled with the new codec");
        hub.recode(7, Codec::Vp8, (320, 180), 30);
        // Paused (bitrate 0): nothing made; resumed: a keyframe first.
        hub.tick(t0 + Duration::from_millis(100));
        assert!(rx.try_recv().is_ok_and(|f| f.data.first().is_some_and(|b| b & 1 == 1)), "a delta frame");
        bitrate.store(0, Ordering::Relaxed);
        hub.tick(t0 + Duration::from_millis(133));
        assert!(rx.try_recv().is_err(), "paused");
        bitrate.store(300_000, Ordering::Relaxed);
        hub.tick(t0 + Duration::from_millis(166));
        assert!(rx.try_recv().is_ok_and(|f| f.data.first().is_some_and(|b| b & 1 == 0)), "a keyframe on resume");
        // A re-offer that lowers what the far end decodes: a smaller canvas, from a keyframe.
        assert_eq!(media_mixer::vp8::keyframe_size(&vp8.data), Some((320, 180)));
        hub.recode(1, Codec::Vp8, (160, 90), 30);
        hub.tick(t0 + Duration::from_millis(200));
        let smaller = rx.try_recv().expect("a frame");
        assert_eq!(media_mixer::vp8::keyframe_size(&smaller.data), Some((160, 90)), "a keyframe of the new size");
    }

    /// The grid's frame rate follows what the party decodes at the canvas's size: an H.264
    /// level's macroblocks a second (raised by max-mbps), VP8's max-fr.
    #[test]
    fn the_frame_rate_follows_what_the_peer_decodes() {
        let c = VideoConfig::default();
        assert_eq!(frame_rate_for(&c, Codec::H264, None, (1280, 720)), 30, "nothing said: the configured rate");
        assert_eq!(
            frame_rate_for(&c, Codec::H264, Some("profile-level-id=42e01f"), (1280, 720)),
            30,
            "3.1 takes 720p30"
        );
        assert_eq!(
            frame_rate_for(&c, Codec::H264, Some("profile-level-id=42e016"), (640, 360)),
            22,
            "2.2: 20250 / 920"
        );
        let raised = "profile-level-id=42e016;max-mbps=40500";
        assert_eq!(frame_rate_for(&c, Codec::H264, Some(raised), (640, 360)), 30, "max-mbps raises the level's");
        assert_eq!(frame_rate_for(&c, Codec::H264, Some("profile-level-id=42e00a"), (176, 144)), 15, "1.0: QCIF at 15");
        // Level 1b (Baseline: 11 with constraint_set3) is 1.0's size and rate, not 1.1's.
        assert_eq!(frame_rate_for(&c, Codec::H264, Some("profile-level-id=42f00b"), (176, 144)), 15);
        assert_eq!(frame_rate_for(&c, Codec::H264, Some("profile-level-id=42e00b"), (176, 144)), 30, "1.1");
        assert_eq!(canvas_for(&c, Codec::H264, Some("profile-level-id=42f00b"), None), (176, 144));
        assert_eq!(frame_rate_for(&c, Codec::Vp8, Some("max-fr=15;max-fs=3600"), (1280, 720)), 15);
        assert_eq!(frame_rate_for(&c, Codec::Vp8, Some("max-fr=0"), (1280, 720)), 1, "never below one");
    }

    /// A call whose party decodes 15 frames a second gets every second tick's frame; one at 22
    /// gets 22 of every 30.
    #[tokio::test]
    async fn a_lower_frame_rate_gets_every_other_tick() {
        let mut hub = empty_hub().await;
        let (frames, mut rx) = mpsc::channel(1000);
        let keyframe = Arc::new(AtomicBool::new(false));
        let bitrate = Arc::new(AtomicU32::new(300_000));
        let request = WatchRequest { fps: 15, ..watch_request(Codec::Vp8, &keyframe, &bitrate, frames) };
        let t0 = Instant::now();
        hub.watch(1, request, t0);
        let mut sent = Vec::new();
        for n in 0..10u64 {
            keyframe.store(true, Ordering::Relaxed);
            hub.tick(t0 + Duration::from_micros(33_333 * n));
            sent.push(rx.try_recv().is_ok());
        }
        assert_eq!(sent, [true, false, true, false, true, false, true, false, true, false]);

        // 22 a second: 22 frames of every 30 ticks, not 15.
        let mut hub = empty_hub().await;
        let (frames, mut rx) = mpsc::channel(1000);
        let request = WatchRequest { fps: 22, ..watch_request(Codec::Vp8, &keyframe, &bitrate, frames) };
        hub.watch(1, request, t0);
        let mut made = 0;
        for n in 0..30u64 {
            keyframe.store(true, Ordering::Relaxed);
            hub.tick(t0 + Duration::from_micros(33_333 * n));
            made += usize::from(rx.try_recv().is_ok());
        }
        assert_eq!(made, 22);
    }

    #[test]
    fn the_canvas_follows_what_the_peer_decodes() {
        let c = VideoConfig::default();
        assert_eq!(canvas_for(&c, Codec::H264, None, None), (1280, 720));
        // Level 3.1 decodes 720p; level 3.0 (1620 macroblocks) does not, 960x540 (2040) neither.
        assert_eq!(
            canvas_for(&c, Codec::H264, Some("profile-level-id=42e01f;packetization-mode=1"), None),
            (1280, 720)
        );
        assert_eq!(canvas_for(&c, Codec::H264, Some("profile-level-id=42e01e;packetization-mode=1"), None), (640, 360));
        assert_eq!(canvas_for(&c, Codec::H264, Some("profile-level-id=42e00d"), None), (320, 180));
        // max-fs raises an H.264 level's frame size (level 3.0 with 3600 macroblocks: 720p).
        assert_eq!(canvas_for(&c, Codec::H264, Some("profile-level-id=42e01e;max-fs=3600"), None), (1280, 720));
        assert_eq!(canvas_for(&c, Codec::H264, Some("profile-level-id=42e01f;max-fs=1200"), None), (1280, 720));
        assert_eq!(canvas_for(&c, Codec::Vp8, Some("max-fs=1200"), None), (640, 360));
        assert_eq!(canvas_for(&c, Codec::Vp8, Some("max-fs=12"), None), (176, 144));
        assert_eq!(canvas_for(&c, Codec::Vp8, None, Some((100, 80))), (100, 80));
        let small = VideoConfig { width: 320, height: 240, ..VideoConfig::default() };
        assert_eq!(canvas_for(&small, Codec::Vp8, None, None), (320, 240));
    }

    #[test]
    fn the_canvas_stays_within_what_the_peer_receives() {
        let c = VideoConfig::default();
        assert_eq!(canvas_for(&c, Codec::Vp8, None, Some((640, 480))), (640, 360));
        assert_eq!(canvas_for(&c, Codec::Vp8, None, Some((1920, 1080))), (1280, 720));
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let (w, h) = (rng.gen_range(16..4000), rng.gen_range(16..3000));
            let (cw, ch) = canvas_for(&c, Codec::Vp8, None, Some((w, h)));
            assert!(cw % 2 == 0 && ch % 2 == 0 && cw >= 16 && ch >= 16);
            assert!(cw <= w && ch <= h, "{cw}x{ch} within {w}x{h}");
        }
    }

    #[test]
    fn timestamps_extend_past_wrap_around() {
        // The shared extender (`media_mixer::jitter`) starts its timeline at 2^32 + the first.
        let mut t = TimestampExtender::new();
        let first = t.extend(u32::MAX - 10);
        assert_eq!(t.extend(5), first + 16);
        assert_eq!(t.extend(1), first + 12, "a little back is reordering, not a wrap");
    }
}
