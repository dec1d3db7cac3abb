//! Writes seed inputs for the `video_input` and `audio_input` targets from real encodings (our
//! encoders, packetised as we send them), into the corpus directory given (`fuzz/seed.sh`).

use media_mixer::g722::G722Encoder;
use media_mixer::grid::I420;
use media_mixer::h264::H264Encoder;
use media_mixer::opus::{OpusEncoder, OpusEncoderConfig};
use media_mixer::packetize::{h264_packetize, split_annex_b, vp8_packetize};
use media_mixer::vp8::Vp8Encoder;
use media_mixer::{g711, Error};
use std::path::Path;

/// One record of the video target: flags, little-endian length, payload.
fn video_record(out: &mut Vec<u8>, flags: u8, payload: &[u8]) {
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Six small encoded frames of a moving picture: a keyframe and five that follow it.
fn encoded(mut encode: impl FnMut(&I420, bool) -> Result<Vec<u8>, Error>) -> Result<Vec<Vec<u8>>, Error> {
    (0..6u32).map(|n| encode(&I420::moving(64, 48, n).ok_or(Error::Decode("picture"))?, n == 0)).collect()
}

fn video_seeds(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut h264 = H264Encoder::new(64, 48, 300_000, 15.0)?;
    let mut vp8 = Vp8Encoder::new(64, 48, 300_000, 15)?;
    let h264_frames = encoded(|p, k| h264.encode(p, k))?;
    let vp8_frames = encoded(|p, k| vp8.encode(p, k))?;
    for (name, mode, frames) in [("h264", 0u8, &h264_frames), ("vp8", 1, &vp8_frames)] {
        let (mut packets, mut whole) = (vec![mode], vec![mode | 2]);
        for (n, frame) in frames.iter().enumerate() {
            let payloads = if mode == 0 {
                h264_packetize(&split_annex_b(frame), 120)
            } else {
                vp8_packetize(frame, n as u16, 120)
            };
            let last = payloads.len().saturating_sub(1);
            for (i, p) in payloads.iter().enumerate() {
                let flags = u8::from(i == last) | if i == 0 { 4 } else { 0 };
                video_record(&mut packets, flags, p);
            }
            video_record(&mut whole, 5, frame);
        }
        std::fs::write(dir.join(format!("video_input/{name}-packets")), packets)?;
        std::fs::write(dir.join(format!("video_input/{name}-frames")), whole)?;
    }
    Ok(())
}

/// One record of the audio target: flags, milliseconds since the last, timestamp, length, payload.
fn audio_record(out: &mut Vec<u8>, flags: u8, gap_ms: u8, timestamp: u32, payload: &[u8]) {
    out.extend_from_slice(&[flags, gap_ms]);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.push(payload.len().min(255) as u8);
    out.extend_from_slice(&payload[..payload.len().min(255)]);
}

/// 20 ms of a 440 Hz tone at `rate`, frame `n`.
fn tone(rate: u32, n: u32) -> Vec<i16> {
    let len = rate / 50;
    (0..len)
        .map(|i| {
            let t = f64::from(n * len + i) / f64::from(rate);
            ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect()
}

fn audio_seeds(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut opus = OpusEncoder::new(OpusEncoderConfig::default())?;
    let mut g722 = G722Encoder::new();
    for (name, mode) in [("opus", 0u8), ("g722", 1), ("pcmu", 2), ("pcma", 3)] {
        let mut out = vec![mode];
        let step = if mode == 0 { 960 } else { 160 };
        for n in 0..8u32 {
            let mut payload = Vec::new();
            match mode {
                0 => opus.encode(&tone(48_000, n), &mut payload)?,
                1 => g722.encode(&tone(16_000, n), &mut payload),
                2 => g711::ulaw_encode_frame(&tone(8_000, n), &mut payload),
                _ => g711::alaw_encode_frame(&tone(8_000, n), &mut payload),
            }
            audio_record(&mut out, 4, 20, n * step, &payload);
        }
        // A digit 5, pressed for two packets and ended (RFC 4733: event, E|volume, duration).
        for (flags, duration) in [(3u8, 160u16), (1, 320), (1 | 4, 480)] {
            let end = if duration == 480 { 0x80 } else { 0 };
            let d = duration.to_be_bytes();
            audio_record(&mut out, flags, 20, 8 * step, &[5, end | 10, d[0], d[1]]);
        }
        std::fs::write(dir.join(format!("audio_input/{name}")), out)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: seed_media <corpus directory>")?;
    let dir = Path::new(&dir);
    for target in ["video_input", "audio_input"] {
        std::fs::create_dir_all(dir.join(target))?;
    }
    video_seeds(dir)?;
    audio_seeds(dir)?;
    println!("seeded: video_input, audio_input");
    Ok(())
}
