//! The sliding replay window of RFC 3711 section 3.3.2.

use crate::error::Error;

/// Remembers which of the last `size` indices were accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: Option<u64>,
    bits: Vec<u64>,
    size: u16,
}

impl ReplayWindow {
    /// A window of `size` packets (rounded up to a multiple of 64).
    pub fn new(size: u16) -> ReplayWindow {
        let words = usize::from(size.max(64)).div_ceil(64);
        ReplayWindow { top: None, bits: vec![0; words], size: (words * 64) as u16 }
    }

    /// The window size in packets.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether `index` may be accepted (new, and not too old).
    pub fn check(&self, index: u64) -> Result<(), Error> {
        let Some(top) = self.top else { return Ok(()) };
        if index > top {
            return Ok(());
        }
        let age = top - index;
        if age >= u64::from(self.size) || self.bit(age) {
            return Err(Error::Replay(index));
        }
        Ok(())
    }

    /// Whether `index` is inside the window and was accepted.
    pub fn contains(&self, index: u64) -> bool {
        match self.top {
            Some(top) if index <= top && top - index < u64::from(self.size) => self.bit(top - index),
            _ => false,
        }
    }

    fn bit(&self, age: u64) -> bool {
        let (w, b) = ((age / 64) as usize, age % 64);
        self.bits[w] >> b & 1 == 1
    }

    /// Records `index` as received (call after authentication).
    pub fn accept(&mut self, index: u64) {
        let Some(top) = self.top else {
            self.top = Some(index);
            self.bits.iter_mut().for_each(|w| *w = 0);
            self.bits[0] = 1;
            return;
        };
        if index > top {
            let shift = index - top;
            self.shift(shift);
            self.top = Some(index);
            self.bits[0] |= 1;
        } else {
            let age = top - index;
            if age < u64::from(self.size) {
                let (w, b) = ((age / 64) as usize, age % 64);
                self.bits[w] |= 1 << b;
            }
        }
    }

    /// Shifts the bitmap towards older ages by `n` positions.
    fn shift(&mut self, n: u64) {
        if n >= u64::from(self.size) {
            self.bits.iter_mut().for_each(|w| *w = 0);
            return;
        }
        let words = (n / 64) as usize;
        let bits = (n % 64) as u32;
        let len = self.bits.len();
        for i in (0..len).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.bits[s]);
            let lo = src.and_then(|s| s.checked_sub(1)).map_or(0, |s| self.bits[s]);
            self.bits[i] = if bits == 0 { hi } else { (hi << bits) | (lo >> (64 - bits)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basics() {
        let mut w = ReplayWindow::new(64);
        w.check(5).expect("fresh");
        w.accept(5);
        assert!(w.check(5).is_err());
        w.check(4).expect("older but inside");
        w.accept(100);
        assert!(w.check(36).is_err(), "too old");
        w.check(37).expect("at the edge");
        w.accept(37);
        assert!(w.check(37).is_err());
    }

    proptest! {
        /// Law: an index is accepted at most once, and every index newer
        /// than everything seen is accepted.
        #[test]
        fn accepted_at_most_once(indices in proptest::collection::vec(0u64..2000, 1..400), size in prop_oneof![Just(64u16), Just(128u16), Just(256u16)]) {
            let mut w = ReplayWindow::new(size);
            let mut accepted = std::collections::HashSet::new();
            let mut max: Option<u64> = None;
            for i in indices {
                let ok = w.check(i).is_ok();
                if max.is_none_or(|m| i > m) {
                    prop_assert!(ok, "newest index {} refused", i);
                }
                if ok {
                    prop_assert!(accepted.insert(i), "index {} accepted twice", i);
                    w.accept(i);
                    max = Some(max.map_or(i, |m| m.max(i)));
                }
            }
        }
    }
}
