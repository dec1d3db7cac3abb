//! The video depacketisers against hostile and lossy input: whatever the packets (truncated,
//! reordered, garbage, wrong types), nothing panics and what comes out is a frame or a drop; and
//! what our packetisers make comes back whole, for any frame and MTU.

use media_mixer::packetize::{
    h264_packetize, split_annex_b, vp8_packetize, Depacketized, H264Depacketizer, Vp8Depacketizer,
};
use proptest::prelude::*;

fn packets() -> impl Strategy<Value = Vec<(u16, u32, bool, Vec<u8>)>> {
    proptest::collection::vec(
        (any::<u16>(), 0u32..4, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)),
        0..40,
    )
}

proptest! {
    #[test]
    fn garbage_never_panics(pkts in packets()) {
        let mut h264 = H264Depacketizer::default();
        let mut vp8 = Vp8Depacketizer::default();
        for (seq, ts, marker, payload) in &pkts {
            let _ = h264.push(*seq, *ts, *marker, payload);
            let _ = vp8.push(*seq, *marker, payload);
            let _ = split_annex_b(payload);
        }
    }

    #[test]
    fn h264_access_units_come_back_whole(
        nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 2..3000), 1..6),
        mtu in 64usize..1500,
    ) {
        // Valid NAL headers (forbidden bit clear, type 1..=23), non-zero last byte (Annex B).
        let nals: Vec<Vec<u8>> = nals
            .into_iter()
            .enumerate()
            .map(|(i, mut n)| {
                n[0] = 0x60 | (1 + (i as u8 % 23));
                if let Some(last) = n.last_mut() {
                    *last |= 1;
                }
                n
            })
            .collect();
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        let payloads = h264_packetize(&refs, mtu);
        prop_assert!(payloads.iter().all(|p| p.len() <= mtu.max(16)));
        let mut d = H264Depacketizer::default();
        let mut out = None;
        let last = payloads.len() - 1;
        for (i, p) in payloads.iter().enumerate() {
            if let Depacketized::Frame(f) = d.push(1000u16.wrapping_add(i as u16), 90_000, i == last, p) {
                out = Some(f);
            }
        }
        let frame = out.expect("a whole access unit");
        let back: Vec<Vec<u8>> = split_annex_b(&frame.data).into_iter().map(<[u8]>::to_vec).collect();
        prop_assert_eq!(back, nals);
    }

    #[test]
    fn vp8_frames_come_back_whole(frame in proptest::collection::vec(any::<u8>(), 1..6000), mtu in 64usize..1500, pid in any::<u16>()) {
        let payloads = vp8_packetize(&frame, pid, mtu);
        prop_assert!(payloads.iter().all(|p| p.len() <= mtu));
        let mut d = Vp8Depacketizer::default();
        let mut out = None;
        let last = payloads.len() - 1;
        for (i, p) in payloads.iter().enumerate() {
            if let Depacketized::Frame(f) = d.push(7u16.wrapping_add(i as u16), i == last, p) {
                out = Some(f);
            }
        }
        prop_assert_eq!(out.expect("a whole frame").data, frame);
    }
}
