//! The SIP Interconnect gateway binary: configuration, wiring, start-up and graceful shutdown.
//!
//! With no configuration it starts in demo mode: one demo project with a fresh API key and
//! secret (printed), in-memory sessions, everything on loopback: the REST API on 127.0.0.1:3000,
//! WebRTC participants through the media router, the demo page at `/demo`, and dial-out through
//! the SIP stack on UDP 127.0.0.1:5060 (an ephemeral port when 5060 is taken).
//!
//! With a configuration (`--config FILE` or `GATEWAY_CONFIG`, `GATEWAY_*` variables, flags; see
//! `config.rs` and `gateway --help`) it serves the configured projects. Every call event and
//! session event goes to the project's callback URL through a durable queue; `GET /health` and
//! `GET /metrics` sit beside the REST API. Ctrl-C or SIGTERM stops it: no new requests, every call
//! hung up (BYE, or CANCEL while ringing), callbacks flushed (what is left stays on disk), the SIP
//! stack closed. Exit status: 0 after a clean stop, 2 for a configuration error, 1 when start-up
//! fails.

mod config;
mod http;
mod metrics;
mod monitoring;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bridge::{Bridge, BridgeConfig};
use callbacks::{CallbackConfig, Callbacks, ProjectCallbacks};
use rand::Rng;
use rest_api::{ApiConfig, DemoConfig, RestApi};
use session::service::{ServiceConfig, SessionService};
use session::{ApiSecret, Project, Projects, RoomsConfig};
use sip_signaling::driver::{self, DriverConfig, SipHandle, TlsOptions};
use sip_signaling::Transport;
use srtp_transport::driver::PortAllocator;
use tracing::{debug, info, warn};

use config::{LogFormat, Settings};

fn main() -> ExitCode {
    // Arguments that are not UTF-8 (a path in another encoding) are an error to report, not a panic.
    let args: Result<Vec<String>, _> = std::env::args_os().skip(1).map(|a| a.into_string()).collect();
    let Ok(args) = args else {
        eprintln!("gateway: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    let args = match config::parse_args(args) {
        Ok(a) => a,
        Err(m) => {
            eprintln!("gateway: {m}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("gateway {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // A GATEWAY_* variable that is not UTF-8 is refused: dropped, a GATEWAY_CONFIG would silently
    // start the demo instead. Others are not ours to judge.
    let mut env = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => {
                env.insert(k, v);
            }
            (Ok(k), Err(_)) if k.starts_with("GATEWAY_") => {
                eprintln!("gateway: configuration error: {k} is not valid UTF-8");
                return ExitCode::from(2);
            }
            _ => {}
        }
    }
    let settings = match config::load(&args, &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}", settings.summary());
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    init_logging(&settings);
    for w in &settings.warnings {
        warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(action) = args.dead_letters {
        return runtime.block_on(dead_letters(&settings, action));
    }
    runtime.block_on(run(settings))
}

/// The callback store's file: the configured one, or the mode's default (demo mode: a file of
/// this process in the temp dir, removed at exit, so `true`).
fn callback_store_path(settings: &Settings) -> (PathBuf, bool) {
    match (&settings.callback_store, settings.demo) {
        (Some(p), _) => (p.clone(), false),
        (None, true) => {
            let name = format!("sip-interconnect-demo-callbacks-{}.redb", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
        (None, false) => (PathBuf::from("gateway-callbacks.redb"), false),
    }
}

/// `--dead-letters`: lists, queues again or deletes the callback store's dead letters, with the
/// gateway stopped (the store is opened without targets or limits, so nothing else changes: what
/// is queued again is delivered by the next start).
async fn dead_letters(settings: &Settings, action: config::DeadLetterAction) -> ExitCode {
    let (store, temporary) = callback_store_path(settings);
    if temporary {
        // Demo mode's store belongs to one run and is gone with it.
        eprintln!(
            "gateway: --dead-letters needs the callback store: set callbacks.store (or --config a file that does)"
        );
        return ExitCode::from(2);
    }
    let quiet = CallbackConfig {
        max_age: None,
        max_backlog_per_project: None,
        max_dead_letters: None,
        ..CallbackConfig::default()
    };
    let callbacks = match Callbacks::open(&store, quiet).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: cannot open the callback store {}: {e}", store.display());
            return ExitCode::from(1);
        }
    };
    let done = match action {
        config::DeadLetterAction::List => callbacks.dead_letters().map(|dead| {
            for d in &dead {
                let body = serde_json::from_slice::<serde_json::Value>(&d.body)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&d.body).into_owned()));
                let line = serde_json::json!({
                    "id": d.id.0, "project": d.project, "orderKey": d.order_key, "failures": d.failures,
                    "lastError": d.last_error, "body": body,
                });
                println!("{line}");
            }
            format!("{} dead letters", dead.len())
        }),
        config::DeadLetterAction::Replay => callbacks
            .replay_dead_letters(None)
            .map(|n| format!("{n} dead letters queued again: the gateway delivers them when it next starts")),
        config::DeadLetterAction::Purge => {
            callbacks.purge_dead_letters(None).map(|n| format!("{n} dead letters deleted"))
        }
    };
    callbacks.shutdown().await;
    match done {
        Ok(m) => {
            eprintln!("gateway: {m}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage() -> String {
    let mut s = String::from(
        "usage: gateway [--config FILE] [--check] [--demo | --no-demo] [--SETTING VALUE]...\n\n\
         With no file and no flags: demo mode on loopback (a demo project is printed).\n\
         Precedence: flags, then GATEWAY_* environment variables, then the file (GATEWAY_CONFIG or --config).\n\
         --check validates the configuration, prints it (without secrets) and exits.\n\
         --dead-letters list|replay|purge works on the callback store's dead letters and exits\n\
         (with the gateway stopped; replayed events are delivered when it next starts).\n\
         Also: --listen (= --rest-listen), --rtc-listen (= --webrtc-bind), --rtc-public (repeatable).\n\
         Projects come from [[projects]] tables of the file, or GATEWAY_API_KEY + GATEWAY_API_SECRET\n\
         (or GATEWAY_APPLICATION_ID + GATEWAY_PUBLIC_KEY_FILE) with GATEWAY_CALLBACK_URL and\n\
         GATEWAY_CALLBACK_SECRET; never from flags.\n\nSettings (file key / environment / flag, default):\n",
    );
    for k in config::KEYS {
        s.push_str(&format!(
            "  {:<28} {:<34} {}\n      {} (default: {})\n",
            k.name,
            config::env_name(k.name),
            config::flag_name(k.name),
            k.help,
            k.default
        ));
    }
    s
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = match &settings.log_level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The randomly made demo project.
struct Demo {
    api_key: String,
    secret: ApiSecret,
}

/// A start-up failure: printed, exit status 1.
fn fail(message: String) -> ExitCode {
    eprintln!("gateway: {message}");
    ExitCode::from(1)
}

/// Open files the gateway's own limits can reach: HTTP connections, inbound SIP connections, two
/// RTP sockets per call leg, the callback store and logs.
fn files_needed(settings: &Settings) -> u64 {
    let (first, last) = settings.media_rtp_ports;
    let rtp = u64::from(last.saturating_sub(first)) + 1;
    settings.rest_max_connections as u64 + 1024 + rtp + 64
}

/// Raises the soft limit of open files to the hard one (systemd and shells often leave it at
/// 1024, below what the connection limits allow: `accept` would then fail before any of them is
/// reached), and says so when even the hard limit is below what the settings may need.
fn raise_open_files(settings: &Settings) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < files_needed(settings) => warn!(
            limit,
            needed = files_needed(settings),
            "the open-files limit is below what rest.max_connections, SIP and media.rtp_ports may need: \
             raise it (ulimit -n, LimitNOFILE=) or lower them"
        ),
        Ok(limit) => debug!(limit, "open-files limit"),
        Err(e) => warn!(error = %e, "the open-files limit could not be read or raised"),
    }
}

async fn run(settings: Settings) -> ExitCode {
    raise_open_files(&settings);
    // The REST port first: the most common failure (port 3000 taken) before anything else starts.
    let listener = match tokio::net::TcpListener::bind(settings.rest_listen).await {
        Ok(l) => l,
        Err(e) => {
            return fail(format!(
                "cannot listen on {}: {e} (set rest.listen, e.g. --listen 127.0.0.1:0)",
                settings.rest_listen
            ))
        }
    };
    let rest_addr = listener.local_addr().unwrap_or(settings.rest_listen);
    let (first, last) = settings.media_rtp_ports;
    let ports = match PortAllocator::new(settings.media_bind_ip, first, last) {
        Ok(p) => p,
        Err(e) => return fail(format!("media.rtp_ports {first}-{last}: {e}")),
    };
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot listen for signals: {e}")),
    };

    let mut projects = Projects::new();
    let mut targets: HashMap<String, ProjectCallbacks> = HashMap::new();
    for p in &settings.projects {
        if let Some(cb) = &p.callbacks {
            targets.insert(p.project.id().as_str().to_owned(), cb.clone());
        }
        projects.insert(p.project.clone());
    }
    let demo = if settings.demo {
        let mut rng = rand::thread_rng();
        let api_key = loop {
            let k = rng.gen_range(10_000_000u32..100_000_000).to_string();
            if projects.get(&k).is_none() {
                break k;
            }
        };
        let secret = ApiSecret::generate(&mut rng);
        match Project::legacy(&api_key, secret.clone()) {
            Ok(p) => projects.insert(p),
            Err(e) => return fail(format!("cannot create the demo project: {e}")),
        };
        if let Some(url) = &settings.demo_callback_url {
            targets.insert(api_key.clone(), ProjectCallbacks::new(url.clone()));
        }
        Some(Demo { api_key, secret })
    } else {
        None
    };

    // The callback queue. Demo mode keeps its state in memory, so its default store is a file of
    // this run in the temp dir, removed at exit.
    let (store, temporary_store) = callback_store_path(&settings);
    let callback_config = CallbackConfig {
        initial_backoff: settings.callback_initial_backoff,
        max_backoff: settings.callback_max_backoff,
        request_timeout: settings.callback_request_timeout,
        max_attempts: settings.callback_max_attempts,
        circuit_after: settings.callback_circuit_after,
        max_age: settings.callback_max_age,
        max_backlog_per_project: settings.callback_max_backlog,
        max_dead_letters: settings.callback_max_dead_letters,
        projects: targets.clone(),
        ..CallbackConfig::default()
    };
    let callbacks = match Callbacks::open(&store, callback_config).await {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot open the callback store {}: {e}", store.display())),
    };
    let remove_store = |store: &PathBuf| {
        if temporary_store {
            let _ = std::fs::remove_file(store);
        }
    };

    // Sessions and WebRTC.
    let service_config = ServiceConfig {
        rtc_bind: settings.webrtc_bind,
        rtc_public: settings.webrtc_public.clone(),
        rooms: RoomsConfig { empty_timeout: settings.session_empty_timeout, ..RoomsConfig::default() },
    };
    let service = match SessionService::start(service_config, projects).await {
        Ok(s) => s,
        Err(e) => {
            callbacks.shutdown().await;
            remove_store(&store);
            return fail(format!("cannot bind the WebRTC UDP socket on {}: {e}", settings.webrtc_bind));
        }
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let writer = match monitoring::Writer::start(callbacks.clone()) {
        Ok(w) => w,
        Err(e) => return fail(format!("cannot start the callback writer: {e}")),
    };
    // Subscribed before anything can happen in a session.
    let drain = monitoring::follow_sessions(service.subscribe(), writer.clone(), metrics.clone());

    // SIP and media.
    let (sip, sip_fallback) = match start_sip(&settings).await {
        Ok(s) => s,
        Err(m) => {
            callbacks.shutdown().await;
            remove_store(&store);
            return fail(m);
        }
    };
    let bridge_config = BridgeConfig {
        media_address: settings.media_public_ip,
        audio_codecs: settings.audio_codecs.clone(),
        no_rtp_timeout: settings.no_rtp_timeout,
        inactivity_timeout: settings.inactivity_timeout,
        max_duration: settings.max_duration,
        video: settings.video.clone(),
        srtp_offer: settings.srtp_offer,
        sdes_suites: settings.sdes_suites.clone(),
        srtp_offer_by_project: settings
            .projects
            .iter()
            .filter_map(|p| Some((p.project.id().as_str().to_owned(), p.srtp_offer?)))
            .collect(),
        ..BridgeConfig::default()
    };
    let reporter = Arc::new(monitoring::CallEvents { writer: writer.clone(), metrics: metrics.clone() });
    let bridge = Bridge::new(service.clone(), sip.clone(), ports, bridge_config, reporter);

    // The REST API behind the HTTP front.
    let demo_config = match &demo {
        Some(d) => match session::ProjectId::api_key(&d.api_key) {
            Ok(project) => Some(DemoConfig { project, secret: d.secret.clone() }),
            Err(e) => return fail(format!("demo project: {e}")),
        },
        None => None,
    };
    let api = RestApi::new(
        service.clone(),
        ApiConfig {
            demo: demo_config,
            request_timeout: settings.http_request_timeout,
            max_connections: settings.rest_max_connections,
            ..ApiConfig::default()
        },
    )
    .with_dialer(Arc::new(bridge.clone()));
    let tls = settings.rest_tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let ops =
        Arc::new(http::Operations { metrics: metrics.clone(), bridge: bridge.clone(), callbacks: callbacks.clone() });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, tls, api, ops, stopped));

    print_banner(&settings, rest_addr, &service, &sip, sip_fallback, demo.as_ref(), &store, &targets);
    info!(rest = %rest_addr, demo = settings.demo, projects = settings.projects.len(), "gateway started");

    let signal = signals.recv().await;
    // A second signal while stopping ends the process at once.
    tokio::spawn(async move {
        let _ = signals.recv().await;
        eprintln!("gateway: second signal; exiting without finishing the shutdown");
        std::process::exit(130);
    });
    println!("shutting down ({signal})");
    info!(signal, "shutting down");
    let t0 = Instant::now();

    let _ = stop.send(true);
    let _ = server.await;
    let calls = bridge.active_calls();
    bridge.shutdown(settings.shutdown_calls).await;
    let left = bridge.active_calls();
    if left > 0 {
        warn!(calls = left, "calls still running after timeouts.shutdown_calls");
    }
    // Every event of those calls and of their connections, into the store.
    let drain_limit = std::time::Duration::from_secs(2);
    let _ = drain.drain(drain_limit).await;
    // The writer commits (and retries a failing store) before delivery stops: its wait is the
    // callbacks' own budget, not a fixed one.
    if !writer.flush(settings.shutdown_callbacks.max(drain_limit)).await {
        warn!("callback events still being written at shutdown: those may be lost");
    }
    let delivered = callbacks.flush(settings.shutdown_callbacks).await;
    let stats = callbacks.stats();
    callbacks.shutdown().await;
    sip.shutdown().await;
    if temporary_store && stats.backlog > 0 {
        warn!(backlog = stats.backlog, "demo mode: undelivered callbacks are dropped with the temporary store");
    }
    remove_store(&store);
    info!(
        calls_hung_up = calls,
        callbacks_delivered = delivered,
        callback_backlog = stats.backlog,
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "stopped"
    );
    if stats.backlog > 0 && !temporary_store {
        println!("{} callback event(s) stay queued in {} for the next start", stats.backlog, store.display());
    }
    ExitCode::SUCCESS
}

/// Starts the SIP stack. Without a configured `sip.udp_bind`, a taken port 5060 falls back to an
/// ephemeral port (returned as the address that was taken). Without a configured `sip.tcp_bind`,
/// the TCP listener goes beside the UDP socket (same IP and port), or on a free port of that IP
/// when the port is taken for TCP.
async fn start_sip(settings: &Settings) -> Result<(SipHandle, Option<SocketAddr>), String> {
    let config = |udp_bind, tcp_bind| DriverConfig {
        udp_bind,
        tcp_bind,
        tls: TlsOptions {
            ca_file: settings.sip_tls_ca_file.clone(),
            client_cert_file: settings.sip_tls_identity.as_ref().map(|(cert, _)| cert.clone()),
            client_key_file: settings.sip_tls_identity.as_ref().map(|(_, key)| key.clone()),
            ..TlsOptions::default()
        },
        tls_bind: settings.sip_tls.as_ref().map(|(a, _)| *a),
        tls_server: settings.sip_tls.as_ref().map(|(_, s)| s.clone()),
        ua: sip_signaling::Config {
            public_ip: settings.sip_public_ip,
            udp_size_limit: settings.sip_udp_size_limit,
            ..sip_signaling::Config::default()
        },
        max_redirects: settings.sip_max_redirects,
        outbound_proxy: settings.sip_outbound_proxy.clone(),
        max_inbound_per_address: settings.sip_max_inbound_per_address,
        ..DriverConfig::default()
    };
    let wanted = settings.sip_udp_bind;
    let mut udp_choices = vec![wanted];
    if !settings.sip_udp_bind_explicit {
        udp_choices.push(SocketAddr::new(wanted.ip(), 0));
    }
    let mut failure = String::new();
    for (n, udp) in udp_choices.iter().enumerate() {
        // The UDP port alone first, so that a failure names the socket that failed.
        if let Err(e) = std::net::UdpSocket::bind(udp) {
            warn!(udp = %udp, error = %e, "cannot bind the SIP UDP socket there");
            failure = format!("cannot start SIP on UDP {udp} (sip.udp_bind): {e}");
            continue;
        }
        let tcp_choices = match settings.sip_tcp_bind {
            Some(explicit) => vec![explicit],
            None => vec![Some(*udp), Some(SocketAddr::new(udp.ip(), 0))],
        };
        for tcp in tcp_choices {
            match driver::start(config(*udp, tcp)).await {
                Ok(h) => return Ok((h, (n > 0).then_some(wanted))),
                Err(e) => {
                    let tcp_text = tcp.map_or("no TCP listener".to_owned(), |a| format!("TCP {a}"));
                    warn!(udp = %udp, tcp = %tcp_text, error = %e, "cannot start SIP there; trying the next address");
                    failure = format!("cannot start SIP with {tcp_text} (sip.tcp_bind) beside UDP {udp}: {e}");
                }
            }
        }
    }
    Err(failure)
}

#[allow(clippy::too_many_arguments)]
fn print_banner(
    settings: &Settings,
    rest: SocketAddr,
    service: &SessionService,
    sip: &SipHandle,
    sip_fallback: Option<SocketAddr>,
    demo: Option<&Demo>,
    store: &std::path::Path,
    targets: &HashMap<String, ProjectCallbacks>,
) {
    let scheme = if settings.rest_tls.is_some() { "https" } else { "http" };
    let ws = if settings.rest_tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{rest}");
    let loopback = rest.ip().is_loopback();
    let mut out = Vec::new();
    match demo {
        Some(d) => {
            let scope = if loopback { "in-memory state, loopback only" } else { "in-memory state" };
            out.push(format!("sip-interconnect gateway (demo mode: {scope})"));
            out.push(format!("  REST API:    {url}"));
            out.push(format!("  API key:     {}", d.api_key));
            out.push(format!("  API secret:  {}", d.secret.expose()));
            out.push(format!("  Try:         python3 -c \"from opentok import Client; print(Client('{}', '<secret>', api_url='{url}').create_session().session_id)\"", d.api_key));
            out.push(format!("  Demo page:   {url}/demo   (open it in two tabs)"));
        }
        None => {
            out.push(format!("sip-interconnect gateway {}", env!("CARGO_PKG_VERSION")));
            out.push(format!("  REST API:    {url}"));
        }
    }
    for p in &settings.projects {
        let id = p.project.id().as_str();
        let cb = targets.get(id).map(|t| t.url.clone()).unwrap_or_else(|| "no callback URL".into());
        out.push(format!("  Project:     {id} (callbacks: {cb})"));
    }
    out.push(format!("  WebRTC:      udp {}; signalling {ws}://{rest}/rtc/v1/signal", service.rtc_addr()));
    // TLS is listed when it has a listener of its own (otherwise its entry is the TCP one's).
    let sip_addrs: Vec<String> = sip
        .local_addrs()
        .iter()
        .filter(|(t, _)| *t != Transport::Tls || settings.sip_tls.is_some())
        .map(|(t, a)| format!("{} {a}", format!("{t:?}").to_ascii_lowercase()))
        .collect();
    let taken = sip_fallback.map(|a| format!(" ({a} is taken)")).unwrap_or_default();
    out.push(format!("  SIP:         {}{taken}", sip_addrs.join(", ")));
    let (first, last) = settings.media_rtp_ports;
    let media_public = settings.media_public_ip.map(|ip: IpAddr| format!(", announced as {ip}")).unwrap_or_default();
    out.push(format!("  Media:       RTP on {} ports {first}-{last}{media_public}", settings.media_bind_ip));
    let demo_cb = match demo {
        Some(d) if !targets.contains_key(&d.api_key) => {
            "; the demo project has no callback URL (set demo_callback_url)"
        }
        _ => "",
    };
    out.push(format!("  Callbacks:   store {}{demo_cb}", store.display()));
    out.push(format!("  Operations:  {url}/health, {url}/metrics"));
    if let Some(d) = demo {
        out.push(format!(
            "  Dial:        cargo run -p dial-example -- --gateway {url} --api-key {} --api-secret <secret> sip:alice@127.0.0.1:5070",
            d.api_key
        ));
    }
    out.push("Ready. Ctrl-C to stop.".into());
    println!("{}", out.join("\n"));
}

/// Ctrl-C and SIGTERM, listened for from start-up on (so a signal right after the banner is
/// never lost to the default action).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal: `"Ctrl-C"` or `"SIGTERM"`.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "Ctrl-C",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
