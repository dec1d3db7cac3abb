//! SRTP by SDES against baresip (Debian `baresip-core`), end to end: our
//! SIP call (sip-signaling), our offer/answer (sdp-negotiation), our SRTP
//! (srtp-transport). baresip plays a 440 Hz tone and records what it
//! decodes; we send 1000 Hz. Both tones must come out at the other end.

use bytes::Bytes;
use interop_tests::{free_port, read_wav, sine, tone_ratio, ulaw_decode, ulaw_encode, Baresip};
use rand::RngCore;
use sdp_negotiation::{Codec, LocalSession, MediaSecurity, OfferOptions, SdesKey};
use sip_signaling::driver::{self, Dial, DriverConfig};
use sip_signaling::CallEvent;
use srtp_transport::{sdes, Context, LegConfig, MasterKey, MediaLeg, Options, Received, RtpHeader, RtpPacket, Suite};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

async fn next_event(call: &mut driver::Call) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(15), call.events.recv()).await.expect("event in time").expect("open")
}

#[tokio::test]
async fn sdes_srtp_tone_both_ways() {
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        run(suite).await;
    }
}

async fn run(suite: Suite) {
    let sip_port = free_port();
    let bs = Baresip::start(&format!("sdes-{suite:?}"), sip_port, "srtp-mand", 440);
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("media socket");
    let media_port = media.local_addr().expect("addr").port();

    let mut raw = vec![0u8; suite.key_len() + suite.salt_len()];
    rand::thread_rng().fill_bytes(&mut raw);
    let ours = MasterKey { key: raw[..16].to_vec(), salt: raw[16..].to_vec(), mki: None, lifetime: None };
    let opts = OfferOptions {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        audio_port: media_port,
        audio_codecs: vec![Codec::Pcmu],
        rtcp_mux: false,
        security: MediaSecurity::Sdes(vec![SdesKey {
            suite: suite.sdes_name().into(),
            key_params: sdes::format_key_params(&ours),
        }]),
        ..OfferOptions::default()
    };
    let mut session = LocalSession::new(opts, 7);
    let (ua, mut call, agreement) = dial_and_agree(&mut session, sip_port, &bs).await;
    let audio = agreement.audio.expect("audio");
    assert_eq!(audio.codec, Codec::Pcmu);
    let keys = audio.sdes.clone().expect("SDES agreed");
    assert_eq!(keys.suite, suite.sdes_name());
    let theirs = sdes::parse_key_params(suite, &keys.remote_key_params).expect("their key");
    let inbound = Context::new(suite, &theirs, Options::default()).expect("in");
    let outbound = Context::new(suite, &ours, Options::default()).expect("out");
    let mut leg =
        MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: audio.rtcp_mux }, audio.remote_rtp, audio.remote_rtcp);
    leg.set_srtp(inbound, outbound);

    let received = exchange_tones(&mut leg, &media, audio.payload_type, None).await;
    ua.hangup(call.handle).await.expect("hangup");
    let _ = next_event(&mut call).await;
    ua.shutdown().await;
    assert_tones(&leg, &received, &bs);
}

/// Calls baresip with our offer and reads its answer into an agreement.
async fn dial_and_agree(
    session: &mut LocalSession,
    sip_port: u16,
    bs: &Baresip,
) -> (driver::SipHandle, driver::Call, sdp_negotiation::Agreement) {
    let offer = session.create_offer();
    let ua = driver::start(DriverConfig::default()).await.expect("driver");
    let mut call = ua
        .call(Dial {
            uri: format!("sip:bs@127.0.0.1:{sip_port}"),
            sdp: Some(Bytes::from(offer.to_bytes())),
            ..Dial::default()
        })
        .await
        .expect("dial");
    let answer = loop {
        match next_event(&mut call).await {
            CallEvent::Answered { sdp } => break sdp.expect("SDP answer"),
            CallEvent::Trying | CallEvent::Ringing { .. } | CallEvent::Progress { .. } => {}
            other => panic!("unexpected {other:?}; baresip log:\n{}", bs.log()),
        }
    };
    let agreement =
        session.process_answer(&answer).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&answer)));
    (ua, call, agreement)
}

/// Two seconds of media both ways: 1000 Hz out, whatever comes in decoded.
/// DTLS records that still arrive are passed to `dtls` (retransmissions).
async fn exchange_tones(
    leg: &mut MediaLeg,
    media: &tokio::net::UdpSocket,
    pt: u8,
    dtls: Option<&tokio::sync::mpsc::Sender<Vec<u8>>>,
) -> Vec<i16> {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 2048];
    let ssrc = rand::random::<u32>();
    for n in 0..100u32 {
        let pcm = sine(1000.0, 8000.0, n as usize * 160, 160, 8000.0);
        let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
        let mut pkt = Vec::new();
        RtpHeader { marker: n == 0, payload_type: pt, seq: n as u16, timestamp: n * 160, ssrc, ..Default::default() }
            .write(&payload, 0, &mut pkt)
            .expect("rtp");
        if let Some((to, bytes)) = leg.send_rtp(Instant::now(), pkt).expect("protect") {
            media.send_to(&bytes, to).await.expect("send");
        }
        let deadline = tokio::time::Instant::from_std(start + Duration::from_millis(20 * u64::from(n + 1)));
        while let Ok(Ok((len, from))) = tokio::time::timeout_at(deadline, media.recv_from(&mut buf)).await {
            match leg.handle_datagram(Instant::now(), from, buf[..len].to_vec()) {
                Ok(Received::Rtp(clear)) => {
                    if let Ok(p) = RtpPacket::parse(&clear) {
                        received.extend(p.payload().iter().map(|b| ulaw_decode(*b)));
                    }
                }
                Ok(Received::Dtls(rec)) => {
                    if let Some(tx) = dtls {
                        let _ = tx.try_send(rec);
                    }
                }
                _ => {}
            }
        }
    }
    received
}

/// baresip's 440 Hz came out of our SRTP, and our 1000 Hz out of its.
fn assert_tones(leg: &MediaLeg, received: &[i16], bs: &Baresip) {
    assert!(
        leg.received().packets > 50,
        "SRTP from baresip authenticated and decrypted: {:?}, rejected {}; log:\n{}",
        leg.received(),
        leg.rejected(),
        bs.log()
    );
    assert_eq!(leg.rejected(), 0, "every packet from baresip authenticated");
    let tail = &received[received.len().saturating_sub(4000)..];
    let r = tone_ratio(tail, 440.0, 8000.0);
    assert!(r > 0.5, "baresip's 440 Hz tone came through SRTP (ratio {r:.2})");
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let best = recs
        .iter()
        .filter_map(|p| read_wav(p))
        .map(|(rate, s)| {
            let tail = &s[s.len().saturating_sub(rate as usize)..];
            tone_ratio(tail, 1000.0, f64::from(rate))
        })
        .fold(0.0f64, f64::max);
    assert!(
        best > 0.5,
        "our 1000 Hz tone reached baresip through SRTP (ratio {best:.2}, files {recs:?}); log:\n{}",
        bs.log()
    );
}

/// DTLS-SRTP against baresip: our offer is actpass with our fingerprint,
/// the handshake runs on the media port (RFC 7983 demultiplexing), the
/// peer's certificate must match its SDP fingerprint, and the exported keys
/// carry the tones both ways.
#[tokio::test]
async fn dtls_srtp_tone_both_ways() {
    use srtp_transport::dtls::{handshake, DtlsIdentity, DtlsParams, DtlsRole};
    let sip_port = free_port();
    let bs = Baresip::start("dtls", sip_port, "dtls_srtp", 440);
    let media = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("media socket"));
    let media_port = media.local_addr().expect("addr").port();
    let identity = DtlsIdentity::generate().expect("certificate");
    let opts = OfferOptions {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        audio_port: media_port,
        audio_codecs: vec![Codec::Pcmu],
        rtcp_mux: false,
        security: MediaSecurity::Dtls { fingerprint: identity.fingerprint().to_owned() },
        ..OfferOptions::default()
    };
    let mut session = LocalSession::new(opts, 8);
    let (ua, mut call, agreement) = dial_and_agree(&mut session, sip_port, &bs).await;
    let audio = agreement.audio.expect("audio");
    let dtls = audio.dtls.clone().expect("DTLS agreed");
    let remote = audio.remote_rtp.expect("remote address");
    let role = if dtls.local_setup == sdp_negotiation::Setup::Active { DtlsRole::Client } else { DtlsRole::Server };
    let mut leg =
        MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: audio.rtcp_mux }, Some(remote), audio.remote_rtcp);

    let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let sender = media.clone();
    let pump = tokio::spawn(async move {
        while let Some(p) = out_rx.recv().await {
            let _ = sender.send_to(&p, remote).await;
        }
    });
    let id2 = identity.clone();
    let fp = dtls.remote_fingerprint.clone();
    let suites = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm];
    let mut hs = tokio::spawn(async move {
        handshake(
            &id2,
            DtlsParams { role, remote_fingerprint: &fp, suites: &suites, remote, timeout: Duration::from_secs(10) },
            in_rx,
            out_tx,
        )
        .await
    });
    let mut buf = vec![0u8; 4096];
    let (keys, association) = loop {
        tokio::select! {
            r = &mut hs => break r.expect("join").unwrap_or_else(|e| panic!("handshake as {role:?}: {e}; log:\n{}", bs.log())),
            r = media.recv_from(&mut buf) => {
                let (n, from) = r.expect("recv");
                if let Ok(Received::Dtls(rec)) = leg.handle_datagram(Instant::now(), from, buf[..n].to_vec()) {
                    let _ = in_tx.send(rec).await;
                }
            }
        }
    };
    let inbound = Context::new(keys.suite, &keys.remote, Options::default()).expect("in");
    let outbound = Context::new(keys.suite, &keys.local, Options::default()).expect("out");
    leg.set_srtp(inbound, outbound);
    let received = exchange_tones(&mut leg, &media, audio.payload_type, Some(&in_tx)).await;
    ua.hangup(call.handle).await.expect("hangup");
    let _ = next_event(&mut call).await;
    ua.shutdown().await;
    association.close().await;
    pump.abort();
    assert_tones(&leg, &received, &bs);
}
