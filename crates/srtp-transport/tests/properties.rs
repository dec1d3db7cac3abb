//! Laws of sequence extension and packet round trips.

use proptest::prelude::*;
use srtp_transport::{
    rtcp, Context, LegConfig, MasterKey, MediaLeg, Options, Received, RtpHeader, RtpPacket, SeqExtender, Suite,
};
use std::time::Instant;

proptest! {
    /// Feeding a monotonically advancing sequence (steps < 2^15, any start,
    /// across any number of wraps) extends to exactly the true index.
    #[test]
    fn sequence_extension_follows_wraps(start in any::<u16>(), steps in proptest::collection::vec(1u64..3000, 1..200)) {
        let mut e = SeqExtender::default();
        let mut truth = u64::from(start);
        prop_assert_eq!(e.extend(start), truth);
        for s in steps {
            truth += s;
            prop_assert_eq!(e.extend(truth as u16), truth);
        }
    }

    /// A late packet (up to 1000 behind) maps to its true index too.
    #[test]
    fn late_packets_map_back(start in 1000u64..200_000, back in 1u64..1000) {
        // Indices are relative to the first packet seen.
        let mut e = SeqExtender::default();
        let first = start - 1000;
        let base = e.extend(first as u16);
        for i in (first + 1)..=start {
            prop_assert_eq!(e.extend(i as u16) - base, i - first);
        }
        prop_assert_eq!(e.extend((start - back) as u16) - base, start - back - first);
    }

    /// RTP build/parse round-trips every field.
    #[test]
    fn rtp_round_trip(pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(), ssrc in any::<u32>(), csrcs in proptest::collection::vec(any::<u32>(), 0..15), payload in proptest::collection::vec(any::<u8>(), 0..300), pad in prop_oneof![Just(0usize), Just(4usize)]) {
        let h = RtpHeader { marker: seq % 2 == 0, payload_type: pt, seq, timestamp: ts, ssrc, csrcs: csrcs.clone(), extension: None };
        let mut out = Vec::new();
        h.write(&payload, pad, &mut out).expect("write");
        let p = RtpPacket::parse(&out).expect("parse");
        prop_assert_eq!(p.seq(), seq);
        prop_assert_eq!(p.timestamp(), ts);
        prop_assert_eq!(p.payload_type().0, pt);
        prop_assert_eq!(p.csrcs().map(|c| c.0).collect::<Vec<_>>(), csrcs);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    /// Hostile bytes never panic the parsers.
    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = RtpPacket::parse(&data);
        let _ = rtcp::parse_compound(&data);
    }
}

fn ctx(k: u8) -> Context {
    let mk = MasterKey { key: vec![k; 16], salt: vec![k; 14], mki: None, lifetime: None };
    Context::new(Suite::AesCm128HmacSha1_80, &mk, Options::default()).expect("ctx")
}

/// A re-INVITE brings new keys: after re-keying, packets under the old key
/// are refused and packets under the new key flow.
#[test]
fn rekeying_replaces_the_keys() {
    let from = "192.0.2.5:4000".parse().expect("addr");
    let mut leg = MediaLeg::new(LegConfig::default(), Some(from), None);
    leg.set_srtp(ctx(1), ctx(9));
    let mut old_sender = ctx(1);
    let pkt = |seq: u16| {
        let mut v = Vec::new();
        RtpHeader { seq, ssrc: 77, ..Default::default() }.write(&[1; 20], 0, &mut v).expect("w");
        v
    };
    let mut p = pkt(1);
    old_sender.protect_rtp(&mut p).expect("p");
    assert!(matches!(leg.handle_datagram(Instant::now(), from, p), Ok(Received::Rtp(_))));
    leg.set_srtp(ctx(2), ctx(9));
    let mut p = pkt(2);
    old_sender.protect_rtp(&mut p).expect("p");
    assert!(leg.handle_datagram(Instant::now(), from, p).is_err(), "old key refused");
    let mut new_sender = ctx(2);
    let mut p = pkt(3);
    new_sender.protect_rtp(&mut p).expect("p");
    assert!(matches!(leg.handle_datagram(Instant::now(), from, p), Ok(Received::Rtp(_))), "new key accepted");
}

/// A plain RTP packet of `ssrc` numbered `seq`.
fn plain(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    RtpHeader { payload_type: 0, seq, timestamp: u32::from(seq) * 160, ssrc, ..Default::default() }
        .write(&[0xd5; 160], 0, &mut v)
        .expect("rtp");
    v
}

/// What a stranger sends in the latching properties: its address (one of a few), SSRC, sequence
/// number, and when in the 20 ms between the far end's packets.
fn strangers() -> impl Strategy<Value = Vec<(u8, u32, u16, u8)>> {
    proptest::collection::vec((0u8..6, any::<u32>(), any::<u16>(), 0u8..20), 0..400)
}

proptest! {
    /// RTP bleed, as a property: while the far end sends from its SDP address every 20 ms, no
    /// mix of strangers' plain RTP (any addresses, SSRCs, numbering, timing, even in sequence)
    /// moves our media away from it or is taken as media.
    #[test]
    fn strangers_never_take_the_media_of_a_far_end_that_sends(spray in strangers()) {
        let peer: std::net::SocketAddr = "192.0.2.10:4000".parse().expect("addr");
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(peer), None);
        let t0 = Instant::now();
        let mut taken_from_strangers = 0;
        for (i, (who, ssrc, seq, at)) in spray.into_iter().enumerate() {
            let tick = t0 + std::time::Duration::from_millis(20 * i as u64);
            leg.handle_datagram(tick, peer, plain(77, i as u16)).expect("the far end");
            let stranger = std::net::SocketAddr::from(([198, 51, 100, who], 6000 + u16::from(who)));
            let when = tick + std::time::Duration::from_millis(u64::from(at));
            taken_from_strangers += usize::from(leg.handle_datagram(when, stranger, plain(ssrc, seq)).is_ok());
            prop_assert_eq!(leg.rtp_destination(), Some(peer));
        }
        prop_assert_eq!(taken_from_strangers, 0);
    }

    /// A far end behind NAT (its SDP address unreachable, its packets from elsewhere) is taken at
    /// its fourth packet in sequence, whatever up to six strangers send in between (their
    /// packets never start its count over).
    #[test]
    fn a_far_end_behind_nat_latches_through_strangers(spray in strangers()) {
        let private: std::net::SocketAddr = "10.0.0.5:4000".parse().expect("addr");
        let nat: std::net::SocketAddr = "203.0.113.7:61000".parse().expect("addr");
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(private), None);
        let t0 = Instant::now();
        let mut latched_at = None;
        for (i, (who, ssrc, seq, at)) in spray.into_iter().chain(std::iter::repeat_n((0, 1, 1, 0), 4)).enumerate() {
            if latched_at.is_some() {
                break;
            }
            let tick = t0 + std::time::Duration::from_millis(20 * i as u64);
            let stranger = std::net::SocketAddr::from(([198, 51, 100, who], 6000 + u16::from(who)));
            let _ = leg.handle_datagram(tick, stranger, plain(ssrc, seq));
            let _ = leg.handle_datagram(tick + std::time::Duration::from_millis(u64::from(at)), nat, plain(77, i as u16));
            if latched_at.is_none() && leg.rtp_destination() == Some(nat) {
                latched_at = Some(i);
            }
        }
        prop_assert_eq!(latched_at, Some(3), "the far end behind NAT at its fourth packet");
    }
}
