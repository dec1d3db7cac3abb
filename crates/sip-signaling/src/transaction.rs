//! RFC 3261 section 17 transactions (with the RFC 6026 Accepted states),
//! as timer bookkeeping that the [`crate::UserAgent`] drives.

use crate::transport::Target;
use std::time::{Duration, Instant};

/// The RFC 3261 timer values. Shrink them in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1, the RTT estimate (500 ms).
    pub t1: Duration,
    /// T2, the maximum retransmit interval for non-INVITE requests and
    /// INVITE responses (4 s).
    pub t2: Duration,
    /// T4, the maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// Timer D, how long a client INVITE transaction absorbs final
    /// response retransmissions over UDP (at least 32 s).
    pub timer_d: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J and M.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a client transaction was started for; tells the call what a
/// response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The initial INVITE.
    Invite,
    /// CANCEL of the initial INVITE.
    Cancel,
    /// BYE ending the call.
    Bye,
    /// BYE sent to a forked extra dialog; the result is ignored.
    ForkBye,
    /// PRACK of a reliable provisional response (RFC 3262); the result is ignored (a far end
    /// that gets none gives up its INVITE).
    Prack,
    /// A re-INVITE we sent (with an offer).
    ReInvite,
    /// An UPDATE carrying an offer.
    UpdateOffer,
    /// A session refresh (UPDATE without body or re-INVITE).
    Refresh,
    /// An INFO.
    Info,
    /// An in-dialog OPTIONS asking whether the peer still holds the dialog
    /// (sent when the connection under an answered call closed).
    Probe,
}

/// State of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Request sent, nothing received (Calling / Trying).
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing retransmissions (D or K).
    Completed,
    /// An INVITE 2xx arrived (RFC 6026): passing 2xx retransmissions up.
    Accepted,
}

/// A client transaction.
#[derive(Debug)]
pub(crate) struct ClientTx {
    pub call: u64,
    pub purpose: Purpose,
    pub is_invite: bool,
    pub request: Vec<u8>,
    pub target: Target,
    pub state: ClientState,
    /// Next retransmission and the interval after it.
    pub retransmit: Option<(Instant, Duration)>,
    /// Timer B / F: give up.
    pub timeout: Option<Instant>,
    /// Timer D / K / M: forget the transaction.
    pub linger: Option<Instant>,
    /// The ACK for a non-2xx final response (INVITE only).
    pub ack: Option<Vec<u8>>,
    /// A request moved from UDP to TCP for its size (RFC 3261 §18.1.1): the same request with a
    /// UDP Via, sent instead if the connection cannot be made.
    pub udp_fallback: Option<Vec<u8>>,
    /// The request went over TCP only for its size: a failure of that connection is not the
    /// dialog's (its in-dialog requests go over UDP).
    pub moved: bool,
}

impl ClientTx {
    pub fn new(
        call: u64,
        purpose: Purpose,
        is_invite: bool,
        request: Vec<u8>,
        target: Target,
        now: Instant,
        t: &Timers,
    ) -> ClientTx {
        let retransmit = (!target.transport.is_reliable()).then(|| (now + t.t1, t.t1));
        ClientTx {
            call,
            purpose,
            is_invite,
            request,
            target,
            state: ClientState::Calling,
            retransmit,
            timeout: Some(now + t.t64()),
            linger: None,
            ack: None,
            udp_fallback: None,
            moved: false,
        }
    }

    /// Starts the transaction again on another target with other bytes (a large request whose
    /// TCP connection failed, sent over UDP after all): timers restart as for a new request.
    pub fn resend_to(&mut self, target: Target, request: Vec<u8>, now: Instant, t: &Timers) {
        self.retransmit = (!target.transport.is_reliable()).then(|| (now + t.t1, t.t1));
        self.timeout = Some(now + t.t64());
        self.target = target;
        self.request = request;
        self.state = ClientState::Calling;
    }

    /// Earliest timer.
    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit.map(|r| r.0), self.timeout, self.linger].into_iter().flatten().min()
    }

    /// A provisional response arrived.
    pub fn on_provisional(&mut self, now: Instant, t: &Timers) {
        if self.state == ClientState::Calling {
            self.state = ClientState::Proceeding;
            if self.is_invite {
                self.retransmit = None;
                // Timer B only runs in Calling: the initial INVITE has the UA's ring timer (a
                // CANCEL, sent only once this INVITE is in Proceeding, sets its give-up time
                // after this); a re-INVITE, answered by a machine, gets 64*T1 more.
                self.timeout = match self.purpose {
                    Purpose::Invite => None,
                    _ => Some(now + t.t64()),
                };
            } else if self.retransmit.is_some() {
                self.retransmit = Some((now + t.t2, t.t2));
            }
        }
    }

    /// A final response arrived.
    pub fn on_final(&mut self, now: Instant, success: bool, t: &Timers) {
        self.retransmit = None;
        self.timeout = None;
        let reliable = self.target.transport.is_reliable();
        if self.is_invite && success {
            self.state = ClientState::Accepted;
            self.linger = Some(now + t.t64());
        } else {
            self.state = ClientState::Completed;
            let wait = match (self.is_invite, reliable) {
                (_, true) => Duration::ZERO,
                (true, false) => t.timer_d,
                (false, false) => t.t4,
            };
            self.linger = Some(now + wait);
        }
    }

    /// Handles an expired retransmission timer: returns whether to resend.
    pub fn retransmit_due(&mut self, now: Instant, t: &Timers) -> bool {
        match self.retransmit {
            Some((at, interval)) if at <= now => {
                let next = if self.is_invite { interval * 2 } else { (interval * 2).min(t.t2) };
                self.retransmit = Some((now + next, next));
                true
            }
            _ => false,
        }
    }
}

/// A server transaction for a request the peer sent inside our dialog.
#[derive(Debug)]
pub(crate) struct ServerTx {
    pub is_invite: bool,
    /// The last response sent, resent on a retransmitted request.
    pub response: Option<Vec<u8>>,
    pub target: Target,
    /// Timer G: resend a non-2xx final INVITE response until the ACK.
    pub retransmit: Option<(Instant, Duration)>,
    /// Timers H / I / J / the RFC 6026 Accepted wait: forget it.
    pub expires: Instant,
    /// A non-2xx final INVITE response is waiting for its ACK.
    pub awaiting_ack: bool,
}

impl ServerTx {
    pub fn deadline(&self) -> Instant {
        self.retransmit.map_or(self.expires, |r| r.0.min(self.expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    fn tx(is_invite: bool, transport: Transport) -> (ClientTx, Instant, Timers) {
        let now = Instant::now();
        let t = Timers::default();
        let target = Target::new(transport, "127.0.0.1:5060".parse().expect("addr"));
        (ClientTx::new(1, Purpose::Bye, is_invite, vec![], target, now, &t), now, t)
    }

    #[test]
    fn timer_a_doubles_without_cap() {
        let (mut c, now, t) = tx(true, Transport::Udp);
        let mut at = now;
        let mut sends = Vec::new();
        while at < now + t.t64() {
            at += Duration::from_millis(100);
            if c.retransmit_due(at, &t) {
                sends.push((at - now).as_millis() / 100 * 100);
            }
        }
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: six retransmissions before B.
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(c.timeout, Some(now + t.t64()));
    }

    #[test]
    fn timer_e_caps_at_t2_and_reliable_never_retransmits() {
        let (mut c, now, t) = tx(false, Transport::Udp);
        let mut at = now;
        let mut count = 0;
        while at < now + t.t64() {
            at += Duration::from_millis(50);
            if c.retransmit_due(at, &t) {
                count += 1;
            }
        }
        // 0.5, 1.5, 3.5, 7.5, then every 4 s up to 32 s: 4 + 6 = 10.
        assert_eq!(count, 10);
        let (c, _, _) = tx(false, Transport::Tcp);
        assert!(c.retransmit.is_none());
    }

    #[test]
    fn final_response_lingers_per_transport() {
        let (mut c, now, t) = tx(true, Transport::Udp);
        c.on_final(now, false, &t);
        assert_eq!(c.linger, Some(now + t.timer_d));
        let (mut c, now, t) = tx(true, Transport::Tcp);
        c.on_final(now, false, &t);
        assert_eq!(c.linger, Some(now));
        let (mut c, now, t) = tx(true, Transport::Tcp);
        c.on_final(now, true, &t);
        assert_eq!(c.state, ClientState::Accepted);
        assert_eq!(c.linger, Some(now + t.t64()));
    }
}
