//! VP8 decode and encode through libvpx, between raw VP8 frames (as the
//! RFC 7741 depacketiser yields them) and [`I420`] pictures.
//!
//! The only `unsafe` code of the workspace lives here: calls into libvpx,
//! each with the invariant it relies on stated next to it.
#![allow(unsafe_code)]

use crate::error::Error;
use crate::grid::I420;
use std::mem::MaybeUninit;
use std::ptr;
use vpx_sys as vpx;

fn ok(e: vpx::vpx_codec_err_t, what: &'static str) -> Result<(), Error> {
    if e == vpx::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(Error::Decode(what))
    }
}

/// The largest picture [`Vp8Decoder`] decodes, in 16x16 macroblocks: 36,864, H.264's limit for
/// levels 5.1 and 5.2 (4096x2304), which OpenH264 also enforces. A VP8 keyframe names its size in
/// its first ten bytes, up to 16383x16383: without a limit one hostile keyframe of half a
/// megabyte would make libvpx allocate gigabytes.
pub const MAX_MACROBLOCKS: u32 = 36_864;

/// The size a VP8 keyframe announces (RFC 6386 §9.1: a 3-byte frame tag whose lowest bit is 0
/// for a keyframe, the start code `9d 01 2a`, then 14-bit width and height, little-endian, each
/// with 2 bits of scaling above); `None` for an inter frame or a frame too short to tell.
pub fn keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let header = frame.get(..10)?;
    if header[0] & 1 != 0 || header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([header[6], header[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([header[8], header[9]]) & 0x3fff);
    Some((w, h))
}

fn macroblocks(w: u32, h: u32) -> u32 {
    w.div_ceil(16) * h.div_ceil(16)
}

/// Decodes VP8 frames.
pub struct Vp8Decoder {
    ctx: Box<vpx::vpx_codec_ctx_t>,
}

// SAFETY: a libvpx codec context has no thread affinity; it only must not
// be used from two threads at once, which `&mut self` guarantees.
unsafe impl Send for Vp8Decoder {}

impl std::fmt::Debug for Vp8Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vp8Decoder")
    }
}

impl Vp8Decoder {
    /// A decoder.
    pub fn new() -> Result<Vp8Decoder, Error> {
        // SAFETY: an all-zero vpx_codec_ctx_t is the documented "not yet
        // initialised" state that vpx_codec_dec_init_ver fills in; the
        // context is boxed so its address stays fixed for libvpx.
        let mut ctx: Box<vpx::vpx_codec_ctx_t> = Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        // SAFETY: ctx points to a valid context; a null config means defaults.
        let e = unsafe {
            vpx::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx::vpx_codec_vp8_dx(),
                ptr::null(),
                0,
                vpx::VPX_DECODER_ABI_VERSION as i32,
            )
        };
        ok(e, "libvpx VP8 decoder init")?;
        Ok(Vp8Decoder { ctx })
    }

    /// Decodes one frame. `Ok(None)` when it produced no picture; an error
    /// for a corrupt frame (keep the last good picture, ask for a keyframe).
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<I420>, Error> {
        if frame.is_empty() || frame.len() > u32::MAX as usize {
            return Err(Error::Decode("empty or oversized VP8 frame"));
        }
        if keyframe_size(frame).is_some_and(|(w, h)| macroblocks(w, h) > MAX_MACROBLOCKS) {
            return Err(Error::Decode("VP8 keyframe larger than 36,864 macroblocks"));
        }
        // SAFETY: the context was initialised in new(); data/len describe a
        // live slice that libvpx only reads during the call.
        let e =
            unsafe { vpx::vpx_codec_decode(&mut *self.ctx, frame.as_ptr(), frame.len() as u32, ptr::null_mut(), 0) };
        ok(e, "corrupt VP8 frame")?;
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        let mut last = None;
        loop {
            // SAFETY: iterating the decoder's output; the image stays valid
            // until the next decode call, and we copy it out before that.
            let img = unsafe { vpx::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: non-null images returned by libvpx are valid to read.
            let img = unsafe { &*img };
            if img.fmt != vpx::vpx_img_fmt::VPX_IMG_FMT_I420 {
                return Err(Error::Decode("VP8 picture is not I420"));
            }
            let (w, h) = ((img.d_w & !1) as usize, (img.d_h & !1) as usize);
            if w == 0 || h == 0 {
                continue;
            }
            if macroblocks(img.d_w, img.d_h) > MAX_MACROBLOCKS {
                return Err(Error::Decode("VP8 picture larger than 36,864 macroblocks"));
            }
            let mut out = I420::filled(w as u32, h as u32, (0, 0, 0))?;
            for (plane, (dst, pw, ph)) in
                [(&mut out.y, w, h), (&mut out.u, w / 2, h / 2), (&mut out.v, w / 2, h / 2)].into_iter().enumerate()
            {
                let stride = img.stride[plane] as isize;
                for row in 0..ph {
                    // SAFETY: libvpx guarantees `ph` rows of at least `pw`
                    // bytes at `stride` apart in each plane of a d_w x d_h
                    // I420 image.
                    let src =
                        unsafe { std::slice::from_raw_parts(img.planes[plane].offset(row as isize * stride), pw) };
                    dst[row * pw..row * pw + pw].copy_from_slice(src);
                }
            }
            last = Some(out);
        }
        Ok(last)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised and is destroyed once.
        unsafe {
            vpx::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// Encodes pictures to VP8 (real-time, constant bitrate, no lag).
pub struct Vp8Encoder {
    ctx: Box<vpx::vpx_codec_ctx_t>,
    /// The configuration it was made with (a new bitrate is applied through it).
    cfg: Box<vpx::vpx_codec_enc_cfg_t>,
    width: u32,
    height: u32,
    pts: i64,
    buf: Vec<u8>,
}

// SAFETY: as for the decoder: no thread affinity, exclusive use via &mut.
unsafe impl Send for Vp8Encoder {}

impl std::fmt::Debug for Vp8Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Encoder").field("width", &self.width).field("height", &self.height).finish()
    }
}

impl Vp8Encoder {
    /// An encoder for `width` x `height` at `bitrate` bit/s and `fps`.
    pub fn new(width: u32, height: u32, bitrate: u32, fps: u32) -> Result<Vp8Encoder, Error> {
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 || fps == 0 {
            return Err(Error::Decode("VP8 encoder needs even, non-zero dimensions and a frame rate"));
        }
        // SAFETY: zeroed config and context are filled in by libvpx below.
        let mut cfg: vpx::vpx_codec_enc_cfg_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: cfg is a valid, writable config struct.
        ok(
            unsafe { vpx::vpx_codec_enc_config_default(vpx::vpx_codec_vp8_cx(), &mut cfg, 0) },
            "libvpx default config",
        )?;
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_timebase = vpx::vpx_rational { num: 1, den: fps as i32 };
        cfg.rc_target_bitrate = bitrate.max(crate::h264::MIN_BITRATE) / 1000;
        cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
        // A one-second rate buffer, as real-time senders use, rather than libvpx's six: a new
        // bitrate (a receiver's limit, or its limit lifted) is reached within about a second
        // instead of five, and a burst overshoots it by less.
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 1;
        cfg.kf_max_dist = fps * 10;
        // Below what a picture costs at libvpx's coarsest quantiser (a busy grid: about 260 kbit/s
        // at 720p), a target is met by dropping pictures rather than overshot: a receiver's limit
        // (TMMBR, b=TIAS) or a lossy path's estimate is kept. libwebrtc uses the same threshold
        // for cameras. A keyframe asked for is never dropped; a dropped picture encodes to nothing.
        cfg.rc_dropframe_thresh = 30;
        let mut ctx: Box<vpx::vpx_codec_ctx_t> = Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        // SAFETY: valid context and config pointers for the duration of the call.
        ok(
            unsafe {
                vpx::vpx_codec_enc_init_ver(
                    &mut *ctx,
                    vpx::vpx_codec_vp8_cx(),
                    &cfg,
                    0,
                    vpx::VPX_ENCODER_ABI_VERSION as i32,
                )
            },
            "libvpx VP8 encoder init",
        )?;
        let mut enc = Vp8Encoder { ctx, cfg: Box::new(cfg), width, height, pts: 0, buf: Vec::new() };
        // Real-time speed (libvpx: -16..16; higher is faster).
        // SAFETY: VP8E_SET_CPUUSED takes one int argument.
        ok(
            unsafe { vpx::vpx_codec_control_(&mut *enc.ctx, vpx::vp8e_enc_control_id::VP8E_SET_CPUUSED as i32, 8i32) },
            "libvpx cpu-used",
        )?;
        Ok(enc)
    }

    /// The target bitrate, bit/s.
    pub fn bitrate(&self) -> u32 {
        self.cfg.rc_target_bitrate * 1000
    }

    /// A new target bitrate (bit/s, at least 30 kbit/s, in whole kbit/s), from the next picture
    /// on, without a keyframe: for a receiver's bandwidth limit (RFC 5104 TMMBR) or a path that
    /// loses packets.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), Error> {
        let kbps = bitrate.max(crate::h264::MIN_BITRATE) / 1000;
        if kbps == self.cfg.rc_target_bitrate {
            return Ok(());
        }
        let previous = std::mem::replace(&mut self.cfg.rc_target_bitrate, kbps);
        // SAFETY: the context is initialised and the configuration is the one it was made with,
        // but for its bitrate; libvpx copies it.
        let set = ok(unsafe { vpx::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) }, "libvpx bitrate");
        if set.is_err() {
            self.cfg.rc_target_bitrate = previous;
        }
        set
    }

    /// Encodes one picture; `keyframe` forces one (after a PLI/FIR or a
    /// layout change).
    pub fn encode(&mut self, picture: &I420, keyframe: bool) -> Result<Vec<u8>, Error> {
        if !picture.has_size(self.width, self.height) {
            return Err(Error::Decode("picture does not match the encoder's size"));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&picture.y);
        self.buf.extend_from_slice(&picture.u);
        self.buf.extend_from_slice(&picture.v);
        let mut img: vpx::vpx_image_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: buf holds a whole w x h I420 image laid out contiguously;
        // it outlives the encode call that reads it.
        let wrapped = unsafe {
            vpx::vpx_img_wrap(
                &mut img,
                vpx::vpx_img_fmt::VPX_IMG_FMT_I420,
                self.width,
                self.height,
                1,
                self.buf.as_mut_ptr(),
            )
        };
        if wrapped.is_null() {
            return Err(Error::Decode("libvpx could not wrap the picture"));
        }
        let flags = if keyframe { vpx::VPX_EFLAG_FORCE_KF as vpx::vpx_enc_frame_flags_t } else { 0 };
        // SAFETY: context initialised; img describes a live buffer.
        ok(
            unsafe { vpx::vpx_codec_encode(&mut *self.ctx, &img, self.pts, 1, flags, vpx::VPX_DL_REALTIME as _) },
            "VP8 encode",
        )?;
        self.pts += 1;
        let mut out = Vec::new();
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: iterating the encoder's output packets until null;
            // each stays valid until the next encode call.
            let pkt = unsafe { vpx::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: non-null packets are valid; frame packets carry a
            // buffer of `sz` bytes.
            unsafe {
                if (*pkt).kind == vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let f = (*pkt).data.frame;
                    out.extend_from_slice(std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize));
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: initialised once, destroyed once.
        unsafe {
            vpx::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    /// A grid as the SIP leg sends it: one busy 640x360 source in a corner of a still 1280x720
    /// canvas; at 60 and 150 kbit/s, under what its pictures cost at the coarsest quantiser, the
    /// encoder meets the target by dropping pictures, and a keyframe asked for is never dropped.
    #[test]
    fn low_targets_are_met_by_dropping_pictures() {
        use crate::grid::I420;
        for target in [60_000u32, 150_000] {
            let mut enc = super::Vp8Encoder::new(1280, 720, target, 30).expect("encoder");
            let (mut bytes, mut dropped) = (0usize, 0);
            for n in 0..150u32 {
                let source = I420::moving(640, 360, n).expect("a picture");
                let mut canvas = I420::filled(1280, 720, (16, 128, 128)).expect("a canvas");
                for (row, line) in source.y.chunks(640).enumerate() {
                    canvas.y[row * 1280..row * 1280 + 640].copy_from_slice(line);
                }
                for (plane, from) in [(&mut canvas.u, &source.u), (&mut canvas.v, &source.v)] {
                    for (row, line) in from.chunks(320).enumerate() {
                        plane[row * 640..row * 640 + 320].copy_from_slice(line);
                    }
                }
                let keyframe = n % 25 == 0;
                let out = enc.encode(&canvas, keyframe).expect("encode");
                if keyframe {
                    assert!(out.len() > 1000, "{target}: keyframe {n} not dropped ({} bytes)", out.len());
                }
                if n >= 60 {
                    bytes += out.len();
                    dropped += usize::from(out.is_empty());
                }
            }
            let rate = (bytes * 8 * 30 / 90) as u32;
            assert!(rate <= target + target / 4, "{rate} bit/s for a target of {target}");
            assert!(dropped > 0, "{target}: pictures dropped to meet it");
        }
    }

    use super::*;
    use crate::grid::{Compositor, Source};

    /// A keyframe of more than 36,864 macroblocks is refused before libvpx sees it (it would
    /// allocate for its size), and the decoder goes on with the next stream of a sane size;
    /// the limit itself decodes.
    #[test]
    fn pictures_beyond_the_macroblock_limit_are_refused() {
        let mut dec = Vp8Decoder::new().expect("decoder");
        // 4112x2320: 257 x 145 = 37,265 macroblocks.
        let big = Vp8Encoder::new(4112, 2320, 2_000_000, 30)
            .expect("encoder")
            .encode(&I420::filled(4112, 2320, (90, 60, 200)).expect("picture"), true)
            .expect("encode");
        assert_eq!(keyframe_size(&big), Some((4112, 2320)));
        assert!(dec.decode(&big).is_err(), "over the limit");
        // 4096x2304 is exactly the limit.
        let limit = Vp8Encoder::new(4096, 2304, 2_000_000, 30)
            .expect("encoder")
            .encode(&I420::filled(4096, 2304, (90, 60, 200)).expect("picture"), true)
            .expect("encode");
        let pic = dec.decode(&limit).expect("at the limit").expect("a picture");
        assert_eq!((pic.width, pic.height), (4096, 2304));
        // A forged header: a 16383x16383 keyframe in 40 bytes.
        let mut forged = limit[..40].to_vec();
        forged[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
        assert_eq!(keyframe_size(&forged), Some((16383, 16383)));
        assert!(dec.decode(&forged).is_err());
        assert_eq!(keyframe_size(&limit[..9]), None, "too short to tell");
    }
    use crate::packetize::{vp8_packetize, Depacketized, Vp8Depacketizer};

    /// A new bitrate takes effect within a second and a half, down and back up, with no keyframe.
    #[test]
    fn the_bitrate_changes_mid_stream_without_a_keyframe() {
        let mut enc = Vp8Encoder::new(640, 360, 1_500_000, 30).expect("encoder");
        crate::grid::check_bitrate_changes(
            &mut enc,
            |e, bps| e.set_bitrate(bps).expect("bitrate"),
            |e, p| {
                let frame = e.encode(p, false).expect("encode");
                (frame.len(), frame.first().is_some_and(|b| b & 1 == 0))
            },
        );
        assert_eq!(enc.bitrate(), 1_500_000);
        enc.set_bitrate(1).expect("the least");
        assert_eq!(enc.bitrate(), crate::h264::MIN_BITRATE);
    }

    #[test]
    fn grid_survives_vp8_rtp_round_trip() {
        let mut comp = Compositor::new(640, 360).expect("canvas");
        let colours = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (170, 166, 16)];
        let pics: Vec<I420> = colours.iter().map(|c| I420::filled(320, 180, *c).expect("pic")).collect();
        let sources: Vec<Source<'_>> =
            pics.iter().enumerate().map(|(i, p)| Source { id: i as u64, generation: 1, picture: Some(p) }).collect();
        comp.compose(&sources).expect("compose");
        let mut enc = Vp8Encoder::new(640, 360, 800_000, 30).expect("encoder");
        let mut dec = Vp8Decoder::new().expect("decoder");
        let mut depack = Vp8Depacketizer::default();
        let mut seq = 0u16;
        let mut last = None;
        let mut frame_zero = Vec::new();
        for f in 0..6u16 {
            let frame = enc.encode(comp.canvas(), f == 0 || f == 4).expect("encode");
            if f == 0 {
                frame_zero.clone_from(&frame);
            }
            if f == 4 {
                assert_eq!(frame[0] & 1, 0, "forced keyframe");
            }
            let pkts = vp8_packetize(&frame, f, 1200);
            for (i, p) in pkts.iter().enumerate() {
                if let Depacketized::Frame(fr) = depack.push(seq, i + 1 == pkts.len(), p) {
                    if let Some(pic) = dec.decode(&fr.data).expect("decode") {
                        last = Some(pic);
                    }
                }
                seq = seq.wrapping_add(1);
            }
        }
        let pic = last.expect("picture");
        for (i, c) in colours.iter().enumerate() {
            let (x, y) = ((i as u32 % 2) * 320 + 160, (i as u32 / 2) * 180 + 90);
            let got = pic.pixel(x, y);
            assert!(
                got.0.abs_diff(c.0) <= 12 && got.1.abs_diff(c.1) <= 12 && got.2.abs_diff(c.2) <= 12,
                "tile {i}: {got:?} vs {c:?}"
            );
        }
        assert_eq!(keyframe_size(&frame_zero), Some((640, 360)));
        // Garbage is an error or nothing, never a panic.
        let _ = dec.decode(&[0xff; 20]);
        assert!(dec.decode(&[]).is_err());
        assert!(Vp8Encoder::new(641, 360, 1, 30).is_err());
    }
}
