//! G.722 (ITU-T G.722) wideband audio at 64 kbit/s (mode 1), written from the
//! recommendation's block descriptions.
//!
//! The codec splits 16 kHz audio with a 24-tap quadrature mirror filter (QMF)
//! into a lower and an upper sub-band at 8 kHz each, then codes the lower band
//! with 6-bit and the upper band with 2-bit adaptive differential PCM
//! (ADPCM). One code byte carries both: the upper band's two bits on top
//! (`ih << 6 | il`), which is also the RTP payload format (RFC 3551 §4.5.2).
//! So two 16-bit samples become one byte, and a 20 ms frame of 320 samples
//! becomes 160 bytes.
//!
//! Arithmetic follows the recommendation's fixed-point blocks bit for bit
//! (SUBTRA, QUANTL/QUANTH, INVQAL/INVQAH, LOGSCL/LOGSCH, SCALEL/SCALEH and
//! block 4's RECONS, PARREC, UPPOL1, UPPOL2, UPZERO, DELAYA, FILTEP, FILTEZ
//! and PREDIC), with 16-bit linear PCM at the QMF edges instead of the
//! recommendation's 14-bit: the input goes one bit further right after the
//! analysis filter and the output one bit less after the synthesis filter, as
//! every 16-bit implementation does. The encoder never looks ahead and the
//! decoder never conceals loss; both are plain state machines over bytes and
//! samples, with no IO and no clock.

/// Samples per 20 ms frame at 16 kHz, the usual packetisation.
pub const FRAME_SAMPLES: usize = 320;

/// Code bytes per 20 ms frame at 64 kbit/s.
pub const FRAME_BYTES: usize = FRAME_SAMPLES / 2;

/// Delay of an encoder followed by a decoder, in 16 kHz samples: what the
/// analysis and synthesis QMFs add together (the ADPCM stages add none).
/// Useful to line up a decoded signal with its source.
pub const CODEC_DELAY: usize = 22;

/// The QMF's 24 taps, scaled by 2^13; the filter is symmetric
/// (`QMF[i] == QMF[23 - i]`) and its taps sum to 8192.
const QMF: [i32; 24] = [
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11,
    3,
];

/// Length of the QMF delay line.
const TAPS: usize = QMF.len();

/// QUANTL's decision levels for the magnitude of the lower-band difference,
/// scaled by 2^12 relative to the scale factor; interval `k` (1-based) is
/// `[Q6[k - 1], Q6[k])`, and past `Q6[28]` lies the open interval 30.
const Q6: [i32; 29] = [
    35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121, 1219, 1339,
    1458, 1612, 1765, 1980, 2195, 2557, 2919,
];

/// QUANTL's 6-bit codes for intervals 1..=30 of a negative difference.
const ILN: [u8; 30] =
    [63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4];

/// QUANTL's 6-bit codes for intervals 1..=30 of a non-negative difference.
const ILP: [u8; 30] = [
    61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33,
    32,
];

/// INVQBL: the 6-bit lower-band inverse quantiser (the decoder's output path
/// in mode 1), indexed by the 6-bit code.
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360, -8576,
    -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688, -1360, -1040,
    -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
    4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];

/// INVQAL: the 4-bit lower-band inverse quantiser that feeds the predictor
/// (in both encoder and decoder), indexed by the top four bits of the code.
const QM4: [i32; 16] =
    [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];

/// LOGSCL's log scale-factor multipliers, indexed by the quantised
/// magnitude `RIL` (0..=7).
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];

/// Maps the 4-bit lower-band code to its magnitude `RIL` for [`WL`].
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];

/// INVQAH/INVQBH: the 2-bit upper-band inverse quantiser.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];

/// LOGSCH's log scale-factor multipliers, indexed through [`RH2`].
const WH: [i32; 3] = [0, -214, 798];

/// Maps the 2-bit upper-band code to its magnitude for [`WH`].
const RH2: [usize; 4] = [2, 1, 2, 1];

/// QUANTH's decision level, scaled by 2^12 relative to the scale factor.
const Q2: i32 = 564;

/// SCALEL/SCALEH's antilog table: `2048 * 2^(i / 32)`, truncated.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025,
    3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

/// Upper limit of the lower band's log scale factor (`NBL`).
const NBL_MAX: i32 = 18432;
/// Upper limit of the upper band's log scale factor (`NBH`).
const NBH_MAX: i32 = 22528;

/// The two sub-band reconstructions are limited to 15 bits (the
/// recommendation's LIMIT block) before they enter the synthesis QMF.
const SUBBAND_MIN: i32 = -16384;
const SUBBAND_MAX: i32 = 16383;

/// Saturates to the 16-bit two's complement range, as the recommendation's
/// 16-bit arithmetic does at each marked step.
fn sat(x: i32) -> i32 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// SCALEL/SCALEH: the linear scale factor from the log one. `offset` is 8
/// for the lower band and 10 for the upper band.
fn scale_factor(nb: i32, offset: i32) -> i32 {
    let mantissa = ILB[((nb >> 6) & 31) as usize];
    let shift = offset - (nb >> 11);
    let linear = if shift >= 0 { mantissa >> shift } else { mantissa << -shift };
    linear << 2
}

/// The adaptive state of one sub-band: predictor and scale factor. Encoder
/// and decoder keep identical copies, which is what makes ADPCM work.
#[derive(Debug, Clone)]
struct Band {
    /// Signal estimate `s = sp + sz` for the coming sample.
    s: i32,
    /// The zero section's (FILTEZ) share of `s`, needed by PARREC.
    sz: i32,
    /// Reconstructed signal `r(n-1)`, `r(n-2)`.
    r: [i32; 2],
    /// Partially reconstructed signal `p(n-1)`, `p(n-2)` (sign only is used).
    p: [i32; 2],
    /// Pole predictor coefficients `a1`, `a2`.
    a: [i32; 2],
    /// Zero predictor coefficients `b1..=b6`.
    b: [i32; 6],
    /// Quantised differences `d(n-1)..=d(n-6)`.
    d: [i32; 6],
    /// Log scale factor (`NBL` or `NBH`).
    nb: i32,
    /// Linear scale factor (`DETL` or `DETH`).
    det: i32,
}

impl Band {
    /// The reset state: all zero, with the scale factor at its minimum.
    fn new(offset: i32) -> Self {
        Self { s: 0, sz: 0, r: [0; 2], p: [0; 2], a: [0; 2], b: [0; 6], d: [0; 6], nb: 0, det: scale_factor(0, offset) }
    }

    /// Block 4: adapts the predictor to the quantised difference `dq` and
    /// computes the estimate for the next sample.
    fn adapt(&mut self, dq: i32) {
        // RECONS and PARREC.
        let r0 = sat(self.s + dq);
        let p0 = sat(self.sz + dq);
        let neg0 = p0 < 0;
        let neg1 = self.p[0] < 0;
        let neg2 = self.p[1] < 0;

        // UPPOL2: the second pole coefficient, leaking towards zero and
        // nudged by the sign correlations of p.
        let [a1, a2] = self.a;
        let wd1 = sat(a1 << 2);
        let wd2 = if neg0 == neg1 { -wd1 } else { wd1 }.min(i32::from(i16::MAX));
        let wd3 = if neg0 == neg2 { 128 } else { -128 };
        let new_a2 = ((wd2 >> 7) + wd3 + ((a2 * 32512) >> 15)).clamp(-12288, 12288);

        // UPPOL1: the first pole coefficient, kept inside the stability
        // triangle set by the new a2.
        let step = if neg0 == neg1 { 192 } else { -192 };
        let limit = sat(15360 - new_a2);
        let new_a1 = sat(step + ((a1 * 32640) >> 15)).clamp(-limit, limit);

        // UPZERO: sign-sign update of the zero coefficients (no step for a
        // zero difference).
        let step = if dq == 0 { 0 } else { 128 };
        let dq_neg = dq < 0;
        for (b, d) in self.b.iter_mut().zip(self.d) {
            let wd = if (d < 0) == dq_neg { step } else { -step };
            *b = sat(wd + ((*b * 32640) >> 15));
        }

        // DELAYA.
        self.d.copy_within(0..5, 1);
        self.d[0] = dq;
        self.r = [r0, self.r[0]];
        self.p = [p0, self.p[0]];
        self.a = [new_a1, new_a2];

        // FILTEP, FILTEZ, PREDIC.
        let sp = sat(((new_a1 * sat(r0 << 1)) >> 15) + ((new_a2 * sat(self.r[1] << 1)) >> 15));
        let sz = self.b.iter().zip(self.d).map(|(b, d)| (b * sat(d << 1)) >> 15).sum::<i32>();
        self.sz = sat(sz);
        self.s = sat(sp + self.sz);
    }

    /// LOGSCL and SCALEL: adapts the lower band's scale factor to the 4-bit
    /// code `ril`.
    fn adapt_scale_low(&mut self, ril: usize) {
        self.nb = (((self.nb * 32512) >> 15) + WL[RL42[ril & 15]]).clamp(0, NBL_MAX);
        self.det = scale_factor(self.nb, 8);
    }

    /// LOGSCH and SCALEH: adapts the upper band's scale factor to the 2-bit
    /// code `ih`.
    fn adapt_scale_high(&mut self, ih: usize) {
        self.nb = (((self.nb * 32512) >> 15) + WH[RH2[ih & 3]]).clamp(0, NBH_MAX);
        self.det = scale_factor(self.nb, 10);
    }

    /// Lower band, encoder side: quantises `xl`, updates the state, and
    /// returns the 6-bit code.
    fn encode_low(&mut self, xl: i32) -> u8 {
        let il = quantise_low(sat(xl - self.s), self.det);
        let ril = usize::from(il >> 2);
        self.adapt((QM4[ril] * self.det) >> 15);
        self.adapt_scale_low(ril);
        il
    }

    /// Upper band, encoder side: quantises `xh`, updates the state, and
    /// returns the 2-bit code.
    fn encode_high(&mut self, xh: i32) -> u8 {
        let ih = quantise_high(sat(xh - self.s), self.det);
        self.adapt((QM2[usize::from(ih)] * self.det) >> 15);
        self.adapt_scale_high(usize::from(ih));
        ih
    }

    /// Lower band, decoder side: the reconstructed sub-band sample for the
    /// 6-bit code `il`.
    fn decode_low(&mut self, il: u8) -> i32 {
        let il = usize::from(il & 63);
        let out = sat(self.s + ((QM6[il] * self.det) >> 15)).clamp(SUBBAND_MIN, SUBBAND_MAX);
        let ril = il >> 2;
        self.adapt((QM4[ril] * self.det) >> 15);
        self.adapt_scale_low(ril);
        out
    }

    /// Upper band, decoder side: the reconstructed sub-band sample for the
    /// 2-bit code `ih`.
    fn decode_high(&mut self, ih: u8) -> i32 {
        let ih = usize::from(ih & 3);
        let dh = (QM2[ih] * self.det) >> 15;
        let out = sat(self.s + dh).clamp(SUBBAND_MIN, SUBBAND_MAX);
        self.adapt(dh);
        self.adapt_scale_high(ih);
        out
    }
}

/// QUANTL: the 6-bit code for the lower-band difference `el` at scale
/// factor `det`.
fn quantise_low(el: i32, det: i32) -> u8 {
    // The magnitude in one's complement, as the recommendation takes it.
    let magnitude = if el >= 0 { el } else { -(el + 1) };
    // The levels grow with the index, so a binary search finds the first
    // one above the magnitude, as the recommendation's linear scan does.
    let interval = Q6.partition_point(|&q| magnitude >= (q * det) >> 12);
    if el < 0 {
        ILN[interval]
    } else {
        ILP[interval]
    }
}

/// QUANTH: the 2-bit code for the upper-band difference `eh` at scale
/// factor `det`.
fn quantise_high(eh: i32, det: i32) -> u8 {
    let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
    let outer = magnitude >= (Q2 * det) >> 12;
    match (eh < 0, outer) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

/// The transmit QMF: splits the newest two 16 kHz samples (with 22 of
/// history) into one lower and one upper sub-band sample. `line` holds the
/// last 24 input samples, oldest first.
fn analysis(line: &[i32]) -> (i32, i32) {
    let line = &line[..TAPS];
    // The even-phase sum pairs the newest sample x(j) with h0, x(j-2) with
    // h2 and so on; the odd-phase sum pairs x(j-1) with h1, x(j-3) with h3.
    // Oldest-first, that is line[23 - k] * QMF[k].
    let mut even = 0;
    let mut odd = 0;
    for k in (0..TAPS).step_by(2) {
        even += line[TAPS - 1 - k] * QMF[k];
        odd += line[TAPS - 2 - k] * QMF[k + 1];
    }
    // Taps scaled by 2^13, one more bit to go from 16- to 15-bit sub-bands.
    ((even + odd) >> 14, (even - odd) >> 14)
}

/// The receive QMF: turns the newest pair of sub-band samples (pushed into
/// `line` as `rl + rh`, `rl - rh`, with 22 of history, oldest first) into
/// two 16 kHz samples, earlier one first.
fn synthesis(line: &[i32]) -> [i16; 2] {
    let line = &line[..TAPS];
    // The earlier output sample filters the difference signal (odd slots,
    // newest last) with the even taps; the later one filters the sum signal
    // (even slots) with the odd taps.
    let mut first = 0;
    let mut second = 0;
    for k in (0..TAPS).step_by(2) {
        first += line[TAPS - 1 - k] * QMF[k];
        second += line[TAPS - 2 - k] * QMF[k + 1];
    }
    // The taps carry 2^13 and the recommendation's factor of two is one
    // more bit; a 15-bit sub-band becomes a 16-bit output.
    [sat(first >> 11) as i16, sat(second >> 11) as i16]
}

/// Room for the QMF delay line: it grows into this buffer and is moved back
/// to the front only when it reaches the end, once every hundred-odd pairs.
const LINE_BUF: usize = 256;

/// A QMF's delay line: the last 24 samples, oldest first.
#[derive(Debug, Clone)]
struct DelayLine {
    buf: [i32; LINE_BUF],
    /// One past the newest sample.
    end: usize,
}

impl DelayLine {
    /// A line of silence.
    fn new() -> Self {
        Self { buf: [0; LINE_BUF], end: TAPS }
    }

    /// Appends two samples (earlier first) and returns the last 24, oldest
    /// first.
    fn push_pair(&mut self, first: i32, second: i32) -> &[i32] {
        if self.end + 2 > LINE_BUF {
            self.buf.copy_within(self.end + 2 - TAPS..self.end, 0);
            self.end = TAPS - 2;
        }
        self.buf[self.end] = first;
        self.buf[self.end + 1] = second;
        self.end += 2;
        &self.buf[self.end - TAPS..self.end]
    }
}

/// A G.722 encoder at 64 kbit/s: 16 kHz mono 16-bit PCM in, one code byte per
/// two samples out. The state (QMF history, both predictors and scale
/// factors) persists from one call to the next, so feed it one stream's
/// frames in order.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: DelayLine,
    low: Band,
    high: Band,
    /// A sample left over by an odd-length call, waiting for its partner.
    pending: Option<i16>,
}

impl G722Encoder {
    /// An encoder in the recommendation's reset state.
    pub fn new() -> Self {
        Self { qmf: DelayLine::new(), low: Band::new(8), high: Band::new(10), pending: None }
    }

    /// Encodes `pcm16k` (16 kHz mono samples), replacing the contents of
    /// `out` with one byte per two samples: a 20 ms frame of 320 samples
    /// gives 160 bytes.
    ///
    /// G.722 codes samples in pairs. If the samples available (a sample held
    /// over from the previous call, then `pcm16k`) are odd in number, the last
    /// one is kept and coded at the start of the next call, so a stream cut
    /// into odd-length pieces encodes exactly as if it had come in one piece;
    /// a sample still held when the stream ends is never emitted (pad the
    /// input to an even length to flush it).
    pub fn encode(&mut self, pcm16k: &[i16], out: &mut Vec<u8>) {
        out.clear();
        let mut samples = pcm16k;
        out.reserve((samples.len() + usize::from(self.pending.is_some())) / 2);
        if let Some(first) = self.pending.take() {
            match samples.split_first() {
                Some((&second, rest)) => {
                    out.push(self.encode_pair(first, second));
                    samples = rest;
                }
                None => {
                    self.pending = Some(first);
                    return;
                }
            }
        }
        let mut pairs = samples.chunks_exact(2);
        for pair in pairs.by_ref() {
            out.push(self.encode_pair(pair[0], pair[1]));
        }
        self.pending = pairs.remainder().first().copied();
    }

    /// Codes one pair of samples (earlier first) into one byte.
    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        let (xl, xh) = analysis(self.qmf.push_pair(i32::from(first), i32::from(second)));
        let il = self.low.encode_low(xl);
        let ih = self.high.encode_high(xh);
        (ih << 6) | il
    }
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A G.722 decoder at 64 kbit/s: code bytes in, two 16 kHz mono 16-bit
/// samples per byte out. Every byte is a valid code, so any payload decodes;
/// the state persists from one call to the next.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: DelayLine,
    low: Band,
    high: Band,
}

impl G722Decoder {
    /// A decoder in the recommendation's reset state.
    pub fn new() -> Self {
        Self { qmf: DelayLine::new(), low: Band::new(8), high: Band::new(10) }
    }

    /// Decodes `payload`, replacing the contents of `out` with two samples
    /// per byte: 160 bytes give a 20 ms frame of 320 samples.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        out.clear();
        out.reserve(payload.len() * 2);
        for &byte in payload {
            let rl = self.low.decode_low(byte & 63);
            let rh = self.high.decode_high(byte >> 6);
            out.extend_from_slice(&synthesis(self.qmf.push_pair(rl + rh, rl - rh)));
        }
    }
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmf_taps_are_symmetric_and_sum_to_unity() {
        for i in 0..TAPS {
            assert_eq!(QMF[i], QMF[TAPS - 1 - i]);
        }
        assert_eq!(QMF.iter().sum::<i32>(), 8192);
    }

    #[test]
    fn analysis_of_dc_goes_to_the_lower_band_at_half_scale() {
        let line = [1000; TAPS];
        assert_eq!(analysis(&line), (500, 0));
        let line = [-32768; TAPS];
        assert_eq!(analysis(&line), (-16384, 0));
    }

    #[test]
    fn analysis_of_nyquist_goes_to_the_upper_band() {
        let mut line = [0; TAPS];
        for (i, x) in line.iter_mut().enumerate() {
            *x = if i % 2 == 0 { 8000 } else { -8000 };
        }
        let (xl, xh) = analysis(&line);
        assert_eq!(xl, 0);
        assert_eq!(xh.abs(), 4000);
    }

    #[test]
    fn analysis_of_full_scale_stays_in_sixteen_bits() {
        // The worst case: every sample with the sign of its tap.
        let mut line = [0; TAPS];
        for (k, x) in line.iter_mut().enumerate() {
            *x = if QMF[TAPS - 1 - k] >= 0 { 32767 } else { -32768 };
        }
        let (xl, xh) = analysis(&line);
        assert!((-32768..=32767).contains(&xl), "{xl}");
        assert!((-32768..=32767).contains(&xh), "{xh}");
    }

    #[test]
    fn synthesis_inverts_analysis_gain_for_dc() {
        let line = [500; TAPS]; // rl = 500, rh = 0 in both slots
        assert_eq!(synthesis(&line), [1000, 1000]);
    }

    #[test]
    fn synthesis_saturates_instead_of_wrapping() {
        let mut line = [0; TAPS];
        for (k, x) in line.iter_mut().enumerate() {
            *x = if QMF[TAPS - 1 - k] >= 0 { 32767 } else { -32768 };
        }
        let [a, b] = synthesis(&line);
        assert!(a == i16::MAX || b == i16::MAX, "{a} {b}");
    }

    #[test]
    fn scale_factors_start_at_the_recommended_minimum() {
        assert_eq!(Band::new(8).det, 32);
        assert_eq!(Band::new(10).det, 8);
        // The largest lower-band log factor gives the largest step.
        assert_eq!(scale_factor(NBL_MAX, 8), 16384);
        assert_eq!(scale_factor(NBH_MAX, 10), 16384);
    }

    #[test]
    fn delay_line_keeps_the_last_24_samples_across_wraps() {
        let mut line = DelayLine::new();
        for n in 0..1000 {
            let window = line.push_pair(2 * n, 2 * n + 1).to_vec();
            let expected: Vec<i32> = (2 * n + 2 - TAPS as i32..2 * n + 2).map(|x| x.max(0)).collect();
            assert_eq!(window, expected, "pair {n}");
        }
    }

    #[test]
    fn quantise_low_picks_the_interval_by_magnitude_and_sign() {
        // At this scale factor the decision levels are Q6 itself.
        let det = 4096;
        // Below the first decision level: interval 1.
        assert_eq!(quantise_low(0, det), 61);
        assert_eq!(quantise_low(-1, det), 63);
        assert_eq!(quantise_low(34, det), 61);
        assert_eq!(quantise_low(-35, det), 63);
        // Exactly on a decision level moves up one interval.
        assert_eq!(quantise_low(35, det), 60);
        assert_eq!(quantise_low(-36, det), 62);
        // Beyond the last level: the open interval 30.
        assert_eq!(quantise_low(2919, det), 32);
        assert_eq!(quantise_low(-2920, det), 4);
        assert_eq!(quantise_low(i32::from(i16::MAX), det), 32);
        assert_eq!(quantise_low(i32::from(i16::MIN), det), 4);
        // The smallest and largest scale factors.
        assert_eq!(quantise_low(i32::from(i16::MAX), 16384), 32);
        assert_eq!(quantise_low(0, 32), 58);
    }

    #[test]
    fn quantise_low_codes_decode_with_the_right_sign() {
        for el in [-30000, -500, -3, 0, 3, 500, 30000] {
            let il = quantise_low(el, 512);
            let dq = QM6[usize::from(il)];
            assert!(dq.signum() == el.signum() || el.abs() < 3, "el {el} il {il} dq {dq}");
        }
    }

    #[test]
    fn quantise_high_has_four_outcomes() {
        let det = 8;
        assert_eq!(quantise_high(0, det), 3);
        assert_eq!(quantise_high(-1, det), 1);
        assert_eq!(quantise_high(30000, det), 2);
        assert_eq!(quantise_high(-30000, det), 0);
    }

    #[test]
    fn silence_stays_near_silence() {
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let (mut bytes, mut pcm) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            enc.encode(&[0; 320], &mut bytes);
            assert_eq!(bytes.len(), 160);
            dec.decode(&bytes, &mut pcm);
            assert_eq!(pcm.len(), 320);
            assert!(pcm.iter().all(|s| s.abs() <= 4), "{pcm:?}");
        }
    }

    #[test]
    fn full_scale_square_wave_does_not_overflow() {
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let (mut bytes, mut pcm) = (Vec::new(), Vec::new());
        let input: Vec<i16> = (0..3200).map(|i| if (i / 20) % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
        enc.encode(&input, &mut bytes);
        dec.decode(&bytes, &mut pcm);
        assert_eq!(pcm.len(), input.len());
        // After adaptation, and allowing for the codec's delay, the output
        // follows the square wave's sign.
        let agree =
            |lag: usize| input.iter().zip(&pcm[lag..]).skip(400).filter(|(a, b)| (**a < 0) == (**b < 0)).count();
        let (lag, best) = (0..40).map(|lag| (lag, agree(lag))).max_by_key(|&(_, n)| n).unwrap_or((0, 0));
        assert_eq!(lag, CODEC_DELAY);
        assert!(best > (input.len() - 440) * 9 / 10, "{best}");
    }

    #[test]
    fn odd_lengths_are_carried_over_without_changing_the_stream() {
        let input: Vec<i16> = (0..641).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
        let mut whole = G722Encoder::new();
        let mut expected = Vec::new();
        whole.encode(&input[..640], &mut expected);

        let mut pieces = G722Encoder::new();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for chunk in input[..640].chunks(7) {
            pieces.encode(chunk, &mut buf);
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, expected);

        // A lone sample waits, and an empty call keeps it waiting.
        let mut enc = G722Encoder::new();
        enc.encode(&input[..1], &mut buf);
        assert!(buf.is_empty());
        enc.encode(&[], &mut buf);
        assert!(buf.is_empty());
        enc.encode(&input[1..2], &mut buf);
        assert_eq!(buf, expected[..1]);
    }

    #[test]
    fn decoder_accepts_every_code() {
        let mut dec = G722Decoder::new();
        let all: Vec<u8> = (0..=255).collect();
        let mut pcm = Vec::new();
        for _ in 0..100 {
            dec.decode(&all, &mut pcm);
            assert_eq!(pcm.len(), 512);
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn decoder_never_panics_on_arbitrary_bytes(
                frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..8)
            ) {
                let mut dec = G722Decoder::new();
                let mut pcm = Vec::new();
                for frame in &frames {
                    dec.decode(frame, &mut pcm);
                    prop_assert_eq!(pcm.len(), frame.len() * 2);
                }
            }

            #[test]
            fn encoder_never_panics_and_counts_pairs(
                frames in proptest::collection::vec(proptest::collection::vec(any::<i16>(), 0..400), 1..8)
            ) {
                let mut enc = G722Encoder::new();
                let mut bytes = Vec::new();
                let mut total_in = 0;
                let mut total_out = 0;
                for frame in &frames {
                    enc.encode(frame, &mut bytes);
                    total_in += frame.len();
                    total_out += bytes.len();
                }
                prop_assert_eq!(total_out, total_in / 2);
            }
        }
    }
}
