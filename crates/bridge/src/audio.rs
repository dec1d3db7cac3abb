//! The session's audio as the SIP calls hear it: one task per session with calls in it. It taps
//! every audio stream of the session (WebRTC publishers and the SIP calls' own streams alike),
//! decodes each **once** (and not at all while its packets' audio level says it is silent),
//! mixes every 20 ms, and hands each call its mix-minus (or the mix of the
//! `streams` it asked for) as PCM. Streams that join or leave are picked up or dropped between
//! two ticks.
//!
//! The mix runs at the highest sample rate a listening call's codec takes: 8 kHz when every call
//! speaks G.711 (libopus then decodes straight to 8 kHz, the cheaper path, and nothing is
//! resampled on the way to the SIP leg), 16 kHz with G.722, 48 kHz with Opus. Whenever that
//! highest rate changes (a faster call joining, the last call at that rate leaving) the mixer and
//! the decoders are re-created at the new rate between two ticks; announcements still playing
//! are carried over, resampled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media_mixer::jitter::{Arrival, JitterBuffer, JitterConfig, Next};
use media_mixer::opus::OpusDecoder;
use media_mixer::resample::Resampler;
use media_mixer::{frame_len, ListenerId, Mixer, MixerConfig, Prompt};
use session::router::{FrameCodec, MediaFrame};
use session::service::SessionService;
use session::{EventKind, SessionId, StreamId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// A tick of the mix, in samples at 48 kHz (Opus's RTP clock, which the inputs' buffers count in).
const TICK: u32 = 960;

/// What a call asks of its session's mixer.
pub(crate) enum AudioCommand {
    /// Start hearing the session: `own` is excluded, `subset` (when given) limits what is heard.
    Listen {
        call: u64,
        own: StreamId,
        subset: Option<Vec<StreamId>>,
        /// The call speaks Opus: when it hears exactly one stream, that stream's packets are
        /// forwarded as they are (no decode, no mix, no re-encode).
        passthrough: bool,
        /// The sample rate of the call's codec: the mix runs at the highest one among the calls.
        rate: u32,
        frames: mpsc::Sender<ListenerFrame>,
    },
    /// Stop.
    Leave { call: u64 },
    /// An announcement for this call only; it is mixed in, so while it plays the call hears the
    /// mix even where it would otherwise get one stream's packets as they are.
    Play { call: u64, prompt: Prompt },
}

/// 20 ms of what a call hears.
#[derive(Debug, Clone)]
pub(crate) enum ListenerFrame {
    /// 20 ms of the mix, PCM at `rate` Hz, to be encoded in the call's codec.
    Pcm { rate: u32, pcm: Arc<[i16]> },
    /// One Opus packet of the only stream the call hears, to be sent as it is; `samples` (its
    /// duration at 48 kHz) is what the RTP timestamp advances by. A tick brings two of these for
    /// 10 ms packets, and none for two ticks out of three with 60 ms packets.
    Opus { packet: Arc<[u8]>, samples: u32 },
    /// Time with nothing of the one stream a call forwards (a tick of it stalled or still
    /// buffering, or packets of it lost, `samples` at 48 kHz long): nothing to send, but the
    /// call's RTP clock advances by as much (so the far end sees the gap and conceals it) and DTMF
    /// may go out meanwhile.
    Idle { samples: u32 },
}

impl ListenerFrame {
    /// Its duration at 48 kHz.
    pub(crate) fn samples_48k(&self) -> u32 {
        match self {
            ListenerFrame::Pcm { rate, pcm } => (pcm.len() as u64 * 48_000 / u64::from((*rate).max(1))) as u32,
            ListenerFrame::Opus { samples, .. } | ListenerFrame::Idle { samples } => *samples,
        }
    }
}

/// A handle on a session's mixer task.
#[derive(Clone)]
pub(crate) struct SessionAudio {
    pub(crate) commands: mpsc::UnboundedSender<AudioCommand>,
}

struct Input {
    mixer_id: media_mixer::StreamId,
    frames: mpsc::Receiver<MediaFrame>,
    /// Made when the stream first needs decoding, at the mix's rate (a stream nobody hears, or
    /// one silent from the start, costs no decoder).
    decoder: Option<OpusDecoder>,
    /// Packets waiting, measured in time (48 kHz), with a delay that follows the stream's jitter.
    jitter: JitterBuffer<Packet>,
    /// Decoding scratch.
    pcm: Vec<i16>,
    /// Decoded samples not mixed yet: the rest of a packet longer than a tick (40 or 60 ms) or of
    /// a concealed gap, or the start of a tick's worth of shorter packets (10 ms).
    ahead: Vec<i16>,
    /// Audio of packets taken but not yet due, when nobody needs them decoded (the passthrough
    /// path's `ahead`), samples at 48 kHz.
    forwarded_ahead: u32,
    /// What this tick took, for passthrough listeners.
    taken: Vec<Forward>,
    /// This tick is covered by what was taken earlier (a packet longer than a tick, or a gap).
    covered: bool,
    /// The codec of its packets: Opus, or G.711 from a WebRTC publisher that offered nothing
    /// else (decoded, never forwarded to a call as it is).
    codec: FrameCodec,
    /// G.711's 8 kHz to the mix's rate, made at first need.
    g711_up: Option<Resampler>,
    /// G.711 decoding scratch (8 kHz).
    g711_pcm: Vec<i16>,
    /// G.711's loss concealment (8 kHz: the last pitch period repeated, fading).
    g711_plc: media_mixer::plc::Concealer,
}

/// One packet waiting.
struct Packet {
    data: Arc<[u8]>,
    /// Its RFC 6464 level, when its source gave one.
    level: Option<u8>,
}

/// Packets at or below -50 dBov (RFC 6464 level 50 and up) are quiet: a pause between words, which
/// a delay that has grown may drop before any speech.
const QUIET_LEVEL: u8 = 50;

impl Packet {
    /// Quiet by its audio level, or a discontinuous-transmission packet (Opus DTX sends a table of
    /// contents byte and at most one more).
    fn is_quiet(&self) -> bool {
        self.level.is_some_and(|l| l >= QUIET_LEVEL) || self.data.len() <= 2
    }
}

/// What a passthrough listener is sent of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Forward {
    /// A packet as it is, and its duration (48 kHz).
    Packet(Arc<[u8]>, u32),
    /// Packets lost, this long (48 kHz): the far end conceals them.
    Gap(u32),
}

/// What plays next from an input in the decoding path.
enum Step {
    /// A packet to decode, with its duration (48 kHz), what of its start was already made up
    /// (48 kHz, to be skipped) and its level (when known).
    Packet { data: Arc<[u8]>, samples: u32, skip: u32, level: Option<u8> },
    /// Lost audio to conceal (48 kHz), from the in-band FEC of the packet that follows the gap.
    Lost { samples: u32, fec: Option<Arc<[u8]>> },
    /// Nothing at all this tick: the input ran dry (it buffers again); its tick is concealed.
    Dry,
}

impl Input {
    fn new(mixer_id: media_mixer::StreamId, frames: mpsc::Receiver<MediaFrame>) -> Input {
        Input {
            mixer_id,
            frames,
            decoder: None,
            jitter: JitterBuffer::new(JitterConfig::default()),
            pcm: Vec::new(),
            ahead: Vec::new(),
            forwarded_ahead: 0,
            taken: Vec::new(),
            covered: false,
            codec: FrameCodec::Opus,
            g711_up: None,
            g711_pcm: Vec::new(),
            g711_plc: media_mixer::plc::Concealer::new(8_000),
        }
    }

    /// Forgets everything queued and decoded ahead.
    fn clear(&mut self) {
        self.jitter.clear();
        self.ahead.clear();
        self.forwarded_ahead = 0;
    }

    /// Queues what arrived (packets that are not valid Opus are dropped: no decoder could use them
    /// and no peer should get them; so are duplicates and packets that arrive after their turn),
    /// and starts the tick of `now`. G.711 packets (a WebRTC publisher's, 8 kHz) are queued in the
    /// same 48 kHz timeline; a stream that changes codec starts its queue over.
    fn receive(&mut self, now: Instant) {
        while let Ok(f) = self.frames.try_recv() {
            let (samples, time) = match f.codec {
                FrameCodec::Opus => match media_mixer::opus::packet_duration(&f.data) {
                    Some(samples) => (samples, f.rtp_time),
                    None => {
                        debug!(bytes = f.data.len(), "not an Opus packet: dropped");
                        continue;
                    }
                },
                FrameCodec::Pcmu | FrameCodec::Pcma => {
                    let Ok(bytes) = u32::try_from(f.data.len()) else { continue };
                    (bytes.saturating_mul(6), f.rtp_time.saturating_mul(6))
                }
                _ => continue,
            };
            if f.codec != self.codec {
                debug!(from = ?self.codec, to = ?f.codec, "the stream changed codec: its queue starts over");
                self.clear();
                self.decoder = None;
                self.g711_up = None;
                self.codec = f.codec;
            }
            let packet = Packet { data: f.data, level: f.audio_level };
            match self.jitter.push(f.arrival, time, samples, packet) {
                Arrival::Queued => {}
                Arrival::Restarted => {
                    debug!("the source's clock went back: its queue starts over");
                    self.ahead.clear();
                    self.forwarded_ahead = 0;
                }
                other => debug!(?other, "a packet dropped"),
            }
        }
        self.jitter.start_tick_with(now, Packet::is_quiet);
    }

    /// What the decoding path plays next: a packet, a gap to conceal, or (first thing in a tick
    /// that has nothing) `Dry`; `None` once this tick has nothing more.
    /// Each is also noted as taken, for a call that forwards this stream while others hear it
    /// decoded.
    fn next_step(&mut self, first: bool) -> Option<Step> {
        match self.jitter.pop() {
            Next::Packet { item, duration, skip } => {
                self.taken.push(Forward::Packet(item.data.clone(), duration));
                Some(Step::Packet { data: item.data, samples: duration, skip, level: item.level })
            }
            Next::Lost { duration } => {
                self.taken.push(Forward::Gap(duration));
                Some(Step::Lost { samples: duration, fec: self.jitter.peek().map(|p| p.data.clone()) })
            }
            Next::Empty if first => {
                self.taken.push(Forward::Gap(TICK));
                Some(Step::Dry)
            }
            Next::Empty => None,
        }
    }

    /// The passthrough path's tick: the packets (and gaps) that cover it, or nothing while a long
    /// packet or gap taken earlier still plays. What the stream does not cover of the tick (it
    /// stalled, or is still buffering) is a gap too, so the call's clock keeps real time.
    fn forward(&mut self) {
        if self.forwarded_ahead >= TICK {
            self.covered = true;
            self.forwarded_ahead -= TICK;
            return;
        }
        while self.forwarded_ahead < TICK {
            match self.jitter.pop() {
                // A packet is forwarded whole (Opus cannot be cut): a start made up earlier is
                // played twice, which only shifts the stream by that much. G.711 never goes to a
                // call as Opus (the tick that learns the codec): its time as a gap.
                Next::Packet { item, duration, .. } => {
                    let forwarded = if self.codec == FrameCodec::Opus {
                        Forward::Packet(item.data, duration)
                    } else {
                        Forward::Gap(duration)
                    };
                    self.taken.push(forwarded);
                    self.forwarded_ahead += duration;
                }
                Next::Lost { duration } => {
                    self.taken.push(Forward::Gap(duration));
                    self.forwarded_ahead += duration;
                }
                Next::Empty => break,
            }
        }
        if self.forwarded_ahead < TICK {
            self.taken.push(Forward::Gap(TICK - self.forwarded_ahead));
            self.forwarded_ahead = TICK;
        }
        self.forwarded_ahead -= TICK;
    }
}

/// One step of a G.711 input (a WebRTC publisher's) into `input.pcm` at `rate`: a packet decoded
/// at 8 kHz (its start made up already skipped), a loss or a dry tick (`n` samples at `rate`)
/// concealed at 8 kHz, then resampled to the mix's rate.
fn decode_g711(input: &mut Input, step: &Step, rate: u32, n: usize) -> Result<(), media_mixer::Error> {
    let at_8k = |samples: u32| (samples / 6) as usize;
    match step {
        Step::Packet { data, skip, .. } => {
            if input.codec == FrameCodec::Pcma {
                media_mixer::g711::alaw_decode_frame(data, &mut input.g711_pcm);
            } else {
                media_mixer::g711::ulaw_decode_frame(data, &mut input.g711_pcm);
            }
            let skip = at_8k(*skip).min(input.g711_pcm.len());
            input.g711_pcm.drain(..skip);
            input.g711_plc.good(&mut input.g711_pcm);
        }
        Step::Lost { samples, .. } => input.g711_plc.conceal(at_8k(*samples), &mut input.g711_pcm),
        Step::Dry => input.g711_plc.conceal(n * 8_000 / rate as usize, &mut input.g711_pcm),
    }
    let up = match input.g711_up.as_mut() {
        Some(up) => up,
        None => input.g711_up.insert(Resampler::new(8_000, rate)?),
    };
    input.pcm.clear();
    up.process(&input.g711_pcm, &mut input.pcm);
    Ok(())
}

impl SessionAudio {
    /// Starts the mixer task of `session`.
    pub(crate) fn start(service: SessionService, session: SessionId) -> SessionAudio {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(service, session, rx));
        SessionAudio { commands: tx }
    }
}

struct State {
    service: SessionService,
    session: SessionId,
    /// The mix's sample rate.
    rate: u32,
    mixer: Mixer,
    inputs: HashMap<StreamId, Input>,
    /// Session stream → mixer stream, stable while an input or a listener needs it (a `streams`
    /// subset may name a stream before it is published); forgotten after (see `prune_ids`).
    ids: HashMap<StreamId, media_mixer::StreamId>,
    /// The last mixer stream number given: never given again.
    last_id: u64,
    /// When the mix's rate last changed (see `follow_listener_rates`).
    rate_changed: Option<Instant>,
    listeners: HashMap<u64, Listener>,
}

/// How long the mix's rate stays before it may go down (see `follow_listener_rates`).
const RATE_SETTLES: Duration = Duration::from_secs(10);

/// One call listening.
struct Listener {
    frames: mpsc::Sender<ListenerFrame>,
    /// Its own stream (never heard).
    own: media_mixer::StreamId,
    /// The only streams it hears, when the dial named them.
    subset: Option<Vec<media_mixer::StreamId>>,
    passthrough: bool,
    rate: u32,
    /// Time (48 kHz samples) of the frames it could not take (its queue full: the call task
    /// stalled): sent as `Idle` before its next frame, so its RTP clock keeps real time.
    missed: u32,
}

impl Listener {
    fn hears(&self, id: media_mixer::StreamId) -> bool {
        self.own != id && self.subset.as_ref().is_none_or(|s| s.contains(&id))
    }

    /// Queues `frame`, after the time of those it missed; a frame it cannot take adds to that.
    fn send(&mut self, frame: ListenerFrame) {
        if self.missed > 0 {
            if self.frames.try_send(ListenerFrame::Idle { samples: self.missed }).is_err() {
                self.missed = self.missed.saturating_add(frame.samples_48k());
                return;
            }
            self.missed = 0;
        }
        let samples = frame.samples_48k();
        if self.frames.try_send(frame).is_err() {
            self.missed = self.missed.saturating_add(samples);
        }
    }
}

impl State {
    /// A session's mixer with no input and no listener yet, at 48 kHz until a call says otherwise.
    fn new(service: SessionService, session: SessionId) -> State {
        State {
            service,
            session,
            rate: 48_000,
            mixer: Mixer::new(MixerConfig { frame_len: frame_len(48_000), ..MixerConfig::default() }),
            inputs: HashMap::new(),
            ids: HashMap::new(),
            last_id: 0,
            rate_changed: None,
            listeners: HashMap::new(),
        }
    }

    fn mixer_id(&mut self, stream: &StreamId) -> media_mixer::StreamId {
        if let Some(id) = self.ids.get(stream) {
            return *id;
        }
        self.last_id += 1;
        let id = media_mixer::StreamId(self.last_id);
        self.ids.insert(stream.clone(), id);
        id
    }

    /// Forgets the numbers of streams neither mixed nor named by a listener (its own, or in its
    /// subset): a participant publishing and unpublishing for hours must not grow the map.
    fn prune_ids(&mut self) {
        let (inputs, listeners) = (&self.inputs, &self.listeners);
        self.ids.retain(|stream, id| {
            inputs.contains_key(stream)
                || listeners.values().any(|l| l.own == *id || l.subset.as_ref().is_some_and(|s| s.contains(id)))
        });
    }

    fn add_input(&mut self, stream: &StreamId) {
        if self.inputs.contains_key(stream) {
            return;
        }
        let Ok((_, frames)) = self.service.tap(stream) else { return };
        let mixer_id = self.mixer_id(stream);
        self.mixer.add_stream(mixer_id);
        debug!(%stream, "mixing a new stream");
        self.inputs.insert(stream.clone(), Input::new(mixer_id, frames));
    }

    fn remove_input(&mut self, stream: &StreamId) {
        if let Some(input) = self.inputs.remove(stream) {
            self.mixer.remove_stream(input.mixer_id);
        }
        self.prune_ids();
    }

    /// Moves the mix to the highest rate a listener takes (48 kHz with no listener), re-creating
    /// the mixer when that changes; the decoders are made again at the new rate when next needed.
    /// Queued packets are kept, and so is what is left of each listener's announcement
    /// (resampled to the new rate). A higher rate is taken at once; a lower one only
    /// [`RATE_SETTLES`] after the last change (listeners take the mix at any rate), so a far end
    /// switching codecs over and over cannot make everyone's decoders start again each time.
    fn follow_listener_rates(&mut self, now: Instant) {
        let rate = self.listeners.values().map(|l| l.rate).max().unwrap_or(48_000);
        if rate == self.rate {
            return;
        }
        if rate < self.rate && self.rate_changed.is_some_and(|t| now.saturating_duration_since(t) < RATE_SETTLES) {
            return;
        }
        self.rate_changed = Some(now);
        let mut mixer = Mixer::new(MixerConfig { frame_len: frame_len(rate), ..MixerConfig::default() });
        debug!(session = %self.session, from = self.rate, to = rate, "the mix follows its listeners' rate");
        for input in self.inputs.values_mut() {
            mixer.add_stream(input.mixer_id);
            input.decoder = None;
            input.g711_up = None;
            input.ahead.clear();
        }
        for (call, l) in &self.listeners {
            mixer.add_listener(ListenerId(*call), Some(l.own), l.subset.clone());
            let left = self.mixer.take_prompt(ListenerId(*call));
            if left.is_empty() {
                continue;
            }
            match Resampler::new(self.rate, rate) {
                Ok(mut r) => {
                    let mut moved = Vec::with_capacity(left.len() * rate as usize / self.rate as usize + 64);
                    r.process(&left, &mut moved);
                    let _ = mixer.play_to(ListenerId(*call), &moved);
                }
                Err(e) => warn!(call, error = %e, "an announcement could not follow the mix's rate"),
            }
        }
        self.mixer = mixer;
        self.rate = rate;
    }

    fn command(&mut self, command: AudioCommand) {
        match command {
            AudioCommand::Listen { call, own, subset, passthrough, rate, frames } => {
                let own = self.mixer_id(&own);
                let subset: Option<Vec<_>> = subset.map(|s| s.iter().map(|id| self.mixer_id(id)).collect());
                // A call listening again (its codec changed) keeps the announcement it hears.
                let playing = self.mixer.take_prompt(ListenerId(call));
                self.mixer.add_listener(ListenerId(call), Some(own), subset.clone());
                if !playing.is_empty() {
                    let _ = self.mixer.play_to(ListenerId(call), &playing);
                }
                self.listeners.insert(call, Listener { frames, own, subset, passthrough, rate, missed: 0 });
                self.follow_listener_rates(Instant::now());
            }
            AudioCommand::Leave { call } => {
                self.mixer.remove_listener(ListenerId(call));
                self.listeners.remove(&call);
                self.prune_ids();
                self.follow_listener_rates(Instant::now());
            }
            AudioCommand::Play { call, prompt } => match prompt.pcm(self.rate) {
                Ok(pcm) => {
                    let _ = self.mixer.play_to(ListenerId(call), &pcm);
                }
                Err(e) => warn!(call, error = %e, "announcement unavailable"),
            },
        }
    }

    /// Each listener's heard inputs this tick (the one of `now`); a passthrough listener hearing
    /// exactly one gets that input's packets.
    fn tick(&mut self, now: Instant) {
        // A lower rate waiting for the mix to settle.
        self.follow_listener_rates(now);
        let present: Vec<media_mixer::StreamId> = self.inputs.values().map(|i| i.mixer_id).collect();
        let g711: Vec<media_mixer::StreamId> =
            self.inputs.values().filter(|i| i.codec != FrameCodec::Opus).map(|i| i.mixer_id).collect();
        // Listeners that forward one stream's packets this tick, and which stream.
        let forwarding: HashMap<u64, media_mixer::StreamId> = self
            .listeners
            .iter()
            .filter(|(call, l)| l.passthrough && !self.mixer.is_playing(ListenerId(**call)))
            .filter_map(|(call, l)| {
                let mut heard = present.iter().filter(|id| l.hears(**id));
                match (heard.next(), heard.next()) {
                    // Only Opus goes to a call as it is; G.711 is decoded and mixed for it.
                    (Some(only), None) if !g711.contains(only) => Some((*call, *only)),
                    _ => None,
                }
            })
            .collect();
        let n = frame_len(self.rate);
        let silence = self.mixer.config().silence_dbov;
        for input in self.inputs.values_mut() {
            let id = input.mixer_id;
            let needs_pcm = self.listeners.iter().any(|(call, l)| l.hears(id) && !forwarding.contains_key(call));
            let needs_raw = forwarding.values().any(|s| *s == id);
            input.taken.clear();
            input.covered = false;
            if !needs_pcm && !needs_raw {
                // Nobody hears it (a two-party call's own SIP stream): drained, never decoded.
                while input.frames.try_recv().is_ok() {}
                input.clear();
                continue;
            }
            input.receive(now);
            if !needs_pcm {
                // Forwarded only: packets are taken as their durations fall due, never decoded
                // (and a tick they do not cover is a gap).
                input.ahead.clear();
                input.forward();
                continue;
            }
            input.forwarded_ahead = 0;
            if !input.jitter.is_playing() {
                // Buffering: a call forwarding it gets the tick as a gap (its clock goes on).
                input.taken.push(Forward::Gap(TICK));
                continue;
            }
            if input.ahead.len() >= n {
                // The rest of a long packet (or gap) decoded earlier plays first; nothing is taken.
                input.covered = true;
                let _ = self.mixer.push_frame(id, &input.ahead[..n], None);
                input.ahead.drain(..n);
                continue;
            }
            // Out of the input while it decodes; made at first need, at the mix's rate.
            let mut decoder = input.decoder.take();
            let rate = self.rate;
            // This tick's packet (or its concealment), then, for packets shorter than a tick, as
            // many of those already queued as make one.
            let mut next = input.next_step(true);
            let opus = input.codec == FrameCodec::Opus;
            while let Some(step) = next.take() {
                // At the mix's rate (48 kHz durations are multiples of 2.5 ms, whole at any rate).
                let at_rate = |samples: u32| (u64::from(samples) * u64::from(rate) / 48_000) as usize;
                let silent = match &step {
                    // Silent by its own account (RFC 6464): never decoded, its length of silence
                    // played instead. The decoder is dropped with the audio it was decoding; the
                    // next packet that is not silent starts a fresh one.
                    // (G.711 is decoded all the same: it costs next to nothing, and its concealment
                    // needs what was heard last.)
                    Step::Packet { samples, skip, level: Some(level), .. } if *level >= silence && opus => {
                        Some(samples.saturating_sub(*skip))
                    }
                    // Nothing to conceal with: what the stream last played was silence (G.711
                    // has no decoder to keep: it conceals its own way, below).
                    Step::Lost { samples, .. } if decoder.is_none() && opus => Some(*samples),
                    Step::Dry if decoder.is_none() && opus => Some(TICK),
                    _ => None,
                };
                let decoded = match silent {
                    Some(samples) => {
                        decoder = None;
                        input.pcm.clear();
                        input.pcm.resize(at_rate(samples), 0);
                        Ok(())
                    }
                    None if input.codec != FrameCodec::Opus => decode_g711(input, &step, rate, n),
                    None => {
                        let d = match decoder.as_mut() {
                            Some(d) => d,
                            None => match OpusDecoder::new(rate) {
                                Ok(d) => decoder.insert(d),
                                Err(e) => {
                                    warn!(rate, error = %e, "cannot create an Opus decoder");
                                    break;
                                }
                            },
                        };
                        match &step {
                            Step::Packet { data, skip, .. } => d.decode(data, &mut input.pcm).map(|()| {
                                // Its start, made up already, is not played again.
                                let skip = at_rate(*skip).min(input.pcm.len());
                                input.pcm.drain(..skip);
                            }),
                            Step::Lost { samples, fec: Some(after) } => {
                                d.recover_fec(after, at_rate(*samples), &mut input.pcm)
                            }
                            Step::Lost { samples, fec: None } => d.conceal(at_rate(*samples), &mut input.pcm),
                            Step::Dry => d.conceal(n, &mut input.pcm),
                        }
                    }
                };
                if let Err(e) = decoded {
                    // Its time is concealed, not skipped: skipping would take the next packet
                    // early (and a call forwarding the stream would run ahead of real time).
                    debug!(error = %e, "a packet that does not decode: concealed");
                    if let Step::Packet { samples, skip, .. } = &step {
                        let len = at_rate(samples.saturating_sub(*skip));
                        match decoder.as_mut().map(|d| d.conceal(len, &mut input.pcm)) {
                            Some(Ok(())) => input.ahead.extend_from_slice(&input.pcm),
                            _ => input.ahead.resize(input.ahead.len() + len, 0),
                        }
                    }
                } else {
                    input.ahead.extend_from_slice(&input.pcm);
                }
                if input.ahead.len() < n && !matches!(step, Step::Dry) {
                    next = input.next_step(false);
                }
            }
            if input.ahead.len() < n {
                // The tick is short (a late packet, or one that decoded to nothing): concealed, so
                // the mix has no hole and what came does not wait a tick.
                let had_audio = !input.ahead.is_empty();
                let missing = n - input.ahead.len();
                let concealed = if opus {
                    decoder.as_mut().map(|d| d.conceal(missing, &mut input.pcm))
                } else {
                    // G.711 conceals its own way (at 8 kHz, then to the mix's rate).
                    Some(decode_g711(input, &Step::Dry, rate, missing))
                };
                match concealed {
                    Some(Ok(())) => input.ahead.extend_from_slice(&input.pcm),
                    _ => input.ahead.resize(n, 0),
                }
                input.ahead.resize(n.max(input.ahead.len()), 0);
                let missing_48k = (missing as u64 * 48_000 / u64::from(rate)) as u32;
                if had_audio {
                    // Part of the tick came: the late rest is owed, skipped when it comes (and
                    // a call forwarding the stream gets it whole then, so no gap now).
                    input.jitter.made_up(missing_48k);
                } else {
                    // Nothing real this tick: the stream starts a tick later (owing a whole tick
                    // could only be paid back by skipping audio that is on time).
                    input.taken.push(Forward::Gap(missing_48k));
                }
            }
            input.decoder = decoder;
            if input.ahead.len() >= n {
                // Digital silence (packets silent by their header, a silent stream's stand-in) is
                // not given to the mixer, which takes a stream without a frame as silent: no copy,
                // no level to measure.
                if input.ahead[..n].iter().any(|s| *s != 0) {
                    let _ = self.mixer.push_frame(id, &input.ahead[..n], None);
                }
                input.ahead.drain(..n);
            }
        }
        self.mixer.mix();
        let mut out = vec![0i16; frame_len(self.rate)];
        let (inputs, mixer, rate) = (&self.inputs, &self.mixer, self.rate);
        for (call, l) in &mut self.listeners {
            // A call that cannot keep up loses this frame (its time kept), not the others.
            match forwarding.get(call) {
                Some(only) => {
                    let Some(input) = inputs.values().find(|i| i.mixer_id == *only) else { continue };
                    for taken in &input.taken {
                        let frame = match taken {
                            Forward::Packet(packet, samples) => {
                                ListenerFrame::Opus { packet: packet.clone(), samples: *samples }
                            }
                            Forward::Gap(samples) => ListenerFrame::Idle { samples: *samples },
                        };
                        l.send(frame);
                    }
                }
                None => {
                    if mixer.output(ListenerId(*call), &mut out).is_ok() {
                        l.send(ListenerFrame::Pcm { rate, pcm: Arc::from(out.as_slice()) });
                    }
                }
            }
        }
        self.mixer.end_tick();
    }
}

async fn run(service: SessionService, session: SessionId, mut commands: mpsc::UnboundedReceiver<AudioCommand>) {
    // Subscribe before listing, so that no stream falls between the two.
    let mut events = service.subscribe();
    let mut state = State::new(service.clone(), session.clone());
    for s in service.streams(&session).iter().filter(|s| s.has_audio) {
        state.add_input(&s.id);
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    // Burst: a late tick is caught up, so the mix keeps real time on average (a delayed schedule
    // would consume slower than the streams arrive and let their queues, and the delay, grow).
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            now = ticker.tick() => state.tick(now.into_std()),
            e = events.recv() => {
                let Some(e) = e else { return };
                if e.session != state.session {
                    continue;
                }
                match &e.kind {
                    EventKind::StreamCreated { stream, .. } if stream.has_audio => state.add_input(&stream.id),
                    EventKind::StreamDestroyed { stream, .. } => state.remove_input(&stream.id),
                    EventKind::SessionEnded => return,
                    _ => {}
                }
            }
            c = commands.recv() => match c {
                Some(command) => state.command(command),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use session::project::Projects;
    use session::service::ServiceConfig;

    async fn state() -> State {
        let service = SessionService::start(ServiceConfig::default(), Projects::new()).await.expect("service");
        let project = session::ProjectId::api_key("123456").expect("key");
        let now = std::time::SystemTime::now();
        State::new(service, SessionId::mint(&project, None, now, &mut rand::rngs::StdRng::seed_from_u64(7)))
    }

    fn listen(s: &mut State, call: u64, rate: u32) -> mpsc::Receiver<ListenerFrame> {
        let (frames, rx) = mpsc::channel(64);
        let own = StreamId::from_wire(&format!("sip-{call}"));
        s.command(AudioCommand::Listen { call, own, subset: None, passthrough: false, rate, frames });
        rx
    }

    /// Streams published and unpublished over and over leave no number behind, while those a
    /// listener names keep theirs; a number is never given to another stream.
    #[tokio::test]
    async fn stream_numbers_are_forgotten_with_their_streams() {
        let mut s = state().await;
        let (frames, _rx) = mpsc::channel(64);
        let named = StreamId::from_wire("named-before-published");
        s.command(AudioCommand::Listen {
            call: 1,
            own: StreamId::from_wire("sip-1"),
            subset: Some(vec![named.clone()]),
            passthrough: false,
            rate: 48_000,
            frames,
        });
        let named_id = s.mixer_id(&named);
        let mut seen = std::collections::HashSet::new();
        for n in 0..200 {
            let stream = StreamId::from_wire(&format!("publisher-{n}"));
            let id = s.mixer_id(&stream);
            assert!(seen.insert(id), "{id:?} given twice");
            s.mixer.add_stream(id);
            let (_tx, rx) = mpsc::channel(session::service::TAP_QUEUE);
            s.inputs.insert(stream.clone(), Input::new(id, rx));
            s.remove_input(&stream);
        }
        assert_eq!(s.ids.len(), 2, "the listener's own stream and the one it names: {:?}", s.ids);
        assert_eq!(s.mixer_id(&named), named_id, "a named stream keeps its number");
        s.command(AudioCommand::Leave { call: 1 });
        assert!(s.ids.is_empty(), "{:?}", s.ids);
    }

    /// The frame a call got this tick: its rate and loudest sample.
    fn heard(rx: &mut mpsc::Receiver<ListenerFrame>) -> (u32, i16) {
        match rx.try_recv() {
            Ok(ListenerFrame::Pcm { rate, pcm }) => (rate, pcm.iter().map(|s| s.saturating_abs()).max().unwrap_or(0)),
            other => panic!("expected PCM, got {other:?}"),
        }
    }

    /// A session mix with one talker `name` (whose frames the returned sender writes), heard as
    /// it is by passthrough call 1 (it hears nothing else) and decoded by call 2 (8 kHz): the
    /// talker's frames, then call 1's and call 2's receivers.
    fn forwarding_and_narrow(
        s: &mut State,
        name: &str,
    ) -> (mpsc::Sender<MediaFrame>, mpsc::Receiver<ListenerFrame>, mpsc::Receiver<ListenerFrame>) {
        let stream = StreamId::from_wire(name);
        let (forward_tx, forwarded) = mpsc::channel(64);
        s.command(AudioCommand::Listen {
            call: 1,
            own: StreamId::from_wire("sip-1"),
            subset: Some(vec![stream.clone()]),
            passthrough: true,
            rate: 48_000,
            frames: forward_tx,
        });
        let narrow = listen(s, 2, 8_000);
        let id = s.mixer_id(&stream);
        s.mixer.add_stream(id);
        let (tx, frames) = mpsc::channel(session::service::TAP_QUEUE);
        s.inputs.insert(stream, Input::new(id, frames));
        (tx, forwarded, narrow)
    }

    /// A WebRTC publisher that sends G.711 (it offered nothing else) is heard by the SIP calls:
    /// decoded and mixed, at any mix rate, and never forwarded to an Opus call as it is.
    #[tokio::test]
    async fn a_g711_publisher_is_heard_decoded_and_never_forwarded() {
        let mut s = state().await;
        let (tx, mut opus_call, mut narrow) = forwarding_and_narrow(&mut s, "pcmu-talker");
        let t0 = Instant::now();
        let (mut loud, mut wide_loud, mut silent_after_start) = (0, 0, 0);
        for k in 0..50u32 {
            let now = t0 + TICK_TIME * k;
            let tone: Vec<u8> = (0..160)
                .map(|i| {
                    let t = f64::from(k * 160 + i) / 8000.0;
                    media_mixer::g711::ulaw_encode((8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16)
                })
                .collect();
            let frame = MediaFrame {
                codec: FrameCodec::Pcmu,
                rtp_time: u64::from(k) * 160,
                data: Arc::from(tone.as_slice()),
                contiguous: true,
                audio_level: None,
                arrival: now,
            };
            if k != 20 {
                // Packet 20 is lost: concealed, not silent.
                tx.try_send(frame).expect("send");
            }
            s.tick(now);
            let Ok(ListenerFrame::Pcm { pcm, .. }) = narrow.try_recv() else { panic!("PCM for call 2") };
            let rms = (pcm.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
            // The tone's RMS is about 5600; a lost packet made silence leaves about 2200.
            if rms > 4000.0 {
                loud += 1;
            } else if loud > 0 {
                silent_after_start += 1;
            }
            while let Ok(f) = opus_call.try_recv() {
                match f {
                    ListenerFrame::Opus { .. } => panic!("G.711 forwarded to an Opus call as it is"),
                    ListenerFrame::Pcm { pcm, .. } if pcm.iter().any(|v| v.saturating_abs() > 2000) => wide_loud += 1,
                    _ => {}
                }
            }
        }
        assert!(loud >= 45, "the 8 kHz call heard the tone: {loud} ticks");
        assert_eq!(silent_after_start, 0, "no tick silent once it played: the loss concealed");
        assert!(wide_loud >= 45, "the Opus call heard it decoded, at 48 kHz: {wide_loud} ticks");
    }

    /// A call that listens again (its codec changed mid-call) keeps the announcement it was
    /// hearing.
    #[tokio::test]
    async fn listening_again_keeps_the_announcement() {
        let mut s = state().await;
        let _narrow = listen(&mut s, 1, 8_000);
        let _wide = listen(&mut s, 2, 48_000);
        s.command(AudioCommand::Play { call: 2, prompt: Prompt::YouAreMuted });
        assert!(s.mixer.is_playing(ListenerId(2)));
        let _again = listen(&mut s, 2, 16_000);
        assert!(s.mixer.is_playing(ListenerId(2)), "the announcement survived the new listen");
    }

    /// A call whose task stalls (its queue full) loses frames, not time: what it missed comes as
    /// one `Idle` before the next frame it takes, so its RTP clock stays with real time.
    #[tokio::test]
    async fn a_call_that_stalls_keeps_its_clock() {
        let mut s = state().await;
        let (frames, mut rx) = mpsc::channel(2);
        s.command(AudioCommand::Listen {
            call: 1,
            own: StreamId::from_wire("sip-1"),
            subset: None,
            passthrough: false,
            rate: 8_000,
            frames,
        });
        let t0 = Instant::now();
        let mut clock = 0;
        let mut drain = |rx: &mut mpsc::Receiver<ListenerFrame>| {
            while let Ok(f) = rx.try_recv() {
                clock += f.samples_48k();
            }
            clock
        };
        for k in 0..5u32 {
            s.tick(t0 + TICK_TIME * k);
        }
        assert_eq!(drain(&mut rx), 2 * 960, "two frames fitted");
        s.tick(t0 + TICK_TIME * 5);
        assert_eq!(drain(&mut rx), 6 * 960, "the three missed frames' time came back before the next");
    }

    /// The passthrough path takes packets as their durations fall due: whatever their length,
    /// from the tick it starts, the audio forwarded covers every tick and runs ahead by less than
    /// one packet; a packet that is not Opus is dropped.
    #[test]
    fn forwarding_follows_the_packets_durations() {
        // Table-of-contents bytes: CELT 2.5 ms, SILK 10, 20, 40 and 60 ms, all code 0.
        for (toc, samples) in [(0x80u8, 120u32), (0x00, 480), (0x08, 960), (0x10, 1920), (0x18, 2880)] {
            let (tx, rx) = mpsc::channel(session::service::TAP_QUEUE);
            let mut input = Input::new(media_mixer::StreamId(1), rx);
            let (mut sent, mut forwarded, mut started) = (0u64, 0u32, None);
            let mut order = Vec::new();
            let t0 = Instant::now();
            for tick in 0..200u32 {
                let now = t0 + TICK_TIME * tick;
                // Packets arrive at their own pace: each once its audio has been captured.
                while (sent + 1) * u64::from(samples) <= u64::from(tick + 1) * u64::from(TICK) {
                    tx.try_send(fake_opus(toc, samples, sent, now)).expect("send");
                    sent += 1;
                }
                if tick == 100 {
                    // Garbage in between: dropped, the pace kept.
                    let garbage = fake_opus(toc, samples, 0, now);
                    tx.try_send(MediaFrame { data: Arc::from([0x03u8].as_slice()), ..garbage }).expect("send");
                }
                forward_tick(&mut input, now);
                if !input.jitter.is_playing() {
                    assert!(started.is_none(), "{samples}: ran dry at tick {tick}");
                    continue;
                }
                let start = *started.get_or_insert(tick);
                assert!(!input.taken.is_empty() || input.covered, "{samples}: tick {tick} idle");
                for taken in &input.taken {
                    let Forward::Packet(p, d) = taken else { panic!("{samples}: {taken:?} at tick {tick}") };
                    assert_eq!(*d, samples);
                    order.push(p[1]);
                    forwarded += d;
                }
                let due = (tick - start + 1) * TICK;
                assert!(forwarded >= due && forwarded < due + samples, "{samples}: tick {tick}, {forwarded} for {due}");
            }
            assert!(started.is_some_and(|s| s <= 6), "{samples}: started at {started:?}");
            assert!(order.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{samples}: in order, none lost");
        }
    }

    const TICK_TIME: Duration = Duration::from_millis(20);

    /// A packet with this table-of-contents byte and duration, numbered `n` (second byte), that
    /// arrived at `arrival`.
    fn fake_opus(toc: u8, samples: u32, n: u64, arrival: Instant) -> MediaFrame {
        MediaFrame {
            codec: FrameCodec::Opus,
            rtp_time: n * u64::from(samples),
            data: Arc::from([toc, n as u8, 0xAA].as_slice()),
            contiguous: true,
            audio_level: None,
            arrival,
        }
    }

    /// One tick of an input that is only forwarded, as `State::tick` runs it.
    fn forward_tick(input: &mut Input, now: Instant) {
        input.taken.clear();
        input.covered = false;
        input.receive(now);
        input.forward();
    }

    /// Forwarded packets come out in RTP time order, once each, whatever the network did; a lost
    /// one is a gap of its own length (the call's clock goes on by as much, the far end
    /// conceals), a lost 10 ms packet as much as a 20 ms one; and what the call is given, packets
    /// and gaps (buffering, the stream's end) together, keeps real time exactly.
    #[test]
    fn forwarding_reorders_drops_duplicates_and_forwards_a_loss_as_a_gap() {
        for (toc, samples) in [(0x08u8, 960u32), (0x00, 480)] {
            let (tx, rx) = mpsc::channel(session::service::TAP_QUEUE);
            let mut input = Input::new(media_mixer::StreamId(1), rx);
            let per_tick = u64::from(TICK / samples);
            let mut arrivals: Vec<Vec<u64>> = (0..40).map(|t| (t * per_tick..(t + 1) * per_tick).collect()).collect();
            arrivals[10].retain(|n| *n != 10 * per_tick);
            arrivals[15] = arrivals[16].clone();
            arrivals[16] = (15 * per_tick..16 * per_tick).collect();
            arrivals[20].push(20 * per_tick);
            arrivals[25].push(19 * per_tick);
            let (mut order, mut gaps, mut given) = (Vec::new(), Vec::new(), 0u32);
            let t0 = Instant::now();
            for (tick, packets) in arrivals.iter().chain(&[vec![], vec![]]).enumerate() {
                let now = t0 + TICK_TIME * tick as u32;
                for n in packets {
                    tx.try_send(fake_opus(toc, samples, *n, now)).expect("send");
                }
                forward_tick(&mut input, now);
                for taken in &input.taken {
                    match taken {
                        Forward::Packet(p, d) => {
                            order.push(u64::from(p[1]));
                            given += d;
                        }
                        Forward::Gap(g) => {
                            // Those of the stream itself, not its start or end.
                            if (5..40).contains(&tick) {
                                gaps.push(*g);
                            }
                            given += g;
                        }
                    }
                }
            }
            let want: Vec<u64> = (0..40 * per_tick).filter(|n| *n != 10 * per_tick).collect();
            assert_eq!(order, want, "{samples}: in order, once each, the lost one missing");
            assert_eq!(gaps, vec![samples], "{samples}: the lost one is a gap of its length");
            assert_eq!(given, 42 * TICK + input.forwarded_ahead, "{samples}: real time, to the sample");
        }
    }

    proptest::proptest! {
        /// Whatever the network does to a forwarded stream (packets of any Opus length, late,
        /// reordered, repeated, lost, in bursts or not at all for a while): nothing panics, the
        /// packets go out in RTP time order, once each, and what the call is given, packets and
        /// gaps together, keeps its clock exactly a tick a tick.
        #[test]
        fn a_forwarded_stream_keeps_the_calls_clock_whatever_arrives(
            toc in proptest::sample::select(vec![0x80u8, 0x00, 0x08, 0x10, 0x18]),
            // Per packet: ticks of delay (0 to 4), dropped, sent twice.
            fate in proptest::collection::vec((0u32..5, proptest::bool::weighted(0.05), proptest::bool::weighted(0.05)), 50..200),
        ) {
            let samples = media_mixer::opus::packet_duration(&[toc]).expect("opus");
            let (tx, rx) = mpsc::channel(session::service::TAP_QUEUE);
            let mut input = Input::new(media_mixer::StreamId(1), rx);
            // Packet n is captured by the end of tick (n + 1) * samples / TICK, and arrives late.
            let mut due: Vec<Vec<u64>> = vec![Vec::new(); 400];
            for (n, (delay, dropped, twice)) in fate.iter().enumerate() {
                let captured = ((n as u64 + 1) * u64::from(samples)).div_ceil(u64::from(TICK)) as usize;
                let at = captured + *delay as usize;
                if *dropped || at >= due.len() {
                    continue;
                }
                due[at].push(n as u64);
                if *twice && at + 1 < due.len() {
                    due[at + 1].push(n as u64);
                }
            }
            let t0 = Instant::now();
            let (mut given, mut last) = (0u64, None);
            for (tick, arrivals) in due.iter().enumerate() {
                let now = t0 + TICK_TIME * tick as u32;
                for n in arrivals {
                    let frame = MediaFrame {
                        rtp_time: n * u64::from(samples),
                        data: Arc::from([toc, *n as u8, (*n >> 8) as u8].as_slice()),
                        ..fake_opus(toc, samples, 0, now)
                    };
                    tx.try_send(frame).expect("send");
                }
                forward_tick(&mut input, now);
                for taken in &input.taken {
                    match taken {
                        Forward::Packet(p, d) => {
                            let n = u64::from(p[1]) | u64::from(p[2]) << 8;
                            proptest::prop_assert!(last.is_none_or(|l| n > l), "{} after {:?}", n, last);
                            last = Some(n);
                            given += u64::from(*d);
                        }
                        Forward::Gap(g) => given += u64::from(*g),
                    }
                }
                let ticks = tick as u64 + 1;
                proptest::prop_assert_eq!(given, ticks * u64::from(TICK) + u64::from(input.forwarded_ahead));
            }
        }
    }

    /// The decoding path after a burst (packets with no level, so none is known to be quiet): the
    /// queue is trimmed back towards its target, a packet a second once it has stayed above it
    /// for five, and a trimmed packet is not mistaken for a lost one (no concealment follows).
    #[test]
    fn a_burst_is_trimmed_back_without_concealment() {
        let (tx, rx) = mpsc::channel(session::service::TAP_QUEUE);
        let mut input = Input::new(media_mixer::StreamId(1), rx);
        let (mut sent, mut lost) = (0u64, 0);
        let t0 = Instant::now();
        for tick in 0..1000u32 {
            let now = t0 + TICK_TIME * tick;
            // 200 ms at once at tick 10, then one packet a tick.
            let upto = if tick < 10 { u64::from(tick) + 1 } else { u64::from(tick) + 11 };
            while sent < upto {
                tx.try_send(fake_opus(0x08, 960, sent, now)).expect("send");
                sent += 1;
            }
            input.receive(now);
            if matches!(input.next_step(true), Some(Step::Lost { .. })) {
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "no tick concealed");
        assert!(input.jitter.stats().trimmed > 0);
        let (held, target) = (input.jitter.held(), input.jitter.target());
        assert!(held <= target + 2 * u64::from(TICK), "trimmed back: {} ms held for {} ms", held / 48, target / 48);
    }

    /// Opus packets of `frame` samples (at 48 kHz): `tone` of them of 1 kHz, then silence, `total`
    /// in all.
    fn tone_then_silence(frame: u64, tone: u64, total: u64) -> Vec<Arc<[u8]>> {
        let mut enc =
            media_mixer::opus::OpusEncoder::new(media_mixer::opus::OpusEncoderConfig::default()).expect("enc");
        (0..total)
            .map(|n| {
                let pcm: Vec<i16> = (0..frame)
                    .map(|i| {
                        let t = (n * frame + i) as f64 / 48_000.0;
                        if n < tone {
                            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
                        } else {
                            0
                        }
                    })
                    .collect();
                let mut out = Vec::new();
                enc.encode(&pcm, &mut out).expect("encode");
                Arc::from(out.as_slice())
            })
            .collect()
    }

    /// One talker sending `packets` (each with the level its header gives), per tick those of
    /// `arrivals` (by number), to one 48 kHz listener: the loudest sample it heard per tick, and
    /// the state afterwards.
    async fn run_talker(packets: &[(Arc<[u8]>, Option<u8>)], arrivals: &[Vec<usize>]) -> (Vec<i16>, State) {
        let (pcm, s) = run_talker_pcm(packets, arrivals).await;
        (pcm.chunks(960).map(|c| c.iter().map(|s| s.saturating_abs()).max().unwrap_or(0)).collect(), s)
    }

    /// [`run_talker`], giving all the listener heard.
    async fn run_talker_pcm(packets: &[(Arc<[u8]>, Option<u8>)], arrivals: &[Vec<usize>]) -> (Vec<i16>, State) {
        let mut s = state().await;
        let mut rx = listen(&mut s, 1, 48_000);
        let stream = StreamId::from_wire("talker");
        let id = s.mixer_id(&stream);
        s.mixer.add_stream(id);
        let (tx, frames) = mpsc::channel(session::service::TAP_QUEUE);
        s.inputs.insert(stream, Input::new(id, frames));
        let mut heard = Vec::new();
        let t0 = Instant::now();
        for (k, tick) in arrivals.iter().enumerate() {
            let now = t0 + TICK_TIME * k as u32;
            for n in tick {
                let (data, audio_level) = packets[*n].clone();
                let duration = media_mixer::opus::packet_duration(&data).expect("opus");
                let rtp_time = *n as u64 * u64::from(duration);
                let frame =
                    MediaFrame { codec: FrameCodec::Opus, rtp_time, data, contiguous: true, audio_level, arrival: now };
                tx.try_send(frame).expect("send");
            }
            s.tick(now);
            match rx.try_recv() {
                Ok(ListenerFrame::Pcm { rate: 48_000, pcm }) => heard.extend_from_slice(&pcm),
                other => panic!("expected PCM at 48 kHz, got {other:?}"),
            }
        }
        (heard, s)
    }

    /// Packets whose audio-level header says they are silent are not decoded (the stream has no
    /// decoder while it is quiet), and are heard as silence; the first packet that is not silent
    /// is decoded, by a fresh decoder, and heard at once.
    #[tokio::test]
    async fn packets_silent_by_their_header_are_never_decoded() {
        let tone = tone_then_silence(960, 50, 100);
        // 20 packets of tone whose header says silence (a header is trusted), then 30 that say
        // loud, then the silence, saying so.
        let packets: Vec<(Arc<[u8]>, Option<u8>)> = tone
            .into_iter()
            .enumerate()
            .map(|(n, p)| (p, Some(if (20..50).contains(&n) { 10 } else { 127 })))
            .collect();
        let arrivals: Vec<Vec<usize>> = (0..30).map(|t| vec![t]).collect();
        let (peaks, s) = run_talker(&packets, &arrivals).await;
        let input = s.inputs.values().next().expect("input");
        assert!(peaks[..20].iter().all(|p| *p == 0), "silent by header, heard as silence: {peaks:?}");
        let first = peaks.iter().position(|p| *p > 2000).expect("the loud packets are heard");
        assert!((20..=22).contains(&first), "heard from their first tick on: {peaks:?}");
        assert!(input.decoder.is_some(), "decoding since the first loud packet");
        // Silent again: the decoder goes.
        let arrivals: Vec<Vec<usize>> = (0..60).map(|t| vec![t]).collect();
        let (peaks, s) = run_talker(&packets, &arrivals).await;
        assert!(peaks[55..].iter().all(|p| *p == 0), "{peaks:?}");
        assert!(s.inputs.values().next().expect("input").decoder.is_none(), "no decoder while quiet");
    }

    /// What goes wrong on the way (a lost packet, a duplicate, two packets swapped) neither
    /// shifts the stream in time nor cuts it: the tone stops at the same tick as when nothing
    /// went wrong, and no tick of the tone is silent (the lost one is concealed).
    #[tokio::test]
    async fn lost_duplicate_and_reordered_packets_keep_the_stream_in_time() {
        let packets: Vec<(Arc<[u8]>, Option<u8>)> =
            tone_then_silence(960, 50, 100).into_iter().map(|p| (p, None)).collect();
        let clean: Vec<Vec<usize>> = (0..110).map(|t| if t < 100 { vec![t] } else { vec![] }).collect();
        let mut lost = clean.clone();
        lost[20].clear();
        let mut duplicated = clean.clone();
        duplicated[30].push(30);
        duplicated[31].push(30);
        let mut swapped = clean.clone();
        swapped[40] = vec![41];
        swapped[41] = vec![40];
        let reference = run_talker(&packets, &clean).await.0;
        let toned = |peaks: &[i16]| peaks.iter().position(|p| *p > 2000).expect("the tone is heard");
        let end = |peaks: &[i16]| toned(peaks) + peaks[toned(peaks)..].iter().position(|p| *p < 200).expect("it stops");
        let (start, stop) = (toned(&reference), end(&reference));
        assert!(stop - start >= 49, "50 packets of tone heard: {reference:?}");
        for (name, arrivals) in [("lost", &lost), ("duplicated", &duplicated), ("swapped", &swapped)] {
            let peaks = run_talker(&packets, arrivals).await.0;
            assert_eq!((toned(&peaks), end(&peaks)), (start, stop), "{name}: the tone in the same ticks: {peaks:?}");
            assert!(peaks[start..stop - 1].iter().all(|p| *p > 1000), "{name}: no tick of the tone silent: {peaks:?}");
        }
    }

    /// One stream heard by an Opus call that forwards it (it hears nothing else) and by a G.711
    /// call that needs it decoded: the first gets every packet as it is, and its clock exactly a
    /// tick a tick; the second hears the tone.
    #[tokio::test]
    async fn a_stream_forwarded_to_one_call_and_decoded_for_another() {
        let (opus, loud) = forwarded_and_decoded(tone_then_silence(960, 50, 50)).await;
        assert!(opus >= 48, "call 1 got the packets as they are: {opus}");
        assert!(loud >= 45, "call 2 heard the tone decoded: {loud} ticks");
    }

    /// Packets that look like Opus but do not decode (a code-1 packet of odd length): the call
    /// that hears them decoded conceals their time, so the one forwarding them keeps real time.
    #[tokio::test]
    async fn packets_that_do_not_decode_keep_the_forwarding_call_in_time() {
        let bad: Arc<[u8]> = Arc::from(&[0x01u8, 0xaa, 0xbb, 0xcc][..]);
        assert_eq!(media_mixer::opus::packet_duration(&bad), Some(960));
        let (opus, _) = forwarded_and_decoded(vec![bad; 50]).await;
        assert!(opus >= 48, "forwarded all the same: {opus}");
    }

    /// One stream forwarded as it is to call 1 and decoded for call 2 (8 kHz), one packet of
    /// `packets` a tick: call 1's clock checked every tick; (packets forwarded, ticks call 2
    /// heard loud).
    async fn forwarded_and_decoded(packets: Vec<Arc<[u8]>>) -> (u32, u32) {
        let mut s = state().await;
        let (tx, mut forwarded, mut narrow) = forwarding_and_narrow(&mut s, "talker");
        let t0 = Instant::now();
        let (mut opus, mut clock, mut loud) = (0, 0u32, 0);
        for (k, data) in packets.into_iter().enumerate() {
            let now = t0 + TICK_TIME * k as u32;
            let frame = MediaFrame {
                codec: FrameCodec::Opus,
                rtp_time: k as u64 * 960,
                data,
                contiguous: true,
                audio_level: None,
                arrival: now,
            };
            tx.try_send(frame).expect("send");
            s.tick(now);
            while let Ok(f) = forwarded.try_recv() {
                match f {
                    ListenerFrame::Opus { samples, .. } => {
                        opus += 1;
                        clock += samples;
                    }
                    ListenerFrame::Idle { samples } => clock += samples,
                    ListenerFrame::Pcm { .. } => panic!("call 1 forwards: no PCM"),
                }
            }
            assert_eq!(clock, (k as u32 + 1) * TICK, "call 1's clock at tick {k}");
            if heard(&mut narrow).1 > 2000 {
                loud += 1;
            }
        }
        (opus, loud)
    }

    /// Where a tone stops in what a listener heard: one past its last loud sample.
    fn tone_end(pcm: &[i16]) -> usize {
        pcm.iter().rposition(|s| s.saturating_abs() > 1000).map_or(0, |i| i + 1)
    }

    /// A second of 1 kHz in 10 ms packets, two a tick (`clean`), and a second of silence; then the
    /// same with `changed` arrivals: the tone must end where it did (nothing shifted the stream) and
    /// no tick of it be silent. Returns the changed run's state.
    async fn ten_ms_tone_stays_in_time(changed: impl Fn(&mut Vec<Vec<usize>>)) -> State {
        let packets: Vec<(Arc<[u8]>, Option<u8>)> =
            tone_then_silence(480, 100, 200).into_iter().map(|p| (p, None)).collect();
        let clean: Vec<Vec<usize>> = (0..110).map(|t| if t < 100 { vec![2 * t, 2 * t + 1] } else { vec![] }).collect();
        let mut arrivals = clean.clone();
        changed(&mut arrivals);
        let (reference, _) = run_talker_pcm(&packets, &clean).await;
        let (heard, s) = run_talker_pcm(&packets, &arrivals).await;
        let (want, got) = (tone_end(&reference), tone_end(&heard));
        assert!(want > 48_000, "a second of tone heard");
        assert!(got.abs_diff(want) < 120, "the tone ends where it did: {got} for {want}");
        let start = reference.iter().position(|s| s.saturating_abs() > 1000).expect("tone");
        // 10 ms windows: whatever their phase, one lies inside any silent 20 ms tick.
        let peaks: Vec<i16> = heard[start..want - 960]
            .chunks(480)
            .map(|c| c.iter().map(|s| s.saturating_abs()).max().unwrap_or(0))
            .collect();
        assert!(peaks.iter().all(|p| *p > 1000), "no tick of the tone silent: {peaks:?}");
        s
    }

    /// A lost 10 ms packet is concealed with 10 ms: the tone after it stays in its place (it used to
    /// come 10 ms early for good), and no tick of it is silent.
    #[tokio::test]
    async fn a_lost_packet_shorter_than_a_tick_is_concealed_in_place() {
        let s = ten_ms_tone_stays_in_time(|a| a[20] = vec![40]).await;
        let input = s.inputs.values().next().expect("input");
        assert_eq!(input.jitter.stats().concealed, 480, "10 ms concealed");
    }

    /// A 10 ms packet that comes a tick late, after its tick had to be filled in: the filled-in
    /// part is not played again when it comes, so the stream stays in time, and no tick is silent.
    #[tokio::test]
    async fn a_packet_late_for_its_tick_neither_leaves_a_hole_nor_shifts_the_stream() {
        // The buffer plays a tick behind the arrivals: with 43 to 45 coming a tick late, tick 22
        // has only 42's 10 ms and is filled in; 43 then comes, the filled-in part of it skipped.
        let s = ten_ms_tone_stays_in_time(|a| {
            a[21] = vec![42];
            a[22] = vec![];
            a[23] = vec![43, 44, 45, 46, 47];
        })
        .await;
        let input = s.inputs.values().next().expect("input");
        assert!(input.jitter.stats().concealed > 0, "a tick was filled in: {:?}", input.jitter.stats());
    }

    /// A late 10 ms packet whose made-up start covers all of it, with nothing else queued: the tick
    /// is concealed whole (the stream then starts a tick later, which only delays it), never left
    /// silent, and what follows plays.
    #[tokio::test]
    async fn a_tick_left_empty_by_a_skipped_packet_is_concealed_not_silent() {
        let packets: Vec<(Arc<[u8]>, Option<u8>)> =
            tone_then_silence(480, 100, 200).into_iter().map(|p| (p, None)).collect();
        let mut arrivals: Vec<Vec<usize>> =
            (0..110).map(|t| if t < 100 { vec![2 * t, 2 * t + 1] } else { vec![] }).collect();
        arrivals[21] = vec![42];
        arrivals[22] = vec![];
        arrivals[23] = vec![43];
        arrivals[24] = (44..50).collect();
        let (heard, _) = run_talker_pcm(&packets, &arrivals).await;
        let start = heard.iter().position(|s| s.saturating_abs() > 1000).expect("tone");
        let end = tone_end(&heard);
        assert!(end - start > 48_000, "the whole second of tone: {} samples", end - start);
        // 10 ms windows: whatever their phase, one lies inside any silent 20 ms tick.
        let peaks: Vec<i16> = heard[start..end - 960]
            .chunks(480)
            .map(|c| c.iter().map(|s| s.saturating_abs()).max().unwrap_or(0))
            .collect();
        // 30 ms concealed in a row fades (Opus PLC) but is never silence (which it was: 0).
        assert!(peaks.iter().all(|p| *p > 100), "no tick of the tone silent: min {:?}", peaks.iter().min());
    }

    /// A talker whose packets arrive up to 40 ms late (and so out of order) is buffered for as
    /// much: once its delay has followed the jitter, no tick runs dry, and the tone is heard whole.
    #[tokio::test]
    async fn a_jittery_talker_is_buffered_for_its_jitter() {
        let packets: Vec<(Arc<[u8]>, Option<u8>)> =
            tone_then_silence(960, 250, 300).into_iter().map(|p| (p, None)).collect();
        let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); 310];
        let mut x = 0x2545_f491u32;
        for n in 0..300 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            arrivals[n + (x % 3) as usize].push(n);
        }
        let (peaks, s) = run_talker(&packets, &arrivals[..100]).await;
        let input = s.inputs.values().next().expect("input");
        let (warm, target) = (input.jitter.stats().underruns, input.jitter.target_delay());
        assert!(target >= Duration::from_millis(60), "the delay grew with the jitter: {target:?}");
        // To where the source ends (it then runs dry, as it should).
        let (peaks_all, s) = run_talker(&packets, &arrivals[..290]).await;
        assert_eq!(&peaks_all[..100], &peaks[..], "the same run");
        let input = s.inputs.values().next().expect("input");
        assert_eq!(input.jitter.stats().underruns, warm, "no tick ran dry after the first two seconds ({warm} before)");
        assert_eq!(input.jitter.stats().late, 0, "late packets put in their place");
        assert!(peaks_all[100..240].iter().all(|p| *p > 2000), "the tone heard whole: {peaks_all:?}");
    }

    #[tokio::test]
    async fn the_mix_follows_the_rates_and_an_announcement_survives_the_switch() {
        let mut s = state().await;
        let mut narrow = listen(&mut s, 1, 8_000);
        assert_eq!(s.rate, 8_000, "a G.711 call alone is mixed at 8 kHz");
        s.command(AudioCommand::Play { call: 1, prompt: Prompt::YouHaveBeenMuted });
        for _ in 0..10 {
            s.tick(Instant::now());
        }
        assert_eq!(heard(&mut narrow).0, 8_000);
        let mut wide = listen(&mut s, 2, 16_000);
        assert_eq!(s.rate, 16_000, "a G.722 call lifts the mix to 16 kHz");
        assert!(s.mixer.is_playing(ListenerId(1)), "the announcement was carried over");
        while narrow.try_recv().is_ok() {}
        s.tick(Instant::now());
        let (rate, peak) = heard(&mut narrow);
        assert_eq!(rate, 16_000);
        assert!(peak > 500, "call 1 still hears its announcement at the new rate: peak {peak}");
        let (rate, peak) = heard(&mut wide);
        assert_eq!((rate, peak), (16_000, 0), "call 2 hears nothing: the announcement is not its");
        s.command(AudioCommand::Leave { call: 2 });
        assert_eq!(s.rate, 16_000, "a lower rate waits for the mix to settle");
        s.tick(Instant::now() + RATE_SETTLES / 2);
        assert_eq!(s.rate, 16_000);
        while narrow.try_recv().is_ok() {}
        s.tick(Instant::now() + RATE_SETTLES);
        assert_eq!(s.rate, 8_000, "back to 8 kHz once settled, the G.722 call gone");
        assert!(s.mixer.is_playing(ListenerId(1)));
        assert_eq!(heard(&mut narrow).0, 8_000);
        // A far end switching codecs over and over: up at once, down only once settled.
        let t = Instant::now();
        for n in 0..20u64 {
            let _wide = listen(&mut s, 3, if n % 2 == 0 { 16_000 } else { 8_000 });
            s.tick(t + Duration::from_millis(20 * n));
        }
        assert_eq!(s.rate, 16_000, "one change up, none down: {}", s.rate);
        s.command(AudioCommand::Leave { call: 1 });
        s.command(AudioCommand::Leave { call: 3 });
        assert_eq!(s.rate, 48_000, "no listener: the default rate");
    }
}
