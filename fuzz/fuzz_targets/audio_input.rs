//! Hostile audio RTP from a SIP party, through what `bridge` does with it every 20 ms: the
//! telephone-event receiver, the adaptive jitter buffer (hostile sequence numbers, timestamps,
//! lengths and arrival times) and the codec's decode and concealment (Opus, G.722, G.711), with
//! the made-up rest of a short tick reported back to the buffer.
//!
//! Input: one mode byte (bits 0-1: the codec), then records of a flags byte (bit 0: a
//! telephone-event packet; bit 1: marker; bit 2: a tick after this packet), the milliseconds
//! since the last record, a big-endian RTP timestamp, a length byte and that many payload bytes.
//! Sequence numbers only count up (the jitter buffer orders by timestamp, which is hostile here).
#![no_main]

use bridge::codec::{AudioCodec, FRAME_48K};
use dtmf_rfc4733::{Receiver, ReceiverConfig};
use libfuzzer_sys::fuzz_target;
use media_mixer::jitter::{JitterBuffer, JitterConfig, Next, TimestampExtender};
use sdp_negotiation::Codec;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let kind = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma][usize::from(mode & 3)];
    let mut codec = AudioCodec::new(kind).expect("an audio codec");
    let clock = u64::from(codec.rtp_clock());
    let mut jitter: JitterBuffer<Vec<u8>> =
        JitterBuffer::new(JitterConfig { clock_rate: codec.rtp_clock(), ..JitterConfig::default() });
    let mut extender = TimestampExtender::new();
    let mut dtmf = Receiver::new(ReceiverConfig::default());
    let t0 = Instant::now();
    let (mut elapsed, mut seq) = (0u64, 0u16);
    let mut decoded: Vec<i16> = Vec::new();
    let mut pcm = Vec::new();
    while let [flags, gap, t0b, t1, t2, t3, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        elapsed += u64::from(*gap);
        seq = seq.wrapping_add(1);
        let now = t0 + Duration::from_millis(elapsed);
        let timestamp = u32::from_be_bytes([*t0b, *t1, *t2, *t3]);
        if flags & 1 != 0 {
            let _ = dtmf.handle_packet(now, seq, timestamp, flags & 2 != 0, payload);
        } else if let Some(duration) = codec.payload_duration(payload) {
            let _ = jitter.push(now, extender.extend(timestamp), duration, payload.to_vec());
        }
        dtmf.handle_timeout(now);
        while dtmf.poll_event().is_some() {}
        if flags & 4 == 0 {
            continue;
        }
        // One tick, as `bridge` plays a G.711 or G.722 party's audio (Opus is forwarded, but a
        // listener's decode goes through the same codec calls).
        jitter.start_tick_with(now, |p| codec.is_quiet(p));
        decoded.clear();
        let mut rounds = 0;
        while decoded.len() < FRAME_48K && rounds < 64 {
            rounds += 1;
            match jitter.pop() {
                Next::Packet { item, skip, .. } => {
                    codec.decode(&item, (u64::from(skip) * 48_000 / clock) as usize, &mut pcm)
                }
                Next::Lost { duration } => codec.conceal((u64::from(duration) * 48_000 / clock) as usize, &mut pcm),
                Next::Empty => break,
            }
            decoded.extend_from_slice(&pcm);
        }
        if !decoded.is_empty() && decoded.len() < FRAME_48K {
            let missing = FRAME_48K - decoded.len();
            codec.conceal(missing, &mut pcm);
            assert_eq!(pcm.len(), missing, "concealment gives what was asked");
            jitter.made_up((missing as u64 * clock / 48_000) as u32);
        }
    }
});
