//! H.264 decode and encode (OpenH264), between Annex B access units and
//! [`I420`] pictures. The encoder produces constrained baseline, which
//! every SIP video endpoint decodes.

use crate::error::Error;
use crate::grid::I420;
use openh264::decoder::Decoder;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, UsageType};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::OpenH264API;
use openh264_sys2::{
    SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0, SPATIAL_LAYER_ALL,
};

/// The lowest target bitrate the encoders take, bit/s.
pub const MIN_BITRATE: u32 = 30_000;

/// Decodes H.264 access units.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H264Decoder")
    }
}

impl H264Decoder {
    /// A decoder.
    pub fn new() -> Result<H264Decoder, Error> {
        Ok(H264Decoder { inner: Decoder::new().map_err(|_| Error::Decode("OpenH264 decoder init"))? })
    }

    /// Decodes one access unit (Annex B). `Ok(None)` when it produced no
    /// picture yet (parameter sets alone); an error for a corrupt unit
    /// (keep showing the last good picture and ask for a keyframe).
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<I420>, Error> {
        let Some(yuv) = self.inner.decode(access_unit).map_err(|_| Error::Decode("corrupt H.264"))? else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let (w, h) = (w & !1, h & !1);
        if w == 0 || h == 0 {
            return Ok(None);
        }
        Ok(Some(I420 {
            width: w as u32,
            height: h as u32,
            y: copy_plane(yuv.y(), sy, w, h),
            u: copy_plane(yuv.u(), su, w / 2, h / 2),
            v: copy_plane(yuv.v(), sv, w / 2, h / 2),
        }))
    }
}

/// The `w` x `h` pixels of a plane whose rows are `stride` apart, without padding (rows the
/// decoder's buffer does not hold come out black-level zero, never a panic).
fn copy_plane(src: &[u8], stride: usize, w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h);
    for row in 0..h {
        match src.get(row * stride..row * stride + w) {
            Some(s) => out.extend_from_slice(s),
            None => out.resize(out.len() + w, 0),
        }
    }
    out
}

/// Encodes pictures to H.264 (Annex B access units).
pub struct H264Encoder {
    inner: Encoder,
    width: u32,
    height: u32,
    bitrate: u32,
    fps: f32,
    /// The largest NAL unit made, bytes (slices cut to fit), when one is set.
    max_nal: Option<u32>,
    /// OpenH264 is set up at the first picture: before it, a new bitrate makes a new encoder.
    started: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder").field("width", &self.width).field("height", &self.height).finish()
    }
}

impl H264Encoder {
    /// An encoder for `width` x `height` at `bitrate` bit/s and `fps`.
    pub fn new(width: u32, height: u32, bitrate: u32, fps: f32) -> Result<H264Encoder, Error> {
        H264Encoder::with_max_nal(width, height, bitrate, fps, None)
    }

    /// [`new`](Self::new), with every NAL unit at most `max_nal` bytes (slices are cut to fit):
    /// for packetization-mode 0 (RFC 6184 single NAL unit mode), where each NAL unit must fit
    /// one packet.
    pub fn with_max_nal(
        width: u32,
        height: u32,
        bitrate: u32,
        fps: f32,
        max_nal: Option<u32>,
    ) -> Result<H264Encoder, Error> {
        let bitrate = bitrate.max(MIN_BITRATE);
        let inner = Self::open(bitrate, fps, max_nal)?;
        Ok(H264Encoder { inner, width, height, bitrate, fps, max_nal, started: false })
    }

    fn open(bitrate: u32, fps: f32, max_nal: Option<u32>) -> Result<Encoder, Error> {
        // One thread: the grid's hub thread is the unit of scale (one per session), and OpenH264's
        // "auto" would start a thread per core for every call's encoder. Medium complexity
        // (`Complexity::Low` saves about a fifth of the encode time but costs 2.6 dB of PSNR at
        // the same bitrate on the grid benchmark), adaptive quantisation and background
        // detection, but no scene-change detection (below).
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(fps))
            .usage_type(UsageType::CameraVideoRealTime)
            .num_threads(1)
            // Its scene-change detection takes a fast pan for a new scene: IDRs every second or
            // less, each a burst several times a frame's share of the bitrate, sent over paths
            // that may lose it. The grid asks for its own keyframes when its layout changes.
            .scene_change_detect(false);
        let config = match max_nal {
            Some(bytes) => config.max_slice_len(bytes.max(200)),
            None => config,
        };
        Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|_| Error::Decode("OpenH264 encoder init"))
    }

    /// The target bitrate, bit/s.
    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// A new target bitrate (bit/s, at least 30 kbit/s), from the next picture on, without a
    /// keyframe: for a receiver's bandwidth limit (RFC 5104 TMMBR) or a path that loses packets.
    // OpenH264's options are set through a raw pointer: the one C call in this module.
    #[allow(unsafe_code)]
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), Error> {
        let bitrate = bitrate.max(MIN_BITRATE);
        if bitrate == self.bitrate {
            return Ok(());
        }
        if !self.started {
            self.inner = Self::open(bitrate, self.fps, self.max_nal)?;
            self.bitrate = bitrate;
            return Ok(());
        }
        // OpenH264 refuses a layer whose maximum is below its target: raising, the maximum goes
        // first; lowering, the target does.
        let target = (ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL);
        let max = (ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0);
        let order = if bitrate > self.bitrate { [max, target] } else { [target, max] };
        for (id, layer) in order {
            let mut info = SBitrateInfo { iLayer: layer, iBitrate: i32::try_from(bitrate).unwrap_or(i32::MAX) };
            // SAFETY: the encoder is initialised (a picture went through it) and both options
            // take a pointer to an `SBitrateInfo`, which lives for the call.
            let code = unsafe { self.inner.raw_api().set_option(id, std::ptr::addr_of_mut!(info).cast()) };
            if code != 0 {
                return Err(Error::Decode("OpenH264 refused the bitrate"));
            }
        }
        self.bitrate = bitrate;
        Ok(())
    }

    /// Encodes one picture; `keyframe` forces an IDR (after a PLI/FIR or a
    /// layout change).
    pub fn encode(&mut self, picture: &I420, keyframe: bool) -> Result<Vec<u8>, Error> {
        let (w, h) = (picture.width as usize, picture.height as usize);
        if !picture.has_size(self.width, self.height) {
            return Err(Error::Decode("picture does not match the encoder's size"));
        }
        if keyframe {
            self.inner.force_intra_frame();
        }
        let src = YUVSlices::new((&picture.y, &picture.u, &picture.v), (w, h), (w, w / 2, w / 2));
        let bits = self.inner.encode(&src).map_err(|_| Error::Decode("H.264 encode"))?;
        self.started = true;
        Ok(bits.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Compositor, Source};
    use crate::packetize::{h264_packetize, split_annex_b, Depacketized, H264Depacketizer};

    fn close(a: (u8, u8, u8), b: (u8, u8, u8)) -> bool {
        a.0.abs_diff(b.0) <= 12 && a.1.abs_diff(b.1) <= 12 && a.2.abs_diff(b.2) <= 12
    }

    /// A new bitrate takes effect within a second and a half, down and back up, with no keyframe; one set
    /// before the first picture is the one used.
    #[test]
    fn the_bitrate_changes_mid_stream_without_a_keyframe() {
        let mut enc = H264Encoder::new(640, 360, 400_000, 30.0).expect("encoder");
        crate::grid::check_bitrate_changes(
            &mut enc,
            |e, bps| e.set_bitrate(bps).expect("bitrate"),
            |e, p| {
                let au = e.encode(p, false).expect("encode");
                (au.len(), split_annex_b(&au).iter().any(|n| n.first().is_some_and(|b| b & 0x1f == 5)))
            },
        );
        assert_eq!(enc.bitrate(), 1_500_000);
        assert_eq!(H264Encoder::new(64, 64, 1, 30.0).expect("encoder").bitrate(), MIN_BITRATE);
    }

    /// Packetization-mode 0: with a NAL size set, a busy picture at a high bitrate comes out in
    /// slices that each fit a packet; sent one NAL unit a packet, it depacketises and decodes.
    #[test]
    fn single_nal_units_fit_a_packet_and_decode() {
        use crate::packetize::h264_packetize_single_nal;
        let mut enc = H264Encoder::with_max_nal(640, 360, 2_000_000, 30.0, Some(1100)).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let mut depack = H264Depacketizer::default();
        let (mut seq, mut decoded, mut largest, mut packets, mut sent) = (0u16, 0, 0, 0, 0);
        for n in 0..30u32 {
            let au = enc.encode(&I420::moving(640, 360, n).expect("picture"), n == 0).expect("encode");
            let nals = split_annex_b(&au);
            let payloads = h264_packetize_single_nal(&nals);
            assert_eq!(payloads.len(), nals.len(), "one packet per NAL unit");
            // Rate control may skip a picture (no NAL units at all).
            sent += usize::from(!payloads.is_empty());
            for (i, p) in payloads.iter().enumerate() {
                largest = largest.max(p.len());
                packets += 1;
                assert!(matches!(p[0] & 0x1f, 1..=23), "a single NAL unit, not STAP-A or FU-A");
                seq = seq.wrapping_add(1);
                if let Depacketized::Frame(f) = depack.push(seq, n * 3000, i == payloads.len() - 1, p) {
                    if dec.decode(&f.data).expect("decodes").is_some() {
                        decoded += 1;
                    }
                }
            }
        }
        assert!(largest <= 1100, "largest NAL unit {largest} bytes");
        assert!(packets > 30 * 4, "slices were cut: {packets} packets");
        assert!(sent >= 20, "{sent} pictures sent");
        assert_eq!(decoded, sent, "each decodes");
    }

    /// Grid -> H.264 -> RTP -> depacketise -> decode: every tile keeps its
    /// colour; a forced keyframe is an IDR.
    #[test]
    fn grid_survives_encode_rtp_decode() {
        let mut comp = Compositor::new(640, 360).expect("canvas");
        let colours = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (170, 166, 16)];
        let pics: Vec<I420> = colours.iter().map(|c| I420::filled(320, 180, *c).expect("pic")).collect();
        let sources: Vec<Source<'_>> =
            pics.iter().enumerate().map(|(i, p)| Source { id: i as u64, generation: 1, picture: Some(p) }).collect();
        comp.compose(&sources).expect("compose");
        let mut enc = H264Encoder::new(640, 360, 800_000, 30.0).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let mut depack = H264Depacketizer::default();
        let mut seq = 0u16;
        let mut decoded = None;
        for frame in 0..5u32 {
            let au = enc.encode(comp.canvas(), frame == 3).expect("encode");
            let nals = split_annex_b(&au);
            if frame == 3 {
                assert!(nals.iter().any(|n| n[0] & 0x1f == 5), "forced keyframe is an IDR");
            }
            let pkts = h264_packetize(&nals, 1200);
            for (i, p) in pkts.iter().enumerate() {
                if let Depacketized::Frame(f) = depack.push(seq, frame * 3000, i + 1 == pkts.len(), p) {
                    if let Some(pic) = dec.decode(&f.data).expect("decode") {
                        decoded = Some(pic);
                    }
                }
                seq = seq.wrapping_add(1);
            }
        }
        let pic = decoded.expect("a picture");
        assert_eq!((pic.width, pic.height), (640, 360));
        for (i, c) in colours.iter().enumerate() {
            let (x, y) = ((i as u32 % 2) * 320 + 160, (i as u32 / 2) * 180 + 90);
            assert!(close(pic.pixel(x, y), *c), "tile {i}: {:?} vs {c:?}", pic.pixel(x, y));
        }
        // Corrupt input is an error or nothing, never a panic.
        let _ = dec.decode(&[0, 0, 0, 1, 0x65, 0xff, 0x00, 0x13]);
        assert!(enc.encode(&I420::filled(320, 180, (0, 0, 0)).expect("pic"), false).is_err());
    }
}
