//! The gateway binary as an operator meets it: configuration errors, `--check`, `/health` and
//! `/metrics`, HTTPS on the REST port, and the embedded default (demo mode) with dial working.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs the binary to its exit (10 s at most): (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut c = command();
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gateway {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_exit_2_naming_the_key() {
    let dir = temp_dir("config-errors");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let cases = [
        ("bad-listen.toml", "demo = true\n[rest]\nlisten = \"nonsense\"\n", "rest.listen"),
        ("unknown-key.toml", "demo = true\n[sip]\nudp_bnd = \"127.0.0.1:0\"\n", "sip.udp_bnd"),
        ("bad-range.toml", "demo = true\n[media]\nrtp_ports = \"50000-40000\"\n", "media.rtp_ports"),
        ("bad-duration.toml", "demo = true\n[timeouts]\nno_rtp = \"soon\"\n", "timeouts.no_rtp"),
        ("no-projects.toml", "[rest]\nlisten = \"127.0.0.1:0\"\n", "projects"),
        (
            "bad-secret.toml",
            "[[projects]]\napi_key = \"123456\"\napi_secret = \"s3cret-value.pem\"\n",
            "projects[0].api_secret",
        ),
        (
            "bad-callback.toml",
            "[[projects]]\napi_key = \"123456\"\napi_secret = \"0123456789abcdef\"\ncallback_url = \"ftp://x/\"\n",
            "projects[0].callback_url",
        ),
        ("not-toml.toml", "[rest\nlisten = 1\n", "not valid TOML"),
    ];
    for (name, text, key) in cases {
        let file = write(name, text);
        let (code, _, stderr) = run(&["--config", file.to_str().expect("utf-8")], &[]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains(key), "{name}: the message names {key}: {stderr}");
        assert!(stderr.contains(name), "{name}: the message names the file: {stderr}");
        assert!(!stderr.contains("s3cret-value"), "{name}: a secret in the message: {stderr}");
    }
    // The environment and flags are named too.
    let (code, _, stderr) = run(&[], &[("GATEWAY_SIP_UDP_BIND", "not-an-address")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("sip.udp_bind") && stderr.contains("GATEWAY_SIP_UDP_BIND"), "{stderr}");
    let (code, _, stderr) = run(&["--log-format", "xml"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("log.format") && stderr.contains("--log-format"), "{stderr}");
    let (code, _, stderr) = run(&["--no-such-flag"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    // A file named by GATEWAY_CONFIG that does not exist.
    let (code, _, stderr) = run(&[], &[("GATEWAY_CONFIG", "/nonexistent/gateway.toml")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/gateway.toml"), "{stderr}");
    // Bytes that are not UTF-8, in an argument or in a GATEWAY_* variable: exit 2, no panic, and
    // never the demo in place of the configuration that was meant.
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"/tmp/gateway-\xff.toml");
    for (arg, var) in [(Some(odd), None), (None, Some(odd))] {
        let mut c = command();
        c.arg("--check").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(a) = arg {
            c.arg("--config").arg(a);
        }
        if let Some(v) = var {
            c.env("GATEWAY_CONFIG", v);
        }
        let out = c.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("UTF-8") && !stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_prints_the_effective_configuration_without_secrets() {
    let dir = temp_dir("check");
    let cfg = config(&dir, "http://127.0.0.1:9/cb", "41800-41899", &[]);
    let (code, stdout, stderr) = run(
        &["--config", cfg.to_str().expect("utf-8"), "--check", "--sip-public-ip", "192.0.2.7"],
        &[("GATEWAY_MEDIA_PUBLIC_IP", "192.0.2.8")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("sip.public_ip = 192.0.2.7") && stdout.contains("media.public_ip = 192.0.2.8"), "{stdout}");
    assert!(stdout.contains(KEY) && stdout.contains("(signed)"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stdout.contains(CALLBACK_SECRET), "{stdout}");
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("GATEWAY_REST_LISTEN") && stdout.contains("--media-rtp-ports"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn health_and_metrics_answer() {
    let dir = temp_dir("health");
    let mut gw = Gateway::start(&config(&dir, "http://127.0.0.1:9/cb", "41900-41999", &[("log.format", "\"json\"")]));
    let r = gw.http("GET", "/health", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.head.contains("content-type: application/json"), "{}", r.head);
    let health: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["activeCalls"], 0);
    let r = gw.http("GET", "/metrics", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-type: text/plain; version=0.0.4"), "{}", r.head);
    for name in [
        "gateway_calls_active 0",
        "gateway_call_setups_total 0",
        "gateway_callbacks_backlog 0",
        "gateway_callbacks_delivered_total 0",
        "gateway_webrtc_peers 0",
        "gateway_sessions_live 0",
        "# TYPE gateway_call_failures_total counter",
    ] {
        assert!(r.body.contains(name), "{name} in\n{}", r.body);
    }
    // Everything else is the REST API.
    let r = gw.http("POST", "/session/create", &[], "");
    assert_eq!(r.status, 403, "{}", r.body);
    let _ = gw.create_session();
    assert_eq!(gw.metric("gateway_sessions_known"), Some(1.0));
    // The demo page exists only in demo mode.
    assert_eq!(gw.http("GET", "/demo", &[], "").status, 404);
    assert_eq!(gw.terminate().code(), Some(0));
    // log.format = "json": one JSON object per log line.
    let logs = gw.logs();
    let first = logs.lines().next().expect("a log line");
    let line: Value = serde_json::from_str(first).expect("a JSON log line");
    assert!(line.get("level").is_some(), "{first}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A TLS connection to `addr` trusting only `cert` (issued for `localhost`), reads bounded to 10 s.
fn tls_to(
    addr: std::net::SocketAddr,
    cert: &rustls_pki_types::CertificateDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn https_when_a_certificate_is_configured() {
    let dir = temp_dir("https");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).expect("write key");
    let (cert_value, key_value) =
        (format!("{:?}", cert_file.display().to_string()), format!("{:?}", key_file.display().to_string()));
    let cfg = config(
        &dir,
        "http://127.0.0.1:9/cb",
        "42000-42099",
        &[
            ("rest.tls_cert", &cert_value),
            ("rest.tls_key", &key_value),
            ("sip.tls_cert", &cert_value),
            ("sip.tls_key", &key_value),
            ("sip.tls_bind", "\"127.0.0.1:0\""),
        ],
    );
    let mut gw = Gateway::start(&cfg);
    assert!(gw.output().contains("REST API:    https://"), "{}", gw.output());
    // The SIP TLS listener: a far end's request over its own TLS connection gets its answer there
    // (an OPTIONS outside any dialog of ours: refused, statelessly).
    let sip_tls: std::net::SocketAddr = gw
        .output()
        .lines()
        .find_map(|l| l.trim().strip_prefix("SIP:"))
        .and_then(|l| l.split(", ").find_map(|p| p.trim().strip_prefix("tls ")))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("a SIP TLS listener in the banner: {}", gw.output()));
    {
        let mut tls = tls_to(sip_tls, cert.cert.der());
        let options = format!(
            "OPTIONS sip:gw@{sip_tls};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bKopt1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:gw@{sip_tls}>\r\nCall-ID: probe-1\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        tls.write_all(options.as_bytes()).expect("write");
        let mut buf = [0u8; 2048];
        let n = tls.read(&mut buf).expect("an answer over TLS");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("SIP/2.0 "), "{answer}");
        assert!(answer.contains("Call-ID: probe-1"), "{answer}");
    }

    let mut tls = tls_to(std::net::SocketAddr::from(([127, 0, 0, 1], gw.port)), cert.cert.der());
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error in rustls; what was read still counts.
    let _ = tls.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"status\":\"ok\""), "{}", r.body);
    // Plain HTTP on the HTTPS port gets nowhere.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    plain.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("\"status\""), "health over plain HTTP");
    assert_eq!(gw.terminate().code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

/// No file, no settings but the REST port (3000 may be taken on a test machine): demo mode as
/// the README's first command starts it, and a dial through it reaches sipp.
#[test]
fn demo_mode_prints_its_project_and_dials() {
    let started = Instant::now();
    let mut c = command();
    c.args(["--listen", "127.0.0.1:0"]);
    let mut gw = Gateway::spawn(c);
    let out = gw.output();
    assert!(out.contains("demo mode"), "{out}");
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{label} in\n{out}"))
    };
    let (key, secret) = (field("API key:"), field("API secret:"));
    let sip_line = field("SIP:");
    assert!(sip_line.starts_with("udp 127.0.0.1:"), "{sip_line}");
    let store = field("Callbacks:");
    let store = store.trim_start_matches("store ").split(';').next().expect("path").to_owned();
    assert!(std::path::Path::new(&store).exists(), "the demo store {store}");
    assert_eq!(gw.http("GET", "/demo", &[], "").status, 200);

    let auth = || vec![("X-OPENTOK-AUTH", rest_auth_for(&key, &secret))];
    let r = gw.http("POST", "/session/create", &auth(), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("json");
    let session = v[0]["session_id"].as_str().expect("session").to_owned();
    let sipp = Sipp::start("remote_bye");
    let body = serde_json::json!({"sessionId": session, "token": client_token_for(&key, &secret, &session),
        "sip": {"uri": sipp.uri("erin")}});
    let mut headers = auth();
    headers.push(("Content-Type", "application/json".into()));
    let r = gw.http("POST", &format!("/v2/project/{key}/dial"), &headers, &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(Duration::from_secs(30), "the demo call to end normally", || {
        (gw.metric("gateway_calls_ended_total{reason_code=\"700\"}") == Some(1.0)).then_some(())
    });
    // No callback URL for the demo project: its events are dropped, not queued.
    eventually(Duration::from_secs(5), "the call's nine events dropped", || {
        gw.metric("gateway_callbacks_dropped_total").filter(|n| *n >= 9.0)
    });
    assert_eq!(gw.metric("gateway_callbacks_backlog"), Some(0.0));
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.logs());
    assert!(!std::path::Path::new(&store).exists(), "the demo store is removed at exit");
    eprintln!("demo_mode_prints_its_project_and_dials: {:?}", started.elapsed());
}

/// `--dead-letters list|replay|purge` on a stopped gateway's callback store: what was given up is
/// listed (one JSON object a line, the body as JSON), queued again for the next start, or
/// deleted.
#[test]
fn dead_letters_are_listed_replayed_and_purged() {
    use callbacks::{CallbackConfig, Callbacks, Delivery, ProjectCallbacks};
    let dir = temp_dir("dead-letters");
    let store = dir.join("callbacks.redb");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Two events given up at their first failure (nobody listens on the URL).
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let mut config = CallbackConfig { max_attempts: Some(1), ..CallbackConfig::default() };
    config.projects.insert("123456".into(), ProjectCallbacks::new(format!("http://{refusing}/cb")));
    // Opens the store with `config`, enqueues `events`, waits for two dead letters.
    let bury = |config: CallbackConfig, events: u64| {
        rt.block_on(async {
            let cb = Callbacks::open(&store, config).await.expect("open");
            for n in 0..events {
                let body = serde_json::json!({"event": "callCreated", "n": n});
                cb.enqueue(Delivery { project: "123456".into(), order_key: "call".into(), body }).expect("enqueue");
            }
            let end = Instant::now() + Duration::from_secs(20);
            while cb.stats().dead_letters < 2 && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cb.shutdown().await;
        })
    };
    bury(config.clone(), 2);
    let toml = dir.join("gateway.toml");
    std::fs::write(
        &toml,
        format!(
            "[callbacks]\nstore = \"{}\"\n[[projects]]\napi_key = \"123456\"\napi_secret = \"0123456789abcdef\"\n",
            store.display()
        ),
    )
    .expect("write");
    let config_arg = toml.to_str().expect("utf-8");
    let (code, out, err) = run(&["--config", config_arg, "--dead-letters", "list"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(listed.len(), 2, "{out}");
    assert_eq!((listed[1]["project"].as_str(), listed[1]["body"]["n"].as_u64()), (Some("123456"), Some(1)));
    assert!(err.contains("2 dead letters"), "{err}");
    let (code, _, err) = run(&["--config", config_arg, "--dead-letters", "replay"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("2 dead letters queued again"), "{err}");
    let (_, out, _) = run(&["--config", config_arg, "--dead-letters", "list"], &[]);
    assert!(out.trim().is_empty(), "{out}");
    let backlog = rt.block_on(async {
        let cb = Callbacks::open(&store, CallbackConfig::default()).await.expect("open");
        let backlog = cb.stats().backlog;
        cb.shutdown().await;
        backlog
    });
    assert_eq!(backlog, 2, "queued for the next start");
    // Given up again, then deleted.
    let (code, _, err) = run(&["--config", config_arg, "--dead-letters", "purge"], &[]);
    assert_eq!((code, err.contains("0 dead letters deleted")), (Some(0), true), "{err}");
    bury(config, 0);
    let (code, _, err) = run(&["--config", config_arg, "--dead-letters", "purge"], &[]);
    assert_eq!((code, err.contains("2 dead letters deleted")), (Some(0), true), "{err}");
    let (code, _, err) = run(&["--config", config_arg, "--dead-letters", "everything"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("list, replay or purge"), "{err}");
    // Demo mode has no store to work on (its own is a file of one run).
    let (code, _, err) = run(&["--demo", "--dead-letters", "list"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("callbacks.store"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
