//! DTMF carried in SIP INFO bodies, the signalling-path alternative to RFC 4733 that some PBXs,
//! SBCs and older endpoints use (there is no RFC for it; the formats are de facto):
//!
//! - `application/dtmf-relay` (Cisco's, the common one): `Signal=5` and `Duration=160` lines
//!   (milliseconds), keys case-insensitive, `\r\n` or `\n` line ends; `Signal` is the key
//!   character or, from some senders, its event code (`10` for `*`, `11` for `#`, `12` to `15` for
//!   `A` to `D`);
//! - `application/dtmf`: the key alone (or its event code).
//!
//! Only the key press is read: SIP INFO carries no timing the receiver could use.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{Digit, Error, SenderConfig};

/// The content type [`InfoSender`] sends (Cisco's `application/dtmf-relay`, the one PBXs and
/// SBCs take).
pub const DTMF_RELAY: &str = "application/dtmf-relay";

/// The longest body read (real ones are a few dozen bytes).
const MAX_BODY: usize = 1024;

/// The key a SIP INFO body carries, for the content types above (parameters after `;` and case
/// ignored); `None` for another content type or a body that names no key.
pub fn parse_sip_info(content_type: &str, body: &[u8]) -> Option<Digit> {
    if body.len() > MAX_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let media_type = content_type.split(';').next()?.trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim().eq_ignore_ascii_case("signal").then(|| key_of(value.trim())).flatten()
        }),
        "application/dtmf" => key_of(text.trim()),
        _ => None,
    }
}

/// A key character, or an event code (0 to 15).
fn key_of(value: &str) -> Option<Digit> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c),
        _ => value.parse::<u8>().ok().and_then(Digit::from_event_code),
    }
}

/// Whether `code`, the final response to an INFO, refuses that kind of INFO for good: a 4xx but
/// 408 (the dialog's matter) and 491, a 501 or 505, a 6xx. Any other failure is taken as passing.
pub fn refuses_info(code: u16) -> bool {
    ((400..500).contains(&code) && !matches!(code, 408 | 491)) || matches!(code, 501 | 505) || code >= 600
}

/// One queued element of a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Key(Digit),
    Pause,
}

/// What the far end's final response to an INFO of [`InfoSender`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoOutcome {
    /// Taken (a 2xx), or failed in passing (a 5xx but 501 and 505, a 408, a 491): the digits go
    /// on; one that failed is not sent again.
    Continue,
    /// Refused for good (any other 4xx, a 501 or 505, a 6xx): the far end takes no DTMF in INFO.
    /// Everything queued is dropped (this many digits and pauses) and nothing more is sent.
    Refused {
        /// Digits and pauses dropped from the queue.
        dropped: usize,
    },
}

/// A sans-IO sender of DTMF in SIP INFO (`application/dtmf-relay`), for far ends that agreed to
/// no `telephone-event` (RFC 4733): one INFO a key, one in flight at a time, each key starting a
/// tone and gap after the one before (the [`SenderConfig`]'s `tone_duration` plus
/// `inter_digit_gap`, and its `pause` for a `p`), so an IVR reading them as key presses gets them
/// at the pace a phone's keypad would.
///
/// Queue strings with [`enqueue`](Self::enqueue); when [`poll_timeout`](Self::poll_timeout)
/// comes, [`poll_info`](Self::poll_info) gives the next body to send; tell
/// [`handle_response`](Self::handle_response) its final response (or
/// [`handle_not_sent`](Self::handle_not_sent)).
///
/// ```
/// use dtmf_rfc4733::{InfoOutcome, InfoSender, SenderConfig};
/// use std::time::{Duration, Instant};
///
/// let mut info = InfoSender::new(&SenderConfig::default());
/// let t0 = Instant::now();
/// info.enqueue(t0, "1p#").unwrap();
/// assert_eq!(info.poll_info(t0).as_deref(), Some("Signal=1\r\nDuration=100\r\n"));
/// assert_eq!(info.poll_info(t0), None, "one in flight");
/// assert_eq!(info.handle_response(t0 + Duration::from_millis(30), 200), InfoOutcome::Continue);
/// // 100 ms tone + 70 ms gap, then the 500 ms pause.
/// assert_eq!(info.poll_timeout(t0 + Duration::from_millis(30)), Some(t0 + Duration::from_millis(670)));
/// assert_eq!(info.poll_info(t0 + Duration::from_millis(670)).as_deref(), Some("Signal=#\r\nDuration=100\r\n"));
/// ```
#[derive(Debug, Clone)]
pub struct InfoSender {
    tone: Duration,
    gap: Duration,
    pause: Duration,
    max_pending: usize,
    queue: VecDeque<Item>,
    /// Pauses taken off the head of the queue into `ready_at`, not elapsed yet (still queued, as
    /// far as [`queued`](InfoSender::queued) and [`take_queued`](InfoSender::take_queued) say).
    folded: usize,
    in_flight: bool,
    /// The next key may not go before this instant.
    ready_at: Option<Instant>,
    refused: bool,
}

impl InfoSender {
    /// A sender pacing keys as `config` paces tones (only its durations and `max_pending` count).
    pub fn new(config: &SenderConfig) -> InfoSender {
        InfoSender {
            tone: config.tone_duration,
            gap: config.inter_digit_gap,
            pause: config.pause,
            max_pending: config.max_pending,
            queue: VecDeque::new(),
            folded: 0,
            in_flight: false,
            ready_at: None,
            refused: false,
        }
    }

    /// Queues a digit string (`0-9`, `*`, `#`, `A-D`, `p` for a pause) at `now`, whole or not at
    /// all: [`Error::InvalidDigit`] or [`Error::QueueFull`] as
    /// [`Sender::enqueue`](crate::Sender::enqueue) says, [`Error::InfoRefused`] once the far end
    /// refused an INFO. A pause counts from the end of the key before it, or from `now` when
    /// nothing was going on.
    pub fn enqueue(&mut self, now: Instant, digits: &str) -> Result<(), Error> {
        let mut items = Vec::new();
        for (position, character) in digits.chars().enumerate() {
            items.push(match character {
                'p' | 'P' => Item::Pause,
                c => Item::Key(Digit::from_char(c).ok_or(Error::InvalidDigit { character, position })?),
            });
        }
        if self.queued() + items.len() > self.max_pending {
            return Err(Error::QueueFull { limit: self.max_pending });
        }
        if self.refused {
            return Err(Error::InfoRefused);
        }
        if self.queue.is_empty() {
            self.ready_at = Some(self.ready_at.map_or(now, |at| at.max(now)));
        }
        self.queue.extend(items);
        self.absorb_pauses();
        Ok(())
    }

    /// Turns the pauses at the head of the queue into time before the next key.
    fn absorb_pauses(&mut self) {
        while self.queue.front() == Some(&Item::Pause) {
            self.queue.pop_front();
            self.folded += 1;
            if let Some(at) = self.ready_at.as_mut() {
                *at += self.pause;
            }
        }
    }

    /// The body of the INFO to send at `now` (its content type is [`DTMF_RELAY`]), if a key is
    /// due and none is in flight.
    pub fn poll_info(&mut self, now: Instant) -> Option<String> {
        if self.in_flight || self.refused || self.ready_at.is_some_and(|at| at > now) {
            return None;
        }
        let Some(Item::Key(d)) = self.queue.pop_front() else { return None };
        // The pauses before it are over.
        self.folded = 0;
        self.in_flight = true;
        self.ready_at = Some(now + self.tone + self.gap);
        self.absorb_pauses();
        Some(format!("Signal={}\r\nDuration={}\r\n", d.to_char(), self.tone.as_millis()))
    }

    /// When, seen at `now`, [`poll_info`](Self::poll_info) next has a key to send (`now` itself
    /// when one is due; `None`: nothing queued, or an INFO is in flight and its response is
    /// awaited).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.in_flight || self.refused || self.queue.is_empty() {
            return None;
        }
        Some(self.ready_at.map_or(now, |at| at.max(now)))
    }

    /// The final response (`code`) to the INFO in flight, at `now`.
    pub fn handle_response(&mut self, now: Instant, code: u16) -> InfoOutcome {
        let _ = now;
        self.in_flight = false;
        let refusal = refuses_info(code);
        if !refusal {
            return InfoOutcome::Continue;
        }
        self.refused = true;
        let dropped = self.queued();
        self.queue.clear();
        self.folded = 0;
        InfoOutcome::Refused { dropped }
    }

    /// The INFO [`poll_info`](Self::poll_info) gave could not be sent (no dialog any more): as a
    /// passing failure, the digits go on.
    pub fn handle_not_sent(&mut self) {
        self.in_flight = false;
    }

    /// Whether the far end refused an INFO (then nothing more is sent).
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    /// Digits and pauses queued, not sent yet.
    pub fn queued(&self) -> usize {
        self.folded + self.queue.len()
    }

    /// Takes what is queued, as [`enqueue`](Self::enqueue) takes it (`p` for a pause; the pauses
    /// already waiting count whole), for another sender, or to drop; what is queued next goes
    /// without waiting for them.
    pub fn take_queued(&mut self) -> String {
        let pauses = std::iter::repeat_n('p', std::mem::take(&mut self.folded));
        let taken = pauses
            .chain(self.queue.drain(..).map(|i| match i {
                Item::Key(d) => d.to_char(),
                Item::Pause => 'p',
            }))
            .collect();
        if !self.in_flight {
            self.ready_at = None;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(parse_sip_info(relay, b"Signal=5\r\nDuration=160\r\n"), Some(Digit::Five));
        assert_eq!(parse_sip_info(relay, b"Signal= *\nDuration= 250\n"), Some(Digit::Star));
        assert_eq!(parse_sip_info(relay, b"duration=100\r\nsignal=#"), Some(Digit::Pound));
        assert_eq!(parse_sip_info(relay, b"Signal=10\r\nDuration=160"), Some(Digit::Star), "event code");
        assert_eq!(parse_sip_info(relay, b"Signal=11"), Some(Digit::Pound));
        assert_eq!(parse_sip_info(relay, b"Signal=d"), Some(Digit::D));
        assert_eq!(parse_sip_info("Application/DTMF-Relay; charset=utf-8", b"Signal=0"), Some(Digit::Zero));
        assert_eq!(parse_sip_info("application/dtmf", b"7\r\n"), Some(Digit::Seven));
        assert_eq!(parse_sip_info("application/dtmf", b"12"), Some(Digit::A));
    }

    #[test]
    fn anything_else_names_no_key() {
        let relay = "application/dtmf-relay";
        for body in [&b""[..], b"Duration=160", b"Signal=", b"Signal=16", b"Signal=55", b"Signal=x", b"Signal=\xff"] {
            assert_eq!(parse_sip_info(relay, body), None, "{body:?}");
        }
        assert_eq!(parse_sip_info("application/sdp", b"Signal=5"), None);
        assert_eq!(parse_sip_info("text/plain", b"5"), None);
        assert_eq!(parse_sip_info("application/dtmf", b"56"), None);
        let long = [b"Signal=5\r\n".as_slice(), &[b' '; 2000]].concat();
        assert_eq!(parse_sip_info(relay, &long), None, "bounded");
    }

    /// Keys are paced one tone and gap apart (pauses add theirs), one INFO in flight at a time:
    /// a slow answer holds the next key back, and the pace is counted from the last send.
    #[test]
    fn info_keys_are_paced_and_one_at_a_time() {
        let ms = Duration::from_millis;
        let mut info = InfoSender::new(&SenderConfig::default());
        let t0 = Instant::now();
        assert_eq!(info.poll_timeout(t0), None);
        info.enqueue(t0, "12pp*").expect("enqueue");
        assert_eq!(info.poll_timeout(t0), Some(t0), "due at once");
        let body = info.poll_info(t0).expect("first key at once");
        assert_eq!(parse_sip_info(DTMF_RELAY, body.as_bytes()), Some(Digit::One));
        assert_eq!(info.poll_timeout(t0 + ms(300)), None, "waiting for the response");
        // A slow response: the next key goes when it comes.
        assert_eq!(info.handle_response(t0 + ms(400), 200), InfoOutcome::Continue);
        assert_eq!(info.poll_timeout(t0 + ms(400)), Some(t0 + ms(400)), "overdue: at once");
        let body = info.poll_info(t0 + ms(400)).expect("second key");
        assert_eq!(parse_sip_info(DTMF_RELAY, body.as_bytes()), Some(Digit::Two));
        assert_eq!(info.handle_response(t0 + ms(410), 503), InfoOutcome::Continue, "passing");
        // Two pauses: 170 + 1000 ms after the second key.
        assert_eq!(info.poll_timeout(t0 + ms(420)), Some(t0 + ms(1570)));
        assert_eq!(info.poll_info(t0 + ms(1569)), None);
        assert_eq!(info.poll_info(t0 + ms(1569)), None);
        let body = info.poll_info(t0 + ms(1570)).expect("the star");
        assert_eq!(parse_sip_info(DTMF_RELAY, body.as_bytes()), Some(Digit::Star));
        assert_eq!(info.handle_response(t0 + ms(1600), 200), InfoOutcome::Continue);
        assert_eq!((info.queued(), info.poll_timeout(t0 + ms(1600))), (0, None));
    }

    /// A pause enqueued long after the last key counts from then; one enqueued while a key is in
    /// flight from that key's end.
    #[test]
    fn info_pauses_count_from_when_they_could_start() {
        let ms = Duration::from_millis;
        let mut info = InfoSender::new(&SenderConfig::default());
        let t0 = Instant::now();
        info.enqueue(t0, "1").expect("enqueue");
        assert!(info.poll_info(t0).is_some());
        info.enqueue(t0 + ms(10), "p2").expect("enqueue while in flight");
        info.handle_response(t0 + ms(20), 200);
        assert_eq!(info.poll_timeout(t0 + ms(20)), Some(t0 + ms(670)));
        assert!(info.poll_info(t0 + ms(670)).is_some());
        info.handle_response(t0 + ms(680), 200);
        // A minute later.
        info.enqueue(t0 + ms(60_000), "p3").expect("enqueue");
        assert_eq!(info.poll_timeout(t0 + ms(60_000)), Some(t0 + ms(60_500)));
        // Taken away (a hold) with a long pause waiting: what comes next goes at once.
        assert!(info.poll_info(t0 + ms(60_500)).is_some());
        info.handle_response(t0 + ms(60_510), 200);
        info.enqueue(t0 + ms(60_510), &format!("{}4", "p".repeat(200))).expect("enqueue");
        assert_eq!(info.take_queued().len(), 201);
        info.enqueue(t0 + ms(60_700), "5").expect("enqueue");
        assert_eq!(info.poll_timeout(t0 + ms(60_700)), Some(t0 + ms(60_700)), "not 100 s later");
    }

    /// A refusal drops the queue and stops the sender; bad strings and a full queue are refused
    /// whole; `take_queued` gives back what waits.
    #[test]
    fn info_refusals_and_the_queue() {
        let config = SenderConfig { max_pending: 4, ..SenderConfig::default() };
        let mut info = InfoSender::new(&config);
        let t0 = Instant::now();
        assert!(matches!(info.enqueue(t0, "1x"), Err(Error::InvalidDigit { character: 'x', position: 1 })));
        assert!(matches!(info.enqueue(t0, "12345"), Err(Error::QueueFull { limit: 4 })));
        info.enqueue(t0, "p12").expect("enqueue");
        assert_eq!(info.queued(), 3, "the pause waiting counts");
        assert_eq!(info.take_queued(), "p12");
        assert_eq!(info.queued(), 0);
        info.enqueue(t0, "34").expect("enqueue");
        assert!(info.poll_info(t0).is_some());
        info.handle_not_sent();
        assert_eq!(info.queued(), 1, "the key not sent is not sent again");
        assert!(info.poll_info(t0 + Duration::from_millis(170)).is_some());
        info.enqueue(t0, "p6").expect("a pause waiting, and a key");
        assert_eq!(info.handle_response(t0, 415), InfoOutcome::Refused { dropped: 2 });
        assert_eq!(info.queued(), 0);
        assert!(info.is_refused());
        assert!(matches!(info.enqueue(t0, "5"), Err(Error::InfoRefused)));
        assert_eq!((info.queued(), info.poll_timeout(t0)), (0, None));
        for (code, refusal) in [
            (200, false),
            (408, false),
            (491, false),
            (500, false),
            (400, true),
            (405, true),
            (481, true),
            (501, true),
            (603, true),
        ] {
            let mut info = InfoSender::new(&config);
            info.enqueue(t0, "1").expect("enqueue");
            info.poll_info(t0);
            assert_eq!(matches!(info.handle_response(t0, code), InfoOutcome::Refused { .. }), refusal, "{code}");
        }
    }
}
