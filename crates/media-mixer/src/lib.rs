//! The compute core of the gateway: audio codecs, resampling and the
//! mix-minus mixer. Frames and timestamps go in, frames come out; no IO and
//! no clock of its own.

mod error;
pub mod g711;
pub mod g722;
pub mod grid;
pub mod h264;
pub mod jitter;
pub mod level;
pub mod mixer;
pub mod opus;
pub mod packetize;
pub mod plc;
pub mod prompt;
pub mod reorder;
pub mod resample;
pub mod scale;
pub mod video_input;
pub mod vp8;

pub use error::Error;
pub use mixer::{ListenerId, Mixer, MixerConfig, StreamId};
pub use prompt::Prompt;

/// Samples per 20 ms frame at `rate` Hz.
pub const fn frame_len(rate: u32) -> usize {
    (rate / 50) as usize
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
