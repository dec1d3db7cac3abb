//! A minimal Ogg reader (RFC 3533) for the Opus files the mixer comparison
//! feeds to both ffmpeg and our pipeline: pages are checked (capture
//! pattern, version, CRC), the packets of the first logical stream are
//! reassembled across lacing and page boundaries, and for Ogg Opus
//! (RFC 7845) the two header packets, `OpusHead` and `OpusTags`, are
//! skipped.
//!
//! Bytes from a file never panic: every length is checked against what is
//! left, and a packet is capped at [`MAX_PACKET`] bytes.

use std::fmt;

/// The largest packet accepted. An Opus packet is at most 120 ms of
/// 1275-byte frames (7,650 bytes); tags may be longer, but not this long.
pub const MAX_PACKET: usize = 1 << 20;

const CAPTURE: &[u8; 4] = b"OggS";
const HEADER_LEN: usize = 27;
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_FIRST: u8 = 0x02;

/// What is wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OggError {
    /// The data ends inside a page.
    Truncated,
    /// No `OggS` where a page should start.
    NoCapturePattern(usize),
    /// A stream structure version other than 0.
    Version(u8),
    /// A page whose CRC does not match its bytes.
    Crc(usize),
    /// A packet larger than [`MAX_PACKET`].
    PacketTooLarge,
    /// A page continues a packet when none was open, or a new packet
    /// starts while one is still open.
    Continuation(usize),
    /// Not an Ogg Opus stream (no `OpusHead` / `OpusTags`).
    NotOpus,
}

impl fmt::Display for OggError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OggError::Truncated => write!(f, "data ends inside an Ogg page"),
            OggError::NoCapturePattern(at) => write!(f, "no Ogg capture pattern at byte {at}"),
            OggError::Version(v) => write!(f, "Ogg stream structure version {v}"),
            OggError::Crc(at) => write!(f, "bad CRC in the Ogg page at byte {at}"),
            OggError::PacketTooLarge => write!(f, "packet larger than {MAX_PACKET} bytes"),
            OggError::Continuation(at) => write!(f, "inconsistent packet continuation at byte {at}"),
            OggError::NotOpus => write!(f, "not an Ogg Opus stream"),
        }
    }
}

impl std::error::Error for OggError {}

/// One page, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// Header type flags (continued, first, last).
    pub flags: u8,
    /// Granule position (for Opus: 48 kHz samples, including pre-skip).
    pub granule: i64,
    /// The logical stream this page belongs to.
    pub serial: u32,
    /// The lacing values.
    pub lacing: &'a [u8],
    /// The page's payload (the sum of the lacing values).
    pub body: &'a [u8],
}

/// Iterates over the pages of a file.
#[derive(Debug, Clone)]
pub struct Pages<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Pages<'a> {
    /// Pages of `data`, from its first byte.
    pub fn new(data: &'a [u8]) -> Pages<'a> {
        Pages { data, pos: 0 }
    }

    /// Byte offset of the next page.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn page(&mut self) -> Result<Page<'a>, OggError> {
        let at = self.pos;
        let rest = &self.data[at..];
        let header = rest.get(..HEADER_LEN).ok_or(OggError::Truncated)?;
        if &header[..4] != CAPTURE {
            return Err(OggError::NoCapturePattern(at));
        }
        if header[4] != 0 {
            return Err(OggError::Version(header[4]));
        }
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let flags = header[5];
        let granule = i64::from_le_bytes([
            header[6], header[7], header[8], header[9], header[10], header[11], header[12], header[13],
        ]);
        let serial = le32(&header[14..18]);
        let crc = le32(&header[22..26]);
        let segments = usize::from(header[26]);
        let lacing = rest.get(HEADER_LEN..HEADER_LEN + segments).ok_or(OggError::Truncated)?;
        let body_len: usize = lacing.iter().map(|l| usize::from(*l)).sum();
        let page_len = HEADER_LEN + segments + body_len;
        let page = rest.get(..page_len).ok_or(OggError::Truncated)?;
        if page_crc(page) != crc {
            return Err(OggError::Crc(at));
        }
        self.pos += page_len;
        Ok(Page { flags, granule, serial, lacing, body: &page[HEADER_LEN + segments..] })
    }
}

impl<'a> Iterator for Pages<'a> {
    type Item = Result<Page<'a>, OggError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let page = self.page();
        if page.is_err() {
            // Stop after the first error rather than resynchronising.
            self.pos = self.data.len();
        }
        Some(page)
    }
}

/// The Ogg CRC-32: polynomial 0x04c11db7, not reflected, initial value 0, no
/// final XOR, computed with the CRC field taken as zero.
fn page_crc(page: &[u8]) -> u32 {
    const TABLE: [u32; 256] = crc_table();
    let mut crc = 0u32;
    for (i, byte) in page.iter().enumerate() {
        let b = if (22..26).contains(&i) { 0 } else { *byte };
        crc = (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ b)];
    }
    crc
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04c1_1db7 } else { r << 1 };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

/// Every packet of the first logical stream in `data`, in order. Pages of
/// other streams (multiplexed files) are ignored; a packet left open at the
/// end of the data is dropped, as RFC 3533 says a decoder should.
pub fn packets(data: &[u8]) -> Result<Vec<Vec<u8>>, OggError> {
    let mut pages = Pages::new(data);
    let mut serial = None;
    let mut out = Vec::new();
    let mut open: Option<Vec<u8>> = None;
    loop {
        let at = pages.position();
        let Some(page) = pages.next() else { break };
        let page = page?;
        match serial {
            None if page.flags & FLAG_FIRST != 0 => serial = Some(page.serial),
            None => return Err(OggError::NotOpus),
            Some(s) if s != page.serial => continue,
            Some(_) => {}
        }
        if (page.flags & FLAG_CONTINUED != 0) != open.is_some() {
            return Err(OggError::Continuation(at));
        }
        let mut body = page.body;
        for &lace in page.lacing {
            let (segment, rest) = body.split_at(usize::from(lace));
            body = rest;
            let packet = open.get_or_insert_with(Vec::new);
            if packet.len() + segment.len() > MAX_PACKET {
                return Err(OggError::PacketTooLarge);
            }
            packet.extend_from_slice(segment);
            if lace < 255 {
                out.extend(open.take());
            }
        }
    }
    Ok(out)
}

/// The audio packets of an Ogg Opus file: [`packets`] without the
/// `OpusHead` and `OpusTags` header packets (RFC 7845 section 5).
pub fn opus_packets(data: &[u8]) -> Result<Vec<Vec<u8>>, OggError> {
    let mut all = packets(data)?;
    let head = all.first().is_some_and(|p| p.starts_with(b"OpusHead"));
    let tags = all.get(1).is_some_and(|p| p.starts_with(b"OpusTags"));
    if !head || !tags {
        return Err(OggError::NotOpus);
    }
    all.drain(..2);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One page holding `segments` (each already a lacing-sized piece).
    fn page(flags: u8, serial: u32, seq: u32, lacing: &[u8], body: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(CAPTURE);
        p.push(0);
        p.push(flags);
        p.extend_from_slice(&0i64.to_le_bytes());
        p.extend_from_slice(&serial.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(lacing.len() as u8);
        p.extend_from_slice(lacing);
        p.extend_from_slice(body);
        let crc = page_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        p
    }

    fn file() -> Vec<u8> {
        let mut f = page(FLAG_FIRST, 7, 0, &[19], b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0");
        f.extend(page(0, 7, 1, &[16], b"OpusTags\0\0\0\0\0\0\0\0"));
        // A 3-byte packet, then a 300-byte one split across two pages.
        let big: Vec<u8> = (0..300).map(|i| i as u8).collect();
        f.extend(page(0, 7, 2, &[3, 255], &[[1, 2, 3].as_slice(), &big[..255]].concat()));
        // Another stream's page in between is ignored.
        f.extend(page(FLAG_FIRST, 9, 0, &[2], b"xx"));
        f.extend(page(FLAG_CONTINUED, 7, 3, &[45, 0], &big[255..]));
        f
    }

    #[test]
    fn packets_are_reassembled_and_headers_skipped() {
        let f = file();
        let all = packets(&f).expect("valid");
        assert_eq!(all.len(), 5, "head, tags, 3 bytes, 300 bytes, empty");
        let audio = opus_packets(&f).expect("opus");
        assert_eq!(audio.len(), 3);
        assert_eq!(audio[0], vec![1, 2, 3]);
        assert_eq!(audio[1].len(), 300);
        assert_eq!(audio[1][299], 43);
        assert!(audio[2].is_empty());
    }

    #[test]
    fn crc_matches_the_catalogued_check_value() {
        // CRC-32/CKSUM ("123456789" -> 0x765e7680) is the same CRC with a
        // final inversion, which Ogg does not apply.
        assert_eq!(page_crc(b"123456789"), !0x765e_7680);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let f = file();
        for cut in 0..f.len() {
            let _ = packets(&f[..cut]);
        }
        let mut bad = f.clone();
        bad[30] ^= 1;
        assert_eq!(packets(&bad), Err(OggError::Crc(0)));
        assert_eq!(packets(b"OggX"), Err(OggError::Truncated));
        assert_eq!(packets(&[b'O'; 40]), Err(OggError::NoCapturePattern(0)));
        let mut v1 = f.clone();
        v1[4] = 1;
        assert_eq!(packets(&v1), Err(OggError::Version(1)));
        assert_eq!(opus_packets(&page(FLAG_FIRST, 1, 0, &[4], b"abcd")), Err(OggError::NotOpus));
        assert_eq!(packets(&page(FLAG_FIRST | FLAG_CONTINUED, 1, 0, &[1], b"a")), Err(OggError::Continuation(0)));
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] = g[i].wrapping_add(0x55);
            let _ = packets(&g);
        }
    }
}
