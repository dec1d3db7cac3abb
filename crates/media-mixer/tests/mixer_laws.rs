//! Mixer laws, checked on random inputs.

use media_mixer::{ListenerId, Mixer, MixerConfig, StreamId};
use proptest::prelude::*;

proptest! {
    /// Every listener hears exactly the saturated sum of the other active
    /// streams: its own never, nobody else's missing, no wrap-around.
    #[test]
    fn mix_minus_is_exact(frames in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<i16>(), 32)), 1..12)) {
        let cfg = MixerConfig { frame_len: 32, silence_dbov: 128, max_active: None };
        let mut m = Mixer::new(cfg);
        for (i, f) in frames.iter().enumerate() {
            m.add_stream(StreamId(i as u64));
            m.add_listener(ListenerId(i as u64), Some(StreamId(i as u64)), None);
            if let Some(f) = f {
                m.push_frame(StreamId(i as u64), f, None).expect("push");
            }
        }
        m.mix();
        let mut out = vec![0i16; 32];
        for i in 0..frames.len() {
            m.output(ListenerId(i as u64), &mut out).expect("out");
            for (k, o) in out.iter().enumerate() {
                let expected: i32 = frames.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, f)| f.as_ref()).map(|f| i32::from(f[k])).sum();
                prop_assert_eq!(i32::from(*o), expected.clamp(-32768, 32767));
            }
        }
        m.end_tick();
        m.mix();
        prop_assert_eq!(m.mixed_count(), 0, "a tick without frames mixes nothing");
    }
}
