//! Our composed grid encoded to VP8 by our libvpx wrapper, decoded by
//! ffmpeg from an IVF file: the tiles carry their colours.

use media_mixer::grid::{Compositor, Source, I420};
use media_mixer::vp8::Vp8Encoder;
use std::process::{Command, Stdio};

fn ivf(frames: &[Vec<u8>], w: u16, h: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&30u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (pts, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pts as u64).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[test]
fn ffmpeg_decodes_our_vp8_grid() {
    let ok =
        Command::new("sh").arg("-c").arg("command -v ffmpeg").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "`ffmpeg` is missing: install the Debian package `ffmpeg` (scripts/test-all does)");
    let (w, h) = (1280u32, 720u32);
    let mut comp = Compositor::new(w, h).expect("canvas");
    let colours: Vec<(u8, u8, u8)> =
        (0..5).map(|i| (50 + 30 * i as u8, 70 + 20 * i as u8, 190 - 25 * i as u8)).collect();
    let pics: Vec<I420> = colours.iter().map(|c| I420::filled(640, 360, *c).expect("pic")).collect();
    let sources: Vec<Source<'_>> =
        pics.iter().enumerate().map(|(i, p)| Source { id: i as u64, generation: 1, picture: Some(p) }).collect();
    comp.compose(&sources).expect("compose");
    let mut enc = Vp8Encoder::new(w, h, 1_500_000, 30).expect("encoder");
    let frames: Vec<Vec<u8>> = (0..10).map(|f| enc.encode(comp.canvas(), f == 0).expect("encode")).collect();
    let dir = std::env::temp_dir().join(format!("vp8-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let input = dir.join("grid.ivf");
    let output = dir.join("grid.yuv");
    std::fs::write(&input, ivf(&frames, w as u16, h as u16)).expect("write");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p"])
        .arg(&output)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let yuv = std::fs::read(&output).expect("decoded");
    let frame = (w * h * 3 / 2) as usize;
    assert_eq!(yuv.len(), frame * 10);
    let last = &yuv[frame * 9..];
    // Five sources: a 3x3 grid with the first five cells used.
    let (cw, ch) = ((w / 3) & !1, (h / 3) & !1);
    for (i, c) in colours.iter().enumerate() {
        let (x, y) = ((i as u32 % 3) * cw + cw / 2, (i as u32 / 3) * ch + ch / 2);
        let got = (
            last[(y * w + x) as usize],
            last[(w * h + (y / 2) * (w / 2) + x / 2) as usize],
            last[(w * h * 5 / 4 + (y / 2) * (w / 2) + x / 2) as usize],
        );
        assert!(
            got.0.abs_diff(c.0) <= 12 && got.1.abs_diff(c.1) <= 12 && got.2.abs_diff(c.2) <= 12,
            "tile {i}: ffmpeg {got:?}, composed {c:?}"
        );
    }
}
