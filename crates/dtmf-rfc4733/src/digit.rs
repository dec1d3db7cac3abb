//! DTMF digits and their RFC 4733 event codes.

use crate::Error;
use std::fmt;

/// One of the sixteen DTMF keys, as carried in event codes 0-15 (RFC 4733
/// section 3.2, table 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digit {
    /// `0`, event code 0.
    Zero,
    /// `1`, event code 1.
    One,
    /// `2`, event code 2.
    Two,
    /// `3`, event code 3.
    Three,
    /// `4`, event code 4.
    Four,
    /// `5`, event code 5.
    Five,
    /// `6`, event code 6.
    Six,
    /// `7`, event code 7.
    Seven,
    /// `8`, event code 8.
    Eight,
    /// `9`, event code 9.
    Nine,
    /// `*`, event code 10.
    Star,
    /// `#`, event code 11.
    Pound,
    /// `A`, event code 12.
    A,
    /// `B`, event code 13.
    B,
    /// `C`, event code 14.
    C,
    /// `D`, event code 15.
    D,
}

impl Digit {
    /// All sixteen digits in event-code order.
    pub const ALL: [Digit; 16] = [
        Digit::Zero,
        Digit::One,
        Digit::Two,
        Digit::Three,
        Digit::Four,
        Digit::Five,
        Digit::Six,
        Digit::Seven,
        Digit::Eight,
        Digit::Nine,
        Digit::Star,
        Digit::Pound,
        Digit::A,
        Digit::B,
        Digit::C,
        Digit::D,
    ];

    /// The digit an event code stands for; `None` for codes above 15.
    pub fn from_event_code(code: u8) -> Option<Digit> {
        Digit::ALL.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code (0-15).
    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// The digit for a key character: `0-9`, `*`, `#`, and `A-D` in either
    /// case. `None` for anything else.
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Digit::from_event_code(code)
    }

    /// The key character (`A-D` upper case).
    pub fn to_char(self) -> char {
        char::from(b"0123456789*#ABCD"[usize::from(self.event_code())])
    }
}

impl TryFrom<char> for Digit {
    type Error = Error;

    fn try_from(c: char) -> Result<Self, Error> {
        Digit::from_char(c).ok_or(Error::InvalidDigit { character: c, position: 0 })
    }
}

impl TryFrom<u8> for Digit {
    type Error = Error;

    /// From an event code.
    fn try_from(code: u8) -> Result<Self, Error> {
        Digit::from_event_code(code).ok_or(Error::UnsupportedEvent { code })
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_char())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_rfc4733_table() {
        let keys = "0123456789*#ABCD";
        for (code, key) in keys.chars().enumerate() {
            let d = Digit::from_char(key).expect("valid key");
            assert_eq!(usize::from(d.event_code()), code);
            assert_eq!(d.to_char(), key);
            assert_eq!(Digit::from_event_code(code as u8), Some(d));
        }
        assert_eq!(Digit::from_event_code(16), None);
        assert_eq!(Digit::from_event_code(255), None);
    }

    #[test]
    fn letters_in_either_case() {
        assert_eq!(Digit::from_char('a'), Some(Digit::A));
        assert_eq!(Digit::from_char('D'), Some(Digit::D));
        assert_eq!(Digit::from_char('e'), None);
        assert_eq!(Digit::from_char('p'), None);
        assert_eq!(Digit::from_char(' '), None);
        assert_eq!(Digit::from_char('٣'), None);
    }

    #[test]
    fn conversions_report_errors() {
        assert_eq!(Digit::try_from('#'), Ok(Digit::Pound));
        assert_eq!(Digit::try_from('x'), Err(Error::InvalidDigit { character: 'x', position: 0 }));
        assert_eq!(Digit::try_from(11u8), Ok(Digit::Pound));
        assert_eq!(Digit::try_from(16u8), Err(Error::UnsupportedEvent { code: 16 }));
        assert_eq!(Digit::Star.to_string(), "*");
    }
}
