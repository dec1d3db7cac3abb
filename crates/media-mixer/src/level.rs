//! Audio levels as RFC 6464 expresses them: 0 (loudest, 0 dBov) to 127
//! (silence, -127 dBov or below).

/// The level of a frame in -dBov (0 = full scale, 127 = silence).
pub fn level_dbov(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    // Exact integer energy (a square is at most 2^30): the same result as
    // summing in f64, which is exact below 2^23 samples, but it vectorises.
    let energy: u64 = pcm
        .iter()
        .map(|s| {
            let s = i32::from(*s);
            u64::from((s * s) as u32)
        })
        .sum();
    let rms = (energy as f64 / pcm.len() as f64).sqrt();
    if rms < 1.0 {
        return 127;
    }
    let db = 20.0 * (rms / 32767.0).log10();
    (-db).round().clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_dbov(&[0; 160]), 127);
        assert_eq!(level_dbov(&[]), 127);
        let full: Vec<i16> = (0..160).map(|i| if i % 2 == 0 { 32767 } else { -32767 }).collect();
        assert_eq!(level_dbov(&full), 0);
        // A full-scale sine is -3 dBov.
        let sine: Vec<i16> =
            (0..160).map(|i| (32767.0 * (i as f64 * std::f64::consts::PI / 8.0).sin()) as i16).collect();
        assert_eq!(level_dbov(&sine), 3);
        let quiet: Vec<i16> = sine.iter().map(|s| s / 100).collect();
        assert_eq!(level_dbov(&quiet), 43);
    }

    #[test]
    fn integer_energy_gives_the_float_result() {
        let float = |pcm: &[i16]| {
            let energy: f64 = pcm.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
            let rms = (energy / pcm.len() as f64).sqrt();
            if rms < 1.0 {
                127
            } else {
                (-20.0 * (rms / 32767.0).log10()).round().clamp(0.0, 127.0) as u8
            }
        };
        let mut x = 0x2545_f491u32;
        for scale in [1, 3, 40, 700, 9000, 32768] {
            let pcm: Vec<i16> = (0..960)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    ((x >> 16) as u16 as i16 as i32 * scale / 32768) as i16
                })
                .collect();
            assert_eq!(level_dbov(&pcm), float(&pcm), "scale {scale}");
        }
        assert_eq!(level_dbov(&[i16::MIN; 960]), 0);
    }
}
