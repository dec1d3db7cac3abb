//! G.722 against ffmpeg: reference streams made once with ffmpeg's `g722`
//! encoder and decoder (see `tests/data/g722/README.md`), plus signal-level
//! checks of our own round trip.

use std::f64::consts::PI;
use std::path::PathBuf;

use media_mixer::g722::{G722Decoder, G722Encoder, CODEC_DELAY, FRAME_BYTES, FRAME_SAMPLES};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/g722").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pcm(name: &str) -> Vec<i16> {
    data(name).chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// Encodes in 20 ms frames, as the gateway does.
fn encode(input: &[i16]) -> Vec<u8> {
    let mut enc = G722Encoder::new();
    let mut frame = Vec::new();
    let mut all = Vec::new();
    for chunk in input.chunks(FRAME_SAMPLES) {
        enc.encode(chunk, &mut frame);
        all.extend_from_slice(&frame);
    }
    all
}

/// Decodes in 20 ms frames, as the gateway does.
fn decode(payload: &[u8]) -> Vec<i16> {
    let mut dec = G722Decoder::new();
    let mut frame = Vec::new();
    let mut all = Vec::new();
    for chunk in payload.chunks(FRAME_BYTES) {
        dec.decode(chunk, &mut frame);
        all.extend_from_slice(&frame);
    }
    all
}

/// SNR in dB of `got` against `reference`, with `got` delayed by `lag`
/// samples, skipping the first `skip` reference samples (the adaptation).
fn snr_db(reference: &[i16], got: &[i16], lag: usize, skip: usize) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (r, g) in reference.iter().zip(&got[lag..]).skip(skip) {
        let (r, g) = (f64::from(*r), f64::from(*g));
        signal += r * r;
        noise += (r - g) * (r - g);
    }
    10.0 * (signal / noise.max(1e-9)).log10()
}

#[test]
fn decoder_matches_ffmpeg_bit_exactly() {
    let stream = data("ffmpeg.g722");
    let expected = pcm("ffmpeg_decoded.raw");
    assert_eq!(stream.len() * 2, expected.len());
    let got = decode(&stream);
    let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first differing sample");
    assert_eq!(got, expected);
}

#[test]
fn encoder_matches_ffmpeg_bit_exactly() {
    let input = pcm("input.raw");
    let expected = data("ffmpeg.g722");
    assert_eq!(input.len(), expected.len() * 2);
    let got = encode(&input);
    let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first differing byte");
    assert_eq!(got, expected);
}

/// Lag (0..64 samples) at which `got` best matches `reference`.
fn best_lag(reference: &[i16], got: &[i16]) -> usize {
    (0..64).max_by(|&a, &b| snr_db(reference, got, a, 320).total_cmp(&snr_db(reference, got, b, 320))).unwrap_or(0)
}

#[test]
fn round_trip_snr_of_a_voice_band_chirp_is_above_30_db() {
    // 100 Hz to 3.4 kHz in 2 s at -6 dBFS: the lower sub-band, where
    // G.722 spends 6 of its 8 bits.
    let input: Vec<i16> = (0..32_000)
        .map(|n| {
            let t = f64::from(n) / 16_000.0;
            (16_000.0 * (2.0 * PI * (100.0 * t + 825.0 * t * t)).sin()).round() as i16
        })
        .collect();
    let output = decode(&encode(&input));
    assert_eq!(best_lag(&input, &output), CODEC_DELAY);
    let snr = snr_db(&input, &output, CODEC_DELAY, 320);
    println!("round-trip SNR, 100 Hz-3.4 kHz chirp: {snr:.2} dB");
    assert!(snr > 30.0, "round-trip SNR {snr:.2} dB");
}

#[test]
fn round_trip_snr_of_the_wideband_reference_signal() {
    // The reference input sweeps to 7 kHz under white noise, so about half
    // its time and much of its noise sit in the upper sub-band, which has
    // only 2 bits per sample: G.722 itself (ffmpeg's round trip is
    // bit-identical to ours) gets about 25 dB here, and below 4 kHz over 30.
    let input = pcm("input.raw");
    let output = decode(&encode(&input));
    assert_eq!(best_lag(&input, &output), CODEC_DELAY);
    let snr = snr_db(&input, &output, CODEC_DELAY, 320);
    println!("round-trip SNR, reference signal (100 Hz-7 kHz chirp + noise): {snr:.2} dB");
    assert!(snr > 24.0, "round-trip SNR {snr:.2} dB");
    // The sweep passes 1.3-2.7 kHz between 0.35 s and 0.75 s.
    let (from, to) = (5_600, 12_000);
    let snr = snr_db(&input[..to], &output[..to + CODEC_DELAY], CODEC_DELAY, from);
    println!("round-trip SNR, reference signal while the sweep is at 1.3-2.7 kHz: {snr:.2} dB");
    assert!(snr > 30.0, "round-trip SNR {snr:.2} dB");
}

#[test]
fn our_stream_decoded_by_ffmpeg_matches_our_decoder() {
    // Both halves are bit-exact, so ffmpeg's decoded file is also what our
    // own round trip must produce.
    let input = pcm("input.raw");
    assert_eq!(decode(&encode(&input)), pcm("ffmpeg_decoded.raw"));
}

/// Power of `x` at `freq` Hz (16 kHz sampling), by the Goertzel recurrence.
fn goertzel(x: &[i16], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / 16_000.0).cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

#[test]
fn a_1khz_tone_comes_out_at_1khz() {
    let input: Vec<i16> =
        (0..16_000).map(|n| (12_000.0 * (2.0 * PI * 1000.0 * f64::from(n) / 16_000.0).sin()).round() as i16).collect();
    let output = decode(&encode(&input));
    // One second after the adaptation: Goertzel over whole cycles.
    let tail = &output[1600..];
    let at_1k = goertzel(tail, 1000.0);
    for other in [500.0, 900.0, 1100.0, 2000.0, 3000.0, 7000.0] {
        let p = goertzel(tail, other);
        assert!(at_1k > 1000.0 * p, "1 kHz {at_1k:e} vs {other} Hz {p:e}");
    }
    // Zero crossings: 2000 per second.
    let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let expected = 2000 * tail.len() / 16_000;
    assert!(crossings.abs_diff(expected) <= 2, "{crossings} crossings, expected {expected}");
    let snr = snr_db(&input, &output, CODEC_DELAY, 1600);
    println!("1 kHz tone round-trip SNR: {snr:.2} dB");
    assert!(snr > 30.0, "{snr:.2} dB");
}
