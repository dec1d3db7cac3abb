//! The audio mixer per 20 ms tick, as the comparison with ffmpeg
//! runs it (`benches/compare_ffmpeg_mix.sh` times the same pipeline on
//! ffmpeg-made files with the `mix_to_pcmu` binary, beside ffmpeg's `amix`):
//!
//! - `tick/A_9_speaking`: 9 Opus inputs, all speaking, to one PCMU 8 kHz
//!   output (decode straight to 8 kHz, mix, one listener hearing everyone,
//!   µ-law: the gateway's path when every call takes G.711), and
//!   `tick/A_9_speaking_at_48k` the same decoded and mixed at 48 kHz, then
//!   resampled (a session with an Opus or G.722 call);
//! - `tick/B_50_speaking`: 50 inputs, all speaking;
//! - `tick/C_50_3_speaking`: 50 inputs of which 47 send DTX (1-byte
//!   packets, not decoded, and a comfort-noise update every 400 ms, which
//!   is decoded and found silent);
//! - `after_decode/9` and `/50`: the same without Opus decoding (frames
//!   decoded beforehand), to see the mixer's own cost.
//!
//! Inputs are made here with libopus (VoIP, 32 kbit/s, 20 ms), one second
//! of speech-like sound per input, replayed in a loop.

mod common;

use benches::conference::Conference;
use criterion::{black_box, Criterion, Throughput};
use media_mixer::g711::ulaw_encode_frame;
use media_mixer::opus::{OpusDecoder, OpusEncoder, OpusEncoderConfig};
use media_mixer::resample::Resampler;
use media_mixer::{ListenerId, Mixer, MixerConfig, StreamId};

const TICKS: usize = 50;
const FRAME: usize = 960;

/// Voiced-speech-like sound: a vibrato fundamental with a few harmonics,
/// a syllable-rate envelope and a little noise; `k` varies all of them.
fn speech(k: usize, tick: usize) -> Vec<i16> {
    let f0 = 100.0 + 3.0 * k as f64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (k as u64) << 32 ^ tick as u64;
    (tick * FRAME..(tick + 1) * FRAME)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let tau = std::f64::consts::TAU;
            let phase = tau * f0 * t + 2.0 * (tau * 5.0 * t).sin();
            let voice =
                phase.sin() + 0.6 * (2.0 * phase).sin() + 0.4 * (3.0 * phase).sin() + 0.25 * (5.0 * phase).sin();
            let envelope = 0.65 + 0.35 * (tau * (3.0 + 0.1 * k as f64) * t + k as f64).sin();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            (32767.0 * (0.08 * envelope * voice + 0.01 * noise)) as i16
        })
        .collect()
}

fn encoder(dtx: bool) -> OpusEncoder {
    let config = OpusEncoderConfig { bitrate: 32_000, dtx, inband_fec: false, expected_loss: 0, ..Default::default() };
    OpusEncoder::new(config).expect("encoder")
}

/// `TICKS` packets per input: the first `speaking` inputs speak, the rest
/// send DTX.
fn inputs(total: usize, speaking: usize) -> Vec<Vec<Vec<u8>>> {
    (0..total)
        .map(|k| {
            let mut enc = encoder(k >= speaking);
            let mut packet = Vec::new();
            if k >= speaking {
                // DTX starts after a few frames of silence.
                for _ in 0..30 {
                    enc.encode(&[0; FRAME], &mut packet).expect("encode");
                }
            }
            (0..TICKS)
                .map(|t| {
                    let pcm = if k < speaking { speech(k, t) } else { vec![0; FRAME] };
                    enc.encode(&pcm, &mut packet).expect("encode");
                    packet.clone()
                })
                .collect()
        })
        .collect()
}

fn ticks(c: &mut Criterion) {
    let mut g = c.benchmark_group("mixer/tick");
    g.throughput(Throughput::Elements(1));
    for (name, total, speaking, rate) in [
        ("A_9_speaking", 9, 9, 8_000),
        ("A_9_speaking_at_48k", 9, 9, 48_000),
        ("B_50_speaking", 50, 50, 8_000),
        ("B_50_speaking_at_48k", 50, 50, 48_000),
        ("C_50_3_speaking", 50, 3, 8_000),
    ] {
        let inputs = inputs(total, speaking);
        if speaking < total {
            // libopus DTX: 1-byte packets, and every 400 ms a comfort-noise
            // update (35 bytes at 32 kbit/s) that is decoded and that the
            // mixer finds silent.
            let silent: Vec<usize> = inputs[speaking..].iter().flatten().map(Vec::len).collect();
            let dtx = silent.iter().filter(|n| **n <= 3).count();
            assert!(dtx * 10 >= silent.len() * 9, "silent inputs send DTX: {silent:?}");
        }
        let mut conference = Conference::new(total, rate).expect("conference");
        let mut t = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                t = (t + 1) % TICKS;
                let out = conference.tick(inputs.iter().map(|p| p[t].as_slice())).expect("tick");
                black_box(out[0])
            })
        });
    }
    g.finish();
}

/// Mixing, resampling and encoding of frames decoded beforehand: the same
/// calls as `Conference` makes after decoding.
fn after_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("mixer/after_decode");
    g.throughput(Throughput::Elements(1));
    for total in [9, 50] {
        let frames: Vec<Vec<Vec<i16>>> = inputs(total, total)
            .iter()
            .map(|packets| {
                let mut dec = OpusDecoder::new(48_000).expect("decoder");
                packets
                    .iter()
                    .map(|p| {
                        let mut pcm = Vec::new();
                        dec.decode(p, &mut pcm).expect("decode");
                        pcm
                    })
                    .collect()
            })
            .collect();
        let mut mixer = Mixer::new(MixerConfig::default());
        for k in 0..total {
            mixer.add_stream(StreamId(k as u64));
        }
        mixer.add_listener(ListenerId(0), None, None);
        let mut resampler = Resampler::new(48_000, 8_000).expect("resampler");
        let (mut mixed, mut narrow, mut ulaw) = (vec![0i16; FRAME], Vec::new(), Vec::new());
        let mut t = 0;
        g.bench_function(total.to_string(), |b| {
            b.iter(|| {
                t = (t + 1) % TICKS;
                for (k, f) in frames.iter().enumerate() {
                    mixer.push_frame(StreamId(k as u64), &f[t], None).expect("push");
                }
                mixer.mix();
                mixer.output(ListenerId(0), &mut mixed).expect("output");
                mixer.end_tick();
                narrow.clear();
                resampler.process(&mixed, &mut narrow);
                ulaw_encode_frame(&narrow, &mut ulaw);
                black_box(ulaw[0])
            })
        });
    }
    g.finish();
}

fn main() {
    common::run(&[ticks, after_decode]);
}
