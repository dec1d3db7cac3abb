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

/// Inserts an emulation-prevention byte (0x03) wherever two zero bytes are followed by a byte of
/// 3 or less, as H.264 section 7.4.1 requires of every NAL unit.
fn emulation_prevented(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 2);
    let mut zeros = 0;
    for &b in raw {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
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
        // Valid NAL units: header with the forbidden bit clear and type 1..=23, emulation
        // prevention as an encoder applies it (no 00 00 0x with x <= 3 inside a NAL unit), and a
        // non-zero last byte (Annex B).
        let nals: Vec<Vec<u8>> = nals
            .into_iter()
            .enumerate()
            .map(|(i, mut n)| {
                n[0] = 0x60 | (1 + (i as u8 % 23));
                let mut escaped = emulation_prevented(&n);
                if let Some(last) = escaped.last_mut() {
                    *last |= 1;
                }
                escaped
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
