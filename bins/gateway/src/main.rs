//! The SIP Interconnect gateway binary.
//!
//! With no configuration it starts in demo mode: one demo project with a
//! fresh API key and secret (printed), in-memory state, the REST API on
//! loopback, WebRTC participants through the media router, and the demo page
//! at `/demo`. Dialling is an open issue, and the banner says so.
//!
//! Options: `--listen <ip:port>` (REST and signalling; default 127.0.0.1:3000), `--rtc-listen
//! <ip:port>` (the one UDP socket for every WebRTC peer; default the REST address with any port),
//! `--rtc-public <ip:port>` (repeatable: addresses to advertise as candidates, e.g. a public address
//! forwarded to the UDP socket).

use rand::Rng;
use rest_api::{ApiConfig, DemoConfig, RestApi};
use session::service::{ServiceConfig, SessionService};
use session::{ApiSecret, Project, Projects};
use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let mut rtc_listen: Option<SocketAddr> = None;
    let mut rtc_public: Vec<SocketAddr> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--listen", Some(addr)) => listen = addr,
            ("--rtc-listen", Some(addr)) => rtc_listen = Some(addr),
            ("--rtc-public", Some(addr)) => rtc_public.push(addr),
            _ => {
                eprintln!("usage: gateway [--listen IP:PORT] [--rtc-listen IP:PORT] [--rtc-public IP:PORT]...");
                return ExitCode::from(2);
            }
        }
    }
    let mut rng = rand::thread_rng();
    let api_key = rng.gen_range(10_000_000u32..100_000_000).to_string();
    let secret = ApiSecret::generate(&mut rng);
    let mut projects = Projects::new();
    let project = match Project::legacy(&api_key, secret.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot create the demo project: {e}");
            return ExitCode::from(1);
        }
    };
    let demo = DemoConfig { project: project.id().clone(), secret: secret.clone() };
    projects.insert(project);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e} (try --listen 127.0.0.1:0)");
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    let rtc_bind = rtc_listen.unwrap_or(SocketAddr::new(listen.ip(), 0));
    let config = ServiceConfig { rtc_bind, rtc_public, ..ServiceConfig::default() };
    let service = match SessionService::start(config, projects).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind the WebRTC UDP socket on {rtc_bind}: {e}");
            return ExitCode::from(1);
        }
    };
    let rtc = service.rtc_addr();
    let api = RestApi::new(service, ApiConfig { demo: Some(demo), ..ApiConfig::default() });
    println!("sip-interconnect gateway (demo mode: in-memory state, loopback only)");
    println!("  REST API:    http://{addr}");
    println!("  API key:     {api_key}");
    println!("  API secret:  {}", secret.expose());
    println!("  Try:         python3 -c \"from opentok import Client; print(Client('{api_key}', '<secret>', api_url='http://{addr}').create_session().session_id)\"");
    println!("  Demo page:   http://{addr}/demo   (open it in two tabs)");
    println!("  WebRTC:      udp {rtc}; signalling ws://{addr}/rtc/v1/signal");
    println!("Available today: POST /session/create, WebRTC participants and the demo page. Not yet: dial (open issues 6-8).");
    tokio::select! {
        _ = rest_api::serve(listener, api) => {}
        _ = tokio::signal::ctrl_c() => println!("shutting down"),
    }
    ExitCode::SUCCESS
}
