//! Scaling of 8-bit picture planes for the grid: separable, fixed-point, with the taps of each
//! (source length, destination length) pair computed once and kept.
//!
//! Shrinking averages the area each destination pixel covers (a box filter: every source pixel
//! counts, with its share of the pixel it falls in, so nothing aliases the way point sampling
//! does; past about 128:1, where one pixel's share rounds to zero in Q8, it thins out towards
//! sampling); growing interpolates bilinearly. The vertical pass runs first, over whole rows (a
//! multiply-add per tap across the row, which vectorises directly), so the horizontal pass, which
//! has to gather, only runs on the destination's rows. Weights are Q8, so both passes work in
//! 16-bit lanes, and each destination pixel's weights sum to exactly one, so a flat area stays
//! exactly flat.
//!
//! The horizontal pass gathers with byte shuffles: every eight destination pixels read one
//! window of 16 or 32 source bytes, and each tap's pixels are shuffled out of it at once (SSSE3,
//! or two windows per instruction with AVX2). On x86-64 the features are detected at run time;
//! elsewhere, or on a CPU without them, portable passes give the same bytes.

use std::collections::HashMap;

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
use x86::Features;

/// No SIMD passes on other architectures yet: the portable ones (which the compiler still
/// vectorises where it can).
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Features;

#[cfg(not(target_arch = "x86_64"))]
impl Features {
    fn detect() -> Features {
        Features
    }
    fn shuffles(self) -> bool {
        false
    }
    fn horizontal(self, _row: &[u8], _plan: &Shuffles, _out: &mut [u8]) -> usize {
        0
    }
    fn vertical<const T: usize>(self, lines: [&[u8]; T], weights: [u16; T], out: &mut [u8]) {
        vertical_rows(lines, weights, out);
    }
}

const SHIFT: u32 = 8;
const ONE: u32 = 1 << SHIFT;
const HALF: u32 = ONE / 2;
// The vertical pass sums in u16: 255 * ONE + HALF must fit.
const _: () = assert!(255 * ONE + HALF <= u16::MAX as u32);
/// Axes kept before the cache starts over (a grid uses a handful of sizes).
const MAX_CACHED: usize = 64;

/// The taps of one axis: destination pixel `i` is the sum over `k < taps` of
/// `weights[i * taps + k] * source[start[i] + k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Axis {
    taps: usize,
    start: Vec<u32>,
    weights: Vec<u16>,
    /// The same taps laid out for byte shuffles, where they fit.
    shuffles: Option<Shuffles>,
}

/// An axis's taps laid out for the SIMD horizontal pass: destination pixels in groups of eight,
/// group `g` reading its source pixels from a window of 16 bytes (32 when `wide`) starting at
/// `bases[g]`. Only groups whose window lies inside the source are listed; the pixels after
/// them take the portable pass.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Shuffles {
    taps: usize,
    wide: bool,
    bases: Vec<u32>,
    /// Per group and tap, a byte-shuffle mask that puts each of the eight pixels' source byte
    /// in the low byte of a 16-bit lane and zero (0x80) everywhere else; when `wide`, one mask
    /// for the window's first 16 bytes and one for the next 16.
    masks: Vec<[u8; 16]>,
    /// Per group and tap, the eight pixels' weights.
    weights: Vec<[u16; 8]>,
}

impl Shuffles {
    /// The layout of `axis` (whose source has `src` pixels), or `None` when some group of eight
    /// pixels reaches further than 32 bytes (a shrink of more than about 3.5:1).
    fn new(src: usize, axis: &Axis) -> Option<Shuffles> {
        let taps = axis.taps;
        let groups = axis.start.len() / 8;
        // The offset of every weighted source pixel from its group's first source pixel (the
        // windows only move right: `Axis::new` makes `start` non-decreasing, and a plan is not
        // made for one that is not).
        if axis.start.windows(2).any(|w| w[1] < w[0]) {
            return None;
        }
        let offset = |g: usize, j: usize, k: usize| {
            let i = g * 8 + j;
            (axis.weights[i * taps + k] != 0).then(|| (axis.start[i] - axis.start[g * 8]) as usize + k)
        };
        let mut reach = 0;
        for g in 0..groups {
            for j in 0..8 {
                reach = (0..taps).filter_map(|k| offset(g, j, k)).fold(reach, usize::max);
            }
        }
        let wide = match reach {
            0..16 => false,
            16..32 => true,
            _ => return None,
        };
        let window = if wide { 32 } else { 16 };
        let mut plan = Shuffles { taps, wide, bases: Vec::new(), masks: Vec::new(), weights: Vec::new() };
        for g in 0..groups {
            let base = axis.start[g * 8];
            if base as usize + window > src {
                break;
            }
            plan.bases.push(base);
            for k in 0..taps {
                let (mut lo, mut hi, mut w) = ([0x80u8; 16], [0x80u8; 16], [0u16; 8]);
                for j in 0..8 {
                    w[j] = axis.weights[(g * 8 + j) * taps + k];
                    match offset(g, j, k) {
                        Some(o) if o < 16 => lo[2 * j] = o as u8,
                        Some(o) => hi[2 * j] = (o - 16) as u8,
                        None => {}
                    }
                }
                plan.masks.push(lo);
                if wide {
                    plan.masks.push(hi);
                }
                plan.weights.push(w);
            }
        }
        (!plan.bases.is_empty()).then_some(plan)
    }
}

impl Axis {
    /// Taps from `src` to `dst` pixels (both at least one).
    fn new(src: u32, dst: u32) -> Axis {
        let (s, d) = (f64::from(src), f64::from(dst));
        let scale = s / d;
        // Source pixels one destination pixel can touch.
        let taps = if dst < src { scale.ceil() as usize + 1 } else { 2 }.min(src as usize);
        let mut start = Vec::with_capacity(dst as usize);
        let mut weights = Vec::with_capacity(dst as usize * taps);
        let mut exact = vec![0f64; taps];
        for i in 0..dst {
            exact.iter_mut().for_each(|w| *w = 0.0);
            let (first, contributions): (i64, Vec<(i64, f64)>) = if dst < src {
                // The interval [lo, hi) of source pixels that destination pixel i covers.
                let lo = f64::from(i) * scale;
                let hi = lo + scale;
                let first = lo.floor() as i64;
                let list = (first..hi.ceil() as i64)
                    .map(|j| (j, ((j + 1) as f64).min(hi) - (j as f64).max(lo)))
                    .filter(|(_, overlap)| *overlap > 0.0)
                    .map(|(j, overlap)| (j, overlap / scale))
                    .collect();
                (first, list)
            } else {
                // Pixel centres aligned: destination centre i + 0.5 maps to source i + 0.5 scaled.
                let x = ((f64::from(i) + 0.5) * scale - 0.5).clamp(0.0, s - 1.0);
                let j = x.floor() as i64;
                let f = x - j as f64;
                (j, vec![(j, 1.0 - f), (j + 1, f)])
            };
            // The window [first, first + taps) moved left where it would pass the last pixel.
            let first = first.clamp(0, i64::from(src) - taps as i64);
            for (j, w) in contributions {
                if let Some(slot) = usize::try_from(j - first).ok().and_then(|k| exact.get_mut(k)) {
                    *slot += w;
                }
            }
            // Quantised by rounding the running sum, so the weights add up to exactly ONE
            // whatever the number of taps (the vertical pass's u16 sums rely on it).
            let total: f64 = exact.iter().sum();
            let mut running = 0.0;
            let mut given = 0u32;
            for w in &exact {
                running += if total > 0.0 { w / total } else { 0.0 };
                let upto = ((running * f64::from(ONE)).round() as u32).min(ONE);
                weights.push((upto - given) as u16);
                given = upto;
            }
            if given < ONE {
                // Only reachable through floating-point shortfall: the last tap takes the rest.
                if let Some(last) = weights.last_mut() {
                    *last += (ONE - given) as u16;
                }
            }
            start.push(first as u32);
        }
        let mut axis = Axis { taps, start, weights, shuffles: None };
        // A copy or an exact halving never runs the general horizontal pass.
        if src != dst && src != 2 * dst {
            axis.shuffles = Shuffles::new(src as usize, &axis);
        }
        axis
    }
}

/// A plane of `width` x `height` bytes, rows `stride` apart.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The bytes; at least `stride * (height - 1) + width` of them.
    pub data: &'a [u8],
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bytes from one row to the next.
    pub stride: usize,
}

/// A rectangle of a writable plane.
#[derive(Debug)]
pub struct PlaneMut<'a> {
    /// The whole plane.
    pub data: &'a mut [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Left edge of the rectangle written.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width of the rectangle.
    pub width: u32,
    /// Height of the rectangle.
    pub height: u32,
}

/// Why a plane could not be scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleError {
    /// A source or destination of zero pixels.
    Empty,
    /// The source's bytes are fewer than its size and stride need.
    SourceTooShort,
    /// The destination rectangle does not fit in its plane.
    OutsideDestination,
}

impl std::fmt::Display for ScaleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScaleError::Empty => "an empty plane",
            ScaleError::SourceTooShort => "the source plane is shorter than its size says",
            ScaleError::OutsideDestination => "the destination rectangle is outside its plane",
        })
    }
}

impl std::error::Error for ScaleError {}

/// Scales planes, keeping the taps of every size pair it has seen and its scratch rows.
///
/// On x86-64 it uses SSSE3 and AVX2 where the CPU has them (detected once, in [`Scaler::new`]);
/// the result is the same to the bit either way.
#[derive(Debug)]
pub struct Scaler {
    axes: HashMap<(u32, u32), Axis>,
    acc: Vec<u16>,
    row: Vec<u8>,
    features: Features,
}

impl Default for Scaler {
    fn default() -> Scaler {
        Scaler::new()
    }
}

impl Scaler {
    /// A scaler with nothing cached, using what SIMD this CPU has.
    pub fn new() -> Scaler {
        Scaler { axes: HashMap::new(), acc: Vec::new(), row: Vec::new(), features: Features::detect() }
    }

    fn make_axes(&mut self, pairs: [(u32, u32); 2]) {
        // Room for both first: starting over between the two would lose the first one made.
        if self.axes.len() + pairs.len() > MAX_CACHED && pairs.iter().any(|k| !self.axes.contains_key(k)) {
            self.axes.clear();
        }
        for key in pairs {
            self.axes.entry(key).or_insert_with(|| Axis::new(key.0, key.1));
        }
    }

    /// Scales all of `src` into the rectangle of `dst`.
    pub fn scale(&mut self, src: Plane<'_>, dst: PlaneMut<'_>) -> Result<(), ScaleError> {
        let (sw, sh) = (src.width as usize, src.height as usize);
        let (dw, dh) = (dst.width as usize, dst.height as usize);
        if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
            return Err(ScaleError::Empty);
        }
        if src.stride < sw || src.data.len() < src.stride * (sh - 1) + sw {
            return Err(ScaleError::SourceTooShort);
        }
        let (dx, dy) = (dst.x as usize, dst.y as usize);
        if dst.stride < dx + dw || dst.data.len() < dst.stride * (dy + dh - 1) + dx + dw {
            return Err(ScaleError::OutsideDestination);
        }
        let (hkey, vkey) = ((src.width, dst.width), (src.height, dst.height));
        self.make_axes([hkey, vkey]);
        let Scaler { axes, acc, row, features } = self;
        let features = *features;
        let (Some(horizontal), Some(vertical)) = (axes.get(&hkey), axes.get(&vkey)) else {
            return Err(ScaleError::Empty);
        };
        acc.resize(sw, 0);
        row.resize(sw, 0);
        let line = |r: usize| &src.data[r * src.stride..r * src.stride + sw];
        for (i, out_row) in dst.data[dy * dst.stride..].chunks_mut(dst.stride).take(dh).enumerate() {
            // Vertical: this destination row's taps over whole source rows.
            let first = vertical.start[i] as usize;
            let taps = &vertical.weights[i * vertical.taps..(i + 1) * vertical.taps];
            // The rows that count (at most four kept; more take the general loop below).
            let mut picked = [(0usize, 0u16); 4];
            let mut count = 0;
            for (k, w) in taps.iter().enumerate().filter(|(_, w)| **w != 0) {
                if let Some(slot) = picked.get_mut(count) {
                    *slot = (first + k, *w);
                }
                count += 1;
            }
            let [(r0, w0), (r1, w1), (r2, w2), (r3, w3)] = picked;
            let blended: &[u8] = match count {
                // One source row (same height, or a row the weights put wholly on one line).
                1 => line(r0),
                2 => {
                    features.vertical([line(r0), line(r1)], [w0, w1], row);
                    row
                }
                3 => {
                    features.vertical([line(r0), line(r1), line(r2)], [w0, w1, w2], row);
                    row
                }
                4 => {
                    features.vertical([line(r0), line(r1), line(r2), line(r3)], [w0, w1, w2, w3], row);
                    row
                }
                _ => {
                    acc.iter_mut().for_each(|a| *a = HALF as u16);
                    for (k, w) in taps.iter().enumerate().filter(|(_, w)| **w != 0) {
                        // No overflow: the weights sum to ONE, so the sum stays below
                        // 255 * ONE + HALF.
                        for (a, p) in acc.iter_mut().zip(line(first + k)) {
                            *a += *w * u16::from(*p);
                        }
                    }
                    for (r, a) in row.iter_mut().zip(acc.iter()) {
                        *r = (a >> SHIFT) as u8;
                    }
                    row
                }
            };
            // Horizontal: a copy at the same width, pairs averaged at exactly half (both what
            // the taps would give, in a form the compiler vectorises), else a gather.
            let out = &mut out_row[dx..dx + dw];
            if sw == dw {
                out.copy_from_slice(blended);
            } else if sw == 2 * dw {
                for (o, pair) in out.iter_mut().zip(blended.chunks_exact(2)) {
                    *o = ((u16::from(pair[0]) + u16::from(pair[1]) + 1) >> 1) as u8;
                }
            } else {
                // Groups of eight with shuffles where the CPU and the taps allow, then the rest.
                let done = match &horizontal.shuffles {
                    Some(plan) if features.shuffles() => features.horizontal(blended, plan, out),
                    _ => 0,
                };
                horizontal_portable(blended, horizontal, done, &mut out[done..]);
            }
        }
        Ok(())
    }
}

/// The horizontal pass for destination pixels `from..from + out.len()`.
fn horizontal_portable(row: &[u8], axis: &Axis, from: usize, out: &mut [u8]) {
    let t = axis.taps;
    let (start, weights) =
        (&axis.start[from.min(axis.start.len())..], &axis.weights[(from * t).min(axis.weights.len())..]);
    match t {
        1 => horizontal_pass::<1>(row, start, weights, out),
        2 => horizontal_pass::<2>(row, start, weights, out),
        3 => horizontal_pass::<3>(row, start, weights, out),
        4 => horizontal_pass::<4>(row, start, weights, out),
        _ => {
            for ((o, first), w) in out.iter_mut().zip(start).zip(weights.chunks_exact(t)) {
                let first = *first as usize;
                let Some(px) = row.get(first..first + t) else { continue };
                let acc = w.iter().zip(px).fold(HALF, |a, (w, p)| a + u32::from(*w) * u32::from(*p));
                *o = (acc >> SHIFT) as u8;
            }
        }
    }
}

fn horizontal_pass<const T: usize>(row: &[u8], start: &[u32], weights: &[u16], out: &mut [u8]) {
    for ((o, first), w) in out.iter_mut().zip(start).zip(weights.chunks_exact(T)) {
        let first = *first as usize;
        // Fixed-size views: one bounds check each, the taps unrolled.
        let (Some(px), Ok(w)) = (row.get(first..first + T), <&[u16; T]>::try_from(w)) else { continue };
        let Ok(px) = <&[u8; T]>::try_from(px) else { continue };
        let acc = (0..T).fold(HALF, |acc, k| acc + u32::from(w[k]) * u32::from(px[k]));
        *o = (acc >> SHIFT) as u8;
    }
}

/// One destination row of the vertical pass, portable: `out[x]` is the weighted sum of the
/// `lines`' pixels at `x`, in 16-bit lanes (no overflow: the Q8 weights sum to one). Written so
/// the compiler vectorises it; `x86` compiles the same code for AVX2.
#[inline(always)]
fn vertical_rows<const T: usize>(lines: [&[u8]; T], weights: [u16; T], out: &mut [u8]) {
    let n = out.len();
    let mut rows = [&[][..]; T];
    for (r, l) in rows.iter_mut().zip(lines) {
        match l.get(..n) {
            Some(l) => *r = l,
            None => return,
        }
    }
    for (x, o) in out.iter_mut().enumerate() {
        let mut acc = HALF as u16;
        for k in 0..T {
            acc += weights[k] * u16::from(rows[k][x]);
        }
        *o = (acc >> SHIFT) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sizes and content: no panic, every output within the input's range, and a flat
        /// plane stays flat.
        #[test]
        fn any_sizes_stay_within_the_input_range(
            sw in 1u32..200, sh in 1u32..120, dw in 1u32..200, dh in 1u32..120,
            seed in any::<u64>(), flat in any::<u8>(),
        ) {
            let src: Vec<u8> = (0..sw * sh).map(|i| (seed.wrapping_mul(u64::from(i) + 7) >> 29) as u8).collect();
            let (lo, hi) = (src.iter().min().copied().unwrap_or(0), src.iter().max().copied().unwrap_or(0));
            let out = scaled(&src, sw, sh, dw, dh);
            prop_assert!(out.iter().all(|p| (lo..=hi).contains(p)));
            let flat_src = vec![flat; (sw * sh) as usize];
            prop_assert!(scaled(&flat_src, sw, sh, dw, dh).iter().all(|p| *p == flat));
        }
    }

    proptest! {
        /// The SIMD passes (when this CPU has them) give exactly the portable passes' bytes, at
        /// any sizes: shrinking within a shuffle window, past it, and growing.
        #[test]
        fn simd_and_portable_agree_to_the_bit(
            sw in 1u32..300, sh in 1u32..40, dw in 1u32..300, dh in 1u32..40, seed in any::<u64>(),
        ) {
            let src: Vec<u8> = (0..sw * sh).map(|i| (seed.wrapping_mul(u64::from(i) + 7) >> 29) as u8).collect();
            let portable = scaled_by(&mut Scaler { features: Features::default(), ..Scaler::new() }, &src, sw, sh, dw, dh);
            prop_assert_eq!(&scaled_by(&mut Scaler::new(), &src, sw, sh, dw, dh), &portable);
            #[cfg(target_arch = "x86_64")]
            {
                let features = Features::detect().without_avx2();
                prop_assert_eq!(&scaled_by(&mut Scaler { features, ..Scaler::new() }, &src, sw, sh, dw, dh), &portable);
            }
        }
    }

    #[test]
    fn the_grid_sizes_take_the_shuffles() {
        // 640 and 1280 into a 3x3 tile, 320 up into a 2x2 tile: all within a window.
        for (src, dst, wide) in [(640, 426, false), (1280, 426, true), (320, 640, false), (1920, 640, true)] {
            let axis = Axis::new(src, dst);
            let plan = axis.shuffles.as_ref().unwrap_or_else(|| panic!("{src} to {dst}: no shuffles"));
            assert_eq!(plan.wide, wide, "{src} to {dst}");
            // Every group but those whose window would pass the source's end.
            assert!(plan.bases.len() * 8 + 8 >= dst as usize - 32, "{src} to {dst}: {} groups", plan.bases.len());
        }
        // Past 32 bytes for eight pixels, and the shortcuts: none.
        for (src, dst) in [(1920, 240), (640, 640), (640, 320)] {
            assert!(Axis::new(src, dst).shuffles.is_none(), "{src} to {dst}");
        }
    }

    fn plane(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect()
    }

    fn scaled(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
        scaled_by(&mut Scaler::new(), src, sw, sh, dw, dh)
    }

    fn scaled_by(scaler: &mut Scaler, src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
        let mut out = vec![0u8; (dw * dh) as usize];
        let dst = PlaneMut { data: &mut out, stride: dw as usize, x: 0, y: 0, width: dw, height: dh };
        scaler.scale(Plane { data: src, width: sw, height: sh, stride: sw as usize }, dst).expect("scale");
        out
    }

    /// The same filters in floating point, straight from their definitions.
    fn reference(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<f64> {
        let weights = |s: u32, d: u32, i: u32| -> Vec<(usize, f64)> {
            let scale = f64::from(s) / f64::from(d);
            if d < s {
                let (lo, hi) = (f64::from(i) * scale, f64::from(i + 1) * scale);
                (0..s)
                    .map(|j| (j as usize, ((f64::from(j) + 1.0).min(hi) - f64::from(j).max(lo)).max(0.0) / scale))
                    .collect()
            } else {
                let x = ((f64::from(i) + 0.5) * scale - 0.5).clamp(0.0, f64::from(s) - 1.0);
                let j = x.floor();
                let f = x - j;
                let j = j as usize;
                vec![(j, 1.0 - f), ((j + 1).min(s as usize - 1), f)]
            }
        };
        let mut out = Vec::new();
        for y in 0..dh {
            for x in 0..dw {
                let mut v = 0.0;
                for (r, wy) in weights(sh, dh, y) {
                    for (c, wx) in weights(sw, dw, x) {
                        v += wy * wx * f64::from(src[r * sw as usize + c]);
                    }
                }
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn flat_areas_stay_exactly_flat_at_any_size() {
        for (sw, sh, dw, dh) in [(640, 360, 426, 240), (320, 240, 426, 320), (7, 5, 3, 2), (3, 3, 11, 9), (1, 1, 4, 4)]
        {
            let src = vec![173u8; (sw * sh) as usize];
            assert!(scaled(&src, sw, sh, dw, dh).iter().all(|p| *p == 173), "{sw}x{sh} to {dw}x{dh}");
        }
    }

    #[test]
    fn shrinking_averages_and_growing_interpolates_like_the_reference() {
        let src = plane(64, 36, |x, y| ((x * 37 + y * 91 + x * y) % 256) as u8);
        for (dw, dh) in [(42, 24), (32, 18), (21, 12), (5, 3), (100, 57), (64, 36)] {
            let ours = scaled(&src, 64, 36, dw, dh);
            let want = reference(&src, 64, 36, dw, dh);
            let worst = ours.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
            assert!(worst <= 1.5, "64x36 to {dw}x{dh}: off by up to {worst}");
        }
    }

    #[test]
    fn weights_sum_to_one_for_any_ratio() {
        for (src, dst) in [(640, 426), (16384, 426), (4000, 3), (1, 7), (7, 1), (426, 640), (1000, 999)] {
            let axis = Axis::new(src, dst);
            assert_eq!(axis.start.len(), dst as usize);
            for (i, w) in axis.weights.chunks_exact(axis.taps).enumerate() {
                assert_eq!(w.iter().map(|w| u32::from(*w)).sum::<u32>(), ONE, "{src} to {dst}, pixel {i}");
                assert!(axis.start[i] as usize + axis.taps <= src as usize, "{src} to {dst}, pixel {i}");
            }
        }
        // A huge picture into a small tile: full-scale white stays full-scale white.
        let src = vec![255u8; 4096 * 8];
        assert!(scaled(&src, 4096, 8, 40, 2).iter().all(|p| *p == 255));
    }

    #[test]
    fn the_copy_and_halving_shortcuts_agree_with_the_taps() {
        let src = plane(64, 36, |x, y| ((x * 37 + y * 91 + x * y) % 256) as u8);
        for (dw, dh) in [(64, 36), (32, 18), (64, 18), (32, 36)] {
            let ours = scaled(&src, 64, 36, dw, dh);
            // The same through the general path: one row at a time, gathered with the taps.
            let (h, v) = (Axis::new(64, dw), Axis::new(36, dh));
            let mut want = Vec::new();
            for i in 0..dh as usize {
                let mut row = vec![0u8; 64];
                for (x, r) in row.iter_mut().enumerate() {
                    let taps = &v.weights[i * v.taps..(i + 1) * v.taps];
                    let sum: u32 = taps
                        .iter()
                        .enumerate()
                        .map(|(k, w)| u32::from(*w) * u32::from(src[(v.start[i] as usize + k) * 64 + x]))
                        .sum();
                    *r = ((sum + HALF) >> SHIFT) as u8;
                }
                let mut out = vec![0u8; dw as usize];
                horizontal_portable(&row, &h, 0, &mut out);
                want.extend(out);
            }
            assert_eq!(ours, want, "64x36 to {dw}x{dh}");
        }
    }

    /// A source cycling through more sizes than the cache keeps never fails a scale.
    #[test]
    fn more_sizes_than_the_cache_keeps() {
        let mut scaler = Scaler::new();
        for i in 0..3 * MAX_CACHED as u32 {
            let (sw, sh) = (40 + i, 20 + i / 2);
            let src = vec![90u8; (sw * sh) as usize];
            assert!(scaled_by(&mut scaler, &src, sw, sh, 17, 9).iter().all(|p| *p == 90), "size {i}");
        }
    }

    #[test]
    fn halving_a_checkerboard_gives_its_mean() {
        let src = plane(8, 8, |x, y| if (x + y) % 2 == 0 { 0 } else { 254 });
        assert!(scaled(&src, 8, 8, 4, 4).iter().all(|p| *p == 127));
    }

    #[test]
    fn writes_only_its_rectangle_and_refuses_bad_planes() {
        let src = vec![200u8; 16];
        let mut canvas = vec![0u8; 100];
        let dst = PlaneMut { data: &mut canvas, stride: 10, x: 3, y: 4, width: 2, height: 3 };
        Scaler::new().scale(Plane { data: &src, width: 4, height: 4, stride: 4 }, dst).expect("scale");
        for (i, p) in canvas.iter().enumerate() {
            let (x, y) = (i % 10, i / 10);
            let inside = (3..5).contains(&x) && (4..7).contains(&y);
            assert_eq!(*p, if inside { 200 } else { 0 }, "pixel {x},{y}");
        }
        let mut s = Scaler::new();
        let short = Plane { data: &src[..15], width: 4, height: 4, stride: 4 };
        let inside = PlaneMut { data: &mut canvas, stride: 10, x: 0, y: 0, width: 2, height: 2 };
        assert_eq!(s.scale(short, inside), Err(ScaleError::SourceTooShort));
        let full = Plane { data: &src, width: 4, height: 4, stride: 4 };
        let outside = PlaneMut { data: &mut canvas, stride: 10, x: 9, y: 0, width: 2, height: 2 };
        assert_eq!(s.scale(full, outside), Err(ScaleError::OutsideDestination));
        let empty = PlaneMut { data: &mut canvas, stride: 10, x: 0, y: 0, width: 0, height: 2 };
        assert_eq!(s.scale(full, empty), Err(ScaleError::Empty));
    }
}
