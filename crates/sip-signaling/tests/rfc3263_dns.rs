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
    std::thread::sleep(Duration::from_millis(300));
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
