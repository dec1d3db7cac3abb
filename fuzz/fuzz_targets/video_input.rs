//! Hostile video RTP payloads through what a SIP party's or a publisher's video meets: the H.264
//! or VP8 depacketiser, the decoder behind `VideoInput` (OpenH264 or libvpx, C code), and the
//! compositor drawing whatever picture comes out of it.
//!
//! Input: one mode byte (bit 0: VP8 instead of H.264; bit 1: records are whole frames given to
//! the decoder without a depacketiser), then records of a flags byte (bit 0: marker; bit 1: a
//! packet was lost before this one; bit 2: a new RTP timestamp), a little-endian length and that
//! many payload bytes. `fuzz/seed.sh` makes seeds from real encodings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_mixer::grid::{Compositor, Source};
use media_mixer::packetize::{Depacketized, H264Depacketizer, Vp8Depacketizer};
use media_mixer::video_input::{Pushed, VideoCodec, VideoInput};

/// Frames decoded per input at most (each may be a keyframe; keeps one run short).
const MAX_FRAMES: usize = 48;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let codec = if mode & 1 == 0 { VideoCodec::H264 } else { VideoCodec::Vp8 };
    let whole_frames = mode & 2 != 0;
    let mut h264 = H264Depacketizer::with_fmtp(None);
    let mut vp8 = Vp8Depacketizer::default();
    let mut input = VideoInput::new();
    let mut grid = Compositor::new(96, 54).expect("a 96x54 canvas");
    let (mut seq, mut timestamp) = (0u16, 0u32);
    let (mut frames, mut contiguous) = (0, true);
    while let [flags, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        seq = seq.wrapping_add(if flags & 2 != 0 { 2 } else { 1 });
        if flags & 4 != 0 {
            timestamp = timestamp.wrapping_add(3000);
        }
        let marker = flags & 1 != 0;
        let mut ready = Vec::new();
        if whole_frames {
            ready.push(payload.to_vec());
        } else {
            let out = match codec {
                VideoCodec::H264 => h264.push(seq, timestamp, marker, payload),
                VideoCodec::Vp8 => vp8.push(seq, marker, payload),
            };
            match out {
                Depacketized::Frame(f) => ready.push(f.data),
                Depacketized::Dropped => contiguous = false,
                Depacketized::Pending => {}
            }
            ready.extend(h264.take_held().map(|(f, _)| f.data));
        }
        for frame in ready {
            frames += 1;
            let pushed = input.push(codec, &frame, std::mem::replace(&mut contiguous, true));
            if pushed == Pushed::Picture {
                let picture = input.picture().expect("a picture after Pushed::Picture");
                assert!(picture.width >= 2 && picture.height >= 2);
                assert_eq!(picture.y.len(), (picture.width * picture.height) as usize);
            }
            let _ = input.take_keyframe_request();
            let sources = [
                Source { id: 1, generation: input.generation(), picture: input.picture() },
                Source { id: 2, generation: 0, picture: None },
            ];
            grid.compose(&sources).expect("composing decoded pictures");
        }
        if frames >= MAX_FRAMES {
            break;
        }
    }
});
