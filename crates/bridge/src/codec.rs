//! The SIP leg's audio codec: packets of the negotiated codec, at the packet time the far end asked
//! for, from the session's 20 ms mix (PCM at the mix's rate), and payloads of any length back to
//! 48 kHz PCM (what is published into the session as Opus), with the resampling in between.

use media_mixer::g711;
use media_mixer::g722::{G722Decoder, G722Encoder};
use media_mixer::opus::{OpusDecoder, OpusEncoder, OpusEncoderConfig};
use media_mixer::plc::Concealer;
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
    /// The mix at the codec's rate, not sent yet: less than a packet between two ticks.
    pending: Vec<i16>,
    /// Samples per packet at the codec's rate.
    packet_len: usize,
    /// Loss concealment for the codecs without their own (all but Opus).
    plc: Concealer,
}

impl std::fmt::Debug for AudioCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioCodec").field("sample_rate", &self.sample_rate()).finish()
    }
}

/// The Opus encoder's settings for a far end (RFC 7587 §6.1: the `a=fmtp` of its answer says
/// what it receives): `maxaveragebitrate` and the media's `b=TIAS`/`b=AS` cap the bitrate (32 kbit/s
/// otherwise), `maxplaybackrate` the coded band, `usedtx=1` turns DTX on, `cbr=1` constant
/// bitrate, and in-band FEC is spent only on a far end that says it uses it (`useinbandfec=1`).
pub fn opus_config_for(fmtp: Option<&str>, bandwidth: Option<u64>) -> OpusEncoderConfig {
    let param = |name: &str| fmtp_number(fmtp, name);
    let default = OpusEncoderConfig::default();
    let bitrate = [Some(default.bitrate as u64), param("maxaveragebitrate"), bandwidth]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(32_000)
        .clamp(6_000, 510_000);
    OpusEncoderConfig {
        bitrate: bitrate as i32,
        dtx: param("usedtx") == Some(1),
        inband_fec: param("useinbandfec") == Some(1),
        max_playback_rate: param("maxplaybackrate").map(|r| r.clamp(8_000, 48_000) as u32),
        cbr: param("cbr") == Some(1),
        ..default
    }
}

/// A numeric `a=fmtp` parameter.
fn fmtp_number(fmtp: Option<&str>, name: &str) -> Option<u64> {
    fmtp.and_then(|f| sdp_negotiation::codec::fmtp_param(f, name)).and_then(|v| v.trim().parse().ok())
}

/// Whether a far end's Opus parameters ask for less than a browser's Opus gives (about 32 kbit/s
/// VBR, fullband, in-band FEC): an average bitrate or a bandwidth under 40 kbit/s, a playback rate
/// under 48 kHz, or CBR. Such a far end gets Opus encoded for it ([`opus_config_for`]) rather
/// than a publisher's packets forwarded as they are.
pub fn opus_constrained(fmtp: Option<&str>, bandwidth: Option<u64>) -> bool {
    let param = |name: &str| fmtp_number(fmtp, name);
    param("maxaveragebitrate").is_some_and(|b| b < 40_000)
        || param("maxplaybackrate").is_some_and(|r| r < 48_000)
        || param("cbr") == Some(1)
        || bandwidth.is_some_and(|b| b < 40_000)
}

impl AudioCodec {
    /// A codec for the negotiated `codec`; `None` for a codec that is not audio we carry.
    pub fn new(codec: Codec) -> Option<AudioCodec> {
        AudioCodec::for_far_end(codec, None, None)
    }

    /// [`new`](Self::new), with the far end's `a=fmtp` for the codec and the bandwidth its SDP
    /// says it receives, which shape what we send (Opus: [`opus_config_for`]).
    pub fn for_far_end(codec: Codec, fmtp: Option<&str>, bandwidth: Option<u64>) -> Option<AudioCodec> {
        let (kind, rate) = match codec {
            Codec::Opus => {
                let enc = OpusEncoder::new(opus_config_for(fmtp, bandwidth)).ok()?;
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
            pending: Vec::with_capacity(FRAME_48K),
            packet_len: rate as usize / 50,
            plc: Concealer::new(rate),
        })
    }

    /// The far end reports losing `fraction` (0 to 1) of our packets (RTCP): Opus is told, to
    /// spend in-band FEC (and robustness) to match, up to 30%; the other codecs have nothing to
    /// adjust.
    pub fn follow_loss(&mut self, fraction: f64) {
        if let Kind::Opus(enc, _) = &mut self.kind {
            let percent = (fraction * 100.0).ceil().clamp(0.0, 30.0) as u8;
            let _ = enc.set_expected_loss(percent);
        }
    }

    /// Sends packets of the packet time the far end asked for (its `a=ptime`, in ms) when the
    /// codec allows it: G.711 and G.722 take any multiple of 10 ms up to 60 ms (a longer packet
    /// saves little and risks more at once); otherwise, and always for Opus, 20 ms. Returns the
    /// packet time used.
    pub fn set_packet_time(&mut self, ptime_ms: Option<u32>) -> u32 {
        let ms = match (&self.kind, ptime_ms) {
            (Kind::Opus(..), _) | (_, None) => 20,
            (_, Some(ms)) if ms % 10 == 0 && (10..=60).contains(&ms) => ms,
            (_, Some(_)) => 20,
        };
        self.packet_len = self.sample_rate() as usize * ms as usize / 1000;
        self.pending.clear();
        ms
    }

    /// RTP timestamp units per packet.
    pub fn packet_step(&self) -> u32 {
        self.rtp_units(self.packet_len)
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
        self.rtp_clock() / 50
    }

    /// `samples` at the codec's rate, in RTP timestamp units.
    fn rtp_units(&self, samples: usize) -> u32 {
        (samples as u64 * u64::from(self.rtp_clock()) / u64::from(self.sample_rate())) as u32
    }

    /// Takes 20 ms of the mix, PCM at `rate` Hz (8, 16 or 48 kHz: the mix's rate), to be sent in
    /// packets from [`next_packet`](Self::next_packet); ignored when `rate` is not one of those.
    pub fn push_mix(&mut self, pcm: &[i16], rate: u32) {
        self.scratch.clear();
        if rate != self.down_from {
            let Ok(down) = Resampler::new(rate, self.sample_rate()) else { return };
            self.down = down;
            self.down_from = rate;
        }
        self.down.process(pcm, &mut self.scratch);
        self.pending.extend_from_slice(&self.scratch);
    }

    /// The next packet of the mix taken so far, encoded into `out` (replacing what it held); false
    /// (and `out` untouched) while less than a packet is waiting.
    pub fn next_packet(&mut self, out: &mut Vec<u8>) -> bool {
        if self.pending.len() < self.packet_len {
            return false;
        }
        out.clear();
        let pcm = &self.pending[..self.packet_len];
        match &mut self.kind {
            Kind::Opus(enc, _) => {
                if enc.encode(pcm, out).is_err() {
                    out.clear();
                }
            }
            Kind::G722(codec) => codec.0.encode(pcm, out),
            Kind::Pcmu => g711::ulaw_encode_frame(pcm, out),
            Kind::Pcma => g711::alaw_encode_frame(pcm, out),
        }
        self.pending.drain(..self.packet_len);
        true
    }

    /// Forgets the mix waiting to be sent (it will not be: telephone-events replace the audio);
    /// returns how long it was, in RTP timestamp units.
    pub fn discard_pending(&mut self) -> u32 {
        let units = self.pending();
        self.pending.clear();
        units
    }

    /// The mix waiting to be sent, in RTP timestamp units.
    pub fn pending(&self) -> u32 {
        self.rtp_units(self.pending.len())
    }

    /// The RTP clock rate of the codec's timestamps (G.722 keeps 8 kHz, RFC 3551).
    pub fn rtp_clock(&self) -> u32 {
        match self.kind {
            Kind::Opus(..) => 48_000,
            _ => 8_000,
        }
    }

    /// How long a payload plays, in the RTP clock (whatever packet time the far end chose: 10, 20,
    /// 30 ms or more); `None` for one that holds no audio (empty, or not valid Opus).
    pub fn payload_duration(&self, payload: &[u8]) -> Option<u32> {
        match self.kind {
            Kind::Opus(..) => media_mixer::opus::packet_duration(payload),
            // One byte per sample at 8 kHz; G.722 packs two 16 kHz samples in a byte, one tick of
            // its 8 kHz RTP clock.
            _ => u32::try_from(payload.len()).ok().filter(|n| *n > 0),
        }
    }

    /// Whether a payload is quiet (every sample at or below -50 dBov): a pause that a jitter buffer
    /// whose delay has grown may drop first. Known for G.711 without decoding anything; never said
    /// of the others.
    pub fn is_quiet(&self, payload: &[u8]) -> bool {
        // -50 dBov of full scale (32768).
        const QUIET: i16 = 104;
        let decode = match self.kind {
            Kind::Pcmu => g711::ulaw_decode,
            Kind::Pcma => g711::alaw_decode,
            _ => return false,
        };
        payload.iter().all(|b| decode(*b).saturating_abs() <= QUIET)
    }

    /// Decodes one payload of any length into 48 kHz PCM in `out` (cleared first), less its first
    /// `skip` samples (at 48 kHz: what was made up already while it was late); a payload that
    /// does not decode gives nothing. The skip is taken before the concealment's cross-fade, so
    /// the fade lands where the made-up audio meets the real one.
    pub fn decode(&mut self, payload: &[u8], skip: usize, out: &mut Vec<i16>) {
        out.clear();
        self.scratch.clear();
        match &mut self.kind {
            Kind::Opus(_, dec) => {
                if dec.decode(payload, &mut self.scratch).is_err() {
                    return;
                }
            }
            Kind::G722(codec) => codec.1.decode(payload, &mut self.scratch),
            Kind::Pcmu => g711::ulaw_decode_frame(payload, &mut self.scratch),
            Kind::Pcma => g711::alaw_decode_frame(payload, &mut self.scratch),
        }
        let skip = (skip * self.sample_rate() as usize / 48_000).min(self.scratch.len());
        self.scratch.drain(..skip);
        if !matches!(self.kind, Kind::Opus(..)) {
            self.plc.good(&mut self.scratch);
        }
        self.up.process(&self.scratch, out);
    }

    /// Conceals `samples` (at 48 kHz) of lost audio into `out` (cleared first): Opus's PLC, and
    /// for the others the last pitch period repeated, fading out after 10 ms (`media_mixer::plc`).
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        out.clear();
        self.scratch.clear();
        let at_rate = samples * self.sample_rate() as usize / 48_000;
        let concealed = match &mut self.kind {
            Kind::Opus(_, dec) => dec.conceal(at_rate, &mut self.scratch).is_ok(),
            _ => {
                self.plc.conceal(at_rate, &mut self.scratch);
                true
            }
        };
        if !concealed {
            self.scratch.clear();
            self.scratch.resize(at_rate, 0);
        }
        self.up.process(&self.scratch, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7587 §6.1: the far end's receive parameters shape our Opus; nothing said leaves 32 kbit/s,
    /// fullband, VBR, no DTX, and no FEC (the far end did not say it uses any).
    #[test]
    fn opus_follows_what_the_far_end_receives() {
        let plain = opus_config_for(None, None);
        assert_eq!(
            (plain.bitrate, plain.dtx, plain.inband_fec, plain.max_playback_rate, plain.cbr),
            (32_000, false, false, None, false)
        );
        let c = opus_config_for(
            Some("minptime=10; useinbandfec=1;usedtx=1;maxplaybackrate=16000;maxaveragebitrate=20000;cbr=1"),
            None,
        );
        assert_eq!(
            (c.bitrate, c.dtx, c.inband_fec, c.max_playback_rate, c.cbr),
            (20_000, true, true, Some(16_000), true)
        );
        assert_eq!(opus_config_for(Some("maxaveragebitrate=64000"), Some(24_000)).bitrate, 24_000, "b=TIAS binds");
        assert_eq!(opus_config_for(Some("maxaveragebitrate=64000"), None).bitrate, 32_000, "never above ours");
        assert_eq!(opus_config_for(Some("maxaveragebitrate=100"), None).bitrate, 6_000, "Opus's least");
        let odd = opus_config_for(Some("useinbandfec=yes;maxplaybackrate=1;usedtx"), None);
        assert_eq!((odd.inband_fec, odd.dtx, odd.max_playback_rate), (false, false, Some(8_000)));
        // Who gets a publisher's Opus as it is, and who gets Opus made for it.
        assert!(!opus_constrained(None, None));
        assert!(!opus_constrained(Some("useinbandfec=1;usedtx=1;maxaveragebitrate=64000"), Some(64_000)));
        for (fmtp, bandwidth) in [
            (Some("maxaveragebitrate=24000"), None),
            (Some("maxplaybackrate=16000"), None),
            (Some("cbr=1"), None),
            (None, Some(30_000)),
        ] {
            assert!(opus_constrained(fmtp, bandwidth), "{fmtp:?} {bandwidth:?}");
        }
    }

    #[test]
    fn every_codec_round_trips_20ms_frames() {
        for codec in [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma] {
            let mut c = AudioCodec::new(codec).expect("codec");
            let (mut payload, mut pcm) = (Vec::new(), Vec::new());
            let mut energy = 0f64;
            for _ in 0..10 {
                c.push_mix(&tone_at(48_000, FRAME_48K), 48_000);
                assert!(c.next_packet(&mut payload) && !payload.is_empty(), "{codec:?}");
                assert!(!c.next_packet(&mut payload), "{codec:?}: one 20 ms packet a tick");
                assert_eq!(c.payload_duration(&payload), Some(c.rtp_step()), "{codec:?}");
                c.decode(&payload, 0, &mut pcm);
                assert_eq!(pcm.len(), FRAME_48K, "{codec:?} decodes 20 ms at 48 kHz");
                energy = pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64;
            }
            assert!(energy.sqrt() > 2000.0, "{codec:?} keeps the tone: rms {}", energy.sqrt());
            c.conceal(FRAME_48K, &mut pcm);
            assert_eq!(pcm.len(), FRAME_48K, "{codec:?} conceals a lost frame with 20 ms");
            c.conceal(480, &mut pcm);
            assert_eq!(pcm.len(), 480, "{codec:?} conceals a lost 10 ms packet with 10 ms");
            // A late packet whose first 5 ms were made up already: the rest of it.
            c.decode(&payload, 240, &mut pcm);
            assert_eq!(pcm.len(), FRAME_48K - 240, "{codec:?} skips what was made up");
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
                    c.push_mix(&tone_at(rate, rate as usize / 50), rate);
                    assert!(c.next_packet(&mut payload) && !payload.is_empty(), "{codec:?} from {rate} Hz");
                    c.decode(&payload, 0, &mut pcm);
                    rms = (pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
                }
                assert!(rms > 2000.0, "{codec:?} from a {rate} Hz mix keeps the tone: rms {rms}");
            }
            c.push_mix(&tone_at(44_100, 882), 44_100);
            assert!(!c.next_packet(&mut payload), "a rate the mix never runs at gives nothing");
        }
    }

    /// The far end's packet time, both ways: the mix goes out in packets of its `a=ptime` (the RTP
    /// clock advancing by as much), and its packets of any length decode whole.
    #[test]
    fn packets_follow_the_far_ends_packet_time() {
        for (codec, ptime, want, bytes) in [
            (Codec::Pcmu, Some(30), 30, 240),
            (Codec::Pcma, Some(10), 10, 80),
            (Codec::G722, Some(60), 60, 480),
            (Codec::Pcmu, Some(25), 20, 160),
            (Codec::Pcmu, Some(120), 20, 160),
            (Codec::Pcmu, None, 20, 160),
            (Codec::Opus, Some(40), 20, 0),
        ] {
            let mut c = AudioCodec::new(codec).expect("codec");
            assert_eq!(c.set_packet_time(ptime), want, "{codec:?} {ptime:?}");
            assert_eq!(c.packet_step(), want * c.rtp_clock() / 1000, "{codec:?}");
            let (mut payload, mut pcm, mut decoded) = (Vec::new(), Vec::new(), Vec::new());
            let mut packets = 0;
            // Three seconds of the mix, 20 ms a tick.
            for tick in 0..150 {
                // 1 kHz: whole periods in 20 ms, the same samples every tick.
                c.push_mix(&tone_at(48_000, FRAME_48K), 48_000);
                while c.next_packet(&mut payload) {
                    packets += 1;
                    if bytes > 0 {
                        assert_eq!(payload.len(), bytes, "{codec:?} {ptime:?} at tick {tick}");
                    }
                    assert_eq!(c.payload_duration(&payload), Some(c.packet_step()), "{codec:?}");
                    c.decode(&payload, 0, &mut pcm);
                    decoded.extend_from_slice(&pcm);
                }
                assert!(c.pending() < c.packet_step(), "less than a packet waits");
            }
            assert_eq!(packets, 3000 / want, "{codec:?} {ptime:?}");
            assert_eq!(decoded.len(), 3 * 48_000, "{codec:?}: every packet decodes whole");
            let tail = &decoded[48_000..];
            let rms = (tail.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
            assert!(rms > 2000.0, "{codec:?} {ptime:?} keeps the tone: rms {rms}");
        }
    }

    /// A lost packet of G.711 or G.722 is made up from the audio before it (not silence).
    #[test]
    fn a_lost_packet_is_concealed_with_the_sound_before_it() {
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::G722] {
            let mut c = AudioCodec::new(codec).expect("codec");
            let (mut payload, mut pcm) = (Vec::new(), Vec::new());
            for _ in 0..10 {
                c.push_mix(&tone_at(48_000, FRAME_48K), 48_000);
                assert!(c.next_packet(&mut payload));
                c.decode(&payload, 0, &mut pcm);
            }
            c.conceal(FRAME_48K, &mut pcm);
            let rms = (pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
            assert!(rms > 3000.0, "{codec:?}: the tone goes on through the loss: rms {rms}");
        }
    }

    #[test]
    fn quiet_g711_payloads_are_told_apart() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut c = AudioCodec::new(codec).expect("codec");
            let mut payload = Vec::new();
            c.push_mix(&[0; FRAME_48K], 48_000);
            assert!(c.next_packet(&mut payload));
            assert!(c.is_quiet(&payload), "{codec:?}: silence");
            c.push_mix(&tone_at(48_000, FRAME_48K), 48_000);
            assert!(c.next_packet(&mut payload));
            assert!(!c.is_quiet(&payload), "{codec:?}: a tone");
        }
        let c = AudioCodec::new(Codec::G722).expect("codec");
        assert!(!c.is_quiet(&[0; 160]), "not said of G.722");
    }
}
