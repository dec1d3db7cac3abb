//! The grid's composition on its own: nine 640x360 pictures onto a 1280x720
//! canvas, every tile re-scaled (a new frame from every source), and one
//! luma plane scaled by the compositor's scaler, for its throughput in
//! pixels.

mod common;

use criterion::{black_box, Criterion, Throughput};
use media_mixer::grid::{Compositor, Source, I420};
use media_mixer::scale::{Plane, PlaneMut, Scaler};

fn picture(i: u8) -> I420 {
    let mut p = I420::filled(640, 360, (40 + 20 * i, 128, 128)).expect("picture");
    for (k, y) in p.y.iter_mut().enumerate() {
        *y = y.wrapping_add((k % 251) as u8);
    }
    p
}

fn compose(c: &mut Criterion) {
    let pictures: Vec<I420> = (0..9).map(picture).collect();
    let mut comp = Compositor::new(1280, 720).expect("canvas");
    let mut generation = 0u64;
    let mut g = c.benchmark_group("grid");
    g.throughput(Throughput::Elements(1));
    g.bench_function("compose 9x640x360 on 1280x720, all tiles new", |b| {
        b.iter(|| {
            generation += 1;
            let sources: Vec<Source<'_>> = pictures
                .iter()
                .enumerate()
                .map(|(i, p)| Source { id: i as u64, generation, picture: Some(p) })
                .collect();
            black_box(comp.compose(&sources).expect("compose"))
        })
    });
    g.bench_function("compose 4x640x360 on 1280x720 (2x2: tiles at their own size), all tiles new", |b| {
        b.iter(|| {
            generation += 1;
            let sources: Vec<Source<'_>> = pictures[..4]
                .iter()
                .enumerate()
                .map(|(i, p)| Source { id: i as u64, generation, picture: Some(p) })
                .collect();
            black_box(comp.compose(&sources).expect("compose"))
        })
    });
    let src = picture(3);
    let mut canvas = vec![0u8; 1280 * 720];
    let mut scaler = Scaler::new();
    g.throughput(Throughput::Elements(426 * 240));
    g.bench_function("scale a 640x360 plane to 426x240", |b| {
        b.iter(|| {
            let dst = PlaneMut { data: &mut canvas, stride: 1280, x: 0, y: 0, width: 426, height: 240 };
            scaler.scale(Plane { data: &src.y, width: 640, height: 360, stride: 640 }, dst).expect("scale");
            black_box(canvas[1000])
        })
    });
    g.finish();
}

fn main() {
    common::run(&[compose]);
}
