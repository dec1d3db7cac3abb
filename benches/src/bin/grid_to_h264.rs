//! The grid pipeline on one thread: nine 640x360 H.264 sources decoded,
//! composed on a 1280x720 canvas (every tile re-scaled every frame, the
//! worst case), and encoded to H.264. Writes the nine source streams to
//! `<dir>/src<i>.h264` so `compare_ffmpeg_grid.sh` feeds ffmpeg the very
//! same inputs, then prints frames per second and the time per stage.
//!
//! Usage: `grid_to_h264 <dir> [frames] [h264|vp8]` (the last argument picks the output codec).

use media_mixer::grid::{Compositor, Source, I420};
use media_mixer::h264::{H264Decoder, H264Encoder};
use media_mixer::vp8::{Vp8Decoder, Vp8Encoder};
use std::time::{Duration, Instant};

fn source_picture(i: usize, frame: usize) -> I420 {
    let (w, h) = (640u32, 360u32);
    let base = (40 + 20 * i as u8, 90 + 12 * i as u8, 200 - 14 * i as u8);
    let mut p = I420::filled(w, h, base).unwrap_or_else(|e| panic!("{e}"));
    // A moving bright bar and some texture, so the encoders have work.
    let bar = (frame * 8 + i * 40) % w as usize;
    for y in 0..h as usize {
        for x in bar..(bar + 40).min(w as usize) {
            p.y[y * w as usize + x] = 235;
        }
        for x in (0..w as usize).step_by(16) {
            p.y[y * w as usize + x] = p.y[y * w as usize + x].wrapping_add(((x + y + frame) % 32) as u8);
        }
    }
    p
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/grid-bench".into()));
    let frames: usize = args.next().and_then(|f| f.parse().ok()).unwrap_or(300);
    let vp8 = args.next().is_some_and(|c| c.eq_ignore_ascii_case("vp8"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // Nine sources, encoded once (not timed).
    let mut streams: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..9 {
        let mut enc = H264Encoder::new(640, 360, 800_000, 30.0).unwrap_or_else(|e| panic!("{e}"));
        let mut aus = Vec::new();
        let mut file = Vec::new();
        for f in 0..frames {
            let au = enc.encode(&source_picture(i, f), f == 0).unwrap_or_else(|e| panic!("{e}"));
            file.extend_from_slice(&au);
            aus.push(au);
        }
        std::fs::write(dir.join(format!("src{i}.h264")), &file).unwrap_or_else(|e| panic!("{e}"));
        streams.push(aus);
    }
    let mut decoders: Vec<H264Decoder> = (0..9).map(|_| H264Decoder::new().unwrap_or_else(|e| panic!("{e}"))).collect();
    let mut latest: Vec<Option<I420>> = vec![None; 9];
    let mut comp = Compositor::new(1280, 720).unwrap_or_else(|e| panic!("{e}"));
    let mut h264 = (!vp8).then(|| H264Encoder::new(1280, 720, 2_000_000, 30.0).unwrap_or_else(|e| panic!("{e}")));
    let mut vp8enc = vp8.then(|| Vp8Encoder::new(1280, 720, 2_000_000, 30).unwrap_or_else(|e| panic!("{e}")));
    let (mut t_dec, mut t_comp, mut t_enc) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut bytes = 0usize;
    // The output decoded again (not timed), for its PSNR against the composed canvas.
    let mut check_h264 = H264Decoder::new().unwrap_or_else(|e| panic!("{e}"));
    let mut check_vp8 = Vp8Decoder::new().unwrap_or_else(|e| panic!("{e}"));
    let (mut mse_sum, mut mse_frames) = (0f64, 0usize);
    let mut dropped = 0usize;
    let mut t_check = Duration::ZERO;
    let start = Instant::now();
    for f in 0..frames {
        let t0 = Instant::now();
        for ((d, stream), slot) in decoders.iter_mut().zip(&streams).zip(latest.iter_mut()) {
            if let Ok(Some(p)) = d.decode(&stream[f]) {
                *slot = Some(p);
            }
        }
        let t1 = Instant::now();
        let sources: Vec<Source<'_>> = latest
            .iter()
            .enumerate()
            .map(|(i, p)| Source { id: i as u64, generation: f as u64, picture: p.as_ref() })
            .collect();
        comp.compose(&sources).unwrap_or_else(|e| panic!("{e}"));
        let t2 = Instant::now();
        let out = match (&mut h264, &mut vp8enc) {
            (Some(e), _) => e.encode(comp.canvas(), f == 0),
            (_, Some(e)) => e.encode(comp.canvas(), f == 0),
            _ => unreachable!(),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let t3 = Instant::now();
        t_dec += t1 - t0;
        t_comp += t2 - t1;
        t_enc += t3 - t2;
        bytes += out.len();
        // A picture the encoder dropped to keep its rate: the comparison is fair only without.
        dropped += usize::from(out.is_empty());
        let t4 = Instant::now();
        let back = if vp8 { check_vp8.decode(&out) } else { check_h264.decode(&out) };
        if let Ok(Some(p)) = back {
            let canvas = comp.canvas();
            if p.y.len() == canvas.y.len() {
                let se: u64 = p.y.iter().zip(&canvas.y).map(|(a, b)| u64::from(a.abs_diff(*b)).pow(2)).sum();
                mse_sum += se as f64 / p.y.len() as f64;
                mse_frames += 1;
            }
        }
        t_check += t4.elapsed();
    }
    // The quality check is not part of the pipeline.
    let total = start.elapsed() - t_check;
    let psnr = match mse_frames {
        0 => "n/a (no frame decoded back)".to_owned(),
        n if mse_sum == 0.0 => format!("lossless over {n} frames"),
        n => format!("{:.2}", 10.0 * (255.0f64 * 255.0 / (mse_sum / n as f64)).log10()),
    };
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / frames as f64;
    println!(
        "ours ({}): {frames} frames in {:.2} s = {:.1} fps; per frame: decode 9x640x360 {:.2} ms, compose {:.2} ms, encode 1280x720 {:.2} ms; {:.0} kbit/s, PSNR(Y) {} dB; {dropped} pictures dropped by the encoder",
        if vp8 { "VP8" } else { "H.264" },
        total.as_secs_f64(),
        frames as f64 / total.as_secs_f64(),
        per(t_dec),
        per(t_comp),
        per(t_enc),
        bytes as f64 * 8.0 * 30.0 / frames as f64 / 1000.0,
        psnr
    );
}
