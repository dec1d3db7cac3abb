//! SRTP and SRTCP unprotect of hostile packets, for every suite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srtp_transport::{Context, MasterKey, Options, Suite};

fuzz_target!(|data: &[u8]| {
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm] {
        let mk = MasterKey { key: vec![7; 16], salt: vec![9; suite.salt_len()], mki: None, lifetime: None };
        let Ok(mut ctx) = Context::new(suite, &mk, Options::default()) else { return };
        let mut p = data.to_vec();
        let _ = ctx.unprotect_rtp(&mut p);
        let mut p = data.to_vec();
        let _ = ctx.unprotect_rtcp(&mut p);
        // A valid packet after the garbage still round-trips.
        let mut clear = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];
        clear.extend_from_slice(data.get(..data.len().min(64)).unwrap_or_default());
        let mut tx = Context::new(suite, &mk, Options::default()).expect("ctx");
        let mut p = clear.clone();
        if tx.protect_rtp(&mut p).is_ok() {
            let mut rx = Context::new(suite, &mk, Options::default()).expect("ctx");
            rx.unprotect_rtp(&mut p).expect("own packet");
            assert_eq!(p, clear);
        }
    }
});
