//! Key-sequence detection on received digits, such as the `*6` mute
//! toggle.

use crate::{Digit, Error};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Detects a fixed key sequence (such as `*6`) typed within a time window.
///
/// Feed it every received digit with the time it was received. It fires
/// when the last digits fed are exactly the sequence and the first of them
/// came no more than [`SequenceDetector::window`] before the last. Any
/// other digit in between breaks the sequence (`*16` does not match `*6`);
/// a repeated first key restarts it (`**6` matches). After a match the
/// digits are consumed: `*66` fires once, `*6*6` twice.
///
/// ```
/// use dtmf_rfc4733::{Digit, SequenceDetector};
/// use std::time::{Duration, Instant};
///
/// let mut toggle = SequenceDetector::star_six();
/// let t = Instant::now();
/// assert!(!toggle.handle_digit(t, Digit::Star));
/// assert!(toggle.handle_digit(t + Duration::from_millis(800), Digit::Six));
/// // Too slow: more than 2 s between the keys.
/// assert!(!toggle.handle_digit(t + Duration::from_secs(5), Digit::Star));
/// assert!(!toggle.handle_digit(t + Duration::from_secs(8), Digit::Six));
/// ```
#[derive(Debug, Clone)]
pub struct SequenceDetector {
    sequence: Vec<Digit>,
    window: Duration,
    recent: VecDeque<(Digit, Instant)>,
}

impl SequenceDetector {
    /// The default window: the whole sequence within 2 s.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);

    /// A detector for `sequence` (at least one digit), which must be typed
    /// within `window` from its first key to its last.
    pub fn new(sequence: &[Digit], window: Duration) -> Result<Self, Error> {
        if sequence.is_empty() {
            return Err(Error::InvalidConfig("the key sequence is empty"));
        }
        Ok(SequenceDetector { sequence: sequence.to_vec(), window, recent: VecDeque::with_capacity(sequence.len()) })
    }

    /// A detector for a sequence written as a string of keys (`"*6"`, `"##"`).
    /// Fails with [`Error::InvalidDigit`] for a character that is not a key.
    pub fn parse(sequence: &str, window: Duration) -> Result<Self, Error> {
        let digits = sequence
            .chars()
            .enumerate()
            .map(|(position, character)| Digit::from_char(character).ok_or(Error::InvalidDigit { character, position }))
            .collect::<Result<Vec<_>, _>>()?;
        SequenceDetector::new(&digits, window)
    }

    /// The `*6` mute toggle with the default 2 s window.
    pub fn star_six() -> Self {
        SequenceDetector {
            sequence: vec![Digit::Star, Digit::Six],
            window: Self::DEFAULT_WINDOW,
            recent: VecDeque::with_capacity(2),
        }
    }

    /// The sequence this detector looks for.
    pub fn sequence(&self) -> &[Digit] {
        &self.sequence
    }

    /// The time allowed from the first key of the sequence to the last.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Takes one received digit; returns `true` when it completes the
    /// sequence.
    pub fn handle_digit(&mut self, now: Instant, digit: Digit) -> bool {
        if self.recent.len() == self.sequence.len() {
            self.recent.pop_front();
        }
        self.recent.push_back((digit, now));
        if self.recent.len() < self.sequence.len() {
            return false;
        }
        let keys_match = self.recent.iter().map(|(d, _)| d).eq(self.sequence.iter());
        let in_time =
            self.recent.front().is_some_and(|(_, first)| now.saturating_duration_since(*first) <= self.window);
        if keys_match && in_time {
            self.recent.clear();
            true
        } else {
            false
        }
    }

    /// Forgets the digits seen so far.
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn feed(det: &mut SequenceDetector, keys: &[(char, f64)]) -> Vec<bool> {
        let t0 = Instant::now();
        keys.iter().map(|(k, at)| det.handle_digit(t0 + S.mul_f64(*at), Digit::from_char(*k).expect("key"))).collect()
    }

    #[test]
    fn star_six_within_the_window() {
        let mut d = SequenceDetector::star_six();
        assert_eq!(feed(&mut d, &[('*', 0.0), ('6', 2.0)]), [false, true]);
        let mut d = SequenceDetector::star_six();
        assert_eq!(feed(&mut d, &[('*', 0.0), ('6', 2.001)]), [false, false]);
    }

    #[test]
    fn other_digits_reset() {
        let mut d = SequenceDetector::star_six();
        assert_eq!(feed(&mut d, &[('*', 0.0), ('1', 0.1), ('6', 0.2)]), [false, false, false]);
        assert_eq!(feed(&mut d, &[('6', 0.0), ('*', 0.1)]), [false, false]);
    }

    #[test]
    fn repeated_star_restarts_and_matches_consume() {
        let mut d = SequenceDetector::star_six();
        assert_eq!(feed(&mut d, &[('*', 0.0), ('*', 0.5), ('6', 0.6), ('6', 0.7)]), [false, false, true, false]);
        assert_eq!(feed(&mut d, &[('*', 0.0), ('6', 0.1), ('*', 0.2), ('6', 0.3)]), [false, true, false, true]);
    }

    #[test]
    fn slow_star_then_fresh_star() {
        let mut d = SequenceDetector::star_six();
        assert_eq!(feed(&mut d, &[('*', 0.0), ('*', 3.0), ('6', 4.0)]), [false, false, true]);
    }

    #[test]
    fn generic_sequences() {
        let mut d = SequenceDetector::parse("#9#", S).expect("valid");
        assert_eq!(d.sequence(), &[Digit::Pound, Digit::Nine, Digit::Pound]);
        assert_eq!(feed(&mut d, &[('#', 0.0), ('9', 0.2), ('#', 0.9)]), [false, false, true]);
        assert_eq!(feed(&mut d, &[('#', 0.0), ('9', 0.2), ('#', 1.1)]), [false, false, false]);
        // Overlapping attempts: the last three keys are what counts.
        assert_eq!(feed(&mut d, &[('#', 0.0), ('#', 0.1), ('9', 0.2), ('#', 0.3)]), [false, false, false, true]);
        let mut one = SequenceDetector::new(&[Digit::Zero], S).expect("valid");
        assert_eq!(feed(&mut one, &[('1', 0.0), ('0', 0.1), ('0', 0.2)]), [false, true, true]);
        assert_eq!(SequenceDetector::new(&[], S).err(), Some(Error::InvalidConfig("the key sequence is empty")));
        assert_eq!(SequenceDetector::parse("*x", S).err(), Some(Error::InvalidDigit { character: 'x', position: 1 }));
    }

    #[test]
    fn reset_forgets() {
        let mut d = SequenceDetector::star_six();
        let t0 = Instant::now();
        assert!(!d.handle_digit(t0, Digit::Star));
        d.reset();
        assert!(!d.handle_digit(t0, Digit::Six));
        assert_eq!(d.window(), SequenceDetector::DEFAULT_WINDOW);
    }
}
