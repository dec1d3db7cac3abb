//! The scaler's SIMD passes for x86-64, chosen at run time: the horizontal pass with SSSE3 byte
//! shuffles, the vertical pass compiled for AVX2. Both compute exactly what the portable passes
//! compute (the same Q8 integer arithmetic in 16-bit lanes), so a machine without these
//! features gets the same pictures, only slower.
//!
//! The bodies are safe code (`std::arch` intrinsics are safe inside a function compiled for their
//! feature, and vectors are converted from byte arrays with `bytemuck`); the only `unsafe` is the
//! call into those functions, made after the features were detected.

use super::{vertical_rows, Shuffles, HALF, SHIFT};
use std::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi16, _mm256_mullo_epi16, _mm256_or_si256, _mm256_packus_epi16, _mm256_set1_epi16,
    _mm256_shuffle_epi8, _mm256_srli_epi16, _mm_add_epi16, _mm_mullo_epi16, _mm_or_si128, _mm_packus_epi16,
    _mm_set1_epi16, _mm_shuffle_epi8, _mm_srli_epi16,
};

/// The instruction sets found on this machine. Only [`Features::detect`] turns them on, which is
/// what makes the calls below sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Features {
    ssse3: bool,
    avx2: bool,
}

impl Features {
    /// What this CPU has (`std` caches the answer).
    pub(super) fn detect() -> Features {
        Features { ssse3: is_x86_feature_detected!("ssse3"), avx2: is_x86_feature_detected!("avx2") }
    }

    /// The same, without AVX2 (to test the SSSE3 pass on machines that have both).
    #[cfg(test)]
    pub(super) fn without_avx2(self) -> Features {
        Features { avx2: false, ..self }
    }

    /// The horizontal pass can use byte shuffles.
    pub(super) fn shuffles(self) -> bool {
        self.ssse3
    }

    /// Runs the horizontal pass for the groups of `plan` (the caller checked [`Features::shuffles`]
    /// and does the pixels after the groups itself). Returns the destination pixels written.
    pub(super) fn horizontal(self, row: &[u8], plan: &Shuffles, out: &mut [u8]) -> usize {
        match (plan.wide, plan.taps) {
            (false, 1) => self.horizontal_with::<false, 1>(row, plan, out),
            (false, 2) => self.horizontal_with::<false, 2>(row, plan, out),
            (false, 3) => self.horizontal_with::<false, 3>(row, plan, out),
            (false, 4) => self.horizontal_with::<false, 4>(row, plan, out),
            (true, 3) => self.horizontal_with::<true, 3>(row, plan, out),
            (true, 4) => self.horizontal_with::<true, 4>(row, plan, out),
            (true, 5) => self.horizontal_with::<true, 5>(row, plan, out),
            // Other tap counts (past what a 32-byte window holds for eight pixels, or a plan
            // built from an unusual axis): the portable pass does them all.
            _ => 0,
        }
    }

    #[allow(unsafe_code)]
    fn horizontal_with<const WIDE: bool, const T: usize>(self, row: &[u8], plan: &Shuffles, out: &mut [u8]) -> usize {
        // SAFETY: `avx2` and `ssse3` are only true when `is_x86_feature_detected!` said so, which
        // is all these functions need; they are safe code compiled with those features.
        unsafe {
            if self.avx2 {
                horizontal_avx2::<WIDE, T>(row, plan, out)
            } else if self.ssse3 {
                horizontal_ssse3::<WIDE, T>(row, plan, out, 0)
            } else {
                0
            }
        }
    }

    /// One destination row of the vertical pass: `lines` (same length as `out`) weighted and
    /// summed. The weights sum to one (Q8).
    #[allow(unsafe_code)]
    pub(super) fn vertical<const T: usize>(self, lines: [&[u8]; T], weights: [u16; T], out: &mut [u8]) {
        if self.avx2 {
            // SAFETY: `avx2` is only true when `is_x86_feature_detected!("avx2")` said so; the
            // function is safe code compiled with that feature.
            unsafe { vertical_avx2(lines, weights, out) }
        } else {
            vertical_rows(lines, weights, out);
        }
    }
}

#[target_feature(enable = "avx2")]
fn vertical_avx2<const T: usize>(lines: [&[u8]; T], weights: [u16; T], out: &mut [u8]) {
    vertical_rows(lines, weights, out);
}

/// A 16-byte array (of bytes or of 16-bit lanes) as a vector.
fn vector<T: bytemuck::Pod>(bytes: T) -> __m128i {
    const { assert!(size_of::<T>() == 16) };
    bytemuck::cast(bytes)
}

/// One group of eight destination pixels: its source window's start, its masks, its weights.
struct Group<'a> {
    base: usize,
    masks: &'a [[u8; 16]],
    weights: &'a [[u16; 8]],
}

/// Group `g` of a plan with `T` taps, or `None` past the plan's end.
fn group<const WIDE: bool, const T: usize>(plan: &Shuffles, g: usize) -> Option<Group<'_>> {
    let per = if WIDE { 2 * T } else { T };
    Some(Group {
        base: *plan.bases.get(g)? as usize,
        masks: plan.masks.get(g * per..(g + 1) * per)?,
        weights: plan.weights.get(g * T..(g + 1) * T)?,
    })
}

/// The source window of a group: 16 bytes, or 32 when `WIDE`.
fn window<const WIDE: bool>(row: &[u8], base: usize) -> Option<[[u8; 16]; 2]> {
    let lo = <[u8; 16]>::try_from(row.get(base..base + 16)?).ok()?;
    let hi = if WIDE { <[u8; 16]>::try_from(row.get(base + 16..base + 32)?).ok()? } else { [0; 16] };
    Some([lo, hi])
}

/// Eight destination pixels per step, from group `from` on: the source window is loaded once
/// (16 or, when `WIDE`, 32 bytes), each tap's pixels are shuffled out of it into 16-bit lanes (a
/// mask byte of 0x80 gives zero, which also fills the lanes' high bytes), multiplied by that
/// tap's eight weights and summed, then rounded, shifted and packed back to bytes. Returns the
/// destination pixels written, counting from the row's start.
#[target_feature(enable = "ssse3")]
fn horizontal_ssse3<const WIDE: bool, const T: usize>(
    row: &[u8],
    plan: &Shuffles,
    out: &mut [u8],
    from: usize,
) -> usize {
    let half = _mm_set1_epi16(HALF as i16);
    let mut g = from;
    while let (Some(Group { base, masks, weights }), Some(dst)) =
        (group::<WIDE, T>(plan, g), out.get_mut(g * 8..g * 8 + 8))
    {
        let Some([lo, hi]) = window::<WIDE>(row, base) else { break };
        let (lo, hi) = (vector(lo), vector(hi));
        let mut acc = half;
        for k in 0..T {
            let px = if WIDE {
                _mm_or_si128(_mm_shuffle_epi8(lo, vector(masks[2 * k])), _mm_shuffle_epi8(hi, vector(masks[2 * k + 1])))
            } else {
                _mm_shuffle_epi8(lo, vector(masks[k]))
            };
            acc = _mm_add_epi16(acc, _mm_mullo_epi16(px, vector(weights[k])));
        }
        let shifted = _mm_srli_epi16::<{ SHIFT as i32 }>(acc);
        let bytes: [u8; 16] = bytemuck::cast(_mm_packus_epi16(shifted, shifted));
        dst.copy_from_slice(&bytes[..8]);
        g += 1;
    }
    g * 8
}

/// As [`horizontal_ssse3`], two groups per step in the two 128-bit halves of AVX2 registers
/// (its byte shuffle works within each half), the last odd group by SSSE3.
#[target_feature(enable = "avx2")]
fn horizontal_avx2<const WIDE: bool, const T: usize>(row: &[u8], plan: &Shuffles, out: &mut [u8]) -> usize {
    let half = _mm256_set1_epi16(HALF as i16);
    let mut g = 0;
    while let (Some(first), Some(second), Some(dst)) =
        (group::<WIDE, T>(plan, g), group::<WIDE, T>(plan, g + 1), out.get_mut(g * 8..g * 8 + 16))
    {
        let (Group { base: b0, masks: m0, weights: w0 }, Group { base: b1, masks: m1, weights: w1 }) = (first, second);
        let (Some([lo0, hi0]), Some([lo1, hi1])) = (window::<WIDE>(row, b0), window::<WIDE>(row, b1)) else { break };
        let (lo, hi) = (wide_vector([lo0, lo1]), wide_vector([hi0, hi1]));
        let mut acc = half;
        for k in 0..T {
            let px = if WIDE {
                _mm256_or_si256(
                    _mm256_shuffle_epi8(lo, wide_vector([m0[2 * k], m1[2 * k]])),
                    _mm256_shuffle_epi8(hi, wide_vector([m0[2 * k + 1], m1[2 * k + 1]])),
                )
            } else {
                _mm256_shuffle_epi8(lo, wide_vector([m0[k], m1[k]]))
            };
            acc = _mm256_add_epi16(acc, _mm256_mullo_epi16(px, wide_vector([w0[k], w1[k]])));
        }
        let shifted = _mm256_srli_epi16::<{ SHIFT as i32 }>(acc);
        let bytes: [u8; 32] = bytemuck::cast(_mm256_packus_epi16(shifted, shifted));
        dst[..8].copy_from_slice(&bytes[..8]);
        dst[8..].copy_from_slice(&bytes[16..24]);
        g += 2;
    }
    horizontal_ssse3::<WIDE, T>(row, plan, out, g)
}

/// Two 16-byte arrays as the halves of a 256-bit vector.
fn wide_vector<T: bytemuck::Pod>(halves: [T; 2]) -> __m256i {
    const { assert!(size_of::<T>() == 16) };
    bytemuck::cast(halves)
}
