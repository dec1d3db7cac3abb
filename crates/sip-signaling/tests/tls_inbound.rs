//! SIP over TLS both ways, on real sockets: we call a far end over TLS, and it ends the call with
//! a BYE over a connection of its own, to the TLS listener our Contact names (RFC 3261 §26.2:
//! a far end may open its own connection rather than reuse ours). Our Via asks for reuse too
//! (RFC 5923 `alias`).

use bytes::Bytes;
use sip_signaling::driver::{self, Dial, DriverConfig, TlsOptions};
use sip_signaling::{CallEvent, EndReason, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate for 127.0.0.1 (self-signed): the server configuration, and where its
/// certificate is written as PEM (for the other side to trust it).
fn server(name: &str) -> (Arc<rustls::ServerConfig>, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("cert");
    let path = std::env::temp_dir().join(format!("sip-tls-{name}-{}.pem", std::process::id()));
    std::fs::write(&path, cert.pem()).expect("write pem");
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .expect("server config");
    (Arc::new(config), path)
}

/// Reads one SIP message (headers and a body of `Content-Length`) from `s`.
async fn read_message<S: AsyncReadExt + Unpin>(s: &mut S, pending: &mut Vec<u8>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(pending).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:").or_else(|| l.strip_prefix("l:")))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if text.len() >= end + 4 + length {
                let message = text[..end + 4 + length].to_owned();
                pending.drain(..end + 4 + length);
                return message;
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("a message within 5 s").expect("read");
        assert!(n > 0, "connection closed; got so far: {text}");
        pending.extend_from_slice(&buf[..n]);
    }
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("{name} in {message}"))
}

#[tokio::test]
async fn a_far_end_reaches_our_tls_listener_with_its_own_connection() {
    let (ours, our_pem) = server("gateway");
    let (theirs, their_pem) = server("far-end");
    let cfg = DriverConfig {
        tls_bind: Some("127.0.0.1:0".parse().expect("addr")),
        tls_server: Some(ours),
        tls: TlsOptions { ca_file: Some(their_pem.clone()), only_ca_file: true, ..TlsOptions::default() },
        keepalive_interval: None,
        ..DriverConfig::default()
    };
    let ua = driver::start(cfg).await.expect("driver");
    let tls_addr =
        ua.local_addrs().iter().find(|(t, _)| *t == Transport::Tls).map(|(_, a)| *a).expect("a TLS listener");
    let tcp_addr = ua.local_addrs().iter().find(|(t, _)| *t == Transport::Tcp).map(|(_, a)| *a).expect("TCP");
    assert_ne!(tls_addr, tcp_addr, "TLS has its own listener");

    // The far end: a TLS listener of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut call = ua
        .call(Dial {
            uri: format!("sip:far@127.0.0.1:{port};transport=tls"),
            sdp: Some(Bytes::from_static(b"v=0\r\n")),
            ..Dial::default()
        })
        .await
        .expect("dial");
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connect").expect("accept");
    let mut ours_in = tokio_rustls::TlsAcceptor::from(theirs).accept(tcp).await.expect("handshake");
    let mut pending = Vec::new();
    let invite = read_message(&mut ours_in, &mut pending).await;
    assert!(invite.starts_with("INVITE sip:far@127.0.0.1"), "{invite}");
    let via = header(&invite, "Via");
    assert!(via.starts_with(&format!("SIP/2.0/TLS {tls_addr}")) && via.contains(";alias"), "{via}");
    let contact = header(&invite, "Contact");
    assert!(contact.contains(&format!("@{tls_addr};transport=tls")), "the Contact names the TLS listener: {contact}");
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=far1\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:far@127.0.0.1:{port};transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
        header(&invite, "From"),
        header(&invite, "To"),
        header(&invite, "Call-ID"),
        header(&invite, "CSeq"),
    );
    ours_in.write_all(ok.as_bytes()).await.expect("200");
    let ack = read_message(&mut ours_in, &mut pending).await;
    assert!(ack.starts_with("ACK "), "{ack}");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), call.events.recv()).await.expect("event").expect("open") {
            CallEvent::Answered { .. } => break,
            _ => continue,
        }
    }

    // Its BYE over a connection of its own, to our TLS listener, our certificate checked.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&our_pem).expect("pem");
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("cert");
    roots.add(der).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.expect("connect to our TLS listener");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut theirs_out =
        tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.expect("our handshake");
    let bye = format!(
        "BYE sip:gw@{tls_addr};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKfarbye\r\nMax-Forwards: 70\r\nFrom: {};tag=far1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "To"),
        header(&invite, "From"),
        header(&invite, "Call-ID"),
    );
    theirs_out.write_all(bye.as_bytes()).await.expect("BYE");
    let mut pending = Vec::new();
    let answer = read_message(&mut theirs_out, &mut pending).await;
    assert!(answer.starts_with("SIP/2.0 200"), "the BYE answered on its connection: {answer}");
    match tokio::time::timeout(Duration::from_secs(5), call.events.recv()).await.expect("event").expect("open") {
        CallEvent::Ended { reason: EndReason::RemoteHangup } => {}
        other => panic!("expected the far end's hang-up, got {other:?}"),
    }
    ua.shutdown().await;
    let _ = std::fs::remove_file(our_pem);
    let _ = std::fs::remove_file(their_pem);
}
