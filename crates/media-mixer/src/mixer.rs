//! The audio mixer: one 20 ms tick at a time, every stream's frame decoded
//! once, and for each listener the mix of everything it should hear minus
//! its own voice (mix-minus), or of an explicit subset.
//!
//! Cheap when people are quiet: a stream that sends nothing this tick (DTX,
//! or the caller skipped decoding because the RTP audio-level extension said
//! silence) costs nothing; a decoded frame below the silence threshold is
//! not summed; `max_active` caps how many of the loudest are mixed.

use crate::error::Error;
use crate::level::level_dbov;
use std::collections::BTreeMap;

/// An input stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// An output (one SIP call, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u64);

/// Settings of a [`Mixer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixerConfig {
    /// Samples per frame (20 ms at the mixing rate: 960 at 48 kHz).
    pub frame_len: usize,
    /// Frames quieter than this (in -dBov, RFC 6464 scale) are not mixed.
    pub silence_dbov: u8,
    /// Mix at most this many of the loudest streams.
    pub max_active: Option<usize>,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig { frame_len: 960, silence_dbov: 70, max_active: None }
    }
}

#[derive(Debug, Clone)]
struct Stream {
    frame: Vec<i16>,
    has_frame: bool,
    level: u8,
    gain_q12: i32,
    muted: bool,
    active: bool,
}

#[derive(Debug, Clone)]
struct Listener {
    own: Option<StreamId>,
    subset: Option<Vec<StreamId>>,
    /// The announcement playing to this listener only (what is left of it).
    prompt: std::collections::VecDeque<i16>,
    /// The one to play after it: only the latest waits (a mute state toggled ten times in a
    /// second is announced once, as it ends up).
    next: Vec<i16>,
}

/// The longest announcement [`Mixer::play_to`] takes, in samples (30 s at 48 kHz); longer ones
/// are cut.
pub const MAX_ANNOUNCEMENT: usize = 30 * 48_000;

/// The mixer. See the module documentation.
#[derive(Debug)]
pub struct Mixer {
    config: MixerConfig,
    streams: BTreeMap<StreamId, Stream>,
    listeners: BTreeMap<ListenerId, Listener>,
    sum: Vec<i32>,
    mixed: usize,
}

impl Mixer {
    /// Its settings.
    pub fn config(&self) -> &MixerConfig {
        &self.config
    }

    /// An empty mixer.
    pub fn new(config: MixerConfig) -> Mixer {
        Mixer { sum: vec![0; config.frame_len], config, streams: BTreeMap::new(), listeners: BTreeMap::new(), mixed: 0 }
    }

    /// Adds an input stream (unity gain, not muted).
    pub fn add_stream(&mut self, id: StreamId) {
        self.streams.entry(id).or_insert_with(|| Stream {
            frame: vec![0; self.config.frame_len],
            has_frame: false,
            level: 127,
            gain_q12: 4096,
            muted: false,
            active: false,
        });
    }

    /// Removes a stream; listeners that named it just stop hearing it.
    pub fn remove_stream(&mut self, id: StreamId) {
        self.streams.remove(&id);
    }

    /// Sets a stream's gain (1.0 = unity, clamped to 0..=8).
    pub fn set_gain(&mut self, id: StreamId, gain: f32) -> Result<(), Error> {
        let s = self.streams.get_mut(&id).ok_or(Error::Unknown("stream"))?;
        s.gain_q12 = (gain.clamp(0.0, 8.0) * 4096.0).round() as i32;
        Ok(())
    }

    /// Mutes or unmutes a stream for everyone.
    pub fn set_muted(&mut self, id: StreamId, muted: bool) -> Result<(), Error> {
        self.streams.get_mut(&id).ok_or(Error::Unknown("stream"))?.muted = muted;
        Ok(())
    }

    /// Adds a listener: `own` is excluded from what it hears; `subset`, when
    /// given, limits it to those streams (streams added later are not heard).
    pub fn add_listener(&mut self, id: ListenerId, own: Option<StreamId>, subset: Option<Vec<StreamId>>) {
        let mut subset = subset;
        if let Some(s) = subset.as_mut() {
            // A stream named twice is still heard once.
            s.sort_unstable();
            s.dedup();
        }
        self.listeners
            .insert(id, Listener { own, subset, prompt: std::collections::VecDeque::new(), next: Vec::new() });
    }

    /// Plays an announcement (PCM at the mixing rate, at most [`MAX_ANNOUNCEMENT`] samples) that
    /// only this listener hears, mixed over what it hears otherwise. One already playing is
    /// finished first; of those given meanwhile only the last waits for it, so a burst of them
    /// neither piles up nor lags behind.
    pub fn play_to(&mut self, id: ListenerId, pcm: &[i16]) -> Result<(), Error> {
        let l = self.listeners.get_mut(&id).ok_or(Error::Unknown("listener"))?;
        let pcm = &pcm[..pcm.len().min(MAX_ANNOUNCEMENT)];
        if l.prompt.is_empty() {
            l.prompt.extend(pcm.iter().copied());
        } else {
            l.next.clear();
            l.next.extend_from_slice(pcm);
        }
        Ok(())
    }

    /// Takes what is left of this listener's announcement (empty when none plays): to move it to
    /// another mixer, at another rate, without cutting it.
    pub fn take_prompt(&mut self, id: ListenerId) -> Vec<i16> {
        self.listeners
            .get_mut(&id)
            .map(|l| l.prompt.drain(..).chain(std::mem::take(&mut l.next)).collect())
            .unwrap_or_default()
    }

    /// Whether an announcement is still playing to this listener.
    pub fn is_playing(&self, id: ListenerId) -> bool {
        self.listeners.get(&id).is_some_and(|l| !l.prompt.is_empty())
    }

    /// Removes a listener.
    pub fn remove_listener(&mut self, id: ListenerId) {
        self.listeners.remove(&id);
    }

    /// Gives a stream's decoded frame for this tick. `level` is the RFC 6464
    /// level when the packet carried one (saves measuring it).
    pub fn push_frame(&mut self, id: StreamId, pcm: &[i16], level: Option<u8>) -> Result<(), Error> {
        let len = self.config.frame_len;
        let s = self.streams.get_mut(&id).ok_or(Error::Unknown("stream"))?;
        if pcm.len() != len {
            return Err(Error::FrameSize { got: pcm.len(), expected: len });
        }
        s.frame.copy_from_slice(pcm);
        s.has_frame = true;
        s.level = level.unwrap_or_else(|| level_dbov(pcm));
        Ok(())
    }

    /// Mixes this tick: decides the active streams and sums them once.
    pub fn mix(&mut self) {
        let threshold = self.config.silence_dbov;
        let mut candidates: Vec<(u8, StreamId)> = self
            .streams
            .iter_mut()
            .filter_map(|(id, s)| {
                s.active = false;
                (s.has_frame && !s.muted && s.gain_q12 > 0 && s.level < threshold).then_some((s.level, *id))
            })
            .collect();
        if let Some(max) = self.config.max_active {
            // Lower -dBov is louder.
            candidates.sort_unstable();
            candidates.truncate(max);
        }
        self.sum.iter_mut().for_each(|x| *x = 0);
        self.mixed = candidates.len();
        for (_, id) in candidates {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            s.active = true;
            add_scaled(&mut self.sum, &s.frame, s.gain_q12);
        }
    }

    /// How many streams were summed this tick (the cost driver).
    pub fn mixed_count(&self) -> usize {
        self.mixed
    }

    /// Whether a stream was mixed this tick (active speaker information).
    pub fn is_active(&self, id: StreamId) -> bool {
        self.streams.get(&id).is_some_and(|s| s.active)
    }

    /// Each stream's level this tick (127 when it sent nothing).
    pub fn levels(&self) -> impl Iterator<Item = (StreamId, u8)> + '_ {
        self.streams.iter().map(|(id, s)| (*id, if s.has_frame { s.level } else { 127 }))
    }

    /// Writes what `listener` hears this tick into `out` (saturated, never
    /// wrapped). Returns false when it hears nothing (all silent), in which
    /// case `out` holds silence and the caller may send comfort noise or DTX.
    pub fn output(&self, listener: ListenerId, out: &mut [i16]) -> Result<bool, Error> {
        let heard = self.output_mix(listener, out)?;
        let l = self.listeners.get(&listener).ok_or(Error::Unknown("listener"))?;
        if l.prompt.is_empty() {
            return Ok(heard);
        }
        for (o, p) in out.iter_mut().zip(l.prompt.iter()) {
            *o = saturate(i32::from(*o) + i32::from(*p));
        }
        Ok(true)
    }

    fn output_mix(&self, listener: ListenerId, out: &mut [i16]) -> Result<bool, Error> {
        let l = self.listeners.get(&listener).ok_or(Error::Unknown("listener"))?;
        if out.len() != self.config.frame_len {
            return Err(Error::FrameSize { got: out.len(), expected: self.config.frame_len });
        }
        match &l.subset {
            None => {
                let own = l.own.and_then(|o| self.streams.get(&o)).filter(|s| s.active);
                let heard = self.mixed - usize::from(own.is_some());
                match own {
                    Some(s) => {
                        for ((o, sum), x) in out.iter_mut().zip(&self.sum).zip(&s.frame) {
                            *o = saturate(sum - ((i32::from(*x) * s.gain_q12) >> 12));
                        }
                    }
                    None => {
                        for (o, sum) in out.iter_mut().zip(&self.sum) {
                            *o = saturate(*sum);
                        }
                    }
                }
                Ok(heard > 0)
            }
            Some(subset) => {
                let heard: Vec<&Stream> = subset
                    .iter()
                    .filter(|id| Some(**id) != l.own)
                    .filter_map(|id| self.streams.get(id).filter(|s| s.active))
                    .collect();
                // Sum in blocks on the stack: no frame-sized buffer per call.
                const BLOCK: usize = 64;
                for (b, chunk) in out.chunks_mut(BLOCK).enumerate() {
                    let mut acc = [0i32; BLOCK];
                    let acc = &mut acc[..chunk.len()];
                    let start = b * BLOCK;
                    for s in &heard {
                        add_scaled(acc, &s.frame[start..start + chunk.len()], s.gain_q12);
                    }
                    for (o, a) in chunk.iter_mut().zip(acc.iter()) {
                        *o = saturate(*a);
                    }
                }
                let heard = heard.len();
                Ok(heard > 0)
            }
        }
    }

    /// Ends the tick: every stream must bring a new frame for the next one.
    pub fn end_tick(&mut self) {
        for s in self.streams.values_mut() {
            s.has_frame = false;
        }
        let n = self.config.frame_len;
        for l in self.listeners.values_mut() {
            let k = n.min(l.prompt.len());
            l.prompt.drain(..k);
            if l.prompt.is_empty() && !l.next.is_empty() {
                l.prompt.extend(std::mem::take(&mut l.next));
            }
        }
    }
}

fn add_scaled(acc: &mut [i32], frame: &[i16], gain_q12: i32) {
    if gain_q12 == 4096 {
        for (a, x) in acc.iter_mut().zip(frame) {
            *a += i32::from(*x);
        }
    } else {
        for (a, x) in acc.iter_mut().zip(frame) {
            *a += (i32::from(*x) * gain_q12) >> 12;
        }
    }
}

fn saturate(x: i32) -> i16 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(v: i16) -> Vec<i16> {
        (0..960).map(|i| if i % 2 == 0 { v } else { -v }).collect()
    }

    fn mixer(n: u64) -> Mixer {
        let mut m = Mixer::new(MixerConfig::default());
        for i in 0..n {
            m.add_stream(StreamId(i));
            m.add_listener(ListenerId(i), Some(StreamId(i)), None);
        }
        m
    }

    #[test]
    fn mix_minus_excludes_exactly_the_listener() {
        let mut m = mixer(3);
        for i in 0..3u64 {
            m.push_frame(StreamId(i), &tone(100 * (i as i16 + 1)), None).expect("push");
        }
        m.mix();
        let mut out = vec![0; 960];
        for i in 0..3u64 {
            assert!(m.output(ListenerId(i), &mut out).expect("out"));
            let expected: i16 = (0..3u64).filter(|j| *j != i).map(|j| 100 * (j as i16 + 1)).sum();
            assert_eq!(out[0], expected, "listener {i}");
            assert_eq!(out[1], -expected);
        }
    }

    #[test]
    fn no_wrap_around_at_full_scale() {
        let mut m = mixer(3);
        m.add_listener(ListenerId(9), None, None);
        for i in 0..3 {
            m.push_frame(StreamId(i), &tone(i16::MAX), None).expect("push");
        }
        m.mix();
        let mut out = vec![0; 960];
        m.output(ListenerId(9), &mut out).expect("out");
        assert_eq!((out[0], out[1]), (i16::MAX, i16::MIN), "three full-scale streams clip, never wrap");
        m.output(ListenerId(0), &mut out).expect("out");
        assert_eq!(out[0], i16::MAX);
    }

    #[test]
    fn silence_costs_nothing_and_cap_keeps_the_loudest() {
        let mut m = mixer(50);
        m.push_frame(StreamId(3), &tone(8000), None).expect("push");
        m.push_frame(StreamId(4), &tone(2000), None).expect("push");
        m.push_frame(StreamId(5), &tone(1), None).expect("push"); // below the threshold
        m.mix();
        assert_eq!(m.mixed_count(), 2, "47 streams sent nothing, one is too quiet");
        assert!(m.is_active(StreamId(3)) && !m.is_active(StreamId(5)));
        let mut out = vec![0; 960];
        assert!(!m.output(ListenerId(99), &mut out).is_ok_and(|b| b), "unknown listener is an error");
        m.end_tick();
        let mut capped = Mixer::new(MixerConfig { max_active: Some(1), ..MixerConfig::default() });
        for i in 0..3 {
            capped.add_stream(StreamId(i));
        }
        capped.add_listener(ListenerId(0), None, None);
        capped.push_frame(StreamId(0), &tone(1000), None).expect("push");
        capped.push_frame(StreamId(1), &tone(9000), None).expect("push");
        capped.push_frame(StreamId(2), &tone(3000), None).expect("push");
        capped.mix();
        capped.output(ListenerId(0), &mut out).expect("out");
        assert_eq!(out[0], 9000, "only the loudest");
    }

    #[test]
    fn a_prompt_reaches_one_listener_only_and_ends() {
        let mut m = mixer(2);
        m.play_to(ListenerId(1), &vec![700; 960 * 2]).expect("play");
        let mut out = vec![0; 960];
        for tick in 0..3 {
            m.push_frame(StreamId(0), &tone(100), None).expect("push");
            m.mix();
            m.output(ListenerId(1), &mut out).expect("out");
            let expected = if tick < 2 { 800 } else { 100 };
            assert_eq!(out[0], expected, "tick {tick}: listener 1 hears stream 0 plus the prompt while it lasts");
            m.output(ListenerId(0), &mut out).expect("out");
            assert_eq!(out[0], 0, "listener 0 hears neither itself nor listener 1's prompt");
            m.end_tick();
        }
        assert!(!m.is_playing(ListenerId(1)));
        assert!(m.play_to(ListenerId(5), &[1]).is_err());
        // What is left of a prompt can be taken away (to move it to another mixer).
        m.play_to(ListenerId(1), &[5; 1500]).expect("play");
        m.mix();
        m.end_tick();
        assert_eq!(m.take_prompt(ListenerId(1)), vec![5; 1500 - 960]);
        assert!(!m.is_playing(ListenerId(1)));
        assert!(m.take_prompt(ListenerId(5)).is_empty());
    }

    /// Announcements given faster than they play (a party keying *6*6*6...): the one playing
    /// finishes, then only the last one given, whatever came between; nothing piles up.
    #[test]
    fn announcements_do_not_pile_up() {
        let mut m = mixer(2);
        m.play_to(ListenerId(1), &[1; 1500]).expect("first");
        for k in 2..1000 {
            m.play_to(ListenerId(1), &vec![k; 48_000]).expect("more");
        }
        let mut out = vec![0; 960];
        let mut heard = Vec::new();
        for _ in 0..60 {
            m.mix();
            m.output(ListenerId(1), &mut out).expect("out");
            heard.push(out[0]);
            m.end_tick();
        }
        assert_eq!(&heard[..2], [1, 1], "the first plays to its end");
        assert!(heard[2..52].iter().all(|&v| v == 999), "then the last given: {heard:?}");
        assert!(heard[52..].iter().all(|&v| v == 0), "and nothing after it");
        m.play_to(ListenerId(1), &vec![3; MAX_ANNOUNCEMENT + 1000]).expect("long");
        assert_eq!(m.take_prompt(ListenerId(1)).len(), MAX_ANNOUNCEMENT, "cut");
    }

    /// A stream named twice in a subset is heard once, not twice as loud (nor summed once per
    /// copy of a hostile list).
    #[test]
    fn a_subset_naming_a_stream_twice_hears_it_once() {
        let mut m = mixer(2);
        m.add_listener(ListenerId(7), None, Some(vec![StreamId(0), StreamId(0), StreamId(0)]));
        m.push_frame(StreamId(0), &tone(1000), None).expect("push");
        m.mix();
        let mut out = vec![0; 960];
        m.output(ListenerId(7), &mut out).expect("out");
        assert_eq!(out[0], 1000);
    }

    #[test]
    fn subsets_gain_and_mute() {
        let mut m = mixer(3);
        m.add_listener(ListenerId(7), None, Some(vec![StreamId(0), StreamId(2)]));
        m.set_gain(StreamId(2), 0.5).expect("gain");
        m.set_muted(StreamId(0), true).expect("mute");
        for i in 0..3 {
            m.push_frame(StreamId(i), &tone(1000), None).expect("push");
        }
        m.mix();
        let mut out = vec![0; 960];
        m.output(ListenerId(7), &mut out).expect("out");
        assert_eq!(out[0], 500, "stream 0 muted, stream 1 not in the subset, stream 2 at half gain");
        assert!(m.push_frame(StreamId(1), &[0; 10], None).is_err());
        assert!(m.set_gain(StreamId(42), 1.0).is_err());
    }
}
