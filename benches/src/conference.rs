//! The audio pipeline for one conference, per 20 ms tick: every Opus
//! input decoded once at the mix's rate (packets whose size shows DTX or
//! digital silence are not decoded), the mixer's tick, the output of one
//! listener that hears everyone, resampled to 8 kHz when the mix runs faster,
//! and µ-law encoded (PCMU). The gateway mixes at 8 kHz when every listener
//! takes a narrowband codec, as this listener does (`bridge::audio`).
//!
//! The stages are public so the comparison binary can time them apart;
//! [`Conference::tick`] runs them in order.

use media_mixer::g711::ulaw_encode_frame;
use media_mixer::opus::OpusDecoder;
use media_mixer::resample::Resampler;
use media_mixer::{frame_len, Error, ListenerId, Mixer, MixerConfig, StreamId};
use std::time::{Duration, Instant};

/// Packets this size or smaller carry no audio worth decoding: a DTX
/// frame or libopus's encoding of digital silence (TOC byte plus at most
/// two bytes of range coder).
pub const DTX_MAX_BYTES: usize = 3;

/// The output's rate: PCMU.
pub const OUT_RATE: u32 = 8_000;
const LISTENER: ListenerId = ListenerId(0);

/// Time spent in each stage, summed over ticks.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    /// Opus decoding, level measurement and `push_frame`.
    pub decode: Duration,
    /// `mix`, `output` and `end_tick`.
    pub mix: Duration,
    /// 48 kHz to 8 kHz.
    pub resample: Duration,
    /// µ-law encoding.
    pub encode: Duration,
}

impl StageTimes {
    /// The sum of the stages.
    pub fn total(&self) -> Duration {
        self.decode + self.mix + self.resample + self.encode
    }
}

/// One conference: N Opus inputs in, one PCMU stream out.
#[derive(Debug)]
pub struct Conference {
    /// Each input's decoder, made at its first packet that needs decoding (an input silent from
    /// the start never costs a decoder's set-up or memory).
    decoders: Vec<Option<OpusDecoder>>,
    mix_rate: u32,
    mixer: Mixer,
    /// `None` when the mix is already at the output's rate.
    resampler: Option<Resampler>,
    pcm: Vec<i16>,
    mixed: Vec<i16>,
    narrow: Vec<i16>,
    ulaw: Vec<u8>,
    decoded: u64,
    skipped: u64,
}

impl Conference {
    /// A conference of `inputs` streams and one listener that hears them
    /// all, decoding and mixing at `mix_rate` (8, 16 or 48 kHz).
    pub fn new(inputs: usize, mix_rate: u32) -> Result<Conference, Error> {
        let mut mixer = Mixer::new(MixerConfig { frame_len: frame_len(mix_rate), ..MixerConfig::default() });
        for i in 0..inputs {
            mixer.add_stream(StreamId(i as u64));
        }
        mixer.add_listener(LISTENER, None, None);
        Ok(Conference {
            decoders: (0..inputs).map(|_| None).collect(),
            mix_rate,
            mixer,
            resampler: if mix_rate == OUT_RATE { None } else { Some(Resampler::new(mix_rate, OUT_RATE)?) },
            pcm: Vec::with_capacity(frame_len(mix_rate) * 6),
            mixed: vec![0; frame_len(mix_rate)],
            narrow: Vec::with_capacity(frame_len(OUT_RATE)),
            ulaw: Vec::with_capacity(frame_len(OUT_RATE)),
            decoded: 0,
            skipped: 0,
        })
    }

    /// Stage 1: decodes this tick's packet of every input (one per input,
    /// in input order) and gives the frames to the mixer.
    pub fn decode<'p>(&mut self, packets: impl IntoIterator<Item = &'p [u8]>) -> Result<(), Error> {
        for (i, (packet, decoder)) in packets.into_iter().zip(&mut self.decoders).enumerate() {
            if packet.len() <= DTX_MAX_BYTES {
                self.skipped += 1;
                continue;
            }
            let decoder = match decoder {
                Some(d) => d,
                None => decoder.insert(OpusDecoder::new(self.mix_rate)?),
            };
            decoder.decode(packet, &mut self.pcm)?;
            self.mixer.push_frame(StreamId(i as u64), &self.pcm, None)?;
            self.decoded += 1;
        }
        Ok(())
    }

    /// Stage 2: mixes and takes the listener's frame. Returns whether it
    /// hears anything.
    pub fn mix(&mut self) -> Result<bool, Error> {
        self.mixer.mix();
        let heard = self.mixer.output(LISTENER, &mut self.mixed)?;
        self.mixer.end_tick();
        Ok(heard)
    }

    /// Stage 3: the mix's rate to 8 kHz (a copy when it is 8 kHz already).
    pub fn resample(&mut self) {
        self.narrow.clear();
        match &mut self.resampler {
            Some(r) => r.process(&self.mixed, &mut self.narrow),
            None => self.narrow.extend_from_slice(&self.mixed),
        }
    }

    /// Stage 4: the PCMU payload of this tick.
    pub fn encode(&mut self) -> &[u8] {
        ulaw_encode_frame(&self.narrow, &mut self.ulaw);
        &self.ulaw
    }

    /// One tick, all stages: `packets` holds each input's packet for it.
    pub fn tick<'p>(&mut self, packets: impl IntoIterator<Item = &'p [u8]>) -> Result<&[u8], Error> {
        self.decode(packets)?;
        self.mix()?;
        self.resample();
        Ok(self.encode())
    }

    /// [`Conference::tick`], adding each stage's time to `times`.
    pub fn tick_timed<'p>(
        &mut self,
        packets: impl IntoIterator<Item = &'p [u8]>,
        times: &mut StageTimes,
    ) -> Result<&[u8], Error> {
        let t0 = Instant::now();
        self.decode(packets)?;
        let t1 = Instant::now();
        self.mix()?;
        let t2 = Instant::now();
        self.resample();
        let t3 = Instant::now();
        ulaw_encode_frame(&self.narrow, &mut self.ulaw);
        let t4 = Instant::now();
        times.decode += t1 - t0;
        times.mix += t2 - t1;
        times.resample += t3 - t2;
        times.encode += t4 - t3;
        Ok(&self.ulaw)
    }

    /// Packets decoded and packets skipped as DTX/silence so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.decoded, self.skipped)
    }
}

/// Ticks of audio a set of inputs gives: the shortest input's packet count.
pub fn ticks(inputs: &[Vec<Vec<u8>>]) -> usize {
    inputs.iter().map(Vec::len).min().unwrap_or(0)
}

/// Runs every tick of `inputs` through `conference` `passes` times;
/// returns the number of ticks run and a checksum of the output (so the
/// work cannot be optimised away, and two runs can be compared).
pub fn run(conference: &mut Conference, inputs: &[Vec<Vec<u8>>], passes: usize) -> Result<(usize, u64), Error> {
    let n = ticks(inputs);
    let mut sum = 0u64;
    for _ in 0..passes {
        for t in 0..n {
            let out = conference.tick(inputs.iter().map(|p| p[t].as_slice()))?;
            sum = sum.wrapping_mul(31).wrapping_add(out.iter().map(|b| u64::from(*b)).sum::<u64>());
        }
    }
    Ok((n * passes, sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use media_mixer::opus::{OpusEncoder, OpusEncoderConfig};

    #[test]
    fn a_tone_comes_out_as_pcmu_and_silence_is_skipped() {
        let config =
            OpusEncoderConfig { dtx: true, inband_fec: false, expected_loss: 0, ..OpusEncoderConfig::default() };
        let mut tone = OpusEncoder::new(config).expect("encoder");
        let mut quiet = OpusEncoder::new(config).expect("encoder");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut conference = Conference::new(2, 48_000).expect("conference");
        let mut levels = Vec::new();
        for t in 0..50 {
            let pcm: Vec<i16> = (t * 960..(t + 1) * 960).map(|i| (8000.0 * (i as f64 * 0.1309).sin()) as i16).collect();
            tone.encode(&pcm, &mut a).expect("encode");
            quiet.encode(&[0; 960], &mut b).expect("encode");
            let out = conference.tick([a.as_slice(), b.as_slice()]).expect("tick");
            assert_eq!(out.len(), 160);
            let linear: Vec<i16> = out.iter().map(|b| media_mixer::g711::ulaw_decode(*b)).collect();
            levels.push(media_mixer::level::level_dbov(&linear));
        }
        // 1 kHz at 8000 peak is about -15 dBov, once the codec and filter
        // delays have passed.
        assert!(levels[10..].iter().all(|l| (12..=18).contains(l)), "{levels:?}");
        let (decoded, skipped) = conference.counts();
        assert_eq!(decoded + skipped, 100);
        assert!(skipped >= 20, "DTX packets of the silent input are skipped: {skipped}");
    }
}
