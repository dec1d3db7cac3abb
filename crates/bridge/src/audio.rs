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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use media_mixer::opus::OpusDecoder;
use media_mixer::resample::Resampler;
use media_mixer::{frame_len, ListenerId, Mixer, MixerConfig, Prompt};
use session::router::{FrameCodec, MediaFrame};
use session::service::SessionService;
use session::{EventKind, SessionId, StreamId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Queues are measured in samples at 48 kHz (Opus's RTP clock), whatever the packets' lengths.
const TICK: u32 = 960;
/// Audio held per input before the oldest packet is dropped: 5 s, so that a burst (a
/// text-to-speech source sending a sentence at once) is played whole at real time rather than
/// cut; the trimming below brings a delay that only grows back down.
const MAX_QUEUED: u32 = 250 * TICK;
/// Ticks an input's queue may stay above its prebuffer plus 40 ms before one packet is dropped
/// (clock drift between the publisher and our tick must not turn into growing delay).
const TRIM_AFTER_TICKS: u32 = 50;
/// Audio buffered before an input starts playing (absorbs network jitter): 40 ms, plus what a
/// packet longer than a tick holds beyond the tick (a 60 ms packet is decoded at once, so it
/// leaves the same 20 ms of margin only with another packet behind it).
const PREBUFFER: u32 = 2 * TICK;
/// The longest gap in a stream's RTP times taken for lost packets and concealed (PLC, or FEC from
/// the packet after the gap); a longer one is the source pausing (DTX, a muted or restarted
/// publisher), and playing simply goes on from the next packet.
const MAX_CONCEALED: u64 = 5 * TICK as u64;
/// How far behind the playout point a packet may arrive and still be taken for a late or
/// duplicate one (dropped); further back, the source's clock started over, and so does its queue.
const MAX_LATE: u64 = 48_000;

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
    /// A tick with nothing of the one stream a call forwards (stalled, still buffering, or a
    /// packet of it lost): nothing to send, but the call's RTP clock advances by a tick (so the
    /// far end sees the gap and conceals it) and DTMF may go out meanwhile.
    Idle,
}

/// A handle on a session's mixer task.
#[derive(Clone)]
pub(crate) struct SessionAudio {
    pub(crate) commands: mpsc::UnboundedSender<AudioCommand>,
}

struct Input {
    mixer_id: media_mixer::StreamId,
    frames: mpsc::UnboundedReceiver<MediaFrame>,
    /// Made when the stream first needs decoding, at the mix's rate (a stream nobody hears, or
    /// one silent from the start, costs no decoder).
    decoder: Option<OpusDecoder>,
    /// Packets waiting, in RTP time order.
    queue: VecDeque<Queued>,
    /// The RTP time (48 kHz) the next packet should start at: after the last packet taken or
    /// the last lost one concealed; `None` before the first.
    next_time: Option<u64>,
    /// The audio in `queue`, samples at 48 kHz.
    queued: u32,
    playing: bool,
    /// Decoding scratch.
    pcm: Vec<i16>,
    /// Decoded samples not mixed yet: the rest of a packet longer than a tick (40 or 60 ms), or
    /// the start of a tick's worth of shorter ones (10 ms).
    ahead: Vec<i16>,
    /// Audio of packets taken but not yet due, when nobody needs them decoded (the passthrough
    /// path's `ahead`), samples at 48 kHz.
    forwarded_ahead: u32,
    /// The packets taken this tick, with their durations, for passthrough listeners.
    taken: Vec<(Arc<[u8]>, u32)>,
    /// This tick is covered by a packet taken earlier (one longer than a tick).
    covered: bool,
    /// Consecutive ticks with more than the prebuffer plus two frames queued.
    over: u32,
}

/// One packet waiting.
struct Queued {
    data: Arc<[u8]>,
    /// Its duration, samples at 48 kHz.
    samples: u32,
    /// Its RTP time (48 kHz, extended).
    time: u64,
    /// Its RFC 6464 level, when its source gave one.
    level: Option<u8>,
}

/// What plays next from an input.
enum Step {
    /// A packet to decode, with its duration (48 kHz) and level (when known).
    Packet { data: Arc<[u8]>, samples: u32, level: Option<u8> },
    /// A lost packet to conceal, from the in-band FEC of the packet that follows the loss when
    /// that one is next.
    Lost(Option<Arc<[u8]>>),
    /// Nothing queued.
    Dry,
}

impl Input {
    fn new(mixer_id: media_mixer::StreamId, frames: mpsc::UnboundedReceiver<MediaFrame>) -> Input {
        Input {
            mixer_id,
            frames,
            decoder: None,
            queue: VecDeque::new(),
            next_time: None,
            queued: 0,
            playing: false,
            pcm: Vec::new(),
            ahead: Vec::new(),
            forwarded_ahead: 0,
            taken: Vec::new(),
            covered: false,
            over: 0,
        }
    }

    /// Forgets everything queued and decoded ahead.
    fn clear(&mut self) {
        self.queue.clear();
        self.next_time = None;
        self.queued = 0;
        self.ahead.clear();
        self.forwarded_ahead = 0;
        self.playing = false;
    }

    /// Queues what arrived in RTP time order (packets that are not valid Opus are dropped: no
    /// decoder could use them and no peer should get them; so are duplicates and packets that
    /// arrive after their turn), keeps the queue within bounds and starts playing once the
    /// prebuffer is there.
    fn receive(&mut self) {
        while let Ok(f) = self.frames.try_recv() {
            if f.codec != FrameCodec::Opus {
                continue;
            }
            let Some(samples) = media_mixer::opus::packet_duration(&f.data) else {
                debug!(bytes = f.data.len(), "not an Opus packet: dropped");
                continue;
            };
            let time = f.rtp_time;
            if let Some(expected) = self.next_time.filter(|e| time < *e) {
                if expected - time <= MAX_LATE {
                    debug!(behind = expected - time, "a late or duplicate packet: dropped");
                    continue;
                }
                // The source's clock went back (a publisher that started over): so does its queue,
                // prebuffer included.
                self.clear();
            }
            // Usually at the back; a reordered packet goes to its place, a duplicate nowhere.
            let at = self.queue.iter().rposition(|q| q.time <= time);
            if at.is_some_and(|i| self.queue[i].time == time) {
                debug!("a duplicate packet: dropped");
                continue;
            }
            let level = f.audio_level;
            self.queue.insert(at.map_or(0, |i| i + 1), Queued { data: f.data, samples, time, level });
            self.queued += samples;
            // Within bounds packet by packet, however many arrived since the last tick.
            while self.queued > MAX_QUEUED {
                self.drop_oldest();
            }
        }
        // Enough to start with: the prebuffer, plus the head packet's length beyond one tick.
        let target = PREBUFFER + self.queue.front().map_or(0, |q| q.samples.saturating_sub(TICK));
        if self.queued > target + 2 * TICK {
            self.over += 1;
            if self.over >= TRIM_AFTER_TICKS {
                self.over = 0;
                self.drop_oldest();
            }
        } else {
            self.over = 0;
        }
        if !self.playing && self.queued >= target {
            self.playing = true;
        }
    }

    /// Drops the oldest packet, to shorten the delay: the stream goes on from the next one as if
    /// the dropped one had played (it is not a loss to conceal).
    fn drop_oldest(&mut self) {
        if let Some(q) = self.queue.pop_front() {
            self.queued -= q.samples;
            let end = q.time + u64::from(q.samples);
            self.next_time = self.next_time.map(|t| t.max(end));
        }
    }

    /// The next packet, noted as taken this tick (for passthrough listeners).
    fn take(&mut self) -> Option<Queued> {
        let q = self.queue.pop_front()?;
        self.queued -= q.samples;
        self.next_time = Some(q.time + u64::from(q.samples));
        self.taken.push((q.data.clone(), q.samples));
        Some(q)
    }

    /// The next packet as a step to play.
    fn take_step(&mut self) -> Step {
        self.take().map_or(Step::Dry, |q| Step::Packet { data: q.data, samples: q.samples, level: q.level })
    }

    /// When the RTP times show packets missing before the next one (a gap of a tick up to
    /// `MAX_CONCEALED`), one tick of them is given up: the playout point moves on by a tick and
    /// the next packet waits its turn. Returns `None` when nothing is missing, else the next packet
    /// when it directly follows a single lost one (it carries that one's FEC).
    fn lose_a_tick(&mut self) -> Option<Option<Arc<[u8]>>> {
        let (expected, head) = (self.next_time?, self.queue.front()?);
        let gap = head.time.saturating_sub(expected);
        if !(u64::from(TICK)..=MAX_CONCEALED).contains(&gap) {
            return None;
        }
        let fec = (gap == u64::from(TICK)).then(|| head.data.clone());
        self.next_time = Some(expected + u64::from(TICK));
        Some(fec)
    }

    /// What the decoding path plays next: the next packet, or a lost one's concealment.
    fn next_step(&mut self) -> Step {
        match self.lose_a_tick() {
            Some(fec) => Step::Lost(fec),
            None => self.take_step(),
        }
    }

    /// The passthrough path's tick: the packets that cover it, none while a long one taken
    /// earlier still plays, and none for a lost packet's tick (the far end conceals it, as the
    /// decoding path does here).
    fn forward(&mut self) {
        if self.forwarded_ahead >= TICK {
            self.covered = true;
            self.forwarded_ahead -= TICK;
            return;
        }
        if self.forwarded_ahead == 0 && self.lose_a_tick().is_some() {
            return;
        }
        while self.forwarded_ahead < TICK {
            let Some(samples) = self.queue.front().map(|q| q.samples) else {
                if self.taken.is_empty() && self.forwarded_ahead == 0 {
                    // Ran dry: wait for the prebuffer again.
                    self.playing = false;
                }
                break;
            };
            self.take();
            self.forwarded_ahead += samples;
        }
        self.forwarded_ahead = self.forwarded_ahead.saturating_sub(TICK);
    }
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
    /// Session stream → mixer stream, stable for the task's life (a `streams` subset may name a
    /// stream before it is published).
    ids: HashMap<StreamId, media_mixer::StreamId>,
    listeners: HashMap<u64, Listener>,
}

/// One call listening.
struct Listener {
    frames: mpsc::Sender<ListenerFrame>,
    /// Its own stream (never heard).
    own: media_mixer::StreamId,
    /// The only streams it hears, when the dial named them.
    subset: Option<Vec<media_mixer::StreamId>>,
    passthrough: bool,
    rate: u32,
}

impl Listener {
    fn hears(&self, id: media_mixer::StreamId) -> bool {
        self.own != id && self.subset.as_ref().is_none_or(|s| s.contains(&id))
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
            listeners: HashMap::new(),
        }
    }

    fn mixer_id(&mut self, stream: &StreamId) -> media_mixer::StreamId {
        let next = media_mixer::StreamId(self.ids.len() as u64 + 1);
        *self.ids.entry(stream.clone()).or_insert(next)
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
    }

    /// Moves the mix to the highest rate a listener takes (48 kHz with no listener), re-creating
    /// the mixer when that changes; the decoders are made again at the new rate when next needed.
    /// Queued packets are kept, and so is what is left of each listener's announcement
    /// (resampled to the new rate).
    fn follow_listener_rates(&mut self) {
        let rate = self.listeners.values().map(|l| l.rate).max().unwrap_or(48_000);
        if rate == self.rate {
            return;
        }
        let mut mixer = Mixer::new(MixerConfig { frame_len: frame_len(rate), ..MixerConfig::default() });
        debug!(session = %self.session, from = self.rate, to = rate, "the mix follows its listeners' rate");
        for input in self.inputs.values_mut() {
            mixer.add_stream(input.mixer_id);
            input.decoder = None;
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
                self.mixer.add_listener(ListenerId(call), Some(own), subset.clone());
                self.listeners.insert(call, Listener { frames, own, subset, passthrough, rate });
                self.follow_listener_rates();
            }
            AudioCommand::Leave { call } => {
                self.mixer.remove_listener(ListenerId(call));
                self.listeners.remove(&call);
                self.follow_listener_rates();
            }
            AudioCommand::Play { call, prompt } => match prompt.pcm(self.rate) {
                Ok(pcm) => {
                    let _ = self.mixer.play_to(ListenerId(call), &pcm);
                }
                Err(e) => warn!(call, error = %e, "announcement unavailable"),
            },
        }
    }

    /// Each listener's heard inputs this tick; a passthrough listener hearing exactly one gets
    /// that input's packets.
    fn tick(&mut self) {
        let present: Vec<media_mixer::StreamId> = self.inputs.values().map(|i| i.mixer_id).collect();
        // Listeners that forward one stream's packets this tick, and which stream.
        let forwarding: HashMap<u64, media_mixer::StreamId> = self
            .listeners
            .iter()
            .filter(|(call, l)| l.passthrough && !self.mixer.is_playing(ListenerId(**call)))
            .filter_map(|(call, l)| {
                let mut heard = present.iter().filter(|id| l.hears(**id));
                match (heard.next(), heard.next()) {
                    (Some(only), None) => Some((*call, *only)),
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
            input.receive();
            if !input.playing {
                continue;
            }
            if !needs_pcm {
                // Forwarded only: packets are taken as their durations fall due, never decoded.
                input.ahead.clear();
                input.forward();
                continue;
            }
            input.forwarded_ahead = 0;
            if input.ahead.len() >= n {
                // The rest of a long packet decoded earlier plays first; no packet is taken.
                input.covered = true;
                let _ = self.mixer.push_frame(id, &input.ahead[..n], None);
                input.ahead.drain(..n);
                continue;
            }
            let step = input.next_step();
            if matches!(step, Step::Dry) {
                // Ran dry: conceal this tick, then wait for the prebuffer again.
                input.playing = false;
            }
            // Out of the input while it decodes, so that the input can hand over packets meanwhile;
            // made at first need, at the mix's rate.
            let mut decoder = input.decoder.take();
            let rate = self.rate;
            // This tick's packet (or its concealment), then, for packets shorter than a tick, as
            // many of those already queued as make one.
            let mut next = step;
            loop {
                let silent = match &next {
                    // Silent by its own account (RFC 6464): never decoded, its length of silence
                    // played instead. The decoder is dropped with the audio it was decoding; the
                    // next packet that is not silent starts a fresh one.
                    Step::Packet { samples, level: Some(level), .. } if *level >= silence => Some(*samples),
                    // Nothing to conceal with: what the stream last played was silence.
                    Step::Lost(_) | Step::Dry if decoder.is_none() => Some(TICK),
                    _ => None,
                };
                let decoded = match silent {
                    Some(samples) => {
                        decoder = None;
                        input.pcm.clear();
                        input.pcm.resize(samples as usize * rate as usize / 48_000, 0);
                        Ok(())
                    }
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
                        match &next {
                            Step::Packet { data, .. } => d.decode(data, &mut input.pcm),
                            Step::Lost(Some(after)) => d.recover_fec(after, &mut input.pcm),
                            Step::Lost(None) | Step::Dry => d.conceal(&mut input.pcm),
                        }
                    }
                };
                if decoded.is_err() {
                    break;
                }
                input.ahead.extend_from_slice(&input.pcm);
                if input.ahead.len() >= n {
                    break;
                }
                match input.next_step() {
                    Step::Dry => break,
                    step => next = step,
                }
            }
            input.decoder = decoder;
            if input.ahead.len() >= n {
                let _ = self.mixer.push_frame(id, &input.ahead[..n], None);
                input.ahead.drain(..n);
            }
        }
        self.mixer.mix();
        let mut out = vec![0i16; frame_len(self.rate)];
        for (call, l) in &self.listeners {
            // A call that cannot keep up loses this frame, not the others.
            match forwarding.get(call) {
                Some(only) => {
                    let Some(input) = self.inputs.values().find(|i| i.mixer_id == *only) else { continue };
                    if input.taken.is_empty() && !input.covered {
                        // Nothing of the stream for this tick (stalled, buffering, or a packet
                        // lost): the call's clock goes on all the same.
                        let _ = l.frames.try_send(ListenerFrame::Idle);
                    }
                    for (packet, samples) in &input.taken {
                        let _ = l.frames.try_send(ListenerFrame::Opus { packet: packet.clone(), samples: *samples });
                    }
                }
                None => {
                    if self.mixer.output(ListenerId(*call), &mut out).is_ok() {
                        let _ =
                            l.frames.try_send(ListenerFrame::Pcm { rate: self.rate, pcm: Arc::from(out.as_slice()) });
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
            _ = ticker.tick() => state.tick(),
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

    /// The frame a call got this tick: its rate and loudest sample.
    fn heard(rx: &mut mpsc::Receiver<ListenerFrame>) -> (u32, i16) {
        match rx.try_recv() {
            Ok(ListenerFrame::Pcm { rate, pcm }) => (rate, pcm.iter().map(|s| s.saturating_abs()).max().unwrap_or(0)),
            other => panic!("expected PCM, got {other:?}"),
        }
    }

    /// The passthrough path takes packets as their durations fall due: whatever their length,
    /// from the tick it starts, the audio forwarded covers every tick and runs ahead by less than
    /// one packet; a packet that is not Opus is dropped.
    #[test]
    fn forwarding_follows_the_packets_durations() {
        // Table-of-contents bytes: CELT 2.5 ms, SILK 10, 20, 40 and 60 ms, all code 0.
        for (toc, samples) in [(0x80u8, 120u32), (0x00, 480), (0x08, 960), (0x10, 1920), (0x18, 2880)] {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut input = Input::new(media_mixer::StreamId(1), rx);
            let (mut sent, mut forwarded, mut started) = (0u64, 0u32, None);
            let mut order = Vec::new();
            for tick in 0..200u32 {
                // Packets arrive at their own pace: each once its audio has been captured.
                while (sent + 1) * u64::from(samples) <= u64::from(tick + 1) * u64::from(TICK) {
                    tx.send(fake_opus(toc, samples, sent)).expect("send");
                    sent += 1;
                }
                if tick == 100 {
                    // Garbage in between: dropped, the pace kept.
                    tx.send(MediaFrame { data: Arc::from([0x03u8].as_slice()), ..fake_opus(toc, samples, 0) })
                        .expect("send");
                }
                forward_tick(&mut input);
                if !input.playing {
                    assert!(started.is_none(), "{samples}: ran dry at tick {tick}");
                    continue;
                }
                let start = *started.get_or_insert(tick);
                assert!(!input.taken.is_empty() || input.covered, "{samples}: tick {tick} idle");
                for (p, d) in &input.taken {
                    assert_eq!(*d, samples);
                    order.push(p[1]);
                }
                forwarded += input.taken.iter().map(|(_, d)| d).sum::<u32>();
                let due = (tick - start + 1) * TICK;
                assert!(forwarded >= due && forwarded < due + samples, "{samples}: tick {tick}, {forwarded} for {due}");
            }
            assert!(started.is_some_and(|s| s <= 6), "{samples}: started at {started:?}");
            assert!(order.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{samples}: in order, none lost");
        }
    }

    /// A packet with this table-of-contents byte and duration, numbered `n` (second byte).
    fn fake_opus(toc: u8, samples: u32, n: u64) -> MediaFrame {
        MediaFrame {
            codec: FrameCodec::Opus,
            rtp_time: n * u64::from(samples),
            data: Arc::from([toc, n as u8, 0xAA].as_slice()),
            contiguous: true,
            audio_level: None,
        }
    }

    /// One tick of an input that is only forwarded, as `State::tick` runs it.
    fn forward_tick(input: &mut Input) {
        input.taken.clear();
        input.covered = false;
        input.receive();
        if input.playing {
            input.forward();
        }
    }

    /// Forwarded packets come out in RTP time order, once each, whatever the network did; a lost
    /// one leaves its tick idle (the call's clock goes on, the far end conceals).
    #[test]
    fn forwarding_reorders_drops_duplicates_and_leaves_a_lost_tick_idle() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut input = Input::new(media_mixer::StreamId(1), rx);
        let mut arrivals: Vec<Vec<u64>> = (0..40).map(|n| vec![n]).collect();
        arrivals[10].clear();
        arrivals[15] = vec![16];
        arrivals[16] = vec![15];
        arrivals[20].push(20);
        arrivals[25].push(19);
        let (mut order, mut idle) = (Vec::new(), Vec::new());
        for (tick, packets) in arrivals.iter().chain(&[vec![], vec![]]).enumerate() {
            for n in packets {
                tx.send(fake_opus(0x08, 960, *n)).expect("send");
            }
            forward_tick(&mut input);
            order.extend(input.taken.iter().map(|(p, _)| p[1]));
            if input.playing && input.taken.is_empty() && !input.covered {
                idle.push(tick);
            }
        }
        let want: Vec<u8> = (0..40).filter(|n| *n != 10).collect();
        assert_eq!(order, want, "in order, once each, the lost one missing");
        assert_eq!(idle.len(), 1, "one idle tick, the lost packet's: {idle:?}");
    }

    /// The decoding path after a burst: the queue is trimmed back towards the prebuffer, a packet
    /// per second, and a trimmed packet is not mistaken for a lost one (no concealment follows).
    #[test]
    fn a_burst_is_trimmed_back_without_concealment() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut input = Input::new(media_mixer::StreamId(1), rx);
        let (mut sent, mut lost) = (0u64, 0);
        for tick in 0..1000u64 {
            // 200 ms at once at tick 10, then one packet a tick.
            let upto = if tick < 10 { tick + 1 } else { tick + 11 };
            while sent < upto {
                tx.send(fake_opus(0x08, 960, sent)).expect("send");
                sent += 1;
            }
            input.taken.clear();
            input.receive();
            if input.playing && matches!(input.next_step(), Step::Lost(_)) {
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "no tick concealed");
        let target = PREBUFFER;
        assert!(input.queued <= target + 2 * TICK, "trimmed back: {} ms queued", input.queued / 48);
    }

    /// 50 Opus packets of 1 kHz, then 50 of silence.
    fn tone_then_silence() -> Vec<Arc<[u8]>> {
        let mut enc =
            media_mixer::opus::OpusEncoder::new(media_mixer::opus::OpusEncoderConfig::default()).expect("enc");
        (0..100u64)
            .map(|n| {
                let pcm: Vec<i16> = (0..960u64)
                    .map(|i| {
                        let t = (n * 960 + i) as f64 / 48_000.0;
                        if n < 50 {
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
        let mut s = state().await;
        let mut rx = listen(&mut s, 1, 48_000);
        let stream = StreamId::from_wire("talker");
        let id = s.mixer_id(&stream);
        s.mixer.add_stream(id);
        let (tx, frames) = mpsc::unbounded_channel();
        s.inputs.insert(stream, Input::new(id, frames));
        let mut peaks = Vec::new();
        for tick in arrivals {
            for n in tick {
                let (data, audio_level) = packets[*n].clone();
                let rtp_time = *n as u64 * 960;
                tx.send(MediaFrame { codec: FrameCodec::Opus, rtp_time, data, contiguous: true, audio_level })
                    .expect("send");
            }
            s.tick();
            peaks.push(heard(&mut rx).1);
        }
        (peaks, s)
    }

    /// Packets whose audio-level header says they are silent are not decoded (the stream has no
    /// decoder while it is quiet), and are heard as silence; the first packet that is not silent
    /// is decoded, by a fresh decoder, and heard at once.
    #[tokio::test]
    async fn packets_silent_by_their_header_are_never_decoded() {
        let tone = tone_then_silence();
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
        let packets: Vec<(Arc<[u8]>, Option<u8>)> = tone_then_silence().into_iter().map(|p| (p, None)).collect();
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

    #[tokio::test]
    async fn the_mix_follows_the_rates_and_an_announcement_survives_the_switch() {
        let mut s = state().await;
        let mut narrow = listen(&mut s, 1, 8_000);
        assert_eq!(s.rate, 8_000, "a G.711 call alone is mixed at 8 kHz");
        s.command(AudioCommand::Play { call: 1, prompt: Prompt::YouHaveBeenMuted });
        for _ in 0..10 {
            s.tick();
        }
        assert_eq!(heard(&mut narrow).0, 8_000);
        let mut wide = listen(&mut s, 2, 16_000);
        assert_eq!(s.rate, 16_000, "a G.722 call lifts the mix to 16 kHz");
        assert!(s.mixer.is_playing(ListenerId(1)), "the announcement was carried over");
        while narrow.try_recv().is_ok() {}
        s.tick();
        let (rate, peak) = heard(&mut narrow);
        assert_eq!(rate, 16_000);
        assert!(peak > 500, "call 1 still hears its announcement at the new rate: peak {peak}");
        let (rate, peak) = heard(&mut wide);
        assert_eq!((rate, peak), (16_000, 0), "call 2 hears nothing: the announcement is not its");
        s.command(AudioCommand::Leave { call: 2 });
        assert_eq!(s.rate, 8_000, "back to 8 kHz when the G.722 call leaves");
        assert!(s.mixer.is_playing(ListenerId(1)));
        s.tick();
        assert_eq!(heard(&mut narrow).0, 8_000);
        s.command(AudioCommand::Leave { call: 1 });
        assert_eq!(s.rate, 48_000, "no listener: the default rate");
    }
}
