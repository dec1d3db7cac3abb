//! The SIP leg's audio codec: 20 ms frames of the negotiated codec from the session's mix (PCM at
//! the mix's rate) and to 48 kHz PCM (what is published into the session as Opus), with the
//! resampling in between.

use media_mixer::g711;
use media_mixer::g722::{G722Decoder, G722Encoder};
use media_mixer::opus::{OpusDecoder, OpusEncoder, OpusEncoderConfig};
use media_mixer::resample::Resampler;
use sdp_negotiation::Codec;

/// Samples in 20 ms at 48 kHz.
pub const FRAME_48K: usize = 960;

enum Kind {
    Opus(Box<OpusEncoder>, Box<OpusDecoder>),
    G722(Box<(G722Encoder, G722Decoder)>),
    Pcmu,
    Pcma,
}

/// Encoder and decoder of one call's audio.
pub struct AudioCodec {
    kind: Kind,
    /// The mix's rate → the codec's sample rate (made again when the mix's rate changes).
    down: Resampler,
    /// The rate `down` converts from.
    down_from: u32,
    /// The codec's sample rate → 48 kHz.
    up: Resampler,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for AudioCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioCodec").field("sample_rate", &self.sample_rate()).finish()
    }
}

impl AudioCodec {
    /// A codec for the negotiated `codec`; `None` for a codec that is not audio we carry.
    pub fn new(codec: Codec) -> Option<AudioCodec> {
        let (kind, rate) = match codec {
            Codec::Opus => {
                let enc = OpusEncoder::new(OpusEncoderConfig::default()).ok()?;
                let dec = OpusDecoder::new(48_000).ok()?;
                (Kind::Opus(Box::new(enc), Box::new(dec)), 48_000)
            }
            Codec::G722 => (Kind::G722(Box::new((G722Encoder::new(), G722Decoder::new()))), 16_000),
            Codec::Pcmu => (Kind::Pcmu, 8_000),
            Codec::Pcma => (Kind::Pcma, 8_000),
            _ => return None,
        };
        Some(AudioCodec {
            kind,
            down: Resampler::new(48_000, rate).ok()?,
            down_from: 48_000,
            up: Resampler::new(rate, 48_000).ok()?,
            scratch: Vec::with_capacity(FRAME_48K),
        })
    }

    /// Samples per second the codec works at.
    pub fn sample_rate(&self) -> u32 {
        match self.kind {
            Kind::Opus(..) => 48_000,
            Kind::G722(..) => 16_000,
            Kind::Pcmu | Kind::Pcma => 8_000,
        }
    }

    /// RTP timestamp units per 20 ms (G.722 keeps an 8 kHz RTP clock, RFC 3551).
    pub fn rtp_step(&self) -> u32 {
        match self.kind {
            Kind::Opus(..) => 960,
            _ => 160,
        }
    }

    /// Encodes 20 ms of PCM at `rate` Hz (8, 16 or 48 kHz: the mix's rate) into `out`; nothing
    /// when `rate` is not one of those.
    pub fn encode(&mut self, pcm: &[i16], rate: u32, out: &mut Vec<u8>) {
        out.clear();
        self.scratch.clear();
        if rate != self.down_from {
            let Ok(down) = Resampler::new(rate, self.sample_rate()) else { return };
            self.down = down;
            self.down_from = rate;
        }
        self.down.process(pcm, &mut self.scratch);
        match &mut self.kind {
            Kind::Opus(enc, _) => {
                if enc.encode(&self.scratch, out).is_err() {
                    out.clear();
                }
            }
            Kind::G722(codec) => codec.0.encode(&self.scratch, out),
            Kind::Pcmu => g711::ulaw_encode_frame(&self.scratch, out),
            Kind::Pcma => g711::alaw_encode_frame(&self.scratch, out),
        }
    }

    /// Decodes one payload (or conceals a lost one, `None`) into 48 kHz PCM in `out`.
    pub fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) {
        out.clear();
        self.scratch.clear();
        let ok = match (&mut self.kind, payload) {
            (Kind::Opus(_, dec), Some(p)) => dec.decode(p, &mut self.scratch).is_ok(),
            (Kind::Opus(_, dec), None) => dec.conceal(&mut self.scratch).is_ok(),
            (Kind::G722(codec), Some(p)) => {
                codec.1.decode(p, &mut self.scratch);
                true
            }
            (Kind::Pcmu, Some(p)) => {
                g711::ulaw_decode_frame(p, &mut self.scratch);
                true
            }
            (Kind::Pcma, Some(p)) => {
                g711::alaw_decode_frame(p, &mut self.scratch);
                true
            }
            // No concealment for the others: a lost frame is silence.
            (_, None) => false,
        };
        if !ok {
            self.scratch.clear();
            self.scratch.resize(self.sample_rate() as usize / 50, 0);
        }
        self.up.process(&self.scratch, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_20ms_frames() {
        for codec in [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma] {
            let mut c = AudioCodec::new(codec).expect("codec");
            let (mut payload, mut pcm) = (Vec::new(), Vec::new());
            let mut energy = 0f64;
            for _ in 0..10 {
                c.encode(&tone_at(48_000, FRAME_48K), 48_000, &mut payload);
                assert!(!payload.is_empty(), "{codec:?}");
                c.decode(Some(&payload), &mut pcm);
                assert_eq!(pcm.len(), FRAME_48K, "{codec:?} decodes 20 ms at 48 kHz");
                energy = pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64;
            }
            assert!(energy.sqrt() > 2000.0, "{codec:?} keeps the tone: rms {}", energy.sqrt());
            c.decode(None, &mut pcm);
            assert_eq!(pcm.len(), FRAME_48K, "{codec:?} conceals a lost frame with 20 ms");
        }
        assert!(AudioCodec::new(Codec::Vp8).is_none());
    }

    fn tone_at(rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    #[test]
    fn the_mix_may_come_at_any_of_its_rates_and_switch_between_them() {
        for codec in [Codec::Opus, Codec::G722, Codec::Pcmu] {
            let mut c = AudioCodec::new(codec).expect("codec");
            let (mut payload, mut pcm) = (Vec::new(), Vec::new());
            for rate in [8_000, 16_000, 48_000, 8_000] {
                let mut rms = 0.0;
                for _ in 0..10 {
                    c.encode(&tone_at(rate, rate as usize / 50), rate, &mut payload);
                    assert!(!payload.is_empty(), "{codec:?} from {rate} Hz");
                    c.decode(Some(&payload), &mut pcm);
                    rms = (pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
                }
                assert!(rms > 2000.0, "{codec:?} from a {rate} Hz mix keeps the tone: rms {rms}");
            }
            c.encode(&tone_at(44_100, 882), 44_100, &mut payload);
            assert!(payload.is_empty(), "a rate the mix never runs at gives nothing");
        }
    }
}
