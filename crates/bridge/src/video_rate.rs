//! How fast a call's grid is sent ([`SendRate`]), and the grid packets the SIP party may ask for
//! again ([`Resend`]). Both are sans-IO: the call's video task feeds them what it sends and what
//! the SIP party's RTCP says, with the time.
//!
//! The encoder's target is the lowest of four limits:
//! - the gateway's configured bitrate;
//! - what the SIP party says it receives, in its SDP (`b=TIAS` or `b=AS`, RFC 3264 §5), updated
//!   by its re-offers;
//! - its Temporary Maximum Media Stream Bit Rate Requests (RFC 5104 §4.2.1), each answered with a
//!   notification of the limit in force (TMMBN, §4.2.2); a limit lasts until its owner sends
//!   another, says BYE, or has sent no RTCP for [`OWNER_TIMEOUT`]; a limit below what the
//!   encoders can do (zero included: RFC 7728's pause) pauses the grid instead;
//! - an estimate that follows the loss its receiver reports show on our stream: down by half the
//!   loss fraction when more than 10% is lost, held from 2% to 10%, up when less than 2% is lost
//!   (the thresholds and the decrease of draft-ietf-rmcat-gcc §6; up 8% a second, as libwebrtc's
//!   loss-based controller, where the draft adds 5% a report). Reports closer than half a second
//!   to the last one used are not used (a compound of feedback covers too short an interval).
//!
//! A lost grid packet the SIP party asks for with a generic NACK (RFC 4585 §6.2.1) is sent again
//! as it was (same sequence number and SSRC: SIP endpoints do not negotiate RFC 4588 RTX), when it
//! is less than a second old, not resent in the last round trip, and within a budget of half the
//! target bitrate: a repaired packet spares a keyframe, which costs several frames' worth of bits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use srtp_transport::rtcp::{RtcpPacket, Tmmb};

/// The lowest the loss-based estimate goes, bit/s: below it a grid is a smear.
const LOSS_FLOOR: u32 = 64_000;
/// Requests kept from this many owners (a SIP party is one; a conference bridge behind it may
/// forward a few).
const MAX_OWNERS: usize = 4;
/// A TMMBR's owner silent this long (no RTCP at all) is gone (RFC 3550 §6.3.5 times members out
/// after five reporting intervals; SIP endpoints report every five seconds or so).
pub(crate) const OWNER_TIMEOUT: Duration = Duration::from_secs(30);
/// Loss reports closer together than this: the later is not used.
const LOSS_REPORT_SPACING: Duration = Duration::from_millis(500);

/// The payload an RTP packet of the grid carries at most, for turning a TMMBR's total bitrate and
/// per-packet overhead into a media bitrate.
const PACKET_PAYLOAD: u64 = crate::video::VIDEO_MTU as u64;

/// The target bitrate of a call's grid.
#[derive(Debug, Clone)]
pub(crate) struct SendRate {
    configured: u32,
    /// From the SIP party's SDP.
    sdp: Option<u32>,
    /// TMMBR limits in force: the owner's SSRC, its entry as received, and the media bitrate it
    /// leaves us.
    requests: Vec<(u32, Tmmb, u32)>,
    /// When each owner was last heard (any RTCP from it).
    heard: Vec<(u32, Instant)>,
    /// The loss-based estimate.
    estimate: u32,
    /// When the estimate last went up (or the controller started).
    raised_at: Instant,
    /// When a loss report was last used.
    loss_at: Option<Instant>,
}

impl SendRate {
    /// A controller for a grid configured at `configured` bit/s, to a SIP party whose SDP says it
    /// receives at most `sdp` bit/s.
    pub(crate) fn new(configured: u32, sdp: Option<u64>, now: Instant) -> SendRate {
        let configured = configured.max(media_mixer::h264::MIN_BITRATE);
        SendRate {
            configured,
            sdp: clamp(sdp),
            requests: Vec::new(),
            heard: Vec::new(),
            estimate: configured,
            raised_at: now,
            loss_at: None,
        }
    }

    /// The bitrate to encode at now, bit/s.
    pub(crate) fn target(&self) -> u32 {
        let requested = self.requests.iter().map(|(_, _, media)| *media).min();
        [Some(self.configured), self.sdp, requested, Some(self.estimate)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.configured)
            .max(media_mixer::h264::MIN_BITRATE)
    }

    /// Whether a TMMBR in force asks for less than the encoders can do: the grid is not sent.
    pub(crate) fn paused(&self) -> bool {
        self.requests.iter().any(|(_, _, media)| *media < media_mixer::h264::MIN_BITRATE)
    }

    /// RTCP came from `ssrc` at `now` (an owner of a request is still there).
    pub(crate) fn heard_from(&mut self, now: Instant, ssrc: u32) {
        if let Some(h) = self.heard.iter_mut().find(|(owner, _)| *owner == ssrc) {
            h.1 = now;
        }
    }

    /// Drops the requests of owners not heard from for [`OWNER_TIMEOUT`].
    pub(crate) fn expire(&mut self, now: Instant) {
        let gone: Vec<u32> = self
            .heard
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(*at) >= OWNER_TIMEOUT)
            .map(|(owner, _)| *owner)
            .collect();
        for owner in gone {
            self.on_bye(owner);
        }
    }

    /// A re-offer or its answer changed what the SIP party says it receives.
    pub(crate) fn set_sdp_limit(&mut self, sdp: Option<u64>) {
        self.sdp = clamp(sdp);
    }

    /// A receiver report block on our stream: `fraction_lost` (0 to 1) of its last interval.
    pub(crate) fn on_loss(&mut self, now: Instant, fraction_lost: f64) {
        if self.loss_at.is_some_and(|t| now.saturating_duration_since(t) < LOSS_REPORT_SPACING) {
            return;
        }
        self.loss_at = Some(now);
        let ceiling = self.target_without_estimate();
        if fraction_lost > 0.10 {
            let lowered = f64::from(self.estimate.min(ceiling)) * (1.0 - 0.5 * fraction_lost.min(1.0));
            self.estimate = (lowered as u32).max(LOSS_FLOOR);
            self.raised_at = now;
        } else if fraction_lost < 0.02 {
            // 8% a second since the last change (reports come every few seconds), at most five
            // seconds' worth at once, never above the other limits.
            let seconds = now.saturating_duration_since(self.raised_at).as_secs_f64().min(5.0);
            let raised = f64::from(self.estimate) * 1.08f64.powf(seconds);
            self.estimate = (raised as u32).min(ceiling.max(self.estimate));
            self.raised_at = now;
        }
    }

    fn target_without_estimate(&self) -> u32 {
        let requested = self.requests.iter().map(|(_, _, media)| *media).min();
        [Some(self.configured), self.sdp, requested].into_iter().flatten().min().unwrap_or(self.configured)
    }

    /// A TMMBR from `sender`: its entry for our stream `ours` (others are not ours to keep)
    /// replaces that owner's earlier one. Returns the TMMBN that answers it (the limit in force
    /// and its owner), `None` when nothing in it was for us.
    pub(crate) fn on_tmmbr(&mut self, now: Instant, ours: u32, sender: u32, entries: &[Tmmb]) -> Option<RtcpPacket> {
        let entry = entries.iter().find(|e| e.ssrc == ours)?;
        let owned = Tmmb { ssrc: sender, ..*entry };
        // The total bitrate less the headers of the packets it takes (full ones, at least).
        let media = entry.bitrate.saturating_mul(PACKET_PAYLOAD) / (PACKET_PAYLOAD + u64::from(entry.overhead));
        let media = u32::try_from(media).unwrap_or(u32::MAX);
        self.requests.retain(|(owner, _, _)| *owner != sender);
        if self.requests.len() == MAX_OWNERS {
            // The loosest limit goes: it binds least.
            if let Some(at) = self.requests.iter().enumerate().max_by_key(|(_, r)| r.2).map(|(at, _)| at) {
                self.requests.remove(at);
            }
        }
        self.requests.push((sender, owned, media));
        self.heard.retain(|(owner, _)| self.requests.iter().any(|(o, _, _)| o == owner));
        if let Some(h) = self.heard.iter_mut().find(|(owner, _)| *owner == sender) {
            h.1 = now;
        } else {
            self.heard.push((sender, now));
        }
        let requests: Vec<Tmmb> = self.requests.iter().map(|(_, tmmb, _)| *tmmb).collect();
        Some(RtcpPacket::Tmmbn { sender: ours, entries: bounding_set(&requests) })
    }

    /// An owner of a request left (RTCP BYE): its limit goes with it (RFC 5104 §4.2.1.2).
    pub(crate) fn on_bye(&mut self, ssrc: u32) {
        self.requests.retain(|(owner, _, _)| *owner != ssrc);
        self.heard.retain(|(owner, _)| *owner != ssrc);
    }
}

/// A bandwidth from SDP as a bitrate (`None` stays none; beyond `u32` is no limit we can reach).
fn clamp(bandwidth: Option<u64>) -> Option<u32> {
    bandwidth.map(|b| u32::try_from(b).unwrap_or(u32::MAX))
}

/// One grid packet sent.
#[derive(Debug)]
struct Sent {
    seq: u16,
    at: Instant,
    /// The RTP packet before SRTP (the leg protects it again when it is resent).
    packet: Vec<u8>,
    resent: Option<Instant>,
}

/// The grid packets of the last second, for the SIP party's NACKs.
#[derive(Debug)]
pub(crate) struct Resend {
    /// In the order sent, which is sequence order.
    sent: VecDeque<Sent>,
    /// Bytes that may still be resent now.
    budget: f64,
    budget_at: Option<Instant>,
    /// Packets resent, and asked for but not resent (too old, unknown, just resent, or over
    /// the budget).
    pub(crate) resent: u64,
    pub(crate) refused: u64,
}

/// How long a packet is kept for a NACK: later, the receiver has given up on it (and asks for a
/// keyframe).
const KEEP: Duration = Duration::from_secs(1);
/// At most this many packets kept, whatever the bitrate.
const KEEP_PACKETS: usize = 1024;
/// Resending that may be saved up whatever the bitrate, bytes: four full packets (1200 bytes of
/// payload, their RTP headers and room for header extensions).
const SAVED_AT_LEAST: f64 = 4.0 * 1300.0;
/// Sequence numbers read from one NACK at most (a NACK can name thousands).
const NACK_LIMIT: usize = 256;

impl Default for Resend {
    fn default() -> Self {
        Resend { sent: VecDeque::new(), budget: 0.0, budget_at: None, resent: 0, refused: 0 }
    }
}

impl Resend {
    /// A packet went out (`packet` is the RTP packet as sent, before SRTP).
    pub(crate) fn on_sent(&mut self, now: Instant, seq: u16, packet: &[u8]) {
        if self.sent.back().is_some_and(|last| seq != last.seq.wrapping_add(1)) {
            // Not the next in sequence (never, from our own sender): start over.
            self.sent.clear();
        }
        while self.sent.front().is_some_and(|s| now.saturating_duration_since(s.at) > KEEP)
            || self.sent.len() >= KEEP_PACKETS
        {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent { seq, at: now, packet: packet.to_vec(), resent: None });
    }

    /// The SIP party lost `lost` (a NACK): the packets to send again, at a target bitrate of
    /// `bitrate` with a round trip of `rtt` (when known).
    pub(crate) fn on_nack(&mut self, now: Instant, lost: &[u16], bitrate: u32, rtt: Option<Duration>) -> Vec<Vec<u8>> {
        // Half the target bitrate, in bytes, with up to a quarter of a second saved up (and never
        // less than a few full packets, or a low bitrate could resend nothing at all).
        let rate = f64::from(bitrate) / 16.0;
        let most = (rate / 4.0).max(SAVED_AT_LEAST);
        self.budget = match self.budget_at {
            Some(t) => (self.budget + rate * now.saturating_duration_since(t).as_secs_f64()).min(most),
            None => most,
        };
        self.budget_at = Some(now);
        let again_after = rtt.unwrap_or(Duration::from_millis(100)).clamp(Duration::from_millis(20), KEEP / 2);
        let mut out = Vec::new();
        let Some(first) = self.sent.front().map(|s| s.seq) else {
            self.refused += lost.len().min(NACK_LIMIT) as u64;
            return out;
        };
        for seq in lost.iter().take(NACK_LIMIT) {
            let at = usize::from(seq.wrapping_sub(first));
            let resendable = self.sent.get_mut(at).filter(|s| {
                now.saturating_duration_since(s.at) <= KEEP
                    && s.resent.is_none_or(|t| now.saturating_duration_since(t) >= again_after)
            });
            match resendable {
                Some(s) if self.budget >= s.packet.len() as f64 => {
                    self.budget -= s.packet.len() as f64;
                    s.resent = Some(now);
                    self.resent += 1;
                    out.push(s.packet.clone());
                }
                _ => self.refused += 1,
            }
        }
        out
    }
}

/// RFC 5104 §3.5.4.2's bounding set of TMMBR tuples: those that are the most restrictive at some
/// packet rate. A tuple limits the media bitrate at packet rate `r` to `bitrate - 8·overhead·r`, a
/// line falling with its overhead; the set is the lower envelope of those lines for `r ≥ 0`. The
/// envelope changes only at `r = 0` and where two lines cross, so each of those packet rates is
/// tried (few owners: at most [`MAX_OWNERS`]). Of equal tuples the first is kept.
pub(crate) fn bounding_set(tuples: &[Tmmb]) -> Vec<Tmmb> {
    // Net bitrate at packet rate r, in bit/s (f64: exact enough for RTCP's 17-bit mantissas).
    let net = |t: &Tmmb, r: f64| t.bitrate as f64 - 8.0 * f64::from(t.overhead) * r;
    let mut rates = vec![0.0f64];
    for (i, a) in tuples.iter().enumerate() {
        for b in &tuples[i + 1..] {
            if a.overhead != b.overhead {
                let r = (a.bitrate as f64 - b.bitrate as f64) / (8.0 * (f64::from(a.overhead) - f64::from(b.overhead)));
                if r > 0.0 && r.is_finite() {
                    rates.push(r);
                }
            }
        }
    }
    let mut set: Vec<Tmmb> = Vec::new();
    for r in rates {
        // Just past each crossing as well, where the steeper line has taken over.
        for r in [r, r * (1.0 + 1e-9) + 1e-9] {
            let lowest = tuples.iter().map(|t| net(t, r)).fold(f64::INFINITY, f64::min);
            for t in tuples {
                let same_line = |s: &Tmmb| s.bitrate == t.bitrate && s.overhead == t.overhead;
                if net(t, r) <= lowest && !set.iter().any(same_line) {
                    set.push(*t);
                }
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_target_is_the_lowest_limit() {
        let t0 = Instant::now();
        let mut r = SendRate::new(1_500_000, None, t0);
        assert_eq!(r.target(), 1_500_000);
        r.set_sdp_limit(Some(486_400));
        assert_eq!(r.target(), 486_400, "b=AS:512 in a re-offer");
        r.set_sdp_limit(Some(u64::MAX));
        assert_eq!(r.target(), 1_500_000, "a limit above the configured bitrate changes nothing");
        r.set_sdp_limit(Some(1));
        assert_eq!(r.target(), media_mixer::h264::MIN_BITRATE, "never below what the encoders take");
        assert_eq!(SendRate::new(0, None, t0).target(), media_mixer::h264::MIN_BITRATE);
    }

    /// RFC 5104 §3.5.4.2: the bounding set is every tuple that binds at some packet rate: the
    /// lowest bitrate at low packet rates, and a higher one with a larger per-packet overhead at
    /// high ones; a tuple above the others at every rate does not bind; equal tuples count once.
    #[test]
    fn the_tmmbn_carries_the_bounding_set() {
        let t = |ssrc, bitrate, overhead| Tmmb { ssrc, bitrate, overhead };
        // One tuple: itself.
        assert_eq!(bounding_set(&[t(1, 300_000, 40)]), vec![t(1, 300_000, 40)]);
        // A line lower everywhere (a lower bitrate and a larger overhead: it starts lower and
        // falls faster) alone binds.
        assert_eq!(bounding_set(&[t(1, 300_000, 40), t(2, 200_000, 60)]), vec![t(2, 200_000, 60)]);
        // A lower bitrate with a smaller overhead falls slower: past 625 packets/s the other binds.
        assert_eq!(bounding_set(&[t(1, 300_000, 40), t(2, 200_000, 20)]), vec![t(2, 200_000, 20), t(1, 300_000, 40)]);
        // Lines that cross at r = (300k - 200k) / (8 · (100 - 20)) ≈ 156 packets/s: the lower
        // bitrate binds below it, the one with the larger overhead above it; a third tuple above
        // both at every rate (its line starts higher and falls no faster than the first) does not.
        let set = bounding_set(&[t(1, 300_000, 100), t(2, 200_000, 20), t(3, 350_000, 100)]);
        assert_eq!(set, vec![t(2, 200_000, 20), t(1, 300_000, 100)]);
        // Equal tuples of two owners: listed once.
        assert_eq!(bounding_set(&[t(1, 150_000, 40), t(2, 150_000, 40)]).len(), 1);
    }

    /// RFC 5104: a TMMBR for our SSRC limits the media bitrate (its total less the headers of
    /// full packets) and is answered by a TMMBN naming its owner; a later one from the same owner
    /// replaces it (up as well as down); the lowest owner binds; an owner's BYE lifts its limit;
    /// a TMMBR for another SSRC is not ours and gets no answer.
    #[test]
    fn tmmbr_limits_and_is_answered() {
        let t0 = Instant::now();
        let mut r = SendRate::new(1_500_000, Some(1_000_000), t0);
        let ours = 0xabc;
        let ask = |ssrc, bitrate| [Tmmb { ssrc, bitrate, overhead: 40 }];
        assert_eq!(r.on_tmmbr(t0, ours, 7, &ask(0xdef, 100_000)), None);
        assert_eq!(r.target(), 1_000_000);
        let n = r.on_tmmbr(t0, ours, 7, &ask(ours, 310_000)).expect("answered");
        assert_eq!(
            n,
            RtcpPacket::Tmmbn { sender: ours, entries: vec![Tmmb { ssrc: 7, bitrate: 310_000, overhead: 40 }] }
        );
        assert_eq!(r.target(), 300_000, "310 kbit/s less 40 bytes a 1200-byte packet");
        r.on_tmmbr(t0, ours, 7, &ask(ours, 620_000));
        assert_eq!(r.target(), 600_000, "the owner raised its limit");
        let n = r.on_tmmbr(t0, ours, 8, &ask(ours, 155_000)).expect("answered");
        assert_eq!(r.target(), 150_000, "a second owner with a lower limit binds");
        assert!(matches!(n, RtcpPacket::Tmmbn { entries, .. } if entries[0].ssrc == 8));
        r.on_bye(8);
        assert_eq!(r.target(), 600_000);
        r.on_bye(7);
        assert_eq!(r.target(), 1_000_000, "back to the SDP's limit");
        // Owners beyond four: the loosest goes.
        for owner in 10..20 {
            r.on_tmmbr(t0, ours, owner, &ask(ours, 200_000 + u64::from(owner) * 1000));
        }
        assert_eq!(r.requests.len(), MAX_OWNERS);
        assert_eq!(r.target(), 210_000 * 1200 / 1240);
        // Owners heard from stay; owners silent for the timeout go.
        r.heard_from(t0 + ms(20_000), 10);
        r.expire(t0 + OWNER_TIMEOUT);
        assert_eq!(r.requests.len(), 1, "only the owner heard lately");
        assert_eq!(r.target(), 210_000 * 1200 / 1240);
        r.expire(t0 + ms(20_000) + OWNER_TIMEOUT);
        assert!(r.requests.is_empty() && r.heard.is_empty());
        assert_eq!(r.target(), 1_000_000);
        // A limit below what the encoders take pauses the grid, until lifted.
        assert!(!r.paused());
        r.on_tmmbr(t0, ours, 3, &ask(ours, 0));
        assert!(r.paused(), "TMMBR 0: RFC 7728's pause");
        r.on_tmmbr(t0, ours, 3, &ask(ours, 100_000));
        assert!(!r.paused());
    }

    #[test]
    fn loss_lowers_the_estimate_and_a_clean_path_raises_it() {
        let t0 = Instant::now();
        let mut r = SendRate::new(1_000_000, None, t0);
        r.on_loss(t0 + ms(4000), 0.05);
        assert_eq!(r.target(), 1_000_000, "5% holds");
        r.on_loss(t0 + ms(4100), 0.90);
        assert_eq!(r.target(), 1_000_000, "a report too close to the last one is not used");
        r.on_loss(t0 + ms(5000), 0.30);
        assert_eq!(r.target(), 850_000, "30% lost: down by 15%");
        r.on_loss(t0 + ms(10_000), 1.0);
        assert_eq!(r.target(), 425_000);
        for n in 0..20 {
            r.on_loss(t0 + ms(10_000 + n * 5000), 1.0);
        }
        assert_eq!(r.target(), LOSS_FLOOR, "never below the floor");
        // A clean path: 8% a second, five seconds' worth per report at most, up to the ceiling.
        let mut at = t0 + ms(200_000);
        r.on_loss(at, 0.0);
        let before = r.target();
        at += ms(5000);
        r.on_loss(at, 0.01);
        let ratio = f64::from(r.target()) / f64::from(before);
        assert!((1.46..1.48).contains(&ratio), "{ratio}");
        at += ms(60_000);
        r.on_loss(at, 0.0);
        assert!((f64::from(r.target()) / f64::from(before) - 1.469f64.powi(2)).abs() < 0.02);
        for _ in 0..20 {
            at += ms(5000);
            r.on_loss(at, 0.0);
        }
        assert_eq!(r.target(), 1_000_000, "back to the configured bitrate, not above");
        // The estimate starts from the binding limit when it falls under one.
        r.set_sdp_limit(Some(400_000));
        r.on_loss(at + ms(1000), 0.5);
        assert_eq!(r.target(), 300_000, "75% of the 400 kbit/s in force");
    }

    fn packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.resize(1000, seq as u8);
        p
    }

    /// A NACK gets back exactly the packets it names that were sent in the last second, each at
    /// most once a round trip, across the sequence number's wrap.
    #[test]
    fn nacked_packets_are_resent_as_they_were() {
        let t0 = Instant::now();
        let mut h = Resend::default();
        let first = 65_500u16;
        for i in 0..100u16 {
            let seq = first.wrapping_add(i);
            h.on_sent(t0 + ms(u64::from(i) * 5), seq, &packet(seq));
        }
        let now = t0 + ms(600);
        let asked = [65_510u16, 65_535, 0, 5, 60];
        let got = h.on_nack(now, &asked, 2_000_000, Some(ms(50)));
        assert_eq!(got, asked.iter().map(|s| packet(*s)).collect::<Vec<_>>());
        assert_eq!((h.resent, h.refused), (5, 0));
        // Again within the round trip: not resent; after it: resent.
        assert!(h.on_nack(now + ms(20), &[0], 2_000_000, Some(ms(50))).is_empty());
        assert_eq!(h.on_nack(now + ms(60), &[0], 2_000_000, Some(ms(50))), vec![packet(0)]);
        // Never sent, or sent over a second ago: nothing.
        assert!(h.on_nack(now + ms(60), &[100, 65_000], 2_000_000, None).is_empty());
        let late = t0 + ms(1200);
        assert!(h.on_nack(late, &[65_500], 2_000_000, None).is_empty(), "older than a second");
        assert_eq!(h.on_nack(late, &[32], 2_000_000, None), vec![packet(32)], "sent at 340 ms");
    }

    /// A flood of NACKs cannot make us send more than half the target bitrate again.
    #[test]
    fn resending_keeps_within_its_budget() {
        let t0 = Instant::now();
        let mut h = Resend::default();
        for seq in 0..1000u16 {
            h.on_sent(t0 + ms(u64::from(seq)), seq, &packet(seq));
        }
        assert_eq!(h.sent.len(), 1000, "a second's worth");
        let (start, mut bytes) = (t0 + ms(1000), 0usize);
        let all: Vec<u16> = (0..1000).collect();
        for tick in 0..100u64 {
            // Every packet asked for every 10 ms, with no round trip known.
            for chunk in all.chunks(NACK_LIMIT) {
                bytes += h.on_nack(start + ms(tick * 10), chunk, 800_000, None).iter().map(Vec::len).sum::<usize>();
            }
            h.on_sent(start + ms(tick * 10), 1000 + tick as u16, &packet(1000 + tick as u16));
        }
        // One second at 800 kbit/s: at most 50 kB a second plus the quarter second saved up.
        assert!(bytes <= 50_000 + 12_500 + 1000, "{bytes} bytes resent in a second");
        assert!(bytes >= 40_000, "the budget is used: {bytes}");
        assert!(h.on_nack(start, &[], 800_000, None).is_empty());
        // At a low bitrate, a few full packets can still be resent at once.
        let mut h = Resend::default();
        for seq in 0..10u16 {
            h.on_sent(t0, seq, &vec![0; 1212]);
        }
        assert_eq!(h.on_nack(t0, &[1, 2, 3, 4, 5], 64_000, None).len(), 4);
    }
}
