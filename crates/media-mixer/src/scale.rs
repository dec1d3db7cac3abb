//! Scaling of 8-bit picture planes for the grid: separable, fixed-point, with the taps of each
//! (source length, destination length) pair computed once and kept.
//!
//! Shrinking averages the area each destination pixel covers (a box filter: every source pixel
//! counts, with its share of the pixel it falls in, so nothing aliases the way point sampling
//! does; past about 128:1, where one pixel's share rounds to zero in Q8, it thins out towards
//! sampling); growing interpolates bilinearly. The vertical pass runs first, over whole rows (a
//! multiply-add per tap the compiler turns into SIMD), so the horizontal pass, which gathers, only
//! runs on the destination's rows. Weights are Q8, so the vertical pass works in 16-bit lanes (eight
//! or sixteen pixels per instruction), and each destination pixel's weights sum to exactly one,
//! so a flat area stays exactly flat.

use std::collections::HashMap;

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
        Axis { taps, start, weights }
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
#[derive(Debug, Default)]
pub struct Scaler {
    axes: HashMap<(u32, u32), Axis>,
    acc: Vec<u16>,
    row: Vec<u8>,
}

impl Scaler {
    /// A scaler with nothing cached.
    pub fn new() -> Scaler {
        Scaler::default()
    }

    fn make_axes(&mut self, pairs: [(u32, u32); 2]) {
        for key in pairs {
            if !self.axes.contains_key(&key) {
                if self.axes.len() >= MAX_CACHED {
                    self.axes.clear();
                }
                self.axes.insert(key, Axis::new(key.0, key.1));
            }
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
        let Scaler { axes, acc, row } = self;
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
            let mut nonzero = taps.iter().enumerate().filter(|(_, w)| **w != 0);
            let blended: &[u8] = match (nonzero.next(), nonzero.next()) {
                // One source row (same height, or a row the weights put wholly on one line).
                (Some((k, _)), None) => line(first + k),
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
                match horizontal.taps {
                    1 => horizontal_pass::<1>(blended, horizontal, out),
                    2 => horizontal_pass::<2>(blended, horizontal, out),
                    3 => horizontal_pass::<3>(blended, horizontal, out),
                    4 => horizontal_pass::<4>(blended, horizontal, out),
                    _ => horizontal_any(blended, horizontal, out),
                }
            }
        }
        Ok(())
    }
}

fn horizontal_pass<const T: usize>(row: &[u8], axis: &Axis, out: &mut [u8]) {
    for ((o, first), w) in out.iter_mut().zip(&axis.start).zip(axis.weights.chunks_exact(T)) {
        let first = *first as usize;
        // Fixed-size views: one bounds check each, the taps unrolled.
        let (Some(px), Ok(w)) = (row.get(first..first + T), <&[u16; T]>::try_from(w)) else { continue };
        let Ok(px) = <&[u8; T]>::try_from(px) else { continue };
        let acc = (0..T).fold(HALF, |acc, k| acc + u32::from(w[k]) * u32::from(px[k]));
        *o = (acc >> SHIFT) as u8;
    }
}

fn horizontal_any(row: &[u8], axis: &Axis, out: &mut [u8]) {
    let t = axis.taps;
    for ((o, first), w) in out.iter_mut().zip(&axis.start).zip(axis.weights.chunks_exact(t)) {
        let first = *first as usize;
        let Some(px) = row.get(first..first + t) else { continue };
        let acc = w.iter().zip(px).fold(HALF, |a, (w, p)| a + u32::from(*w) * u32::from(*p));
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

    fn plane(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect()
    }

    fn scaled(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
        let mut out = vec![0u8; (dw * dh) as usize];
        let dst = PlaneMut { data: &mut out, stride: dw as usize, x: 0, y: 0, width: dw, height: dh };
        Scaler::new().scale(Plane { data: src, width: sw, height: sh, stride: sw as usize }, dst).expect("scale");
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
                horizontal_any(&row, &h, &mut out);
                want.extend(out);
            }
            assert_eq!(ours, want, "64x36 to {dw}x{dh}");
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
