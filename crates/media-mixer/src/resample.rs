//! Sample-rate conversion between 8, 16 and 48 kHz: a polyphase FIR
//! (windowed sinc, Kaiser window) for rational factors, stateful across
//! frames so 20 ms frames join without clicks.

use crate::error::Error;

/// Taps per polyphase branch: with the Kaiser window below, the stopband
/// sits near -90 dB and the passband reaches 0.9 of the lower Nyquist.
const TAPS_PER_PHASE: usize = 48;
const KAISER_BETA: f64 = 9.0;

/// Converts a stream from one rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Branch `p` in time order, ready for a dot product with the input
    /// window: filter[p][k] = h[p + (per_phase - 1 - k) * up].
    filter: Vec<Vec<f32>>,
    history: Vec<f32>,
    pos: usize,
    scratch: Vec<f32>,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz (8000, 16000, 32000 or 48000).
    pub fn new(from: u32, to: u32) -> Result<Resampler, Error> {
        for r in [from, to] {
            if ![8000, 16000, 24000, 32000, 48000].contains(&r) {
                return Err(Error::Rate(r));
            }
        }
        let g = gcd(from as usize, to as usize);
        let (up, down) = (to as usize / g, from as usize / g);
        // Enough taps for a sharp cut-off at the lower rate: the prototype
        // spans TAPS_PER_PHASE periods of the slower side.
        let per_phase = (TAPS_PER_PHASE * up.max(down)).div_ceil(up);
        let n = up * per_phase;
        // Cut-off at the lower of the two Nyquist rates, in the upsampled domain.
        let fc = 0.5 / up.max(down) as f64 * 0.92;
        let mid = (n - 1) as f64 / 2.0;
        let i0b = bessel_i0(KAISER_BETA);
        let h: Vec<f64> = (0..n)
            .map(|k| {
                let t = k as f64 - mid;
                let sinc = if t == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
                };
                let r = 2.0 * k as f64 / (n - 1) as f64 - 1.0;
                let w = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / i0b;
                sinc * w * up as f64
            })
            .collect();
        let filter = (0..up).map(|p| (0..per_phase).rev().map(|j| h[p + j * up] as f32).collect()).collect();
        Ok(Resampler { up, down, filter, history: vec![0.0; per_phase - 1], pos: 0, scratch: Vec::new() })
    }

    /// Whether this converter changes nothing (same rate).
    pub fn is_identity(&self) -> bool {
        self.up == 1 && self.down == 1
    }

    /// Delay the filter adds, in output samples.
    pub fn delay(&self) -> usize {
        (self.up * self.filter.first().map_or(0, Vec::len) - 1) / 2 / self.down
    }

    /// Converts `input`, appending to `out`. A 20 ms frame in gives a 20 ms
    /// frame out.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.is_identity() {
            out.extend_from_slice(input);
            return;
        }
        let h = self.history.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.history);
        self.scratch.extend(input.iter().map(|s| f32::from(*s)));
        let end = input.len() * self.up;
        out.reserve(end.saturating_sub(self.pos).div_ceil(self.down));
        while self.pos < end {
            let i = self.pos / self.up;
            let taps = &self.filter[self.pos % self.up];
            // The window of `h + 1` samples that ends at input sample `i`.
            let acc = dot(taps, &self.scratch[i..i + taps.len()]);
            out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            self.pos += self.down;
        }
        self.pos -= end;
        let len = self.scratch.len();
        self.history.copy_from_slice(&self.scratch[len - h..]);
    }
}

/// Dot product in eight independent lanes, which the compiler turns into
/// SIMD multiplies and adds (a single running sum would have to stay
/// scalar: float addition is not associative).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n).map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()).round() as i16).collect()
    }

    /// Signal-to-noise ratio of a resampled tone against the ideal tone at
    /// the output rate, aligned by the filter delay, in steady state.
    fn snr(from: u32, to: u32, freq: f64) -> f64 {
        let mut r = Resampler::new(from, to).expect("rate");
        let input = sine(freq, f64::from(from), from as usize, 16000.0);
        let mut out = Vec::new();
        for frame in input.chunks(from as usize / 50) {
            r.process(frame, &mut out);
        }
        assert_eq!(out.len(), to as usize, "a second in, a second out");
        let up_delay = (r.up * r.filter[0].len() - 1) as f64 / 2.0; // in 1/(from*up) s
        let delay_s = up_delay / (f64::from(from) * r.up as f64);
        let (mut sig, mut noise) = (0.0, 0.0);
        for (n, y) in out.iter().enumerate().skip(to as usize / 10) {
            let t = n as f64 / f64::from(to) - delay_s;
            let ideal = 16000.0 * (2.0 * std::f64::consts::PI * freq * t).sin();
            sig += ideal * ideal;
            noise += (f64::from(*y) - ideal).powi(2);
        }
        10.0 * (sig / noise).log10()
    }

    #[test]
    fn signal_to_noise_ratio_is_reported_and_high() {
        for (from, to) in [(8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000), (8000, 16000), (16000, 8000)] {
            let s = snr(from, to, 1000.0);
            println!("{from} -> {to} Hz, 1 kHz tone: SNR {s:.1} dB");
            assert!(s > 80.0, "{from} -> {to}: SNR {s:.1} dB");
        }
    }

    #[test]
    fn downsampling_removes_what_cannot_be_represented() {
        // 6 kHz cannot exist at 8 kHz: it must be filtered, not aliased to 2 kHz.
        let mut r = Resampler::new(48000, 8000).expect("rate");
        let input = sine(6000.0, 48000.0, 48000, 16000.0);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        let tail = &out[1000..];
        let rms = (tail.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        let db = 20.0 * (rms / (16000.0 / 2f64.sqrt())).log10();
        assert!(db < -60.0, "6 kHz leaks at {db:.1} dB");
    }

    /// Chunks of any length, even shorter than one output sample's step, go through.
    #[test]
    fn odd_and_tiny_chunks() {
        let mut r = Resampler::new(48000, 8000).expect("rate");
        let mut out = Vec::new();
        for len in [7usize, 1, 0, 3, 5, 960] {
            r.process(&vec![1000; len], &mut out);
        }
        assert_eq!(out.len(), (7 + 1 + 3 + 5 + 960usize).div_ceil(6), "one sample out for six in");
    }

    #[test]
    fn frames_keep_their_size_and_identity_is_a_copy() {
        let mut r = Resampler::new(16000, 48000).expect("rate");
        let mut out = Vec::new();
        for _ in 0..10 {
            out.clear();
            r.process(&[100; 320], &mut out);
            assert_eq!(out.len(), 960);
        }
        let mut id = Resampler::new(8000, 8000).expect("rate");
        out.clear();
        id.process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
        assert!(Resampler::new(44100, 8000).is_err());
    }
}
