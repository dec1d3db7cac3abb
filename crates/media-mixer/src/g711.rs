//! G.711 µ-law and A-law (ITU-T G.711), sample by sample.

/// Encodes a linear sample as µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80u8
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = 31 - ((s >> 7) as u32).max(1).leading_zeros();
    let mantissa = ((s >> (exponent + 3)) & 0x0f) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

/// Decodes a µ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let exp = i32::from((b >> 4) & 0x07);
    let magnitude = (((i32::from(b & 0x0f) << 3) + 0x84) << exp) - 0x84;
    (if b & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes a linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3; // 13-bit
    let sign = if s >= 0 {
        0x80u8
    } else {
        s = -s - 1;
        0
    };
    let s = s.min(0x0fff);
    let byte = if s < 32 {
        (s >> 1) as u8
    } else {
        let exponent = 31 - (s as u32).leading_zeros() - 4; // 1..=7
        let mantissa = ((s >> exponent) & 0x0f) as u8;
        ((exponent as u8) << 4) | mantissa
    };
    (byte | sign) ^ 0x55
}

/// Decodes an A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    (if b & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// Encodes a frame (µ-law).
pub fn ulaw_encode_frame(pcm: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(pcm.iter().map(|s| ulaw_encode(*s)));
}

/// Decodes a frame (µ-law).
pub fn ulaw_decode_frame(payload: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(payload.iter().map(|b| ulaw_decode(*b)));
}

/// Encodes a frame (A-law).
pub fn alaw_encode_frame(pcm: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(pcm.iter().map(|s| alaw_encode(*s)));
}

/// Decodes a frame (A-law).
pub fn alaw_decode_frame(payload: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(payload.iter().map(|b| alaw_decode(*b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points() {
        // ITU-T G.711 table values.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_encode(0), 0xd5);
    }

    #[test]
    fn every_code_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(ulaw_encode(ulaw_decode(b)), if b == 0x7f { 0xff } else { b }, "µ-law {b:#x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#x}");
        }
    }

    #[test]
    fn error_is_bounded() {
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            for (d, name) in [(ulaw_decode(ulaw_encode(s)), "µ"), (alaw_decode(alaw_encode(s)), "A")] {
                let err = (i32::from(d) - i32::from(s)).abs();
                assert!(err <= (i32::from(s).abs() / 16).max(16) + 8, "{name}-law {s} -> {d}");
            }
        }
    }
}
