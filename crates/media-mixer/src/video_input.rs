//! One incoming video stream made safe to show: the decoder for whatever codec the stream uses
//! (VP8 or H.264, switching when it does), the last good picture kept through loss and corruption,
//! and a flag saying the source should be asked for a keyframe.
//!
//! After a lost frame or a decode error, frames are not decoded again until a keyframe arrives:
//! a decoder fed a delta frame whose reference is gone may "succeed" with a smeared picture, and
//! the last good picture is better than that. Resolution changes need nothing special: the new
//! size arrives with a keyframe and the next picture has it.

use crate::grid::I420;
use crate::h264::H264Decoder;
use crate::vp8::Vp8Decoder;

/// The codec of a video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 (RFC 7741 payloads reassembled into frames).
    Vp8,
    /// H.264 access units in Annex B.
    H264,
}

/// Whether `frame` starts a new picture sequence: a VP8 key frame (RFC 6386 section 9.1: bit 0
/// of the frame tag clear) or an H.264 access unit with an IDR slice (NAL type 5).
pub fn is_keyframe(codec: VideoCodec, frame: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => frame.first().is_some_and(|b| b & 1 == 0),
        VideoCodec::H264 => {
            crate::packetize::split_annex_b(frame).iter().any(|nal| nal.first().is_some_and(|h| h & 0x1f == 5))
        }
    }
}

enum Decoder {
    Vp8(Vp8Decoder),
    H264(H264Decoder),
}

/// What [`VideoInput::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// A new picture ([`VideoInput::picture`]).
    Picture,
    /// Decoded without a picture (parameter sets alone, for instance).
    Nothing,
    /// Not decoded: waiting for a keyframe (after a loss, an error, or at the start).
    Skipped,
    /// The decoder refused it: the last good picture stays, a keyframe is wanted.
    Corrupt,
}

/// One incoming video stream (see the module documentation).
pub struct VideoInput {
    decoder: Option<(VideoCodec, Decoder)>,
    picture: Option<I420>,
    generation: u64,
    /// Frames are skipped until a keyframe.
    waiting: bool,
    /// The source should be asked for a keyframe.
    wants_keyframe: bool,
}

impl std::fmt::Debug for VideoInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoInput")
            .field("codec", &self.decoder.as_ref().map(|(c, _)| *c))
            .field("generation", &self.generation)
            .field("waiting", &self.waiting)
            .finish()
    }
}

impl Default for VideoInput {
    fn default() -> Self {
        VideoInput::new()
    }
}

impl VideoInput {
    /// A stream with nothing decoded yet (it waits for a keyframe, and wants one).
    pub fn new() -> VideoInput {
        VideoInput { decoder: None, picture: None, generation: 0, waiting: true, wants_keyframe: true }
    }

    /// Feeds one frame; `contiguous` is false when frames were lost just before it.
    pub fn push(&mut self, codec: VideoCodec, frame: &[u8], contiguous: bool) -> Pushed {
        if self.decoder.as_ref().is_none_or(|(c, _)| *c != codec) {
            let decoder = match codec {
                VideoCodec::Vp8 => Vp8Decoder::new().map(Decoder::Vp8),
                VideoCodec::H264 => H264Decoder::new().map(Decoder::H264),
            };
            let Ok(decoder) = decoder else { return Pushed::Corrupt };
            self.decoder = Some((codec, decoder));
            self.waiting = true;
        }
        if !contiguous {
            self.waiting = true;
        }
        if self.waiting && !is_keyframe(codec, frame) {
            self.wants_keyframe = true;
            return Pushed::Skipped;
        }
        let Some((_, decoder)) = self.decoder.as_mut() else { return Pushed::Corrupt };
        let decoded = match decoder {
            Decoder::Vp8(d) => d.decode(frame),
            Decoder::H264(d) => d.decode(frame),
        };
        match decoded {
            Ok(Some(picture)) => {
                self.waiting = false;
                self.picture = Some(picture);
                self.generation += 1;
                Pushed::Picture
            }
            Ok(None) => Pushed::Nothing,
            Err(_) => {
                self.waiting = true;
                self.wants_keyframe = true;
                Pushed::Corrupt
            }
        }
    }

    /// Frames were dropped without being pushed (nobody needed them): what is shown is out of
    /// date and the next frames cannot be decoded before a keyframe.
    pub fn skipped(&mut self) {
        self.picture = None;
        self.waiting = true;
        self.wants_keyframe = true;
    }

    /// The last good picture.
    pub fn picture(&self) -> Option<&I420> {
        self.picture.as_ref()
    }

    /// Increases with every new picture (for the compositor's "changed since" test).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the source should be asked for a keyframe; clears the flag.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.wants_keyframe)
    }

    /// Whether frames are being skipped until a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h264::H264Encoder;
    use crate::vp8::Vp8Encoder;

    fn frames(codec: VideoCodec, w: u32, h: u32, colour: (u8, u8, u8), n: usize) -> Vec<Vec<u8>> {
        let picture = I420::filled(w, h, colour).expect("picture");
        match codec {
            VideoCodec::Vp8 => {
                let mut e = Vp8Encoder::new(w, h, 300_000, 15).expect("enc");
                (0..n).map(|i| e.encode(&picture, i == 0).expect("encode")).collect()
            }
            VideoCodec::H264 => {
                let mut e = H264Encoder::new(w, h, 300_000, 15.0).expect("enc");
                (0..n).map(|i| e.encode(&picture, i == 0).expect("encode")).collect()
            }
        }
    }

    #[test]
    fn keyframes_are_recognised() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            let f = frames(codec, 64, 48, (81, 90, 240), 3);
            assert!(is_keyframe(codec, &f[0]), "{codec:?}");
            assert!(!is_keyframe(codec, &f[1]) && !is_keyframe(codec, &f[2]), "{codec:?}");
        }
        assert!(!is_keyframe(VideoCodec::H264, &[]));
        assert!(!is_keyframe(VideoCodec::Vp8, &[]));
    }

    #[test]
    fn waits_for_a_keyframe_then_shows_pictures() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            let f = frames(codec, 64, 48, (81, 90, 240), 4);
            let mut input = VideoInput::new();
            assert!(input.take_keyframe_request(), "a new input wants a keyframe");
            // Joining mid-stream: delta frames are skipped.
            assert_eq!(input.push(codec, &f[1], true), Pushed::Skipped);
            assert!(input.take_keyframe_request());
            assert!(input.picture().is_none());
            assert_eq!(input.push(codec, &f[0], true), Pushed::Picture, "{codec:?}");
            assert_eq!(input.push(codec, &f[1], true), Pushed::Picture);
            assert_eq!(input.generation(), 2);
            assert!(!input.take_keyframe_request());
            assert_eq!(input.picture().map(|p| (p.width, p.height)), Some((64, 48)));
        }
    }

    #[test]
    fn loss_and_corruption_keep_the_last_good_picture() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            let f = frames(codec, 64, 48, (81, 90, 240), 6);
            let mut input = VideoInput::new();
            assert_eq!(input.push(codec, &f[0], true), Pushed::Picture);
            let shown = input.picture().cloned();
            // Frames lost before f[2]: skipped until a keyframe, the last picture stays.
            assert_eq!(input.push(codec, &f[2], false), Pushed::Skipped);
            assert_eq!(input.push(codec, &f[3], true), Pushed::Skipped);
            assert!(input.take_keyframe_request());
            assert_eq!(input.picture().cloned(), shown);
            // A corrupt keyframe-looking frame: refused, nothing lost.
            // A keyframe whose tail is garbage (headers intact, so it still looks like one).
            let mut bad = f[0].clone();
            let keep = bad.len() * 2 / 3;
            for b in bad.iter_mut().skip(keep) {
                *b = 0xa5;
            }
            assert!(is_keyframe(codec, &bad));
            let pushed = input.push(codec, &bad, true);
            assert!(matches!(pushed, Pushed::Corrupt | Pushed::Nothing | Pushed::Picture), "{codec:?}: {pushed:?}");
            if pushed == Pushed::Corrupt {
                assert!(input.take_keyframe_request());
                assert!(input.waiting_for_keyframe());
                assert_eq!(input.picture().cloned(), shown);
            }
            // Garbage never panics.
            for junk in [&[][..], &[0u8; 3][..], &[0xffu8; 100][..]] {
                let _ = input.push(codec, junk, true);
            }
        }
    }

    #[test]
    fn a_resolution_change_arrives_with_its_keyframe() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            let small = frames(codec, 64, 48, (81, 90, 240), 2);
            let large = frames(codec, 128, 72, (41, 240, 110), 2);
            let mut input = VideoInput::new();
            for f in small.iter().chain(&large) {
                input.push(codec, f, true);
            }
            let p = input.picture().expect("picture");
            assert_eq!((p.width, p.height), (128, 72), "{codec:?}");
            assert_eq!(input.generation(), 4);
        }
    }

    #[test]
    fn a_codec_switch_starts_over() {
        let vp8 = frames(VideoCodec::Vp8, 64, 48, (81, 90, 240), 2);
        let h264 = frames(VideoCodec::H264, 64, 48, (41, 240, 110), 2);
        let mut input = VideoInput::new();
        assert_eq!(input.push(VideoCodec::Vp8, &vp8[0], true), Pushed::Picture);
        assert_eq!(input.push(VideoCodec::H264, &h264[1], true), Pushed::Skipped, "a delta frame of the new codec");
        assert_eq!(input.push(VideoCodec::H264, &h264[0], true), Pushed::Picture);
    }
}
