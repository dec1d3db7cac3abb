//! Exponential backoff with jitter (no clock, no randomness of its own).

use std::time::Duration;

/// How long to wait between attempts of one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    /// In `[0, 1]`.
    pub(crate) jitter: f64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        Backoff { initial, max: max.max(initial), jitter }
    }

    /// The wait after the `failures`-th failed attempt (1-based), with `r` a uniform sample in
    /// `[0, 1)`: `min(max, initial * 2^(failures-1)) * (1 - jitter * r)`.
    pub(crate) fn delay(&self, failures: u32, r: f64) -> Duration {
        let mut base = self.initial;
        for _ in 1..failures {
            if base >= self.max {
                break;
            }
            base = base.saturating_mul(2);
        }
        let base = base.min(self.max);
        let r = if r.is_finite() { r.clamp(0.0, 1.0) } else { 0.0 };
        base.mul_f64(1.0 - self.jitter * r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let b = Backoff::new(MS * 500, Duration::from_secs(60), 0.0);
        let got: Vec<_> = (1..=9).map(|n| b.delay(n, 0.7)).collect();
        let want: Vec<_> = [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000].map(|m| MS * m).to_vec();
        assert_eq!(got, want);
        // Huge failure counts neither overflow nor loop long.
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_spans_zero_to_base() {
        let b = Backoff::new(MS * 100, Duration::from_secs(1), 1.0);
        assert_eq!(b.delay(1, 0.0), MS * 100);
        assert!(b.delay(1, 0.999) < MS);
        assert_eq!(b.delay(2, 0.5), MS * 100);
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let b = Backoff::new(MS * 100, Duration::from_secs(1), 0.5);
        for i in 0..100 {
            let d = b.delay(3, f64::from(i) / 100.0);
            assert!(d > MS * 200 && d <= MS * 400, "{d:?}");
        }
    }

    #[test]
    fn hostile_parameters_are_clamped() {
        let b = Backoff::new(MS * 10, MS, f64::NAN);
        assert_eq!(b.jitter, 0.0);
        assert_eq!(b.max, MS * 10, "max below initial is raised to initial");
        assert_eq!(b.delay(5, f64::INFINITY), MS * 10);
        let b = Backoff::new(MS * 10, MS * 100, 7.0);
        assert_eq!(b.jitter, 1.0);
        assert_eq!(b.delay(0, 0.0), MS * 10, "0 failures behaves as the first");
    }
}
