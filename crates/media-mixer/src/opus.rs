//! Opus (RFC 6716 / RFC 7587) through libopus: encode with a configurable
//! bitrate, in-band FEC and DTX; decode with packet-loss concealment and
//! FEC recovery.

use crate::error::Error;
use opusic_c::{Application, Bandwidth, Bitrate, Channels, Decoder, Encoder, InbandFec, SampleRate};

fn rate(hz: u32) -> Result<SampleRate, Error> {
    Ok(match hz {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        other => return Err(Error::Rate(other)),
    })
}

/// The duration of an Opus packet in samples at 48 kHz (the RTP clock of RFC 7587), from its
/// table-of-contents byte (RFC 6716 section 3.1), without decoding it; `None` for a packet that is
/// not valid Opus (empty, a code-3 packet without its frame count or with none, or more than the
/// 120 ms a packet may hold). This is what a packet forwarded as it is must advance the RTP
/// timestamp by, and how much audio a queue of packets holds.
pub fn packet_duration(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame length in 1/400 s (2.5 ms) units per configuration: SILK 10/20/40/60 ms, hybrid
    // 10/20 ms, CELT 2.5/5/10/20 ms.
    let frame = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4, 8][usize::from(config % 2)],
        _ => [1, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    let samples = frames * frame * 120;
    (frames > 0 && samples <= 5760).then_some(samples)
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusEncoderConfig {
    /// Input sample rate.
    pub rate: u32,
    /// Target bitrate in bit/s.
    pub bitrate: i32,
    /// Discontinuous transmission: near-empty packets during silence.
    pub dtx: bool,
    /// In-band forward error correction.
    pub inband_fec: bool,
    /// Expected loss in percent (drives FEC).
    pub expected_loss: u8,
    /// The highest audio bandwidth coded, as the sample rate a receiver plays at most (RFC 7587
    /// `maxplaybackrate`: 8000 codes narrowband, 12000 mediumband, 16000 wideband, 24000
    /// super-wideband); `None` for fullband. Bits not spent on what is not heard.
    pub max_playback_rate: Option<u32>,
    /// Constant bitrate (RFC 7587 `cbr=1`) instead of variable.
    pub cbr: bool,
}

impl Default for OpusEncoderConfig {
    fn default() -> Self {
        OpusEncoderConfig {
            rate: 48_000,
            bitrate: 32_000,
            dtx: false,
            inband_fec: true,
            expected_loss: 5,
            max_playback_rate: None,
            cbr: false,
        }
    }
}

/// A mono Opus encoder (VoIP application).
pub struct OpusEncoder {
    inner: Encoder,
    /// The binding takes 16-bit samples as `u16`: the frame's bits, reinterpreted.
    samples: Vec<u16>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusEncoder")
    }
}

impl OpusEncoder {
    /// An encoder with these settings.
    pub fn new(config: OpusEncoderConfig) -> Result<OpusEncoder, Error> {
        let mut inner = Encoder::new(Channels::Mono, rate(config.rate)?, Application::Voip)
            .map_err(|_| Error::Decode("opus encoder init"))?;
        let bitrate = u32::try_from(config.bitrate).map_err(|_| Error::Decode("opus bitrate"))?;
        inner.set_bitrate(Bitrate::Value(bitrate)).map_err(|_| Error::Decode("opus bitrate"))?;
        let fec = if config.inband_fec { InbandFec::Mode1 } else { InbandFec::Off };
        inner.set_inband_fec(fec).map_err(|_| Error::Decode("opus fec"))?;
        inner.set_packet_loss(config.expected_loss.min(100)).map_err(|_| Error::Decode("opus loss"))?;
        inner.set_dtx(config.dtx).map_err(|_| Error::Decode("opus dtx"))?;
        let band = match config.max_playback_rate {
            Some(0..=8_000) => Bandwidth::Narrow,
            Some(8_001..=12_000) => Bandwidth::Medium,
            Some(12_001..=16_000) => Bandwidth::Wide,
            Some(16_001..=24_000) => Bandwidth::Superwide,
            _ => Bandwidth::Full,
        };
        inner.set_max_bandwidth(band).map_err(|_| Error::Decode("opus bandwidth"))?;
        inner.set_vbr(!config.cbr).map_err(|_| Error::Decode("opus vbr"))?;
        Ok(OpusEncoder { inner, samples: Vec::with_capacity(960), buf: vec![0; 1500] })
    }

    /// The loss the receiver sees, in percent (from its RTCP reports): how much in-band FEC to
    /// spend (none below a few percent, more as it grows; libopus decides).
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), Error> {
        self.inner.set_packet_loss(percent.min(100)).map_err(|_| Error::Decode("opus loss"))
    }

    /// A new target bitrate, bit/s (6000 to 510000).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), Error> {
        self.inner.set_bitrate(Bitrate::Value(bitrate.clamp(6_000, 510_000))).map_err(|_| Error::Decode("opus bitrate"))
    }

    /// Encodes one frame (2.5 to 60 ms of samples) into `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), Error> {
        self.samples.clear();
        self.samples.extend(pcm.iter().map(|s| *s as u16));
        let n = self
            .inner
            .encode_to_slice(&self.samples, &mut self.buf)
            .map_err(|_| Error::Decode("opus encode (frame size?)"))?;
        out.clear();
        out.extend_from_slice(self.buf.get(..n).ok_or(Error::Decode("opus encode"))?);
        Ok(())
    }
}

/// A mono Opus decoder.
pub struct OpusDecoder {
    inner: Decoder,
    frame_len: usize,
    /// Decoded samples as the binding gives them (`u16` holding 16-bit PCM).
    samples: Vec<u16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").field("frame_len", &self.frame_len).finish()
    }
}

impl OpusDecoder {
    /// A decoder producing `rate` Hz, 20 ms frames for concealment.
    pub fn new(rate_hz: u32) -> Result<OpusDecoder, Error> {
        let inner = Decoder::new(Channels::Mono, rate(rate_hz)?).map_err(|_| Error::Decode("opus decoder init"))?;
        let frame_len = crate::frame_len(rate_hz);
        Ok(OpusDecoder { inner, frame_len, samples: vec![0; frame_len * 6] })
    }

    /// Decodes a packet into `out` (cleared first); an empty packet is
    /// concealed as a lost one. Hostile bytes give an error, never a panic.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<(), Error> {
        self.run(packet, false, self.frame_len, out)
    }

    /// Conceals `samples` of lost audio (PLC) at the decoder's rate: a multiple of 2.5 ms, at
    /// most 120 ms (a lost 10 ms packet is concealed with 10 ms, a lost 60 ms one with 60 ms).
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<(), Error> {
        self.run(&[], false, samples, out)
    }

    /// Recovers `samples` of lost audio (as for [`conceal`](Self::conceal)) from the in-band FEC
    /// carried by the packet that follows the loss: libopus rebuilds the last of it from that
    /// packet's redundancy, and conceals the rest when the gap is longer than what it carries.
    pub fn recover_fec(&mut self, next_packet: &[u8], samples: usize, out: &mut Vec<i16>) -> Result<(), Error> {
        self.run(next_packet, true, samples, out)
    }

    fn run(&mut self, packet: &[u8], fec: bool, samples: usize, out: &mut Vec<i16>) -> Result<(), Error> {
        // Concealment and FEC make up as much audio as the output's length (libopus takes it as
        // the duration lost, in whole 2.5 ms); a packet decodes up to 120 ms.
        let room = if fec || packet.is_empty() {
            let quantum = self.frame_len / 8;
            if samples == 0 || quantum == 0 || !samples.is_multiple_of(quantum) {
                return Err(Error::Decode("opus concealment: not a whole number of 2.5 ms"));
            }
            samples
        } else {
            self.frame_len * 6
        };
        let buf = self.samples.get_mut(..room).ok_or(Error::Decode("opus concealment: more than 120 ms"))?;
        let n = self.inner.decode_to_slice(packet, buf, fec).map_err(|_| Error::Decode("opus decode"))?;
        out.clear();
        out.extend(buf.get(..n).ok_or(Error::Decode("opus output"))?.iter().map(|s| *s as i16));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48000.0).sin()) as i16)
            .collect()
    }

    /// Every table-of-contents byte and code-3 frame count, against libopus's own count.
    #[test]
    fn packet_durations_agree_with_libopus() {
        let dec = Decoder::new(Channels::Mono, SampleRate::Hz48000).expect("decoder");
        let mut checked = 0;
        for toc in 0..=255u8 {
            for count in 0..=255u8 {
                let packet = [toc, count, 0, 0];
                // libopus counts a code-3 packet of zero frames as 0 samples; RFC 6716 (R5)
                // makes it invalid, which is what we say.
                let theirs = dec.get_nb_samples(&packet).ok().and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
                assert_eq!(packet_duration(&packet), theirs, "toc {toc:#04x}, second byte {count:#04x}");
                checked += usize::from(theirs.is_some());
            }
        }
        assert!(checked > 10_000, "only {checked} valid packets compared");
        assert_eq!(packet_duration(&[]), None);
        // A code-3 packet cut before its frame count.
        assert_eq!(packet_duration(&[0x03]), None);
        // What our encoder makes: 20 ms.
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).expect("enc");
        let mut pkt = Vec::new();
        enc.encode(&tone(960, 0), &mut pkt).expect("encode");
        assert_eq!(packet_duration(&pkt), Some(960));
    }

    #[test]
    fn round_trip_keeps_the_tone() {
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).expect("enc");
        let mut dec = OpusDecoder::new(48000).expect("dec");
        let (mut pkt, mut pcm) = (Vec::new(), Vec::new());
        let mut all = Vec::new();
        for f in 0..50 {
            enc.encode(&tone(960, f * 960), &mut pkt).expect("encode");
            assert!(pkt.len() > 10 && pkt.len() < 400);
            dec.decode(&pkt, &mut pcm).expect("decode");
            assert_eq!(pcm.len(), 960);
            all.extend_from_slice(&pcm);
        }
        // Correlate the tail with the source, allowing the codec delay.
        let src = tone(48000, 0);
        let tail = &all[24000..44000];
        let best = (0..480)
            .map(|d| {
                let s = &src[24000 - d..44000 - d];
                let dot: f64 = tail.iter().zip(s).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let na: f64 = tail.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = s.iter().map(|b| f64::from(*b).powi(2)).sum::<f64>().sqrt();
                dot / (na * nb)
            })
            .fold(0.0f64, f64::max);
        assert!(best > 0.95, "correlation {best}");
    }

    #[test]
    fn loss_is_concealed_and_garbage_is_an_error() {
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).expect("enc");
        let mut dec = OpusDecoder::new(48000).expect("dec");
        let (mut pkt, mut pcm) = (Vec::new(), Vec::new());
        enc.encode(&tone(960, 0), &mut pkt).expect("encode");
        dec.decode(&pkt, &mut pcm).expect("decode");
        dec.conceal(960, &mut pcm).expect("plc");
        assert_eq!(pcm.len(), 960);
        // Any whole number of 2.5 ms up to 120 ms: a lost 10 ms packet, a lost 60 ms one.
        for samples in [120, 480, 2880, 5760] {
            dec.conceal(samples, &mut pcm).expect("plc");
            assert_eq!(pcm.len(), samples);
        }
        for samples in [0, 100, 5880] {
            assert!(dec.conceal(samples, &mut pcm).is_err(), "{samples}");
        }
        enc.encode(&tone(960, 1920), &mut pkt).expect("encode");
        dec.recover_fec(&pkt, 960, &mut pcm).expect("fec");
        assert_eq!(pcm.len(), 960);
        // A gap longer than the packet's own frame: concealed up to it, then its FEC.
        dec.recover_fec(&pkt, 1920, &mut pcm).expect("fec");
        assert_eq!(pcm.len(), 1920);
        assert!(dec.decode(&[0xff, 0xff, 0xff], &mut pcm).is_err());
        assert!(OpusEncoder::new(OpusEncoderConfig { rate: 44100, ..OpusEncoderConfig::default() }).is_err());
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).expect("enc");
        assert!(enc.encode(&[0; 100], &mut pkt).is_err(), "not a valid frame size");
    }

    /// RFC 7587's receiver parameters shape what is sent: `maxplaybackrate` caps the coded
    /// band (the table-of-contents byte says narrowband, wideband), a new bitrate makes packets
    /// smaller, and CBR makes them all one size.
    #[test]
    fn the_receivers_limits_shape_the_packets() {
        // Noise, which has energy in every band.
        let mut x = 0x1234_5678u32;
        let mut noise = move |n: usize| -> Vec<i16> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x >> 20) as i16 - 2048
                })
                .collect()
        };
        // TOC configurations (RFC 6716 §3.1) by band: SILK NB 0-3, MB 4-7, WB 8-11, hybrid
        // SWB 12-13, FB 14-15; CELT NB 16-19, WB 20-23, SWB 24-27, FB 28-31.
        let band = |toc: u8| match toc >> 3 {
            0..=3 | 16..=19 => 8_000,
            4..=7 => 12_000,
            8..=11 | 20..=23 => 16_000,
            12..=13 | 24..=27 => 24_000,
            _ => 48_000,
        };
        let mut pkt = Vec::new();
        for (limit, widest) in [(Some(8_000), 8_000), (Some(16_000), 16_000), (None, 48_000)] {
            let config = OpusEncoderConfig { max_playback_rate: limit, ..OpusEncoderConfig::default() };
            let mut enc = OpusEncoder::new(config).expect("enc");
            let mut bands = Vec::new();
            for _ in 0..50 {
                enc.encode(&noise(960), &mut pkt).expect("encode");
                bands.push(band(pkt[0]));
            }
            assert_eq!(bands.iter().max(), Some(&widest), "{limit:?}: {bands:?}");
        }
        let mut enc = OpusEncoder::new(OpusEncoderConfig { cbr: true, ..OpusEncoderConfig::default() }).expect("enc");
        let mut sizes = Vec::new();
        for _ in 0..50 {
            enc.encode(&noise(960), &mut pkt).expect("encode");
            sizes.push(pkt.len());
        }
        assert!(sizes[5..].iter().all(|n| *n == sizes[5]), "CBR: {sizes:?}");
        assert_eq!(sizes[5], 32_000 / 8 / 50, "32 kbit/s in 20 ms packets");
        enc.set_bitrate(12_000).expect("bitrate");
        enc.set_expected_loss(20).expect("loss");
        for _ in 0..5 {
            enc.encode(&noise(960), &mut pkt).expect("encode");
        }
        assert_eq!(pkt.len(), 12_000 / 8 / 50, "12 kbit/s now");
    }

    #[test]
    fn dtx_makes_silence_cheap() {
        let mut enc = OpusEncoder::new(OpusEncoderConfig { dtx: true, ..OpusEncoderConfig::default() }).expect("enc");
        let mut pkt = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..30 {
            enc.encode(&[0; 960], &mut pkt).expect("encode");
            sizes.push(pkt.len());
        }
        assert!(sizes[20..].iter().all(|s| *s <= 3), "{sizes:?}");
    }
}
