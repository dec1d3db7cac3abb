//! One call leg's media transport, sans-IO: demultiplexing (RFC 7983),
//! SRTP, symmetric RTP latching and media-activity tracking.

use crate::error::Error;
use crate::srtp::Context;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Plain RTP re-latches to a new source only after the current one has
/// been silent this long.
const RELATCH_AFTER: Duration = Duration::from_secs(1);

/// Plain RTP packets in sequence, of one SSRC, a new address must send before it is taken for the
/// far end's (RFC 3550 A.1's probation, `MIN_SEQUENTIAL`, used against RTP bleed: one sprayed
/// packet no longer moves the media to its sender).
const PROBATION: u8 = 4;

/// New address and SSRC pairs on probation at once.
const CANDIDATES: usize = 8;

/// How far a packet from a new address may be ahead of the source's last sequence number and
/// still be the source's stream moved (NAT rebinding keeps the SSRC and the numbering; a minute
/// of packets at 50 a second).
const MOVED_SEQ_WINDOW: u16 = 3000;

/// A new address on probation: its SSRC, last sequence number, and packets in sequence so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    seq: u16,
    count: u8,
}

/// What a received datagram is (RFC 7983 by its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// STUN (0..=3).
    Stun,
    /// DTLS (20..=63).
    Dtls,
    /// RTP (128..=191, second byte not an RTCP packet type).
    Rtp,
    /// RTCP (128..=191, packet type 192..=223).
    Rtcp,
    /// Anything else.
    Unknown,
}

/// Classifies a datagram.
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => match buf.get(1) {
            Some(192..=223) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// Settings of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegConfig {
    /// Send to where authenticated media really comes from (NAT).
    pub symmetric_rtp: bool,
    /// RTCP shares the RTP port (RFC 5761).
    pub rtcp_mux: bool,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig { symmetric_rtp: true, rtcp_mux: true }
    }
}

/// Counters and timestamps of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole datagrams).
    pub bytes: u64,
    /// When the first packet passed.
    pub first: Option<Instant>,
    /// When the last packet passed.
    pub last: Option<Instant>,
}

impl Activity {
    fn record(&mut self, now: Instant, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

/// A received packet after unprotection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Clear RTP.
    Rtp(Vec<u8>),
    /// Clear (compound) RTCP.
    Rtcp(Vec<u8>),
    /// A DTLS record for the DTLS driver.
    Dtls(Vec<u8>),
    /// A STUN message (consent, keep-alive).
    Stun(Vec<u8>),
}

/// The media transport of one leg.
#[derive(Debug)]
pub struct MediaLeg {
    config: LegConfig,
    /// The addresses the far end's SDP gives (`None` on hold by address, or before it is known).
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    /// Where the far end's media comes from (the latch): where we send, with symmetric RTP. Kept
    /// through a hold, for the source check.
    source: Option<SocketAddr>,
    /// SRTP keys are on their way (DTLS-SRTP): until they are set, RTP and RTCP are refused in
    /// both directions, so nobody can move the latch or be answered in clear meanwhile.
    awaiting_keys: bool,
    /// When the source last sent.
    last_from_source: Option<Instant>,
    /// The source before a re-offer moved the far end's address: it may not take the latch back
    /// until then (late packets of the old media path).
    refused: Option<(SocketAddr, Instant)>,
    /// The SSRC and last sequence number of the source's RTP.
    source_stream: Option<(u32, u16)>,
    /// New addresses (and SSRCs) whose plain RTP is on probation, a few at once (a stranger's
    /// packets between the far end's never reset its count), oldest first.
    candidates: Vec<Candidate>,
    /// Where the far end's RTCP comes from, without rtcp-mux (behind NAT its RTCP port is not the
    /// RTP port plus one).
    rtcp_source: Option<SocketAddr>,
    inbound: Option<Context>,
    outbound: Option<Context>,
    rx: Activity,
    tx: Activity,
    rejected: u64,
}

impl MediaLeg {
    /// A leg sending to the addresses from the peer's SDP; without
    /// contexts it sends and accepts plain RTP.
    pub fn new(config: LegConfig, remote_rtp: Option<SocketAddr>, remote_rtcp: Option<SocketAddr>) -> MediaLeg {
        MediaLeg {
            config,
            sdp_rtp: remote_rtp,
            sdp_rtcp: remote_rtcp,
            source: None,
            awaiting_keys: false,
            last_from_source: None,
            refused: None,
            source_stream: None,
            candidates: Vec::new(),
            rtcp_source: None,
            inbound: None,
            outbound: None,
            rx: Activity::default(),
            tx: Activity::default(),
            rejected: 0,
        }
    }

    /// Installs SRTP contexts (SDES keys from the offer/answer, or keys
    /// exported from DTLS). Replaces any previous keys (re-keying).
    pub fn set_srtp(&mut self, inbound: Context, outbound: Context) {
        self.inbound = Some(inbound);
        self.outbound = Some(outbound);
        self.awaiting_keys = false;
    }

    /// Replaces the context the far end's packets are unprotected with (it re-keyed in a
    /// re-offer, RFC 4568 §7.1.4), keeping ours and its rollover counter as they are.
    pub fn set_inbound_srtp(&mut self, inbound: Context) {
        self.inbound = Some(inbound);
    }

    /// SRTP will be keyed later (by a DTLS-SRTP handshake): refuse RTP and RTCP until
    /// [`MediaLeg::set_srtp`], instead of taking them in clear.
    pub fn await_srtp_keys(&mut self) {
        self.awaiting_keys = true;
    }

    /// Whether SRTP is in force.
    pub fn is_secure(&self) -> bool {
        self.inbound.is_some()
    }

    /// New remote addresses from a re-offer at `now`. A new address un-latches: the media source
    /// is learnt again, and the old one may not take the latch back for a second (its late
    /// packets, even authenticated ones under keys a new DTLS association replaces). A hold by
    /// address (`None`) stops sending but keeps the source for the check.
    pub fn set_remote(&mut self, now: Instant, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) {
        if rtp.is_some() && rtp != self.sdp_rtp && rtp != self.source {
            self.refused = self.source.take().map(|old| (old, now + RELATCH_AFTER));
            self.last_from_source = None;
            self.source_stream = None;
            self.candidates.clear();
            self.rtcp_source = None;
        }
        self.sdp_rtp = rtp;
        self.sdp_rtcp = rtcp;
    }

    /// Where RTP goes now: the far end's media source once known (symmetric RTP), else its SDP
    /// address; nowhere while its SDP gives none (hold).
    pub fn rtp_destination(&self) -> Option<SocketAddr> {
        self.sdp_rtp?;
        match self.source {
            Some(s) if self.config.symmetric_rtp => Some(s),
            _ => self.sdp_rtp,
        }
    }

    /// Where RTCP goes now: with rtcp-mux where RTP goes; without, the SDP's RTCP address, or
    /// the far end's RTCP source when its media was latched elsewhere (behind NAT; the latched
    /// RTP port plus one until its RTCP is heard).
    pub fn rtcp_destination(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_destination();
        if self.config.rtcp_mux {
            return rtp;
        }
        let rtp = rtp?;
        // The port after RTP's; none after port 65535 (never port 0).
        let next = |a: SocketAddr| Some(SocketAddr::new(a.ip(), a.port().checked_add(1)?));
        let heard = self.rtcp_source.filter(|r| r.ip() == rtp.ip());
        if self.config.symmetric_rtp && Some(rtp) != self.sdp_rtp {
            // Latched away from its SDP address (NAT): its RTCP source once heard, its RTP port
            // plus one until then.
            return heard.or_else(|| next(rtp));
        }
        heard.or(self.sdp_rtcp).or_else(|| next(rtp))
    }

    /// Handles a datagram that arrived from `from` on the RTP (or muxed)
    /// socket. SRTP packets that fail authentication are counted and dropped, and never move the
    /// latch. Plain RTP is media only from the far end's SDP address or its latched source; from
    /// elsewhere it takes the latch only while no source is known or the source has been quiet for
    /// a second, and is dropped otherwise (strict source).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, mut buf: Vec<u8>) -> Result<Received, Error> {
        let kind = classify(&buf);
        let mut stream = None;
        let r = match kind {
            PacketKind::Stun => return Ok(Received::Stun(buf)),
            PacketKind::Dtls => return Ok(Received::Dtls(buf)),
            PacketKind::Rtp | PacketKind::Rtcp if self.awaiting_keys => {
                self.rejected += 1;
                return Err(Error::Malformed { what: "media", reason: "RTP before the DTLS-SRTP keys" });
            }
            PacketKind::Rtp => {
                if let Some(ctx) = &mut self.inbound {
                    if let Err(e) = ctx.unprotect_rtp_at(now, &mut buf) {
                        self.rejected += 1;
                        return Err(e);
                    }
                }
                // Parsed in the clear: SRTP encrypts the padding count and
                // puts the tag where it would be.
                let p = crate::rtp::RtpPacket::parse(&buf)?;
                stream = Some((p.ssrc().0, p.seq()));
                Received::Rtp(buf)
            }
            PacketKind::Rtcp => {
                if let Some(ctx) = &mut self.inbound {
                    if let Err(e) = ctx.unprotect_rtcp(&mut buf) {
                        self.rejected += 1;
                        return Err(e);
                    }
                } else if !self.plain_rtcp_source_ok(from) {
                    // Unauthenticated reports from a stranger could ask us to slow down (TMMBR),
                    // say BYE for the far end's source, or fake its statistics.
                    self.rejected += 1;
                    return Err(Error::Malformed { what: "RTCP", reason: "from a host other than the far end's" });
                }
                crate::rtcp::parse_compound(&buf)?;
                Received::Rtcp(buf)
            }
            PacketKind::Unknown => {
                self.rejected += 1;
                return Err(Error::Malformed { what: "datagram", reason: "neither RTP, RTCP, DTLS nor STUN" });
            }
        };
        let len = match &r {
            Received::Rtp(b) | Received::Rtcp(b) => b.len(),
            _ => 0,
        };
        if let (PacketKind::Rtp, Some((ssrc, seq))) = (kind, stream) {
            if !self.take_source(now, from, ssrc, seq) {
                self.rejected += 1;
                return Err(Error::Malformed { what: "RTP", reason: "from an address other than the far end's" });
            }
            self.rx.record(now, len);
        }
        Ok(r)
    }

    /// Whether RTP from `from` (authenticated already, with SRTP) of `ssrc` numbered `seq` is the
    /// far end's media, latching it as the source when it is:
    /// - from the SDP's address: always (the far end said so);
    /// - from the source: yes;
    /// - from the source a re-offer replaced: not for a second after it (late packets of the old
    ///   path, authenticated or not);
    /// - from anywhere else:
    ///   - with SRTP: the packet proved its origin (NAT rebinding): followed;
    ///   - plain RTP while no source is known (a far end behind NAT): after [`PROBATION`]
    ///     packets in sequence of one SSRC;
    ///   - plain RTP once the source has been quiet for a second: its own stream at once (its
    ///     SSRC, numbering on from where it stopped: NAT rebinding), another from the far end's
    ///     host (its IP or its SDP's) after probation (a stream it started anew from a new NAT
    ///     port); never another host's (a stranger during the far end's silence).
    ///
    ///   Anything else is not media of this call (strict source: a stranger's audio or digits,
    ///   RTP bleed).
    ///
    /// Without symmetric RTP nothing latches and everything is taken, as before.
    fn take_source(&mut self, now: Instant, from: SocketAddr, ssrc: u32, seq: u16) -> bool {
        if !self.config.symmetric_rtp {
            return true;
        }
        let known = Some(from) == self.sdp_rtp || Some(from) == self.source;
        let refused = self.refused.is_some_and(|(old, until)| old == from && now < until);
        let quiet = self.last_from_source.is_none_or(|t| now.saturating_duration_since(t) >= RELATCH_AFTER);
        let take = if known {
            true
        } else if refused {
            false
        } else if self.inbound.is_some() {
            true
        } else if self.source.is_none() {
            self.on_probation(from, ssrc, seq)
        } else if quiet {
            // The source's own stream, moved (same SSRC, numbering going on), or a stream started
            // anew from the far end's host (its IP or its SDP's: a new NAT port), on probation.
            // Another host's stream during the far end's silence is a stranger's.
            let moved = self
                .source_stream
                .is_some_and(|(s, last)| s == ssrc && seq.wrapping_sub(last).wrapping_sub(1) < MOVED_SEQ_WINDOW);
            let its_host = [self.source, self.sdp_rtp].iter().flatten().any(|a| a.ip() == from.ip());
            moved || (its_host && self.on_probation(from, ssrc, seq))
        } else {
            false
        };
        if take {
            if self.source != Some(from) {
                // A new source: its RTCP address is learnt again. (A re-offer's refusal of the old
                // path runs out by time only: its stragglers may come after the new path's first.)
                self.candidates.clear();
                self.rtcp_source = None;
            }
            self.source = Some(from);
            self.source_stream = Some((ssrc, seq));
            self.last_from_source = Some(now);
        }
        take
    }

    /// A plain RTP packet from a new address: counted towards the probation of its address and
    /// SSRC; true once [`PROBATION`] packets of them came in sequence. A few candidates are kept
    /// at once ([`CANDIDATES`], the oldest dropped), so packets of others in between (a stranger's,
    /// or the far end's own second SSRC) do not start its count over.
    fn on_probation(&mut self, from: SocketAddr, ssrc: u32, seq: u16) -> bool {
        let at = self.candidates.iter().position(|c| c.addr == from && c.ssrc == ssrc);
        let count = match at.map(|i| self.candidates.remove(i)) {
            Some(c) if seq == c.seq.wrapping_add(1) => c.count.saturating_add(1),
            Some(c) if seq == c.seq => c.count,
            _ => 1,
        };
        if self.candidates.len() >= CANDIDATES {
            self.candidates.remove(0);
        }
        self.candidates.push(Candidate { addr: from, ssrc, seq, count });
        count >= PROBATION
    }

    /// Plain RTCP is taken from the far end's hosts only once its media source is known: the host
    /// its media comes from, or one its SDP names. Before that, from anyone (a far end behind NAT,
    /// or one that sends no media and only feedback, has no other way to reach us).
    fn plain_rtcp_source_ok(&self, from: SocketAddr) -> bool {
        self.source.is_none()
            || [self.source, self.sdp_rtp, self.sdp_rtcp].iter().flatten().any(|a| a.ip() == from.ip())
    }

    /// Handles a datagram that arrived on the separate RTCP socket (no rtcp-mux): RTCP, or the
    /// STUN and DTLS the RTP socket would take; anything that looks like RTP is refused there (it
    /// never counts as media and never moves the RTP latch).
    pub fn handle_rtcp_datagram(&mut self, now: Instant, from: SocketAddr, buf: Vec<u8>) -> Result<Received, Error> {
        let kind = classify(&buf);
        if kind == PacketKind::Rtp {
            self.rejected += 1;
            return Err(Error::Malformed { what: "datagram", reason: "RTP on the RTCP port" });
        }
        let r = self.handle_datagram(now, from, buf);
        if kind == PacketKind::Rtcp && r.is_ok() && self.source.is_some_and(|s| s.ip() == from.ip()) {
            // Where the far end's reports come from: where ours go when its media was latched
            // away from its SDP address.
            self.rtcp_source = Some(from);
        }
        r
    }

    /// Protects an RTP packet for sending; returns the bytes and where to.
    pub fn send_rtp(&mut self, now: Instant, mut pkt: Vec<u8>) -> Result<Option<(SocketAddr, Vec<u8>)>, Error> {
        let Some(to) = self.rtp_destination() else { return Ok(None) };
        if self.awaiting_keys {
            // Never in clear while the keys are being agreed.
            return Ok(None);
        }
        if let Some(ctx) = &mut self.outbound {
            ctx.protect_rtp(&mut pkt)?;
        }
        self.tx.record(now, pkt.len());
        Ok(Some((to, pkt)))
    }

    /// Protects an RTCP packet for sending.
    pub fn send_rtcp(&mut self, mut pkt: Vec<u8>) -> Result<Option<(SocketAddr, Vec<u8>)>, Error> {
        let Some(to) = self.rtcp_destination() else { return Ok(None) };
        if self.awaiting_keys {
            // Never in clear while the keys are being agreed (a report names our CNAME).
            return Ok(None);
        }
        if let Some(ctx) = &mut self.outbound {
            ctx.protect_rtcp(&mut pkt)?;
        }
        Ok(Some((to, pkt)))
    }

    /// Received RTP activity: tells "the far end sends nothing" (no packet
    /// ever, or none lately) from "the far end sends silence" (packets flow).
    pub fn received(&self) -> Activity {
        self.rx
    }

    /// Sent RTP activity.
    pub fn sent(&self) -> Activity {
        self.tx
    }

    /// Packets dropped because they failed authentication or parsing.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::{MasterKey, Options, Suite};

    fn ctx() -> Context {
        let mk = MasterKey { key: vec![1; 16], salt: vec![2; 14], mki: None, lifetime: None };
        Context::new(Suite::AesCm128HmacSha1_80, &mk, Options::default()).expect("ctx")
    }

    fn rtp(seq: u16) -> Vec<u8> {
        rtp_of(9, seq)
    }

    fn rtp_of(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut v = Vec::new();
        crate::rtp::RtpHeader { seq, ssrc, ..Default::default() }.write(&[0; 160], 0, &mut v).expect("w");
        v
    }

    /// RTP bleed: a stranger spraying plain RTP at our port. Before the far end's first packet it
    /// needs four packets in sequence of one SSRC (out of order, or SSRCs mixed, count for
    /// nothing), and its packets in between do not start the far end's count over; while the
    /// far end's source sends, nothing else moves the latch; once it is quiet for a second, its
    /// own stream moves it at once (NAT rebinding), another of its host only after probation (a
    /// stream it started anew from a new NAT port), and another host's never.
    #[test]
    fn strangers_cannot_take_the_media() {
        let peer: SocketAddr = "192.0.2.10:4000".parse().expect("addr");
        let nat: SocketAddr = "203.0.113.7:61000".parse().expect("addr");
        let stranger: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(peer), None);
        for (ssrc, seq) in [(5, 10), (5, 12), (6, 13), (5, 11), (5, 14), (5, 16)] {
            assert!(leg.handle_datagram(t0, stranger, rtp_of(ssrc, seq)).is_err(), "{ssrc}/{seq}");
        }
        assert_eq!(leg.rtp_destination(), Some(peer), "a spray out of sequence never latches");
        // The far end behind NAT: four in sequence, a stranger's packets in between, then followed.
        for seq in 100..103 {
            assert!(leg.handle_datagram(t0, nat, rtp_of(7, seq)).is_err());
            assert!(leg.handle_datagram(t0, stranger, rtp_of(5, 50 + seq)).is_err());
        }
        leg.handle_datagram(t0, nat, rtp_of(7, 103)).expect("the fourth in sequence");
        assert_eq!(leg.rtp_destination(), Some(nat));
        // While it sends, a stranger's stream in sequence moves nothing.
        for seq in 0..10 {
            let at = t0 + ms(20 * seq);
            leg.handle_datagram(at, nat, rtp_of(7, 104 + seq as u16)).expect("the far end");
            assert!(leg.handle_datagram(at, stranger, rtp_of(5, seq as u16)).is_err());
        }
        assert_eq!(leg.rtp_destination(), Some(nat));
        // Quiet for two seconds (silence suppression): sprayed packets do not move it...
        for seq in [0u16, 7, 3, 9, 1] {
            assert!(leg.handle_datagram(t0 + ms(2000), stranger, rtp_of(6, seq)).is_err());
        }
        // ...nor does a stranger's stream in sequence, from another host...
        for seq in 0..10 {
            assert!(leg.handle_datagram(t0 + ms(2100), stranger, rtp_of(6, 100 + seq)).is_err());
        }
        assert_eq!(leg.rtp_destination(), Some(nat));
        // ...the far end's own stream from a new NAT mapping does, numbering going on...
        let rebound: SocketAddr = "203.0.113.7:62000".parse().expect("addr");
        leg.handle_datagram(t0 + ms(2300), rebound, rtp_of(7, 114)).expect("the source's stream, moved");
        assert_eq!(leg.rtp_destination(), Some(rebound));
        // ...and after another quiet second, a stream started anew (new SSRC) after probation.
        let anew: SocketAddr = "203.0.113.7:63000".parse().expect("addr");
        for seq in 0..3 {
            assert!(leg.handle_datagram(t0 + ms(3400), anew, rtp_of(8, seq)).is_err());
        }
        leg.handle_datagram(t0 + ms(3400), anew, rtp_of(8, 3)).expect("a new stream, after probation");
        assert_eq!(leg.rtp_destination(), Some(anew));
    }

    /// A re-offer that moves the far end (with a new DTLS association): a late packet of the old
    /// path, still authenticated under the old keys, does not take the latch back.
    #[test]
    fn a_moved_far_end_keeps_the_latch_against_its_old_path_under_srtp() {
        let old: SocketAddr = "192.0.2.10:4000".parse().expect("addr");
        let new: SocketAddr = "192.0.2.20:4100".parse().expect("addr");
        let key = MasterKey { key: vec![7; 16], salt: vec![8; 14], mki: None, lifetime: None };
        let ctx = || {
            Context::new(crate::srtp::Suite::AesCm128HmacSha1_80, &key, crate::srtp::Options::default()).expect("ctx")
        };
        let mut far = ctx();
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(old), None);
        leg.set_srtp(ctx(), ctx());
        let t0 = Instant::now();
        let mut p = rtp(1);
        far.protect_rtp(&mut p).expect("protect");
        leg.handle_datagram(t0, old, p).expect("from the far end");
        leg.set_remote(t0 + Duration::from_millis(5), Some(new), None);
        let mut late = rtp(2);
        far.protect_rtp(&mut late).expect("protect");
        assert!(leg.handle_datagram(t0 + Duration::from_millis(10), old, late).is_err(), "the old path's late packet");
        assert_eq!(leg.rtp_destination(), Some(new));
        // The new path's first packet, then another straggler of the old one: still refused.
        let mut first = rtp(3);
        far.protect_rtp(&mut first).expect("protect");
        leg.handle_datagram(t0 + Duration::from_millis(20), new, first).expect("the new path");
        let mut straggler = rtp(4);
        far.protect_rtp(&mut straggler).expect("protect");
        assert!(leg.handle_datagram(t0 + Duration::from_millis(30), old, straggler).is_err(), "a straggler");
        assert_eq!(leg.rtp_destination(), Some(new));
    }

    /// Without rtcp-mux, behind NAT: our reports follow the media's latched address (its port
    /// plus one), and the far end's own RTCP port once heard, never the SDP's private address.
    #[test]
    fn rtcp_follows_the_latch_without_rtcp_mux() {
        let private: SocketAddr = "10.0.0.5:4000".parse().expect("addr");
        let nat: SocketAddr = "203.0.113.7:61000".parse().expect("addr");
        let mut leg = MediaLeg::new(
            LegConfig { symmetric_rtp: true, rtcp_mux: false },
            Some(private),
            Some("10.0.0.5:4001".parse().expect("addr")),
        );
        assert_eq!(leg.rtcp_destination(), Some("10.0.0.5:4001".parse().expect("addr")));
        let t0 = Instant::now();
        for seq in 1..=4 {
            let _ = leg.handle_datagram(t0, nat, rtp(seq));
        }
        assert_eq!(leg.rtp_destination(), Some(nat));
        assert_eq!(leg.rtcp_destination(), Some("203.0.113.7:61001".parse().expect("addr")));
        let rr = crate::rtcp::write_compound(&[crate::rtcp::RtcpPacket::ReceiverReport { ssrc: 9, reports: vec![] }]);
        let nat_rtcp: SocketAddr = "203.0.113.7:61555".parse().expect("addr");
        leg.handle_rtcp_datagram(t0, nat_rtcp, rr).expect("its RTCP");
        assert_eq!(leg.rtcp_destination(), Some(nat_rtcp));
    }

    #[test]
    fn demux() {
        assert_eq!(classify(&[0, 1]), PacketKind::Stun);
        assert_eq!(classify(&[22, 254]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 0]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 200]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 96 | 0x80]), PacketKind::Rtp, "marker set on PT 96");
        assert_eq!(classify(&[255]), PacketKind::Unknown);
    }

    /// RTCP goes to the port after RTP's, unless muxed or given; after port 65535 there is none.
    #[test]
    fn rtcp_goes_to_the_next_port_but_never_to_port_zero() {
        let leg = |port: u16, mux: bool| {
            MediaLeg::new(
                LegConfig { symmetric_rtp: true, rtcp_mux: mux },
                Some(SocketAddr::from(([192, 0, 2, 10], port))),
                None,
            )
        };
        assert_eq!(leg(4000, false).rtcp_destination(), Some(SocketAddr::from(([192, 0, 2, 10], 4001))));
        assert_eq!(leg(4000, true).rtcp_destination(), Some(SocketAddr::from(([192, 0, 2, 10], 4000))));
        assert_eq!(leg(65535, false).rtcp_destination(), None);
    }

    #[test]
    fn plain_rtp_from_the_sdp_address_holds_the_latch() {
        let peer: SocketAddr = "192.0.2.10:4000".parse().expect("addr");
        let attacker: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: false }, Some(peer), None);
        let t0 = Instant::now();
        let rtp = |seq: u16| {
            let mut b = Vec::new();
            crate::rtp::RtpHeader {
                payload_type: 0,
                seq,
                timestamp: u32::from(seq) * 160,
                ssrc: 1,
                ..Default::default()
            }
            .write(&[0xff; 160], 0, &mut b)
            .expect("rtp");
            b
        };
        leg.handle_datagram(t0, peer, rtp(1)).expect("from the peer");
        // Packets from elsewhere while the peer sends: not media of this call (injected audio or
        // digits), and they do not move the latch (that used to move the media to whoever sent
        // first: an RTP-bleed hijack).
        for ms in [10, 500, 990] {
            assert!(leg.handle_datagram(t0 + Duration::from_millis(ms), attacker, rtp(2)).is_err(), "{ms} ms");
        }
        assert_eq!(leg.rtp_destination(), Some(peer));
        assert_eq!((leg.received().packets, leg.rejected()), (1, 3));
        // RTP-looking datagrams on the RTCP port are refused outright.
        assert!(leg.handle_rtcp_datagram(t0 + Duration::from_millis(15), peer, rtp(3)).is_err());
        // Plain RTCP from the far end's host (any port) passes; from a stranger it does not.
        let rr = crate::rtcp::write_compound(&[crate::rtcp::RtcpPacket::ReceiverReport { ssrc: 1, reports: vec![] }]);
        let peer_rtcp = SocketAddr::new(peer.ip(), 4001);
        assert!(matches!(leg.handle_rtcp_datagram(t0, peer_rtcp, rr.clone()), Ok(Received::Rtcp(_))));
        assert!(leg.handle_rtcp_datagram(t0, attacker, rr.clone()).is_err());
        assert!(leg.handle_datagram(t0, attacker, rr.clone()).is_err(), "muxed too");
        // The peer quiet for a second: a real move (NAT rebinding) is followed.
        leg.handle_datagram(t0 + Duration::from_millis(1100), attacker, rtp(4)).expect("parses");
        assert_eq!(leg.rtp_destination(), Some(attacker));
        assert!(matches!(leg.handle_rtcp_datagram(t0, attacker, rr.clone()), Ok(Received::Rtcp(_))), "its RTCP");
        // The SDP's address is always the far end's: it takes the latch back at once.
        leg.handle_datagram(t0 + Duration::from_millis(1110), peer, rtp(5)).expect("the SDP address");
        assert_eq!(leg.rtp_destination(), Some(peer));
        assert!(leg.handle_datagram(t0 + Duration::from_millis(1120), attacker, rtp(6)).is_err());
    }

    /// A stranger first (before the far end's first packet) latches after four packets in
    /// sequence, as a far end behind NAT would, but the far end's SDP address takes the latch back; a re-offer to a new address
    /// lets its media latch and keeps the old path's late packets from taking the latch back for a
    /// second; a hold by address sends nothing but keeps the source for the check; plain RTCP
    /// comes from anyone until a source is known.
    #[test]
    fn the_far_end_keeps_its_media_through_strangers_re_offers_and_holds() {
        let peer: SocketAddr = "192.0.2.10:4000".parse().expect("addr");
        let moved: SocketAddr = "192.0.2.20:4100".parse().expect("addr");
        let stranger: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(peer), None);
        let rr = crate::rtcp::write_compound(&[crate::rtcp::RtcpPacket::ReceiverReport { ssrc: 1, reports: vec![] }]);
        assert!(leg.handle_datagram(t0, stranger, rr.clone()).is_ok(), "RTCP before any source is known");
        for seq in 1..4 {
            assert!(leg.handle_datagram(t0, stranger, rtp(seq)).is_err(), "on probation: {seq}");
        }
        assert_eq!(leg.rtp_destination(), Some(peer));
        leg.handle_datagram(t0, stranger, rtp(4)).expect("before the far end, four in sequence: taken (NAT)");
        assert_eq!(leg.rtp_destination(), Some(stranger));
        leg.handle_datagram(t0 + ms(5), peer, rtp(2)).expect("the far end, from its SDP address");
        assert_eq!(leg.rtp_destination(), Some(peer));
        assert!(leg.handle_datagram(t0 + ms(10), stranger, rtp(3)).is_err(), "the stranger now");
        // A re-offer moves the far end.
        leg.set_remote(t0 + ms(20), Some(moved), None);
        assert!(leg.handle_datagram(t0 + ms(30), peer, rtp(4)).is_err(), "a late packet of the old path");
        assert_eq!(leg.rtp_destination(), Some(moved));
        leg.handle_datagram(t0 + ms(40), moved, rtp(5)).expect("the new address");
        assert!(leg.handle_datagram(t0 + ms(50), peer, rtp(6)).is_err());
        // On hold by address: nothing sent; the source still checked.
        leg.set_remote(t0 + ms(60), None, None);
        assert_eq!(leg.rtp_destination(), None);
        assert!(leg.send_rtp(t0 + ms(60), rtp(7)).expect("send").is_none());
        assert!(leg.handle_datagram(t0 + ms(70), stranger, rtp(8)).is_err(), "a hold opens nothing");
        leg.handle_datagram(t0 + ms(80), moved, rtp(9)).expect("the far end still");
        leg.set_remote(t0 + ms(90), Some(moved), None);
        assert_eq!(leg.rtp_destination(), Some(moved), "resumed");
    }

    #[test]
    fn latches_only_on_authenticated_media() {
        let sdp_addr: SocketAddr = "10.0.0.5:4000".parse().expect("a");
        let nat: SocketAddr = "203.0.113.7:61000".parse().expect("a");
        let attacker: SocketAddr = "198.51.100.66:5000".parse().expect("a");
        let mut leg = MediaLeg::new(LegConfig::default(), Some(sdp_addr), None);
        leg.set_srtp(ctx(), ctx());
        let now = Instant::now();
        // Unauthenticated packet from an attacker: dropped, no latch.
        assert!(leg.handle_datagram(now, attacker, rtp(1)).is_err());
        assert_eq!(leg.rtp_destination(), Some(sdp_addr));
        // Authentic packet from behind NAT: latch.
        let mut sender = ctx();
        let mut p = rtp(2);
        sender.protect_rtp(&mut p).expect("p");
        assert!(matches!(leg.handle_datagram(now, nat, p), Ok(Received::Rtp(_))));
        assert_eq!(leg.rtp_destination(), Some(nat));
        assert_eq!(leg.received().packets, 1);
        assert_eq!(leg.rejected(), 1);
    }

    /// The far end re-keys (a re-offer): its packets are taken under the new key, and ours go on
    /// under our context, rollover counter included (our stream wrapped its sequence numbers
    /// before: a fresh context would restart at rollover 0, which the far end cannot unprotect).
    #[test]
    fn an_inbound_re_key_keeps_our_context() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().expect("a");
        let mut leg = MediaLeg::new(LegConfig::default(), Some(peer), None);
        leg.set_srtp(ctx(), ctx());
        let mut far_end = ctx();
        let now = Instant::now();
        for seq in [65_534u16, 65_535, 0, 1] {
            let (_, mut p) = leg.send_rtp(now, rtp(seq)).expect("send").expect("a destination");
            far_end.unprotect_rtp(&mut p).expect("the far end takes ours");
        }
        let new_key = MasterKey { key: vec![7; 16], salt: vec![8; 14], mki: None, lifetime: None };
        let keyed = || Context::new(Suite::AesCm128HmacSha1_80, &new_key, Options::default()).expect("ctx");
        leg.set_inbound_srtp(keyed());
        let (_, mut p) = leg.send_rtp(now, rtp(2)).expect("send").expect("a destination");
        far_end.unprotect_rtp(&mut p).expect("ours still, after the wrap");
        let mut theirs = keyed();
        let mut q = rtp(100);
        theirs.protect_rtp(&mut q).expect("p");
        assert!(matches!(leg.handle_datagram(now, peer, q), Ok(Received::Rtp(_))), "theirs under the new key");
        let mut old = ctx();
        let mut r = rtp(101);
        old.protect_rtp(&mut r).expect("p");
        assert!(leg.handle_datagram(now, peer, r).is_err(), "not under the old one");
    }

    #[test]
    fn nothing_in_clear_while_awaiting_dtls_keys() {
        let peer: SocketAddr = "127.0.0.1:5004".parse().expect("addr");
        let stranger: SocketAddr = "127.0.0.1:6666".parse().expect("addr");
        let mut leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(peer), None);
        leg.await_srtp_keys();
        let mut pkt = Vec::new();
        crate::RtpHeader { payload_type: 0, seq: 1, timestamp: 160, ssrc: 7, ..Default::default() }
            .write(&[0u8; 160], 0, &mut pkt)
            .expect("rtp");
        let now = Instant::now();
        assert!(leg.handle_datagram(now, stranger, pkt.clone()).is_err(), "clear RTP refused");
        assert_eq!(leg.rtp_destination(), Some(peer), "and it moved no latch");
        assert_eq!(leg.send_rtp(now, pkt.clone()).expect("send"), None, "nothing sent in clear");
        let report = vec![0x80, 200, 0, 6, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(leg.send_rtcp(report).expect("send"), None, "no RTCP in clear either");
        let dtls = vec![22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(leg.handle_datagram(now, peer, dtls), Ok(Received::Dtls(_))), "DTLS still passes");
    }
}
