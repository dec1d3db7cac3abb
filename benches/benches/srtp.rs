//! SRTP per packet: protect and unprotect at 160 (G.711 20 ms) and 1200
//! bytes of payload, AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM, and their 256-bit-key
//! counterparts (AES_256_CM_HMAC_SHA1_80, AEAD_AES_256_GCM).
//!
//! `benches/compare_libsrtp2.sh` runs the same loops through libsrtp2
//! (`benches/libsrtp2/bench.c`, same keys and packets) and prints the
//! ratio. Per packet both sides copy the packet into a buffer and work on
//! it in place; unprotect cycles through 1024 packets protected beforehand
//! and forgets the stream after each cycle (replay protection would
//! refuse a second round).

mod common;

use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use srtp_transport::{Context, MasterKey, Options, Suite};

const SSRC: u32 = 0x1234_5678;
const RING: usize = 1024;

/// Master key 00..0f (00..1f for AES-256), salt a0 a1 ... (14 bytes, 12 for GCM): as bench.c.
fn context(suite: Suite) -> Context {
    let mk = MasterKey {
        key: (0..suite.key_len() as u8).collect(),
        salt: (0..suite.salt_len() as u8).map(|i| 0xa0 + i).collect(),
        mki: None,
        lifetime: None,
    };
    Context::new(suite, &mk, Options::default()).expect("context")
}

/// 12-byte header (PT 0, timestamp seq * 160), payload byte i = i * 7 + 1.
fn packet(seq: u16, payload: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload + 32);
    p.extend_from_slice(&[0x80, 0]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..payload).map(|i| (i * 7 + 1) as u8));
    p
}

fn srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm, Suite::AesCm256HmacSha1_80, Suite::AeadAes256Gcm] {
        for size in [160usize, 1200] {
            let clear = packet(0, size);
            g.bench_with_input(BenchmarkId::new(format!("protect_{}", suite.sdes_name()), size), &clear, |b, clear| {
                let mut tx = context(suite);
                let mut buf = Vec::with_capacity(clear.len() + 32);
                let mut seq = 0u16;
                b.iter(|| {
                    buf.clear();
                    buf.extend_from_slice(clear);
                    buf[2..4].copy_from_slice(&seq.to_be_bytes());
                    seq = seq.wrapping_add(1);
                    tx.protect_rtp(black_box(&mut buf)).expect("protect");
                });
            });

            let mut tx = context(suite);
            let ring: Vec<Vec<u8>> = (0..RING as u16)
                .map(|seq| {
                    let mut p = packet(seq, size);
                    tx.protect_rtp(&mut p).expect("protect");
                    p
                })
                .collect();
            g.bench_with_input(BenchmarkId::new(format!("unprotect_{}", suite.sdes_name()), size), &ring, |b, ring| {
                let mut rx = context(suite);
                let mut buf = Vec::with_capacity(ring[0].len());
                let mut k = 0usize;
                b.iter(|| {
                    let i = k % RING;
                    if i == 0 && k > 0 {
                        rx.reset_streams();
                    }
                    k += 1;
                    buf.clear();
                    buf.extend_from_slice(&ring[i]);
                    rx.unprotect_rtp(black_box(&mut buf)).expect("unprotect");
                });
            });
        }
    }
    g.finish();
}

fn main() {
    common::run(&[srtp]);
}
