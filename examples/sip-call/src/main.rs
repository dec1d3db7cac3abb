//! `sip-call`: dial a SIP URI and print the call's progress.
//!
//! ```text
//! sip-call [options] <sip-uri>
//!   --from <id>            From identity (number, user@host or URI)
//!   --header <Name: value> extra header (repeatable)
//!   --user <u> --password <p>   digest credentials
//!   --ca <file.pem>        trust this CA for TLS (besides the system roots)
//!   --insecure             accept any TLS certificate (testing only)
//!   --hangup-after <secs>  hang up this long after the answer (default: wait for BYE)
//!   --bind <ip:port>       local UDP address (default 127.0.0.1:0; 0.0.0.0:5060 for real use)
//!   --tcp-bind <ip:port>   local TCP listener
//! ```
//! Ctrl-C hangs up. The exit status is 0 when the call was answered.

use sip_signaling::digest::Credentials;
use sip_signaling::driver::{self, Dial, DriverConfig};
use sip_signaling::CallEvent;
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!("usage: sip-call [--from ID] [--header 'Name: value']... [--user U --password P] [--ca FILE] [--insecure] [--hangup-after SECS] [--bind IP:PORT] [--tcp-bind IP:PORT] <sip-uri>");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut dial = Dial::default();
    let mut cfg = DriverConfig::default();
    let (mut user, mut password) = (None, None);
    let mut hangup_after: Option<Duration> = None;
    while let Some(a) = args.next() {
        let mut value = || args.next();
        match a.as_str() {
            "--from" => dial.from = value(),
            "--header" => {
                match value().and_then(|h| h.split_once(':').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))) {
                    Some(h) => dial.headers.push(h),
                    None => return usage(),
                }
            }
            "--user" => user = value(),
            "--password" => password = value(),
            "--ca" => cfg.tls.ca_file = value().map(Into::into),
            "--insecure" => cfg.tls.danger_accept_any_certificate = true,
            "--hangup-after" => match value().and_then(|v| v.parse::<f64>().ok()) {
                Some(s) if s >= 0.0 => hangup_after = Some(Duration::from_secs_f64(s)),
                _ => return usage(),
            },
            "--bind" => match value().and_then(|v| v.parse().ok()) {
                Some(a) => cfg.udp_bind = a,
                None => return usage(),
            },
            "--tcp-bind" => match value().and_then(|v| v.parse().ok()) {
                Some(a) => cfg.tcp_bind = Some(a),
                None => return usage(),
            },
            s if s.starts_with("--") => return usage(),
            _ => dial.uri = a,
        }
    }
    if dial.uri.is_empty() {
        return usage();
    }
    if let (Some(username), Some(password)) = (user, password) {
        dial.credentials = Some(Credentials { username, password });
    }
    let handle = match driver::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let local = handle.local_addrs().iter().find(|(t, _)| *t == sip_signaling::Transport::Udp).map(|(_, a)| a.ip());
    let ip = local.map(|i| i.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    dial.sdp = Some(
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=sip-call\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")
            .into(),
    );
    let mut call = match handle.call(dial).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot dial: {e}");
            return ExitCode::from(1);
        }
    };
    println!("dialling via {}", call.target);
    let mut answered = false;
    let mut hangup_at: Option<tokio::time::Instant> = None;
    loop {
        let sleep = async {
            match hangup_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = call.events.recv() => {
                let Some(ev) = ev else { break };
                match &ev {
                    CallEvent::Answered { sdp } => {
                        answered = true;
                        println!("answered ({} bytes of SDP)", sdp.as_ref().map_or(0, |s| s.len()));
                        if let Some(d) = hangup_after { hangup_at = Some(tokio::time::Instant::now() + d); }
                    }
                    CallEvent::RemoteOffer { sdp, kind } => {
                        println!("remote offer by {kind:?}; answering with our current SDP");
                        let hold = String::from_utf8_lossy(sdp).contains("a=sendonly");
                        let dir = if hold { "recvonly" } else { "sendrecv" };
                        let answer = format!("v=0\r\no=- 1 2 IN IP4 {ip}\r\ns=sip-call\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n");
                        if let Err(e) = handle.answer(call.handle, answer.into()).await { eprintln!("answer failed: {e}"); }
                    }
                    other => println!("{other:?}"),
                }
                if ev.is_final() { break; }
            }
            _ = sleep => {
                hangup_at = None;
                println!("hanging up");
                if let Err(e) = handle.hangup(call.handle).await { eprintln!("hangup: {e}"); }
            }
            _ = tokio::signal::ctrl_c() => {
                println!("hanging up (Ctrl-C)");
                let _ = handle.hangup(call.handle).await;
            }
        }
    }
    handle.shutdown().await;
    if answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
