//! G.722 at 64 kbit/s per 20 ms frame: encode 320 samples into 160 bytes and
//! decode 160 bytes into 320 samples, on the 2 s reference signal of
//! `crates/media-mixer/tests/data/g722` (a chirp to 7 kHz plus noise, and
//! ffmpeg's encoding of it), cycling through its 100 frames with one
//! long-lived encoder and decoder, as a call does.
//!
//! `benches/compare_ffmpeg_g722.sh` runs ffmpeg's G.722 encoder and decoder
//! on the same signal and prints the ratio.

mod common;

use criterion::{black_box, Criterion, Throughput};
use media_mixer::g722::{G722Decoder, G722Encoder, FRAME_BYTES, FRAME_SAMPLES};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/media-mixer/tests/data/g722").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn g722(c: &mut Criterion) {
    let pcm: Vec<i16> = data("input.raw").chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let stream = data("ffmpeg.g722");
    let pcm_frames: Vec<&[i16]> = pcm.chunks_exact(FRAME_SAMPLES).collect();
    let byte_frames: Vec<&[u8]> = stream.chunks_exact(FRAME_BYTES).collect();

    let mut g = c.benchmark_group("g722");
    g.throughput(Throughput::Elements(FRAME_SAMPLES as u64));

    let mut enc = G722Encoder::new();
    let mut out = Vec::with_capacity(FRAME_BYTES);
    let mut frames = pcm_frames.iter().cycle();
    g.bench_function("encode_20ms", |b| {
        b.iter(|| {
            let frame = frames.next().copied().unwrap_or_default();
            enc.encode(black_box(frame), &mut out);
            black_box(&out);
        });
    });

    let mut dec = G722Decoder::new();
    let mut out = Vec::with_capacity(FRAME_SAMPLES);
    let mut frames = byte_frames.iter().cycle();
    g.bench_function("decode_20ms", |b| {
        b.iter(|| {
            let frame = frames.next().copied().unwrap_or_default();
            dec.decode(black_box(frame), &mut out);
            black_box(&out);
        });
    });
    g.finish();
}

fn main() {
    common::run(&[g722]);
}
