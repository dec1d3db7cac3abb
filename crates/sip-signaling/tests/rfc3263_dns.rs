//! RFC 3263 server location against a real DNS server (dnsmasq, Debian
//! package `dnsmasq-base`) on loopback: NAPTR, then SRV, then A records;
//! and a call placed through an SRV-resolved name to sipp.

use bytes::Bytes;
use sip_signaling::driver::{self, Dial, DriverConfig};
use sip_signaling::{CallEvent, EndReason, Target, Transport};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).expect("port")
}

fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn dnsmasq(port: u16, records: &[String]) -> Proc {
    let ok = Command::new("sh")
        .arg("-c")
        .arg("command -v dnsmasq")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`dnsmasq` is missing: install the Debian package `dnsmasq-base` (scripts/test-all does)");
    let mut cmd = Command::new("dnsmasq");
    cmd.args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon", "--bind-interfaces"])
        .args(["--listen-address=127.0.0.1", "--conf-file=/dev/null", "--user=root", "--pid-file="])
        .arg(format!("--port={port}"))
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn dnsmasq");
    // Until its UDP socket is bound (in /proc, without a query): a fixed wait was too short on a
    // loaded machine, and the first query then timed out.
    let bound = format!("0100007F:{port:04X}");
    for _ in 0..250 {
        let udp = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if udp.lines().any(|l| l.split_whitespace().nth(1) == Some(bound.as_str())) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(child)
}

/// sipp answering one call (tests/sipp/answer.xml) on 127.0.0.1:`port`
/// over `transport` (`u1` UDP, `t1` TCP).
fn answering_sipp(name: &str, port: u16, transport: &str) -> Proc {
    let ok =
        Command::new("sh").arg("-c").arg("command -v sipp").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "`sipp` is missing: install the Debian package `sip-tester`");
    let dir = std::env::temp_dir().join(format!("sip-dns-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/answer.xml");
    Proc(
        Command::new("sipp")
            .arg("-sf")
            .arg(&scenario)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                transport,
                "-m",
                "1",
                "-timeout",
                "20s",
                "-nostdin",
            ])
            .args(["-mp", &free_port().to_string()])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp"),
    )
}

#[tokio::test]
async fn naptr_srv_and_a_records() {
    let dns_port = free_udp_port();
    let records = vec![
        // NAPTR says TCP first for sip.test.
        "--naptr-record=sip.test,10,50,S,SIP+D2T,,_sip._tcp.sip.test".to_string(),
        "--naptr-record=sip.test,20,50,S,SIP+D2U,,_sip._udp.sip.test".to_string(),
        "--srv-host=_sip._tcp.sip.test,pbx1.sip.test,5071,10,0".to_string(),
        "--srv-host=_sip._udp.sip.test,pbx1.sip.test,5072,10,0".to_string(),
        // No NAPTR: SRV for UDP with two priorities.
        "--srv-host=_sip._udp.srvonly.test,b.srvonly.test,5082,20,0".to_string(),
        "--srv-host=_sip._udp.srvonly.test,a.srvonly.test,5081,10,0".to_string(),
        "--host-record=pbx1.sip.test,127.0.0.11".to_string(),
        "--host-record=a.srvonly.test,127.0.0.21".to_string(),
        "--host-record=b.srvonly.test,127.0.0.22".to_string(),
        "--host-record=plain.test,127.0.0.31".to_string(),
    ];
    let _dns = dnsmasq(dns_port, &records);
    let cfg =
        DriverConfig { dns_server: Some(SocketAddr::from(([127, 0, 0, 1], dns_port))), ..DriverConfig::default() };
    let ua = driver::start(cfg).await.expect("driver");
    let t = |tp, a: &str, name: &str| Target {
        transport: tp,
        addr: a.parse().expect("addr"),
        server_name: Some(name.into()),
    };

    let got = ua.resolve("sip:svc@sip.test").await.expect("naptr");
    assert_eq!(got[0], t(Transport::Tcp, "127.0.0.11:5071", "sip.test"), "{got:?}");

    let got = ua.resolve("sip:svc@srvonly.test").await.expect("srv");
    assert_eq!(
        got,
        vec![
            t(Transport::Udp, "127.0.0.21:5081", "srvonly.test"),
            t(Transport::Udp, "127.0.0.22:5082", "srvonly.test")
        ]
    );

    let got = ua.resolve("sip:svc@plain.test").await.expect("a");
    assert_eq!(got, vec![t(Transport::Udp, "127.0.0.31:5060", "plain.test")]);

    let got = ua.resolve("sip:svc@plain.test:5099;transport=tcp").await.expect("port");
    assert_eq!(got, vec![t(Transport::Tcp, "127.0.0.31:5099", "plain.test")]);

    assert!(ua.resolve("sip:svc@missing.test").await.is_err());
    ua.shutdown().await;
}

#[tokio::test]
async fn call_through_srv_name() {
    let sipp_port = free_port();
    let sipp = answering_sipp("srv", sipp_port, "u1");
    let dns_port = free_udp_port();
    let _dns = dnsmasq(
        dns_port,
        &[
            format!("--srv-host=_sip._udp.carrier.test,edge.carrier.test,{sipp_port},10,0"),
            "--host-record=edge.carrier.test,127.0.0.1".to_string(),
        ],
    );
    let cfg =
        DriverConfig { dns_server: Some(SocketAddr::from(([127, 0, 0, 1], dns_port))), ..DriverConfig::default() };
    let ua = driver::start(cfg).await.expect("driver");
    let sdp = Bytes::from_static(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n",
    );
    let mut call = ua
        .call(Dial { uri: "sip:service@carrier.test".into(), sdp: Some(sdp), ..Dial::default() })
        .await
        .expect("dial");
    assert_eq!(call.target.addr.port(), sipp_port);
    loop {
        match next_event(&mut call).await {
            CallEvent::Answered { .. } => break,
            CallEvent::Trying | CallEvent::Ringing { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ua.hangup(call.handle).await.expect("hangup");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::LocalHangup });
    ua.shutdown().await;
    drop(sipp);
}

async fn next_event(c: &mut driver::Call) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(20), c.events.recv()).await.expect("event in time").expect("open")
}

/// RFC 3263 section 4.3: the first SRV target refuses the connection, the
/// call goes on to the next one and is answered there.
#[tokio::test]
async fn failover_to_the_next_target() {
    let sipp_port = free_port();
    let dead_port = free_port(); // nothing listens there: connection refused
    let sipp = answering_sipp("failover", sipp_port, "t1");
    let dns_port = free_udp_port();
    let _dns = dnsmasq(
        dns_port,
        &[
            format!("--srv-host=_sip._tcp.failover.test,dead.failover.test,{dead_port},10,0"),
            format!("--srv-host=_sip._tcp.failover.test,live.failover.test,{sipp_port},20,0"),
            "--host-record=dead.failover.test,127.0.0.1".to_string(),
            "--host-record=live.failover.test,127.0.0.1".to_string(),
        ],
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", sipp_port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let cfg =
        DriverConfig { dns_server: Some(SocketAddr::from(([127, 0, 0, 1], dns_port))), ..DriverConfig::default() };
    let ua = driver::start(cfg).await.expect("driver");
    let sdp = Bytes::from_static(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n",
    );
    let mut call = ua
        .call(Dial { uri: "sip:service@failover.test;transport=tcp".into(), sdp: Some(sdp), ..Dial::default() })
        .await
        .expect("dial");
    assert_eq!(call.target.addr.port(), dead_port, "the first attempt goes to the preferred target");
    loop {
        match next_event(&mut call).await {
            CallEvent::Answered { .. } => break,
            CallEvent::Trying | CallEvent::Ringing { .. } => {}
            other => panic!("unexpected {other:?}: the call should have moved to the second target"),
        }
    }
    ua.hangup(call.handle).await.expect("hangup through the caller's handle");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::LocalHangup });
    ua.shutdown().await;
    drop(sipp);
}

/// RFC 5922 §7: a TLS connection serves the name its certificate was checked for. Two domains
/// that resolve to one address (a hosting provider's shared edge, or a spoofed record) do not
/// share a connection: a call to the second gets a connection of its own, checked for its own
/// name, and fails when the certificate does not carry it, instead of riding on the first
/// domain's verified connection.
#[tokio::test]
async fn a_tls_connection_serves_only_the_name_it_was_checked_for() {
    // The far end's certificate names `good.test` only.
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["good.test".to_string()]).expect("params").self_signed(&key).expect("cert");
    let pem = std::env::temp_dir().join(format!("sip-tls-good-test-{}.pem", std::process::id()));
    std::fs::write(&pem, cert.pem()).expect("write pem");
    let server =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();

    let dns_port = free_udp_port();
    let _dns = dnsmasq(
        dns_port,
        &["--host-record=good.test,127.0.0.1".to_string(), "--host-record=other.test,127.0.0.1".to_string()],
    );
    let cfg = DriverConfig {
        dns_server: Some(SocketAddr::from(([127, 0, 0, 1], dns_port))),
        tls: driver::TlsOptions { ca_file: Some(pem.clone()), only_ca_file: true, ..driver::TlsOptions::default() },
        keepalive_interval: None,
        ..DriverConfig::default()
    };
    let ua = driver::start(cfg).await.expect("driver");
    let sdp = Bytes::from_static(b"v=0\r\n");

    // The first call's connection is checked for good.test; its INVITE arrives.
    let _first = ua
        .call(Dial {
            uri: format!("sip:far@good.test:{port};transport=tls"),
            sdp: Some(sdp.clone()),
            ..Dial::default()
        })
        .await
        .expect("dial good.test");
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connect").expect("accept");
    let mut first_conn = acceptor.accept(tcp).await.expect("handshake for good.test");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut first_conn, &mut buf))
        .await
        .expect("the INVITE in time")
        .expect("read");
    assert!(buf[..n].starts_with(b"INVITE sip:far@good.test"), "{}", String::from_utf8_lossy(&buf[..n]));

    // The second, to other.test at the same address: a connection of its own, whose certificate
    // check fails; the call fails at once and nothing more comes on the first connection.
    let mut second = ua
        .call(Dial { uri: format!("sip:far@other.test:{port};transport=tls"), sdp: Some(sdp), ..Dial::default() })
        .await
        .expect("dial other.test");
    let refused = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        acceptor.accept(tcp).await.is_err()
    });
    match next_event(&mut second).await {
        CallEvent::Failed { .. } => {}
        other => panic!("the call to other.test must fail its certificate check, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(5), refused).await.expect("a second connection").expect("task"),
        "its handshake failed"
    );
    let more =
        tokio::time::timeout(Duration::from_millis(300), tokio::io::AsyncReadExt::read(&mut first_conn, &mut buf))
            .await;
    assert!(more.is_err(), "nothing for other.test on good.test's connection: {more:?}");
    ua.shutdown().await;
    let _ = std::fs::remove_file(pem);
}
