//! English voice prompts, generated with espeak-ng and embedded (see
//! `assets/prompts/README.md`), resampled to the mixing rate on demand.

use crate::error::Error;
use crate::resample::Resampler;

/// An announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "You have been muted." (force mute)
    YouHaveBeenMuted,
    /// "You are muted." (`*6` while muted)
    YouAreMuted,
    /// "You are unmuted." (`*6` unmute)
    YouAreUnmuted,
}

impl Prompt {
    /// The text spoken.
    pub fn text(self) -> &'static str {
        match self {
            Prompt::YouHaveBeenMuted => "You have been muted.",
            Prompt::YouAreMuted => "You are muted.",
            Prompt::YouAreUnmuted => "You are unmuted.",
        }
    }

    fn raw(self) -> &'static [u8] {
        match self {
            Prompt::YouHaveBeenMuted => include_bytes!("../assets/prompts/muted.s16le"),
            Prompt::YouAreMuted => include_bytes!("../assets/prompts/still_muted.s16le"),
            Prompt::YouAreUnmuted => include_bytes!("../assets/prompts/unmuted.s16le"),
        }
    }

    /// The prompt as PCM at `rate` Hz (8000, 16000 or 48000), padded with
    /// silence to whole 20 ms frames.
    pub fn pcm(self, rate: u32) -> Result<Vec<i16>, Error> {
        let src: Vec<i16> = self.raw().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let mut out = Vec::with_capacity(src.len() * rate as usize / 16000 + 1024);
        let mut r = Resampler::new(16000, rate)?;
        let frame = 320;
        let mut padded = src;
        padded.resize(padded.len().div_ceil(frame) * frame + frame, 0);
        for chunk in padded.chunks(frame) {
            r.process(chunk, &mut out);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::level_dbov;

    #[test]
    fn prompts_are_speech_of_plausible_length() {
        let mut seen = Vec::new();
        for p in [Prompt::YouHaveBeenMuted, Prompt::YouAreMuted, Prompt::YouAreUnmuted] {
            let pcm = p.pcm(8000).expect("pcm");
            let secs = pcm.len() as f64 / 8000.0;
            assert!((0.6..3.0).contains(&secs), "{p:?}: {secs} s");
            assert_eq!(pcm.len() % 160, 0);
            // Loud enough in its middle, and not a constant tone: levels vary.
            let levels: Vec<u8> = pcm.chunks(160).map(level_dbov).collect();
            let loud = levels.iter().filter(|l| **l < 30).count();
            assert!(loud * 3 > levels.len(), "{p:?} is mostly speech: {levels:?}");
            assert!(levels.iter().max() > levels.iter().min());
            seen.push(pcm);
        }
        assert!(seen[0] != seen[1] && seen[1] != seen[2]);
        assert_eq!(Prompt::YouAreUnmuted.pcm(48000).expect("48k").len() % 960, 0);
    }
}
