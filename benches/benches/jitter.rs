//! The adaptive jitter buffer's own cost per 20 ms tick, beside the mixer's
//! (`--bench mixer`): 50 inputs, each pushing one 20 ms Opus-sized packet a
//! tick with a little network jitter (every eighth packet a tick late, so
//! it is put back in its place), then the tick taking each input's packet.
//! What the session mix pays per tick on top of decoding and mixing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion, Throughput};
use media_mixer::jitter::{JitterBuffer, JitterConfig, Next};

const INPUTS: usize = 50;
const TICK: Duration = Duration::from_millis(20);

fn jitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter");
    group.throughput(Throughput::Elements(INPUTS as u64));
    group.bench_function("tick/50_inputs", |b| {
        let payload: Arc<[u8]> = Arc::from(vec![0x08u8; 80].as_slice());
        let mut buffers: Vec<JitterBuffer<Arc<[u8]>>> =
            (0..INPUTS).map(|_| JitterBuffer::new(JitterConfig::default())).collect();
        let t0 = Instant::now();
        let mut tick = 0u64;
        // The late packet of each input, pushed a tick after its turn.
        let mut late: Vec<Option<u64>> = vec![None; INPUTS];
        b.iter(|| {
            let now = t0 + TICK * tick as u32;
            for (i, jb) in buffers.iter_mut().enumerate() {
                if let Some(n) = late[i].take() {
                    jb.push(now, n * 960, 960, payload.clone());
                }
                if (tick + i as u64).is_multiple_of(8) {
                    late[i] = Some(tick);
                } else {
                    jb.push(now, tick * 960, 960, payload.clone());
                }
                jb.start_tick_with(now, |p| p.len() <= 2);
                if let Next::Packet { item, .. } = jb.pop() {
                    black_box(item);
                }
            }
            tick += 1;
        });
    });
    group.finish();
}

fn main() {
    common::run(&[jitter]);
}
