//! Packet-loss concealment for codecs that have none of their own (G.711, G.722): lost audio is
//! replaced by the last pitch period of what was heard, repeated (the approach of ITU-T G.711
//! Appendix I, written here from its description).
//!
//! - The pitch period is found once per loss, by normalised cross-correlation of the last 10 ms of
//!   history with itself one period earlier, over periods of 2.5 to 15 ms (400 down to 66 Hz).
//! - The first 10 ms repeat one period; after that two, then three periods are cycled (one
//!   period repeated for long sounds buzzy).
//! - The first 10 ms are played at full level; from there the level falls by a fifth every 10 ms,
//!   so a loss longer than 60 ms ends in silence.
//! - When audio returns, its start is cross-faded from the synthetic signal (a quarter period,
//!   plus 4 ms per 10 ms lost, at most 10 ms), so neither edge of the loss clicks.
//!
//! Works at any sample rate; frames of any length.
//!
//! ```
//! use media_mixer::plc::Concealer;
//!
//! let mut plc = Concealer::new(8000);
//! let mut heard: Vec<i16> =
//!     (0..800).map(|i| (8000.0 * (i as f64 * 2.0 * std::f64::consts::PI / 40.0).sin()) as i16).collect();
//! plc.good(&mut heard);
//! let mut lost = Vec::new();
//! plc.conceal(160, &mut lost);
//! assert_eq!(lost.len(), 160);
//! assert!(lost.iter().any(|s| s.abs() > 7000), "the tone goes on through the loss");
//! ```

/// The concealment state of one stream.
#[derive(Debug, Clone)]
pub struct Concealer {
    rate: usize,
    /// The last audio heard (or made up), newest last.
    history: Vec<i16>,
    /// The pitch period of the current loss, once it started.
    pitch: usize,
    /// What is cycled through: the last one, two or three periods of the history at the loss.
    cycle: Vec<i16>,
    /// The history's last three periods when the loss started (the cycle grows into them).
    source: Vec<i16>,
    /// Position in `cycle`.
    at: usize,
    /// Samples concealed in the current loss (0: not in a loss).
    lost: usize,
}

/// The history kept: enough for the longest period searched, its comparison window, and three
/// periods to cycle.
const HISTORY_MS: usize = 50;

impl Concealer {
    /// A concealer for audio at `rate` Hz.
    pub fn new(rate: u32) -> Concealer {
        let rate = rate.max(400) as usize;
        Concealer {
            rate,
            history: Vec::with_capacity(rate * HISTORY_MS / 1000 * 2),
            pitch: 0,
            cycle: Vec::new(),
            source: Vec::new(),
            at: 0,
            lost: 0,
        }
    }

    fn ms(&self, ms: usize) -> usize {
        self.rate * ms / 1000
    }

    fn remember(&mut self, pcm: &[i16]) {
        let keep = self.ms(HISTORY_MS);
        self.history.extend_from_slice(pcm);
        if self.history.len() > keep {
            let drop = self.history.len() - keep;
            self.history.drain(..drop);
        }
    }

    /// Audio that was received, in order. After a loss, its start is cross-faded (in place) from
    /// the concealment's continuation.
    pub fn good(&mut self, pcm: &mut [i16]) {
        if self.lost > 0 && self.pitch > 0 {
            let len = (self.pitch / 4 + self.ms(4) * (self.lost / self.ms(10).max(1))).min(self.ms(10)).min(pcm.len());
            let mut synthetic = Vec::with_capacity(len);
            self.synthesise(len, &mut synthetic);
            for (i, (s, y)) in pcm.iter_mut().zip(synthetic).enumerate() {
                let w = (i + 1) as f32 / (len + 1) as f32;
                *s = (f32::from(*s) * w + f32::from(y) * (1.0 - w)).round() as i16;
            }
        }
        self.lost = 0;
        self.remember(pcm);
    }

    /// Makes up `samples` of lost audio into `out` (cleared first).
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        out.clear();
        if self.lost == 0 {
            self.start_loss();
        }
        if self.pitch == 0 {
            // Nothing heard yet: silence.
            out.resize(samples, 0);
            self.lost += samples;
            return;
        }
        self.synthesise(samples, out);
        self.remember(&out[..]);
    }

    /// A loss starts: find the pitch, and cycle its last period.
    fn start_loss(&mut self) {
        self.pitch = self.find_pitch();
        self.at = 0;
        if self.pitch == 0 {
            return;
        }
        let n = self.history.len();
        let three = (3 * self.pitch).min(n);
        self.source = self.history[n - three..].to_vec();
        self.cycle = self.source[self.source.len() - self.pitch..].to_vec();
    }

    /// The period (in samples) at which the history best repeats itself; 0 when there is too
    /// little history or no repetition worth copying (silence).
    fn find_pitch(&self) -> usize {
        let (min, max, window) = (self.ms(5) / 2, self.ms(15), self.ms(10));
        let n = self.history.len();
        if min == 0 || n < max + window {
            return 0;
        }
        let recent = &self.history[n - window..];
        let energy: f64 = recent.iter().map(|s| f64::from(*s).powi(2)).sum();
        if energy < window as f64 {
            return 0;
        }
        let mut best = (0usize, f64::MIN);
        for period in min..=max {
            let earlier = &self.history[n - window - period..n - period];
            let (mut dot, mut e) = (0f64, 0f64);
            for (a, b) in recent.iter().zip(earlier) {
                dot += f64::from(*a) * f64::from(*b);
                e += f64::from(*b).powi(2);
            }
            let score = if e > 0.0 { dot / e.sqrt() } else { f64::MIN };
            if score > best.1 {
                best = (period, score);
            }
        }
        best.0
    }

    /// The next `samples` of the concealment: the cycle, grown to two and three periods after 10
    /// and 20 ms, and faded from 10 ms on.
    fn synthesise(&mut self, samples: usize, out: &mut Vec<i16>) {
        let ten = self.ms(10).max(1);
        for _ in 0..samples {
            let periods = (1 + self.lost / ten).min(3);
            let want = (periods * self.pitch).min(self.source.len());
            if want > self.cycle.len() {
                // Grow the cycle backwards into the history at the loss, keeping the position.
                let start = self.source.len() - want;
                let added = self.cycle.len();
                self.cycle = self.source[start..].to_vec();
                self.at += want - added;
            }
            let s = self.cycle.get(self.at % self.cycle.len().max(1)).copied().unwrap_or(0);
            self.at = (self.at + 1) % self.cycle.len().max(1);
            let gain = if self.lost < ten { 1.0 } else { (1.0 - 0.2 * (self.lost - ten) as f32 / ten as f32).max(0.0) };
            out.push((f32::from(s) * gain).round() as i16);
            self.lost += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced sound: 150 Hz with a few harmonics.
    fn voice(rate: usize, from: usize, n: usize) -> Vec<i16> {
        (from..from + n)
            .map(|i| {
                let t = i as f64 / rate as f64;
                let w = 2.0 * std::f64::consts::PI * 150.0 * t;
                (4000.0 * w.sin() + 2500.0 * (2.0 * w).sin() + 1200.0 * (3.0 * w + 0.5).sin()) as i16
            })
            .collect()
    }

    fn correlation(a: &[i16], b: &[i16]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
        dot / (na * nb).max(1.0)
    }

    #[test]
    fn a_lost_frame_of_a_voiced_sound_is_made_up_close_to_what_was_lost() {
        for rate in [8000usize, 16_000] {
            let frame = rate / 50;
            let mut plc = Concealer::new(rate as u32);
            let mut heard = voice(rate, 0, 5 * frame);
            plc.good(&mut heard);
            let mut made_up = Vec::new();
            plc.conceal(frame, &mut made_up);
            let truth = voice(rate, 5 * frame, frame);
            let c = correlation(&made_up, &truth);
            assert!(c > 0.9, "{rate} Hz: correlation {c:.3} with what was lost (silence would be 0)");
            // 150 Hz's period, or two of them (the period is not a whole number of samples).
            let periods = plc.pitch as f64 / (rate as f64 / 150.0);
            assert!((periods - periods.round()).abs() < 0.05, "{rate} Hz: pitch {} samples", plc.pitch);
        }
    }

    #[test]
    fn a_long_loss_fades_to_silence_and_the_return_does_not_click() {
        let rate = 8000;
        let mut plc = Concealer::new(rate as u32);
        let mut heard = voice(rate, 0, 800);
        plc.good(&mut heard);
        let mut made_up = Vec::new();
        let mut all = Vec::new();
        for _ in 0..4 {
            plc.conceal(160, &mut made_up);
            all.extend_from_slice(&made_up);
        }
        let peak = |s: &[i16]| s.iter().map(|x| x.saturating_abs()).max().unwrap_or(0);
        assert!(peak(&all[..80]) > 5000, "full level for 10 ms");
        assert!(peak(&all[400..480]) < peak(&all[80..160]), "fading");
        assert_eq!(peak(&all[480..]), 0, "silent after 60 ms");
        // The real audio comes back: its start is faded in from the (silent) concealment.
        let mut back = voice(rate, 800 + 640, 160);
        let raw = back.clone();
        plc.good(&mut back);
        assert!(peak(&back[..8]) < peak(&raw[..8]).max(1), "a fade in, not a step");
        assert_eq!(&back[80..], &raw[80..], "past the cross-fade, the real audio as it is");
    }

    #[test]
    fn a_short_loss_joins_the_returning_audio_smoothly() {
        let rate = 8000;
        let mut plc = Concealer::new(rate as u32);
        let mut heard = voice(rate, 0, 800);
        plc.good(&mut heard);
        let mut made_up = Vec::new();
        plc.conceal(80, &mut made_up);
        let mut back = voice(rate, 880, 160);
        plc.good(&mut back);
        // The largest step between neighbouring samples stays like the sound's own.
        let own = voice(rate, 0, 1040).windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max();
        let mut joined = made_up.clone();
        joined.extend_from_slice(&back);
        let steps = joined.windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max();
        assert!(steps <= own.map(|o| o * 2), "{steps:?} against the sound's own {own:?}");
    }

    proptest::proptest! {
        /// Any run of received and lost audio of any lengths, at any rate: nothing panics, every
        /// loss is made up with exactly its length, the history stays bounded, and received audio
        /// is changed only in its first 10 ms (the cross-fade).
        #[test]
        fn any_losses_of_any_length(
            rate in proptest::sample::select(vec![8000u32, 16_000, 48_000]),
            steps in proptest::collection::vec((proptest::bool::ANY, 0usize..3000, -20000i32..20000), 1..40)
        ) {
            let mut plc = Concealer::new(rate);
            let mut out = Vec::new();
            let mut t = 0;
            for (lost, n, amplitude) in steps {
                if lost {
                    plc.conceal(n, &mut out);
                    proptest::prop_assert_eq!(out.len(), n);
                    proptest::prop_assert!(plc.history.len() <= plc.ms(HISTORY_MS));
                } else {
                    let raw: Vec<i16> = (t..t + n)
                        .map(|i| (f64::from(amplitude) * (i as f64 * 0.07).sin()) as i16)
                        .collect();
                    let mut pcm = raw.clone();
                    plc.good(&mut pcm);
                    let fade = plc.ms(10);
                    proptest::prop_assert_eq!(&pcm[fade.min(n)..], &raw[fade.min(n)..]);
                }
                t += n;
            }
        }
    }

    #[test]
    fn nothing_heard_or_silence_is_concealed_with_silence() {
        let mut plc = Concealer::new(8000);
        let mut out = Vec::new();
        plc.conceal(160, &mut out);
        assert_eq!(out, vec![0; 160]);
        plc.good(&mut [0i16; 800]);
        plc.conceal(160, &mut out);
        assert_eq!(out, vec![0; 160]);
        let mut back = [1000i16; 160];
        plc.good(&mut back);
        assert_eq!(back, [1000; 160], "no cross-fade from a silence that was not made up");
    }
}
