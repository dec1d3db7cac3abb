//! Our composed grid, encoded by our H.264 encoder, decoded by ffmpeg
//! (Debian package `ffmpeg`): the tiles carry their colours.

use media_mixer::grid::{Compositor, Source, I420};
use media_mixer::h264::H264Encoder;
use std::process::{Command, Stdio};

#[test]
fn ffmpeg_decodes_our_grid() {
    let ok =
        Command::new("sh").arg("-c").arg("command -v ffmpeg").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "`ffmpeg` is missing: install the Debian package `ffmpeg` (scripts/test-all does)");
    let (w, h) = (1280u32, 720u32);
    let mut comp = Compositor::new(w, h).expect("canvas");
    let colours: Vec<(u8, u8, u8)> =
        (0..9).map(|i| (40 + 20 * i as u8, 60 + 15 * i as u8, 200 - 15 * i as u8)).collect();
    let pics: Vec<I420> = colours.iter().map(|c| I420::filled(640, 360, *c).expect("pic")).collect();
    let sources: Vec<Source<'_>> =
        pics.iter().enumerate().map(|(i, p)| Source { id: i as u64, generation: 1, picture: Some(p) }).collect();
    comp.compose(&sources).expect("compose");
    let mut enc = H264Encoder::new(w, h, 1_500_000, 30.0).expect("encoder");
    let mut stream = Vec::new();
    for f in 0..10 {
        stream.extend(enc.encode(comp.canvas(), f == 0).expect("encode"));
    }
    let dir = std::env::temp_dir().join(format!("h264-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let input = dir.join("grid.h264");
    let output = dir.join("grid.yuv");
    std::fs::write(&input, &stream).expect("write");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "h264", "-i"])
        .arg(&input)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p"])
        .arg(&output)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    let yuv = std::fs::read(&output).expect("decoded");
    let frame = (w * h * 3 / 2) as usize;
    assert_eq!(yuv.len(), frame * 10, "ten 1280x720 frames decoded");
    let last = &yuv[frame * 9..];
    let (yp, up, vp) = (
        &last[..(w * h) as usize],
        &last[(w * h) as usize..(w * h * 5 / 4) as usize],
        &last[(w * h * 5 / 4) as usize..],
    );
    for (i, c) in colours.iter().enumerate() {
        let cell_w = (w / 3) & !1;
        let cell_h = (h / 3) & !1;
        let (x, y) = ((i as u32 % 3) * cell_w + cell_w / 2, (i as u32 / 3) * cell_h + cell_h / 2);
        let got = (
            yp[(y * w + x) as usize],
            up[((y / 2) * (w / 2) + x / 2) as usize],
            vp[((y / 2) * (w / 2) + x / 2) as usize],
        );
        let close = got.0.abs_diff(c.0) <= 12 && got.1.abs_diff(c.1) <= 12 && got.2.abs_diff(c.2) <= 12;
        assert!(close, "tile {i}: ffmpeg decoded {got:?}, composed {c:?}");
    }
}
