//! The configuration: a TOML file (`--config FILE` or `GATEWAY_CONFIG`), then `GATEWAY_*`
//! environment variables, then command-line flags, each layer overriding the one before it.
//!
//! Every setting has one dotted name (`rest.listen`), which is its key in the file (`listen` in
//! the `[rest]` table), its environment variable (`GATEWAY_REST_LISTEN`) and its flag
//! (`--rest-listen`); [`KEYS`] lists them. Projects are the exception: they are `[[projects]]`
//! tables in the file, plus at most one more from `GATEWAY_API_KEY`/`GATEWAY_API_SECRET` (or
//! `GATEWAY_APPLICATION_ID`/`GATEWAY_PUBLIC_KEY_FILE`), never from flags (a flag shows in `ps`).
//!
//! A refused value is a [`ConfigError`] naming the setting and where it came from. Secrets (API
//! secrets, callback signature secrets) never appear in an error or in the summary.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridge::SrtpOffer;
use callbacks::ProjectCallbacks;
use sdp_negotiation::Codec;
use serde::Deserialize;
use session::{ApiSecret, Project};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "GATEWAY_CONFIG";

/// The port the SIP UDP socket takes by default (an ephemeral one when it is taken).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The dotted name: `table.key` in the file.
    pub name: &'static str,
    /// The default, as documented.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// Every setting, in the order the documentation lists them.
pub const KEYS: &[Key] = &[
    Key {
        name: "demo",
        default: "true without a file, else false",
        help: "demo mode: a random demo project (printed), the demo page at /demo",
    },
    Key { name: "demo_callback_url", default: "none", help: "callback URL of the demo project" },
    Key { name: "log.format", default: "text", help: "text or json (to stderr)" },
    Key {
        name: "log.level",
        default: "info",
        help: "a tracing filter: info, debug, bridge=debug,info ... (RUST_LOG when unset)",
    },
    Key {
        name: "rest.listen",
        default: "127.0.0.1:3000",
        help: "REST API, signalling WebSocket, /health and /metrics",
    },
    Key { name: "rest.tls_cert", default: "none", help: "PEM certificate chain: serve HTTPS (needs rest.tls_key)" },
    Key { name: "rest.tls_key", default: "none", help: "PEM private key of rest.tls_cert" },
    Key {
        name: "rest.max_connections",
        default: "1024",
        help: "HTTP connections served at once, WebSockets for their first 15 s (their time to join); more get a 503 (HTTPS: closed); at least 2",
    },
    Key { name: "sip.udp_bind", default: "127.0.0.1:5060 (an ephemeral port when taken)", help: "SIP UDP socket" },
    Key {
        name: "sip.tcp_bind",
        default: "the SIP UDP socket's address (a free port when that one is taken)",
        help: "SIP TCP listener, where far ends reach a TCP Via (large requests go over TCP, RFC 3261 \
               §18.1.1); off: none (outbound TCP and TLS still work, large requests stay on UDP)",
    },
    Key {
        name: "sip.tls_cert",
        default: "none",
        help: "PEM certificate chain of a SIP TLS listener, which far ends reach on calls over TLS \
               (needs sip.tls_key); without it they must reuse our connection",
    },
    Key { name: "sip.tls_key", default: "none", help: "PEM private key of sip.tls_cert" },
    Key {
        name: "sip.tls_bind",
        default: "the SIP UDP socket's IP, port 5061 (with sip.tls_cert)",
        help: "SIP TLS listener address",
    },
    Key {
        name: "sip.tls_client_cert",
        default: "none",
        help: "PEM certificate chain we present on the TLS connections we open, to trunks that ask \
               for one (mutual TLS; needs sip.tls_client_key; it may be sip.tls_cert's file when \
               that certificate allows client authentication)",
    },
    Key { name: "sip.tls_client_key", default: "none", help: "PEM private key of sip.tls_client_cert" },
    Key {
        name: "sip.tls_ca_file",
        default: "none",
        help: "PEM CA certificates trusted for transport=tls, besides the system roots",
    },
    Key {
        name: "sip.public_ip",
        default: "none",
        help: "IP written in Via and Contact (the address the far end reaches)",
    },
    Key {
        name: "sip.max_redirects",
        default: "3",
        help: "3xx redirects followed per call (to the Contact targets, best q first); 0: a 3xx fails the call",
    },
    Key {
        name: "sip.outbound_proxy",
        default: "none",
        help: "a SIP URI (a carrier's SBC) every call goes through, with a Route naming it, while the \
               Request-URI names the callee (whose host is then never resolved)",
    },
    Key {
        name: "sip.udp_size_limit",
        default: "1300",
        help: "requests larger than this many bytes go over TCP instead of UDP (RFC 3261 §18.1.1), over UDP after all \
               when the connection fails; 0: never moved",
    },
    Key {
        name: "sip.max_inbound_per_address",
        default: "32",
        help: "connections far ends may open to our TCP/TLS listeners from one IP address (1024 in all)",
    },
    Key { name: "media.bind_ip", default: "127.0.0.1", help: "IP the RTP sockets bind" },
    Key { name: "media.rtp_ports", default: "40000-49999", help: "RTP port range (RTP on even ports)" },
    Key { name: "media.public_ip", default: "the bound IP", help: "IP written in the SDP (c=), behind NAT" },
    Key {
        name: "media.audio_codecs",
        default: "opus,g722,pcmu,pcma",
        help: "audio codecs offered, in preference order",
    },
    Key {
        name: "video.codecs",
        default: "h264,vp8",
        help: "video codecs offered to dials with video: true, in preference order (empty: never video)",
    },
    Key {
        name: "video.canvas",
        default: "1280x720",
        help: "size of the grid sent to SIP parties (lower when the endpoint's level asks)",
    },
    Key { name: "video.fps", default: "30", help: "frame rate of the grid sent to SIP parties" },
    Key { name: "video.bitrate", default: "1500000", help: "target bitrate of the grid, bit/s" },
    Key {
        name: "video.receive_bitrate",
        default: "0",
        help: "the most video bitrate asked of SIP parties, bit/s (b=TIAS and b=AS in our SDP); 0: no limit",
    },
    Key {
        name: "video.keyframe_interval",
        default: "5s",
        help: "a keyframe of the grid at least this often (endpoints that never send PLI or FIR)",
    },
    Key {
        name: "media.srtp_offer",
        default: "sdes",
        help: "what secure: true calls offer: sdes (a=crypto keys) or dtls (DTLS-SRTP); per project too",
    },
    Key {
        name: "media.srtp_suites",
        default: "AES_CM_128_HMAC_SHA1_80,AES_CM_128_HMAC_SHA1_32",
        help: "SRTP suites an SDES offer lists, in order (also AES_256_CM_HMAC_SHA1_80/_32, AEAD_AES_128_GCM, AEAD_AES_256_GCM)",
    },
    Key { name: "webrtc.bind", default: "rest.listen's IP, any port", help: "the one UDP socket of every WebRTC peer" },
    Key {
        name: "webrtc.public",
        default: "none",
        help: "addresses advertised as ICE candidates besides the bound one",
    },
    Key { name: "timeouts.no_rtp", default: "30s", help: "no RTP at all after the answer: callDestroyed 704" },
    Key { name: "timeouts.inactivity", default: "5m", help: "no RTP for this long (outside hold): callDestroyed 706" },
    Key { name: "timeouts.max_duration", default: "6h", help: "calls end at this age: callDestroyed 705" },
    Key {
        name: "timeouts.session_empty",
        default: "60s",
        help: "a session without clients ends (and its SIP calls) after this",
    },
    Key {
        name: "timeouts.http_request",
        default: "30s",
        help: "longest wait for an HTTP request's head (then the connection closes) or body (408)",
    },
    Key { name: "timeouts.shutdown_calls", default: "5s", help: "on shutdown, the wait for every call's BYE/CANCEL" },
    Key {
        name: "timeouts.shutdown_callbacks",
        default: "5s",
        help: "on shutdown, the wait for callbacks in flight (the rest stay on disk)",
    },
    Key {
        name: "callbacks.store",
        default: "gateway-callbacks.redb; demo: a file in the temp dir",
        help: "the durable callback queue",
    },
    Key {
        name: "callbacks.initial_backoff",
        default: "500ms",
        help: "wait after a callback's first failed attempt (doubling)",
    },
    Key { name: "callbacks.max_backoff", default: "60s", help: "the cap on that wait" },
    Key { name: "callbacks.request_timeout", default: "10s", help: "one attempt's limit" },
    Key {
        name: "callbacks.max_attempts",
        default: "none (retry until delivered or callbacks.max_age)",
        help: "give an event up (dead letter) after this many attempts (one refused with a 400, 410, 413, 415 or 422: after five refusals either way)",
    },
    Key {
        name: "callbacks.circuit_after",
        default: "5",
        help: "a project's failures in a row after which its deliveries wait for one probe at a time; 0: never",
    },
    Key {
        name: "callbacks.max_age",
        default: "72h",
        help: "give an event up (dead letter) when still undelivered this long after it happened; 0: never",
    },
    Key {
        name: "callbacks.max_backlog",
        default: "100000",
        help: "events queued per project at most; beyond, new ones are given up (dead letters); 0: no limit",
    },
    Key {
        name: "callbacks.max_dead_letters",
        default: "100000",
        help: "dead letters kept on disk at most (the oldest deleted first); 0: no limit",
    },
];

/// The environment variables of the one project the environment may add.
pub const PROJECT_ENV: &[&str] = &[
    "GATEWAY_API_KEY",
    "GATEWAY_API_SECRET",
    "GATEWAY_APPLICATION_ID",
    "GATEWAY_PUBLIC_KEY_FILE",
    "GATEWAY_CALLBACK_URL",
    "GATEWAY_CALLBACK_SECRET",
];

/// A setting's environment variable: `GATEWAY_` and the upper-cased name, `.` as `_`.
pub fn env_name(key: &str) -> String {
    format!("GATEWAY_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// A setting's flag: `--` and the name, `.` and `_` as `-`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace(['.', '_'], "-"))
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

/// A refused configuration. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting (`rest.listen`, `projects[0].api_secret`), or `None` for the file as a whole.
    pub key: Option<String>,
    /// Where the value came from.
    pub origin: Origin,
    /// What is wrong (never the value of a secret).
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, origin: &Origin, message: impl Into<String>) -> ConfigError {
        ConfigError { key: Some(key.into()), origin: origin.clone(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.origin) {
            (Some(k), Origin::File(p)) => write!(f, "{k} in {}: {}", p.display(), self.message),
            (Some(k), Origin::Env(v)) => write!(f, "{k} (environment variable {v}): {}", self.message),
            (Some(k), Origin::Flag(fl)) => write!(f, "{k} (flag {fl}): {}", self.message),
            (Some(k), Origin::Default) => write!(f, "{k}: {}", self.message),
            (None, Origin::File(p)) => write!(f, "{}: {}", p.display(), self.message),
            (None, Origin::Env(v)) => write!(f, "environment variable {v}: {}", self.message),
            (None, Origin::Flag(fl)) => write!(f, "flag {fl}: {}", self.message),
            (None, Origin::Default) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value as written, before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A string (every environment variable and flag value is one).
    Text(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML array of strings (or a repeated flag).
    List(Vec<String>),
}

/// The command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// Settings given as flags: (key, the flag as written, value).
    pub flags: Vec<(&'static str, String, Raw)>,
    /// `--check`: validate, print the summary, exit.
    pub check: bool,
    /// `--help`.
    pub help: bool,
    /// `--version`.
    pub version: bool,
    /// `--dead-letters list|replay|purge`: work on the callback store's dead letters, then exit.
    pub dead_letters: Option<DeadLetterAction>,
}

/// What `--dead-letters` does with the callback store's dead letters (the gateway must not be
/// running: the store is its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Print them, one JSON object a line.
    List,
    /// Queue them again: the next start of the gateway delivers them.
    Replay,
    /// Delete them.
    Purge,
}

fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Parses the command line (without the program name). A usage error is a message (exit 2).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value ({what})"))
        };
        match flag.as_str() {
            "-h" | "--help" => out.help = true,
            "-V" | "--version" => out.version = true,
            "--check" => out.check = true,
            "--dead-letters" => {
                out.dead_letters = Some(match value("list, replay or purge")?.as_str() {
                    "list" => DeadLetterAction::List,
                    "replay" => DeadLetterAction::Replay,
                    "purge" => DeadLetterAction::Purge,
                    other => return Err(format!("--dead-letters takes list, replay or purge, not {other:?}")),
                })
            }
            "--config" | "-c" => out.config = Some(PathBuf::from(value("a TOML file")?)),
            "--demo" => match inline.as_deref() {
                None => out.flags.push(("demo", flag, Raw::Bool(true))),
                Some(v) => out.flags.push(("demo", flag, Raw::Text(v.to_owned()))),
            },
            "--no-demo" => out.flags.push(("demo", flag, Raw::Bool(false))),
            // The demo binary's original flags.
            "--listen" => out.flags.push(("rest.listen", flag.clone(), Raw::Text(value("IP:PORT")?))),
            "--rtc-listen" => out.flags.push(("webrtc.bind", flag.clone(), Raw::Text(value("IP:PORT")?))),
            "--rtc-public" | "--webrtc-public" => {
                let v = value("IP:PORT")?;
                push_list(&mut out.flags, "webrtc.public", flag, v);
            }
            f if f.starts_with("--") => {
                let Some(k) = KEYS.iter().find(|k| flag_name(k.name) == f) else {
                    return Err(format!("unknown flag {f} (gateway --help lists them)"));
                };
                let v = value("see gateway --help")?;
                out.flags.push((k.name, flag, Raw::Text(v)));
            }
            other => return Err(format!("unexpected argument {other:?} (gateway --help lists the flags)")),
        }
    }
    Ok(out)
}

/// A repeated list flag appends to the list given by the earlier ones.
fn push_list(flags: &mut Vec<(&'static str, String, Raw)>, key: &'static str, flag: String, value: String) {
    if let Some((_, _, Raw::List(list))) = flags.iter_mut().find(|(k, _, r)| *k == key && matches!(r, Raw::List(_))) {
        list.push(value);
    } else {
        flags.push((key, flag, Raw::List(vec![value])));
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configured project: credentials and where its callbacks go.
#[derive(Debug, Clone)]
pub struct ProjectSettings {
    /// Its credentials.
    pub project: Project,
    /// Its callback target, if any.
    pub callbacks: Option<ProjectCallbacks>,
    /// What its `secure: true` calls offer, when it differs from `media.srtp_offer`.
    pub srtp_offer: Option<SrtpOffer>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it was read from.
    pub file: Option<PathBuf>,
    /// Demo mode.
    pub demo: bool,
    /// The demo project's callback URL.
    pub demo_callback_url: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter directive; `None`: `RUST_LOG`, else `info`.
    pub log_level: Option<String>,
    /// REST listen address.
    pub rest_listen: SocketAddr,
    /// HTTPS, when configured.
    pub rest_tls: Option<Arc<rustls::ServerConfig>>,
    /// SIP UDP socket.
    pub sip_udp_bind: SocketAddr,
    /// Whether `sip.udp_bind` was configured (no fallback to an ephemeral port then).
    pub sip_udp_bind_explicit: bool,
    /// SIP TCP listener: `Some(None)` off, `Some(Some(a))` at `a`, `None` beside the UDP socket.
    pub sip_tcp_bind: Option<Option<SocketAddr>>,
    /// Extra CA certificates for outbound TLS.
    pub sip_tls_ca_file: Option<PathBuf>,
    /// Our certificate and key files for mutual TLS on connections we open
    /// (`sip.tls_client_cert`, `sip.tls_client_key`).
    pub sip_tls_identity: Option<(PathBuf, PathBuf)>,
    /// The SIP TLS listener: its address and certificate, when configured.
    pub sip_tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// SIP public IP.
    pub sip_public_ip: Option<IpAddr>,
    /// Redirects followed per call.
    pub sip_max_redirects: u8,
    /// Requests larger than this go over TCP instead of UDP; `None`: never.
    pub sip_udp_size_limit: Option<usize>,
    /// Inbound SIP connections from one IP address.
    pub sip_max_inbound_per_address: usize,
    /// The outbound proxy every call goes through.
    pub sip_outbound_proxy: Option<String>,
    /// RTP sockets' IP.
    pub media_bind_ip: IpAddr,
    /// RTP port range, inclusive.
    pub media_rtp_ports: (u16, u16),
    /// SDP `c=` address.
    pub media_public_ip: Option<IpAddr>,
    /// Audio codecs offered, in preference order.
    pub audio_codecs: Vec<Codec>,
    /// What `secure: true` calls offer, unless their project says otherwise.
    pub srtp_offer: SrtpOffer,
    /// The SRTP suites an SDES offer lists.
    pub sdes_suites: Vec<srtp_transport::Suite>,
    /// The grid sent to calls dialled with `video: true`.
    pub video: bridge::VideoConfig,
    /// The WebRTC UDP socket.
    pub webrtc_bind: SocketAddr,
    /// Advertised WebRTC addresses.
    pub webrtc_public: Vec<SocketAddr>,
    /// 704.
    pub no_rtp_timeout: Duration,
    /// 706.
    pub inactivity_timeout: Duration,
    /// 705.
    pub max_duration: Duration,
    /// Empty-session timeout.
    pub session_empty_timeout: Duration,
    /// Shutdown: calls.
    pub shutdown_calls: Duration,
    /// An HTTP request's head and body.
    pub http_request_timeout: Duration,
    /// HTTP connections served at once.
    pub rest_max_connections: usize,
    /// Shutdown: callbacks.
    pub shutdown_callbacks: Duration,
    /// Callback store; `None`: the mode's default.
    pub callback_store: Option<PathBuf>,
    /// Callback retry tuning.
    pub callback_initial_backoff: Duration,
    /// Callback retry tuning.
    pub callback_max_backoff: Duration,
    /// Callback attempt limit.
    pub callback_request_timeout: Duration,
    /// Dead-letter after this many attempts.
    pub callback_max_attempts: Option<u32>,
    /// Failures in a row that open a project's circuit breaker; `None`: never.
    pub callback_circuit_after: Option<u32>,
    /// Undelivered this long: given up; `None`: never.
    pub callback_max_age: Option<Duration>,
    /// Events queued per project at most; `None`: no limit.
    pub callback_max_backlog: Option<u64>,
    /// Dead letters kept at most; `None`: no limit.
    pub callback_max_dead_letters: Option<u64>,
    /// The configured projects (the demo project is added at start-up).
    pub projects: Vec<ProjectSettings>,
    /// What was ignored (logged at start-up).
    pub warnings: Vec<String>,
}

/// A project table of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    api_key: Option<KeyText>,
    api_secret: Option<String>,
    application_id: Option<String>,
    public_key_file: Option<PathBuf>,
    callback_url: Option<String>,
    callback_secret: Option<String>,
    srtp_offer: Option<String>,
}

/// An API key written as a string or as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeyText {
    Text(String),
    Number(u64),
}

impl KeyText {
    fn text(&self) -> String {
        match self {
            KeyText::Text(s) => s.clone(),
            KeyText::Number(n) => n.to_string(),
        }
    }
}

/// The values of every layer, the later layers already applied.
struct Layers {
    values: BTreeMap<&'static str, (Raw, Origin)>,
}

impl Layers {
    fn origin(&self, key: &str) -> Origin {
        self.values.get(key).map(|(_, o)| o.clone()).unwrap_or(Origin::Default)
    }

    fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    fn get<T>(&self, key: &'static str, parse: impl Fn(&Raw) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((raw, origin)) => parse(raw).map(Some).map_err(|m| ConfigError::new(key, origin, m)),
        }
    }

    fn get_or<T>(
        &self,
        key: &'static str,
        default: T,
        parse: impl Fn(&Raw) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.get(key, parse)?.unwrap_or(default))
    }
}

/// Reads the configuration: the file (from `args.config`, else `GATEWAY_CONFIG` in `env`), then
/// the `GATEWAY_*` variables of `env`, then the flags.
pub fn load(args: &Args, env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let file = args.config.clone().or_else(|| env.get(CONFIG_ENV).filter(|s| !s.is_empty()).map(PathBuf::from));
    let mut layers = Layers { values: BTreeMap::new() };
    let mut entries: Vec<(String, ProjectEntry, Origin)> = Vec::new();
    if let Some(path) = &file {
        read_file(path, &mut layers, &mut entries)?;
    }
    let mut env_project: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, value) in env.iter().filter(|(n, _)| n.starts_with("GATEWAY_")) {
        if name == CONFIG_ENV {
            continue;
        }
        if let Some(p) = PROJECT_ENV.iter().find(|p| **p == name) {
            env_project.insert(p, value.clone());
            continue;
        }
        let Some(k) = KEYS.iter().find(|k| env_name(k.name) == *name) else {
            // A warning, not an error: orchestrators add variables of their own with this prefix
            // (Kubernetes service links: `GATEWAY_PORT`, `GATEWAY_SERVICE_HOST` ...).
            warnings
                .push(format!("ignoring the environment variable {name}: not a setting (gateway --help lists them)"));
            continue;
        };
        layers.values.insert(k.name, (Raw::Text(value.clone()), Origin::Env(name.clone())));
    }
    for (k, flag, raw) in &args.flags {
        layers.values.insert(k, (raw.clone(), Origin::Flag(flag.clone())));
    }
    if !env_project.is_empty() {
        entries.push(("environment project".into(), env_entry(&env_project), Origin::Env("GATEWAY_API_KEY".into())));
    }
    let mut settings = resolve(&layers, file, entries)?;
    settings.warnings = warnings;
    Ok(settings)
}

/// The project of the `GATEWAY_API_KEY`... variables.
fn env_entry(env: &BTreeMap<&'static str, String>) -> ProjectEntry {
    let get = |k: &str| env.get(k).cloned().filter(|v| !v.is_empty());
    ProjectEntry {
        api_key: get("GATEWAY_API_KEY").map(KeyText::Text),
        api_secret: get("GATEWAY_API_SECRET"),
        application_id: get("GATEWAY_APPLICATION_ID"),
        public_key_file: get("GATEWAY_PUBLIC_KEY_FILE").map(PathBuf::from),
        callback_url: get("GATEWAY_CALLBACK_URL"),
        callback_secret: get("GATEWAY_CALLBACK_SECRET"),
        srtp_offer: None,
    }
}

/// A parser's message without the values it quotes (`` `12345` ``, `"abc"`): a project's secret
/// may be one of them.
fn without_values(message: &str) -> String {
    // These quote key names (what was written wrong, and what is expected), never values.
    if ["unknown field", "missing field", "duplicate field", "duplicate key"].iter().any(|p| message.starts_with(p)) {
        return message.trim_end().to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push_str("(value)");
            }
            Some(_) => {}
            None if c == '`' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    out.trim_end().to_owned()
}

fn read_file(
    path: &Path,
    layers: &mut Layers,
    entries: &mut Vec<(String, ProjectEntry, Origin)>,
) -> Result<(), ConfigError> {
    let origin = Origin::File(path.to_path_buf());
    let whole = |message: String| ConfigError { key: None, origin: origin.clone(), message };
    let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read the configuration file: {e}")))?;
    // The parser's own text quotes the offending line, which may hold a secret: only where it is
    // and what is wrong are said.
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| {
            let before = text.get(..s.start).unwrap_or(&text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        });
        whole(format!("not valid TOML{}: {}", at.unwrap_or_default(), without_values(e.message())))
    })?;
    for (name, value) in table {
        match value {
            toml::Value::Array(items) if name == "projects" => {
                for (i, item) in items.into_iter().enumerate() {
                    let label = format!("projects[{i}]");
                    let entry: ProjectEntry = match item {
                        toml::Value::Table(t) => {
                            t.try_into().map_err(|e| ConfigError::new(&label, &origin, without_values(e.message())))?
                        }
                        _ => return Err(ConfigError::new(&label, &origin, "expected a table ([[projects]])")),
                    };
                    entries.push((label, entry, origin.clone()));
                }
            }
            toml::Value::Table(section) if KEYS.iter().any(|k| k.name.starts_with(&format!("{name}."))) => {
                for (sub, value) in section {
                    let full = format!("{name}.{sub}");
                    let k = key(&full).ok_or_else(|| unknown_key(&full, &origin))?;
                    layers.values.insert(k.name, (raw_of(k.name, value, &origin)?, origin.clone()));
                }
            }
            value => {
                let k = key(&name).ok_or_else(|| unknown_key(&name, &origin))?;
                layers.values.insert(k.name, (raw_of(k.name, value, &origin)?, origin.clone()));
            }
        }
    }
    Ok(())
}

fn unknown_key(name: &str, origin: &Origin) -> ConfigError {
    let prefix = name.split('.').next().unwrap_or(name);
    let known: Vec<&str> = KEYS.iter().map(|k| k.name).filter(|k| k.starts_with(prefix)).collect();
    let hint = if known.is_empty() {
        "the README's configuration reference lists the keys".to_owned()
    } else {
        format!("known here: {}", known.join(", "))
    };
    ConfigError::new(name, origin, format!("unknown key ({hint})"))
}

fn raw_of(name: &str, value: toml::Value, origin: &Origin) -> Result<Raw, ConfigError> {
    match value {
        toml::Value::String(s) => Ok(Raw::Text(s)),
        toml::Value::Integer(i) => Ok(Raw::Int(i)),
        toml::Value::Boolean(b) => Ok(Raw::Bool(b)),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s),
                _ => Err(ConfigError::new(name, origin, "expected a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Raw::List),
        toml::Value::Table(_) => Err(ConfigError::new(name, origin, "expected a value, found a table")),
        _ => Err(ConfigError::new(name, origin, "unsupported value type (use a string, an integer or a boolean)")),
    }
}

fn resolve(
    layers: &Layers,
    file: Option<PathBuf>,
    entries: Vec<(String, ProjectEntry, Origin)>,
) -> Result<Settings, ConfigError> {
    let demo = layers.get_or("demo", file.is_none(), parse_bool)?;
    let demo_callback_url = layers.get("demo_callback_url", text)?;
    if let Some(url) = &demo_callback_url {
        check_url(url).map_err(|m| ConfigError::new("demo_callback_url", &layers.origin("demo_callback_url"), m))?;
    }
    let log_format = layers.get_or("log.format", LogFormat::Text, |r| match text(r)?.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not a log format (text or json)")),
    })?;
    let log_level = layers.get("log.level", |r| {
        let s = text(r)?;
        tracing_subscriber::EnvFilter::try_new(&s).map_err(|e| format!("{s:?} is not a log filter: {e}"))?;
        Ok(s)
    })?;
    let rest_listen = layers.get_or("rest.listen", SocketAddr::from((Ipv4Addr::LOCALHOST, 3000)), parse_addr)?;
    let rest_tls = tls_pair(layers, "rest.tls_cert", "rest.tls_key", "HTTPS")?;
    let sip_udp_bind =
        layers.get_or("sip.udp_bind", SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_SIP_PORT)), parse_addr)?;
    let sip_tcp_bind = layers.get("sip.tcp_bind", |r| match text(r)?.as_str() {
        "off" | "none" => Ok(None),
        s => addr(s).map(Some),
    })?;
    let sip_tls_ca_file = layers.get("sip.tls_ca_file", readable_file)?;
    let sip_tls_identity =
        match (layers.get("sip.tls_client_cert", readable_file)?, layers.get("sip.tls_client_key", readable_file)?) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "sip.tls_client_key",
                    &layers.origin("sip.tls_client_cert"),
                    "missing: a client certificate needs sip.tls_client_cert and sip.tls_client_key",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "sip.tls_client_cert",
                    &layers.origin("sip.tls_client_key"),
                    "missing: a client certificate needs sip.tls_client_cert and sip.tls_client_key",
                ))
            }
        };
    let sip_tls = match (
        tls_pair(layers, "sip.tls_cert", "sip.tls_key", "SIP over TLS")?,
        layers.get("sip.tls_bind", parse_addr)?,
    ) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "sip.tls_cert",
                &layers.origin("sip.tls_bind"),
                "missing: a SIP TLS listener needs sip.tls_cert and sip.tls_key",
            ))
        }
        (Some(server), bind) => {
            // SIP clients name no application protocol (HTTPS's ALPN would refuse one that did).
            let mut server = (*server).clone();
            server.alpn_protocols.clear();
            Some((bind.unwrap_or(SocketAddr::new(sip_udp_bind.ip(), 5061)), Arc::new(server)))
        }
    };
    let sip_public_ip = layers.get("sip.public_ip", parse_ip)?;
    let sip_max_redirects = layers.get_or("sip.max_redirects", 3, |r| bounded(r, 0, 10).map(|n| n as u8))?;
    let sip_outbound_proxy = layers.get("sip.outbound_proxy", |r| {
        let s = text(r)?;
        match sip_signaling::Uri::parse(&s) {
            Ok(sip_signaling::Uri::Sip(_)) => Ok(s),
            Ok(_) => Err(format!("{s:?} is not a sip: or sips: URI")),
            Err(e) => Err(format!("{s:?} is not a SIP URI: {e}")),
        }
    })?;
    let sip_udp_size_limit = layers
        .get_or("sip.udp_size_limit", Some(1300), |r| bounded(r, 0, 65_535).map(|n| (n > 0).then_some(n as usize)))?;
    let sip_max_inbound_per_address =
        layers.get_or("sip.max_inbound_per_address", 32, |r| bounded(r, 1, 1024).map(|n| n as usize))?;
    let media_bind_ip = layers.get_or("media.bind_ip", IpAddr::V4(Ipv4Addr::LOCALHOST), parse_ip)?;
    let media_rtp_ports = layers.get_or("media.rtp_ports", (40000, 49999), parse_port_range)?;
    let media_public_ip = layers.get("media.public_ip", parse_ip)?;
    let audio_codecs =
        layers.get_or("media.audio_codecs", vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma], parse_codecs)?;
    let srtp_offer = layers.get_or("media.srtp_offer", SrtpOffer::Sdes, |r| srtp(&text(r)?))?;
    let sdes_suites = layers.get_or("media.srtp_suites", bridge::BridgeConfig::default().sdes_suites, parse_suites)?;
    let video_defaults = bridge::VideoConfig::default();
    let (width, height) = layers.get_or("video.canvas", (video_defaults.width, video_defaults.height), parse_canvas)?;
    let video = bridge::VideoConfig {
        codecs: layers.get_or("video.codecs", video_defaults.codecs.clone(), parse_video_codecs)?,
        width,
        height,
        fps: layers.get_or("video.fps", video_defaults.fps, |r| bounded(r, 1, 60))?,
        bitrate: layers.get_or("video.bitrate", video_defaults.bitrate, |r| bounded(r, 50_000, 20_000_000))?,
        receive_bitrate: layers
            .get_or("video.receive_bitrate", 0, |r| match bounded(r, 0, 50_000_000)? {
                0 => Ok(0),
                n if n < 50_000 => Err("0 (no limit) or at least 50000".into()),
                n => Ok(n),
            })
            .map(|n| (n > 0).then_some(n))?,
        keyframe_interval: layers.get_or(
            "video.keyframe_interval",
            video_defaults.keyframe_interval,
            parse_duration,
        )?,
    };
    let webrtc_bind = layers.get_or("webrtc.bind", SocketAddr::new(rest_listen.ip(), 0), parse_addr)?;
    let webrtc_public = layers.get_or("webrtc.public", Vec::new(), |r| list(r)?.iter().map(|s| addr(s)).collect())?;
    let secs = Duration::from_secs;
    let no_rtp_timeout = layers.get_or("timeouts.no_rtp", secs(30), parse_duration)?;
    let inactivity_timeout = layers.get_or("timeouts.inactivity", secs(300), parse_duration)?;
    let max_duration = layers.get_or("timeouts.max_duration", secs(6 * 3600), parse_duration)?;
    let session_empty_timeout = layers.get_or("timeouts.session_empty", secs(60), parse_duration)?;
    let shutdown_calls = layers.get_or("timeouts.shutdown_calls", secs(5), parse_duration)?;
    let http_request_timeout = layers.get_or("timeouts.http_request", secs(30), parse_duration)?;
    let rest_max_connections =
        layers.get_or("rest.max_connections", 1024, |r| bounded(r, 2, 1 << 20).map(|n| n as usize))?;
    let shutdown_callbacks = layers.get_or("timeouts.shutdown_callbacks", secs(5), parse_duration)?;
    let callback_store = layers.get("callbacks.store", path)?;
    let callback_initial_backoff =
        layers.get_or("callbacks.initial_backoff", Duration::from_millis(500), parse_duration)?;
    let callback_max_backoff = layers.get_or("callbacks.max_backoff", secs(60), parse_duration)?;
    if callback_max_backoff < callback_initial_backoff {
        let origin = layers.origin("callbacks.max_backoff");
        return Err(ConfigError::new(
            "callbacks.max_backoff",
            &origin,
            "must not be shorter than callbacks.initial_backoff",
        ));
    }
    let callback_request_timeout = layers.get_or("callbacks.request_timeout", secs(10), parse_duration)?;
    let callback_max_attempts = layers.get("callbacks.max_attempts", |r| {
        let n = integer(r)?;
        u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| format!("{n} is not a positive count"))
    })?;
    let callback_circuit_after =
        layers.get_or("callbacks.circuit_after", Some(5), |r| bounded(r, 0, 1000).map(|n| (n > 0).then_some(n)))?;
    let zero_is_none = |r: &Raw| -> Result<Option<Duration>, String> {
        match r {
            Raw::Int(0) => Ok(None),
            Raw::Text(s) if s.trim() == "0" => Ok(None),
            other => parse_duration(other).map(Some),
        }
    };
    let callback_max_age = layers.get_or("callbacks.max_age", Some(Duration::from_secs(72 * 3600)), zero_is_none)?;
    let count_or_none = |r: &Raw| -> Result<Option<u64>, String> {
        let n = integer(r)?;
        let n = u64::try_from(n).map_err(|_| format!("{n} is negative"))?;
        Ok((n > 0).then_some(n))
    };
    let callback_max_backlog = layers.get_or("callbacks.max_backlog", Some(100_000), count_or_none)?;
    let callback_max_dead_letters = layers.get_or("callbacks.max_dead_letters", Some(100_000), count_or_none)?;
    let mut projects: Vec<ProjectSettings> = Vec::new();
    for (label, entry, origin) in entries {
        let p = project(&label, entry, &origin)?;
        match projects.iter().position(|q| q.project.id() == p.project.id()) {
            // The environment's project replaces a file project with the same id.
            Some(i) if matches!(origin, Origin::Env(_)) => projects[i] = p,
            Some(_) => {
                let m = format!("project {} is configured twice", p.project.id());
                return Err(ConfigError::new(&label, &origin, m));
            }
            None => projects.push(p),
        }
    }
    if projects.is_empty() && !demo {
        let origin = file.clone().map(Origin::File).unwrap_or(Origin::Default);
        return Err(ConfigError::new(
            "projects",
            &origin,
            "no project configured: add a [[projects]] table (or set GATEWAY_API_KEY and GATEWAY_API_SECRET), or set demo = true",
        ));
    }
    Ok(Settings {
        file,
        demo,
        demo_callback_url,
        log_format,
        log_level,
        rest_listen,
        rest_tls,
        sip_udp_bind,
        sip_udp_bind_explicit: layers.is_set("sip.udp_bind"),
        sip_tcp_bind,
        sip_tls_ca_file,
        sip_tls_identity,
        sip_tls,
        sip_public_ip,
        sip_max_redirects,
        sip_udp_size_limit,
        sip_max_inbound_per_address,
        sip_outbound_proxy,
        media_bind_ip,
        media_rtp_ports,
        media_public_ip,
        audio_codecs,
        srtp_offer,
        sdes_suites,
        video,
        webrtc_bind,
        webrtc_public,
        no_rtp_timeout,
        inactivity_timeout,
        max_duration,
        session_empty_timeout,
        shutdown_calls,
        http_request_timeout,
        rest_max_connections,
        shutdown_callbacks,
        callback_store,
        callback_initial_backoff,
        callback_max_backoff,
        callback_request_timeout,
        callback_max_attempts,
        callback_circuit_after,
        callback_max_age,
        callback_max_backlog,
        callback_max_dead_letters,
        projects,
        warnings: Vec::new(),
    })
}

/// One project entry, checked. Errors name the field, never a secret's value.
fn project(label: &str, e: ProjectEntry, origin: &Origin) -> Result<ProjectSettings, ConfigError> {
    let env = matches!(origin, Origin::Env(_));
    // For the environment's project, name the variable rather than a field of the file.
    let err = |field: &str, env_var: &str, m: String| {
        if env {
            ConfigError { key: None, origin: Origin::Env(env_var.into()), message: m }
        } else {
            ConfigError::new(format!("{label}.{field}"), origin, m)
        }
    };
    let project = match (&e.api_key, &e.application_id) {
        (Some(key), None) => {
            let key = key.text();
            let secret = e.api_secret.as_deref().ok_or_else(|| {
                err("api_secret", "GATEWAY_API_SECRET", "missing: a legacy project needs api_key and api_secret".into())
            })?;
            if e.public_key_file.is_some() {
                return Err(err(
                    "public_key_file",
                    "GATEWAY_PUBLIC_KEY_FILE",
                    "only for an application_id project".into(),
                ));
            }
            let secret = ApiSecret::new(secret).map_err(|x| err("api_secret", "GATEWAY_API_SECRET", x.to_string()))?;
            Project::legacy(&key, secret).map_err(|x| err("api_key", "GATEWAY_API_KEY", format!("{key:?}: {x}")))?
        }
        (None, Some(app)) => {
            if e.api_secret.is_some() {
                return Err(err("api_secret", "GATEWAY_API_SECRET", "only for an api_key project".into()));
            }
            let file = e.public_key_file.as_ref().ok_or_else(|| {
                err(
                    "public_key_file",
                    "GATEWAY_PUBLIC_KEY_FILE",
                    "missing: an application project needs application_id and public_key_file".into(),
                )
            })?;
            let pem = std::fs::read_to_string(file).map_err(|x| {
                err("public_key_file", "GATEWAY_PUBLIC_KEY_FILE", format!("cannot read {}: {x}", file.display()))
            })?;
            Project::application(app, &pem).map_err(|x| match x {
                session::CredentialError::InvalidApplicationId => {
                    err("application_id", "GATEWAY_APPLICATION_ID", format!("{app:?}: {x}"))
                }
                other => err("public_key_file", "GATEWAY_PUBLIC_KEY_FILE", format!("{}: {other}", file.display())),
            })?
        }
        (Some(_), Some(_)) => {
            return Err(err(
                "application_id",
                "GATEWAY_APPLICATION_ID",
                "give api_key or application_id, not both".into(),
            ))
        }
        (None, None) => {
            return Err(err(
                "api_key",
                "GATEWAY_API_KEY",
                "missing: a project needs api_key (+ api_secret) or application_id (+ public_key_file)".into(),
            ))
        }
    };
    let callbacks = match (e.callback_url, e.callback_secret) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(err(
                "callback_url",
                "GATEWAY_CALLBACK_URL",
                "missing: callback_secret is set but there is no callback_url".into(),
            ))
        }
        (Some(url), secret) => {
            check_url(&url).map_err(|m| err("callback_url", "GATEWAY_CALLBACK_URL", m))?;
            if secret.as_deref() == Some("") {
                return Err(err("callback_secret", "GATEWAY_CALLBACK_SECRET", "empty".into()));
            }
            Some(ProjectCallbacks { url, signature_secret: secret })
        }
    };
    let srtp_offer = e.srtp_offer.as_deref().map(srtp).transpose().map_err(|m| err("srtp_offer", "", m))?;
    Ok(ProjectSettings { project, callbacks, srtp_offer })
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.trim().parse().map_err(|_| "not a URL".to_owned())?;
    // Credentials in the URL are refused (the callbacks crate does too, and they would be logged
    // with it): a signing secret authenticates the gateway. The URL itself is never echoed.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("a user name or password in the URL is not allowed (use callback_secret to sign)".into());
    }
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        _ => return Err("expected an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// The rustls configuration of the HTTPS front; errors say which file (`cert` or `key`).
fn server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, (&'static str, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ("cert", format!("cannot read a PEM certificate chain from {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(("cert", format!("no certificate in {}", cert.display())));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ("key", format!("cannot read a PEM private key from {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| ("key", format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A certificate and key pair of settings (`cert`, `key`) for a TLS server (`what`, for the
/// messages): both or neither.
fn tls_pair(
    layers: &Layers,
    cert: &'static str,
    key: &'static str,
    what: &str,
) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    match (layers.get(cert, path)?, layers.get(key, path)?) {
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(ConfigError::new(key, &layers.origin(cert), format!("missing: {what} needs {cert} and {key}")))
        }
        (None, Some(_)) => {
            Err(ConfigError::new(cert, &layers.origin(key), format!("missing: {what} needs {cert} and {key}")))
        }
        (Some(c), Some(k)) => server_tls(&c, &k).map(Some).map_err(|(which, m)| {
            let name = if which == "cert" { cert } else { key };
            ConfigError::new(name, &layers.origin(name), m)
        }),
    }
}

fn text(r: &Raw) -> Result<String, String> {
    match r {
        Raw::Text(s) => Ok(s.trim().to_owned()),
        Raw::Int(i) => Ok(i.to_string()),
        Raw::Bool(_) => Err("expected a string, found a boolean".into()),
        Raw::List(_) => Err("expected a string, found a list".into()),
    }
}

fn list(r: &Raw) -> Result<Vec<String>, String> {
    match r {
        Raw::List(items) => Ok(items.iter().map(|s| s.trim().to_owned()).collect()),
        Raw::Text(s) => Ok(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()),
        _ => Err("expected a list (or a comma-separated string)".into()),
    }
}

fn integer(r: &Raw) -> Result<i64, String> {
    match r {
        Raw::Int(i) => Ok(*i),
        other => {
            let s = text(other)?;
            s.parse().map_err(|_| format!("{s:?} is not an integer"))
        }
    }
}

fn parse_bool(r: &Raw) -> Result<bool, String> {
    match r {
        Raw::Bool(b) => Ok(*b),
        other => match text(other)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            s => Err(format!("{s:?} is not a boolean (true or false)")),
        },
    }
}

fn path(r: &Raw) -> Result<PathBuf, String> {
    let s = text(r)?;
    if s.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(s))
}

fn readable_file(r: &Raw) -> Result<PathBuf, String> {
    let p = path(r)?;
    std::fs::File::open(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Ok(p)
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an address (expected IP:PORT, e.g. 127.0.0.1:3000 or [::1]:3000)"))
}

fn parse_addr(r: &Raw) -> Result<SocketAddr, String> {
    addr(&text(r)?)
}

fn parse_ip(r: &Raw) -> Result<IpAddr, String> {
    let s = text(r)?;
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

/// `"40000-49999"`: at least one even RTP port with its odd neighbour.
fn parse_port_range(r: &Raw) -> Result<(u16, u16), String> {
    let s = text(r)?;
    let bad = || format!("{s:?} is not a port range (expected FIRST-LAST, e.g. 40000-49999)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let first: u16 = a.trim().parse().map_err(|_| bad())?;
    let last: u16 = b.trim().parse().map_err(|_| bad())?;
    let above_even = first.checked_add(first % 2).and_then(|even| even.checked_add(1));
    if first == 0 || above_even.is_none_or(|above| last < above) {
        return Err(format!("{s:?}: the range needs at least one even port and the port above it, and no port 0"));
    }
    Ok((first, last))
}

/// A duration: an integer of seconds, or a number with a unit: `500ms`, `30s`, `5m`, `6h`.
pub fn parse_duration(r: &Raw) -> Result<Duration, String> {
    let d = match r {
        Raw::Int(i) => u64::try_from(*i).map(Duration::from_secs).map_err(|_| format!("{i} is negative"))?,
        other => {
            let s = text(other)?;
            let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let bad = || format!("{s:?} is not a duration (e.g. 500ms, 30s, 5m, 6h, or a number of seconds)");
            let n: f64 = num.parse().map_err(|_| bad())?;
            let scale = match unit.trim() {
                "ms" => 0.001,
                "" | "s" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            Duration::try_from_secs_f64(n * scale).map_err(|_| bad())?
        }
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    // A year is more than any timeout here needs, and keeps every deadline computed from one
    // (now + it, doubled by a backoff) far from overflowing.
    if d > MAX_DURATION {
        return Err("must be at most a year".into());
    }
    Ok(d)
}

/// The longest duration a setting takes.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn srtp(s: &str) -> Result<SrtpOffer, String> {
    match s.to_ascii_lowercase().as_str() {
        "sdes" => Ok(SrtpOffer::Sdes),
        "dtls" => Ok(SrtpOffer::Dtls),
        _ => Err(format!("{s:?} is not an SRTP offer (sdes or dtls)")),
    }
}

/// SRTP suites by their SDES names (any case), each at most once, at least one.
fn parse_suites(r: &Raw) -> Result<Vec<srtp_transport::Suite>, String> {
    let mut out = Vec::new();
    for name in list(r)? {
        let suite = srtp_transport::Suite::from_sdes_name(&name.to_ascii_uppercase())
            .ok_or_else(|| format!("{name:?} is not an SRTP suite (for example AES_CM_128_HMAC_SHA1_80)"))?;
        if out.contains(&suite) {
            return Err(format!("{name:?} is listed twice"));
        }
        out.push(suite);
    }
    if out.is_empty() {
        return Err("needs at least one suite".into());
    }
    Ok(out)
}

fn parse_codecs(r: &Raw) -> Result<Vec<Codec>, String> {
    let out = codec_list(
        r,
        "an audio codec",
        &[("opus", Codec::Opus), ("g722", Codec::G722), ("pcmu", Codec::Pcmu), ("pcma", Codec::Pcma)],
    )?;
    if out.is_empty() {
        return Err("needs at least one codec".into());
    }
    Ok(out)
}

/// Video codecs; an empty list is allowed (it never offers video).
fn parse_video_codecs(r: &Raw) -> Result<Vec<Codec>, String> {
    codec_list(r, "a video codec", &[("h264", Codec::H264), ("vp8", Codec::Vp8)])
}

/// A preference list of codec names out of `known`, each at most once.
fn codec_list(r: &Raw, what: &str, known: &[(&str, Codec)]) -> Result<Vec<Codec>, String> {
    let mut out = Vec::new();
    for name in list(r)? {
        let lower = name.to_ascii_lowercase();
        let Some(&(_, c)) = known.iter().find(|(n, _)| *n == lower) else {
            let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
            return Err(format!("{name:?} is not {what} ({})", names.join(", ")));
        };
        if out.contains(&c) {
            return Err(format!("{name:?} is listed twice"));
        }
        out.push(c);
    }
    Ok(out)
}

/// `WIDTHxHEIGHT`, both even, from 64x64 to 3840x2160.
fn parse_canvas(r: &Raw) -> Result<(u32, u32), String> {
    let t = text(r)?;
    let (w, h) = t.split_once(['x', 'X']).ok_or_else(|| format!("{t:?} is not WIDTHxHEIGHT"))?;
    let (w, h): (u32, u32) = match (w.trim().parse(), h.trim().parse()) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(format!("{t:?} is not WIDTHxHEIGHT")),
    };
    if !(64..=3840).contains(&w) || !(64..=2160).contains(&h) || w % 2 == 1 || h % 2 == 1 {
        return Err(format!("{t:?}: width and height must be even, from 64x64 to 3840x2160"));
    }
    Ok((w, h))
}

fn bounded(r: &Raw, min: u32, max: u32) -> Result<u32, String> {
    let v = integer(r)?;
    u32::try_from(v).ok().filter(|v| (min..=max).contains(v)).ok_or_else(|| format!("{v} is not within {min}..={max}"))
}

impl Settings {
    /// The effective configuration as `key = value` lines, secrets left out (for `--check`).
    pub fn summary(&self) -> String {
        let d = |d: Duration| format!("{d:?}");
        let opt = |o: Option<String>| o.unwrap_or_else(|| "none".into());
        let mut lines = vec![
            format!("file = {}", opt(self.file.as_ref().map(|p| p.display().to_string()))),
            format!("demo = {}", self.demo),
            format!("demo_callback_url = {}", opt(self.demo_callback_url.clone())),
            format!("log.format = {:?}", self.log_format),
            format!("log.level = {}", opt(self.log_level.clone())),
            format!("rest.listen = {}", self.rest_listen),
            format!("rest.tls = {}", if self.rest_tls.is_some() { "on" } else { "off" }),
            format!("sip.udp_bind = {}", self.sip_udp_bind),
            format!(
                "sip.tcp_bind = {}",
                match self.sip_tcp_bind {
                    None => "beside sip.udp_bind".to_owned(),
                    Some(None) => "off".to_owned(),
                    Some(Some(a)) => a.to_string(),
                }
            ),
            format!("sip.tls_ca_file = {}", opt(self.sip_tls_ca_file.as_ref().map(|p| p.display().to_string()))),
            format!(
                "sip.tls_client_cert = {}",
                opt(self.sip_tls_identity.as_ref().map(|(cert, _)| cert.display().to_string()))
            ),
            format!("sip.tls_bind = {}", opt(self.sip_tls.as_ref().map(|(a, _)| a.to_string()))),
            format!("sip.public_ip = {}", opt(self.sip_public_ip.map(|a| a.to_string()))),
            format!("sip.max_redirects = {}", self.sip_max_redirects),
            format!("sip.udp_size_limit = {}", self.sip_udp_size_limit.unwrap_or(0)),
            format!("sip.max_inbound_per_address = {}", self.sip_max_inbound_per_address),
            format!("sip.outbound_proxy = {}", opt(self.sip_outbound_proxy.clone())),
            format!("media.bind_ip = {}", self.media_bind_ip),
            format!("media.rtp_ports = {}-{}", self.media_rtp_ports.0, self.media_rtp_ports.1),
            format!("media.public_ip = {}", opt(self.media_public_ip.map(|a| a.to_string()))),
            format!("media.audio_codecs = {:?}", self.audio_codecs),
            format!("media.srtp_offer = {:?}", self.srtp_offer),
            format!(
                "media.srtp_suites = {}",
                self.sdes_suites.iter().map(|s| s.sdes_name()).collect::<Vec<_>>().join(",")
            ),
            format!("video.codecs = {:?}", self.video.codecs),
            format!("video.canvas = {}x{}", self.video.width, self.video.height),
            format!("video.fps = {}", self.video.fps),
            format!("video.bitrate = {}", self.video.bitrate),
            format!("video.receive_bitrate = {}", self.video.receive_bitrate.unwrap_or(0)),
            format!("video.keyframe_interval = {}", d(self.video.keyframe_interval)),
            format!("webrtc.bind = {}", self.webrtc_bind),
            format!("webrtc.public = {:?}", self.webrtc_public),
            format!("timeouts.no_rtp = {}", d(self.no_rtp_timeout)),
            format!("timeouts.inactivity = {}", d(self.inactivity_timeout)),
            format!("timeouts.max_duration = {}", d(self.max_duration)),
            format!("timeouts.session_empty = {}", d(self.session_empty_timeout)),
            format!("timeouts.shutdown_calls = {}", d(self.shutdown_calls)),
            format!("timeouts.http_request = {}", d(self.http_request_timeout)),
            format!("rest.max_connections = {}", self.rest_max_connections),
            format!("timeouts.shutdown_callbacks = {}", d(self.shutdown_callbacks)),
            format!("callbacks.store = {}", opt(self.callback_store.as_ref().map(|p| p.display().to_string()))),
            format!("callbacks.initial_backoff = {}", d(self.callback_initial_backoff)),
            format!("callbacks.max_backoff = {}", d(self.callback_max_backoff)),
            format!("callbacks.request_timeout = {}", d(self.callback_request_timeout)),
            format!("callbacks.max_attempts = {}", opt(self.callback_max_attempts.map(|n| n.to_string()))),
            format!("callbacks.circuit_after = {}", self.callback_circuit_after.unwrap_or(0)),
            format!("callbacks.max_age = {}", self.callback_max_age.map_or("0 (never)".to_string(), d)),
            format!("callbacks.max_backlog = {}", self.callback_max_backlog.unwrap_or(0)),
            format!("callbacks.max_dead_letters = {}", self.callback_max_dead_letters.unwrap_or(0)),
        ];
        for p in &self.projects {
            let kind = if p.project.secret().is_some() { "api_key" } else { "application_id" };
            let cb = match &p.callbacks {
                Some(c) => format!("{}{}", c.url, if c.signature_secret.is_some() { " (signed)" } else { "" }),
                None => "none".into(),
            };
            let srtp = p.srtp_offer.map(|o| format!(", srtp_offer = {o:?}")).unwrap_or_default();
            lines.push(format!("project {kind} = {}, callback_url = {cb}{srtp}", p.project.id()));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

    fn dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("gateway-config-test-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn file(contents: &str) -> PathBuf {
        let p = dir().join("gateway.toml");
        std::fs::write(&p, contents).expect("write");
        p
    }

    fn args(list: &[&str]) -> Args {
        parse_args(list.iter().map(|s| s.to_string())).expect("args")
    }

    fn env(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn err(r: Result<Settings, ConfigError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_file_no_flags_is_demo_mode_on_loopback() {
        let s = load(&args(&[]), &env(&[])).expect("default");
        assert!(s.demo);
        assert!(s.projects.is_empty());
        assert_eq!(s.rest_listen, "127.0.0.1:3000".parse::<SocketAddr>().expect("addr"));
        assert_eq!(s.sip_udp_bind, "127.0.0.1:5060".parse::<SocketAddr>().expect("addr"));
        assert!(!s.sip_udp_bind_explicit);
        assert_eq!(s.webrtc_bind, "127.0.0.1:0".parse::<SocketAddr>().expect("addr"));
        assert_eq!(s.media_bind_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(s.rest_tls.is_none());
        // Today's flags keep working, and keep demo mode.
        let s = load(
            &args(&["--listen", "127.0.0.1:0", "--rtc-public", "10.0.0.1:5000", "--rtc-public", "10.0.0.2:5000"]),
            &env(&[]),
        )
        .expect("flags");
        assert!(s.demo);
        assert_eq!(s.rest_listen.port(), 0);
        assert_eq!(s.webrtc_public.len(), 2);
    }

    #[test]
    fn srtp_suites_by_name() {
        let s = load(&args(&[]), &env(&[])).expect("default");
        assert_eq!(s.sdes_suites, bridge::BridgeConfig::default().sdes_suites);
        let s = load(
            &args(&[]),
            &env(&[("GATEWAY_MEDIA_SRTP_SUITES", "aes_256_cm_hmac_sha1_80, AES_CM_128_HMAC_SHA1_80")]),
        )
        .expect("valid");
        assert_eq!(
            s.sdes_suites,
            [srtp_transport::Suite::AesCm256HmacSha1_80, srtp_transport::Suite::AesCm128HmacSha1_80]
        );
        for bad in ["", "AES_CM_128_HMAC_SHA1_80,AES_CM_128_HMAC_SHA1_80"] {
            assert!(load(&args(&[]), &env(&[("GATEWAY_MEDIA_SRTP_SUITES", bad)])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn video_settings() {
        let s = load(&args(&[]), &env(&[])).expect("default");
        assert_eq!(s.video, bridge::VideoConfig::default());
        let s = load(
            &args(&["--video-canvas", "640x360", "--video-fps", "15", "--video-keyframe-interval", "2s"]),
            &env(&[
                ("GATEWAY_VIDEO_CODECS", "vp8"),
                ("GATEWAY_VIDEO_BITRATE", "800000"),
                ("GATEWAY_VIDEO_RECEIVE_BITRATE", "1200000"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.video.receive_bitrate, Some(1_200_000));
        assert_eq!((s.video.width, s.video.height, s.video.fps, s.video.bitrate), (640, 360, 15, 800_000));
        assert_eq!(s.video.codecs, vec![Codec::Vp8]);
        assert_eq!(s.video.keyframe_interval, Duration::from_secs(2));
        let s = load(&args(&[]), &env(&[("GATEWAY_VIDEO_CODECS", "")])).expect("no video");
        assert!(s.video.codecs.is_empty(), "an empty list never offers video");
        for (key, value, why) in [
            ("GATEWAY_VIDEO_CANVAS", "641x360", "even"),
            ("GATEWAY_VIDEO_CANVAS", "big", "WIDTHxHEIGHT"),
            ("GATEWAY_VIDEO_FPS", "0", "within"),
            ("GATEWAY_VIDEO_BITRATE", "10", "within"),
            ("GATEWAY_VIDEO_RECEIVE_BITRATE", "1000", "at least 50000"),
            ("GATEWAY_MEDIA_SRTP_SUITES", "AES_CM_128_HMAC_SHA1_80,ROT13", "not an SRTP suite"),
            ("GATEWAY_VIDEO_CODECS", "h265", "not a video codec"),
            ("GATEWAY_VIDEO_CODECS", "vp8,vp8", "twice"),
        ] {
            let m = err(load(&args(&[]), &env(&[(key, value)])));
            assert!(m.contains(why), "{key}={value}: {m}");
        }
    }

    #[test]
    fn a_client_certificate_needs_both_files() {
        let file = env!("CARGO_MANIFEST_PATH");
        let s = load(&args(&[]), &env(&[])).expect("default");
        assert_eq!(s.sip_tls_identity, None);
        let s = load(&args(&["--sip-tls-client-cert", file, "--sip-tls-client-key", file]), &env(&[])).expect("both");
        assert_eq!(s.sip_tls_identity, Some((PathBuf::from(file), PathBuf::from(file))));
        let m = err(load(&args(&["--sip-tls-client-cert", file]), &env(&[])));
        assert!(m.contains("sip.tls_client_key"), "{m}");
        let m = err(load(&args(&[]), &env(&[("GATEWAY_SIP_TLS_CLIENT_KEY", file)])));
        assert!(m.contains("sip.tls_client_cert"), "{m}");
        let m =
            err(load(&args(&["--sip-tls-client-cert", "/nonexistent.pem", "--sip-tls-client-key", file]), &env(&[])));
        assert!(m.contains("sip.tls_client_cert"), "{m}");
    }

    #[test]
    fn callback_limits() {
        let s = load(&args(&[]), &env(&[])).expect("default");
        assert_eq!(s.callback_max_age, Some(Duration::from_secs(72 * 3600)));
        assert_eq!((s.callback_max_backlog, s.callback_max_dead_letters), (Some(100_000), Some(100_000)));
        let s = load(
            &args(&["--callbacks-max-age", "90m", "--callbacks-max-backlog", "0"]),
            &env(&[("GATEWAY_CALLBACKS_MAX_DEAD_LETTERS", "50")]),
        )
        .expect("valid");
        assert_eq!(s.callback_max_age, Some(Duration::from_secs(90 * 60)));
        assert_eq!((s.callback_max_backlog, s.callback_max_dead_letters), (None, Some(50)));
        let s = load(&args(&["--callbacks-max-age", "0"]), &env(&[])).expect("never");
        assert_eq!(s.callback_max_age, None);
        for (key, value, why) in [
            ("GATEWAY_CALLBACKS_MAX_AGE", "soon", "not a duration"),
            ("GATEWAY_CALLBACKS_MAX_BACKLOG", "-1", "negative"),
            ("GATEWAY_CALLBACKS_MAX_DEAD_LETTERS", "many", "not an integer"),
        ] {
            let m = err(load(&args(&[]), &env(&[(key, value)])));
            assert!(m.contains(why), "{key}={value}: {m}");
        }
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let f = file(&format!(
            "[rest]\nlisten = \"127.0.0.1:1000\"\n[sip]\nudp_bind = \"127.0.0.1:1001\"\npublic_ip = \"192.0.2.1\"\n\
             [[projects]]\napi_key = 123456\napi_secret = \"{SECRET}\"\n"
        ));
        let e = env(&[("GATEWAY_REST_LISTEN", "127.0.0.1:2000"), ("GATEWAY_SIP_UDP_BIND", "127.0.0.1:2001")]);
        let a = args(&["--config", f.to_str().expect("utf-8"), "--rest-listen", "127.0.0.1:3001"]);
        let s = load(&a, &e).expect("valid");
        assert_eq!(s.rest_listen.port(), 3001, "the flag wins");
        assert_eq!(s.sip_udp_bind.port(), 2001, "the environment beats the file");
        assert!(s.sip_udp_bind_explicit);
        assert_eq!(s.sip_public_ip, Some("192.0.2.1".parse::<IpAddr>().expect("ip")), "the file beats the default");
        assert!(!s.demo, "a file turns demo mode off by default");
        assert_eq!(s.projects.len(), 1);
        assert_eq!(s.projects[0].project.id().as_str(), "123456");
        // GATEWAY_CONFIG names the file too.
        let s = load(&args(&[]), &env(&[("GATEWAY_CONFIG", f.to_str().expect("utf-8"))])).expect("valid");
        assert_eq!(s.rest_listen.port(), 1000);
    }

    #[test]
    fn errors_name_the_key_and_where_it_came_from() {
        let f = file("demo = true\n[rest]\nlisten = \"nonsense\"\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.starts_with("rest.listen in ") && m.contains("gateway.toml") && m.contains("nonsense"), "{m}");
        let m = err(load(&args(&[]), &env(&[("GATEWAY_MEDIA_RTP_PORTS", "5-4")])));
        assert!(m.contains("media.rtp_ports") && m.contains("GATEWAY_MEDIA_RTP_PORTS"), "{m}");
        let m = err(load(&args(&["--timeouts-no-rtp", "soon"]), &env(&[])));
        assert!(m.contains("timeouts.no_rtp") && m.contains("--timeouts-no-rtp"), "{m}");
        let f = file("[rest]\nlisen = \"127.0.0.1:1\"\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("rest.lisen") && m.contains("unknown key") && m.contains("rest.listen"), "{m}");
        // An unknown GATEWAY_* variable is a warning (orchestrators set some), not an error.
        let s = load(&args(&[]), &env(&[("GATEWAY_REST_LISTN", "x"), ("GATEWAY_PORT", "tcp://10.0.0.1:3000")]))
            .expect("valid");
        assert_eq!(s.warnings.len(), 2);
        assert!(s.warnings[1].contains("GATEWAY_REST_LISTN"), "{:?}", s.warnings);
        let f = file("[[projects]]\napi_key = \"123\"\napi_secert = \"x\"\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[0]") && m.contains("api_secert"), "{m}");
        let f = file("log = 3\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("log"), "{m}");
        let f = file("[media]\naudio_codecs = [\"opus\", \"gsm\"]\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8"), "--demo"]), &env(&[])));
        assert!(m.contains("media.audio_codecs") && m.contains("gsm"), "{m}");
        let f = file("[rest]\ntls_cert = \"/nonexistent/cert.pem\"\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8"), "--demo"]), &env(&[])));
        assert!(m.contains("rest.tls_key") && m.contains("missing"), "{m}");
        let m = err(load(&args(&["--demo", "--sip-tls-bind", "127.0.0.1:5061"]), &env(&[])));
        assert!(m.contains("sip.tls_cert") && m.contains("missing"), "a TLS listener without a certificate: {m}");
        let f = file("[sip]\ntls_key = \"/nonexistent/key.pem\"\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8"), "--demo"]), &env(&[])));
        assert!(m.contains("sip.tls_cert") || m.contains("sip.tls_key"), "{m}");
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let bad_secret = "my-secret-key.pem";
        let f = file(&format!("[[projects]]\napi_key = \"123456\"\napi_secret = \"{bad_secret}\"\ncallback_url = \"http://h/cb\"\ncallback_secret = \"cbsecret\"\n"));
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[0].api_secret") && !m.contains(bad_secret), "{m}");
        let m = err(load(&args(&[]), &env(&[("GATEWAY_API_KEY", "123456"), ("GATEWAY_API_SECRET", bad_secret)])));
        assert!(m.contains("GATEWAY_API_SECRET") && !m.contains(bad_secret), "{m}");
        let f = file(&format!("[[projects]]\napi_key = \"123456\"\napi_secret = \"{SECRET}\"\ncallback_url = \"http://h/cb\"\ncallback_secret = \"cbsecret\"\n"));
        let s = load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])).expect("valid");
        let shown = format!("{}\n{s:?}", s.summary());
        assert!(!shown.contains(SECRET) && !shown.contains("cbsecret"), "{shown}");
        assert!(shown.contains("(signed)"));
        // The TOML parser quotes the line it stops at, and serde the value of a mistyped field:
        // neither reaches the message.
        let f = file("[[projects]]\napi_key = \"123456\"\napi_secret = \"half-a-secret\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("not valid TOML at line 3") && !m.contains("half-a-secret"), "{m}");
        let f = file("[[projects]]\napi_key = \"123456\"\napi_secret = 918273645\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[0]") && !m.contains("918273645"), "{m}");
        let f = file("[[projects]]\napi_key = \"123456\"\napi_secret = \"s3cr3t-value\"\ncallback_secret = true\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[0]") && !m.contains("s3cr3t-value"), "{m}");
    }

    #[test]
    fn projects_from_the_environment_and_their_checks() {
        let e = env(&[
            ("GATEWAY_API_KEY", "777"),
            ("GATEWAY_API_SECRET", SECRET),
            ("GATEWAY_CALLBACK_URL", "https://example.com/cb"),
        ]);
        let s = load(&args(&[]), &e).expect("valid");
        assert_eq!(s.projects.len(), 1);
        assert_eq!(s.projects[0].callbacks.as_ref().map(|c| c.url.as_str()), Some("https://example.com/cb"));
        let m = err(load(&args(&["--no-demo"]), &env(&[])));
        assert!(m.contains("projects") && m.contains("no project"), "{m}");
        let m = err(load(
            &args(&[]),
            &env(&[("GATEWAY_API_KEY", "777"), ("GATEWAY_API_SECRET", SECRET), ("GATEWAY_CALLBACK_URL", "ftp://x")]),
        ));
        assert!(m.contains("GATEWAY_CALLBACK_URL"), "{m}");
        let f = file(&format!("[[projects]]\napi_key = \"1\"\napi_secret = \"{SECRET}\"\n[[projects]]\napi_key = \"1\"\napi_secret = \"{SECRET}\"\n"));
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[1]") && m.contains("twice"), "{m}");
        let f = file("[[projects]]\napplication_id = \"9f2b4c1e-0a1b-4c2d-8e3f-123456789abc\"\npublic_key_file = \"/nonexistent.pem\"\n");
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[0].public_key_file"), "{m}");
    }

    #[test]
    fn values_parse() {
        let d = |s: &str| parse_duration(&Raw::Text(s.into()));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(d("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(&Raw::Int(7)), Ok(Duration::from_secs(7)));
        assert!(d("0s").is_err() && d("soon").is_err() && d("5 parsecs").is_err());
        assert!(parse_duration(&Raw::Int(-1)).is_err());
        // Nothing longer than a year (a deadline of now + i64::MAX seconds would overflow).
        assert!(parse_duration(&Raw::Int(i64::MAX)).is_err() && d("9000h").is_err());
        assert_eq!(d("8760h"), Ok(Duration::from_secs(365 * 24 * 3600)));
        assert_eq!(parse_port_range(&Raw::Text("40000-40999".into())), Ok((40000, 40999)));
        assert!(parse_port_range(&Raw::Text("40001-40002".into())).is_err(), "no even port with a neighbour");
        assert!(parse_port_range(&Raw::Text("0-10".into())).is_err());
        assert!(parse_port_range(&Raw::Text("65535-65535".into())).is_err(), "no even port at the top");
        assert_eq!(parse_port_range(&Raw::Text("65534-65535".into())), Ok((65534, 65535)));
        assert_eq!(parse_codecs(&Raw::Text("PCMA, opus".into())), Ok(vec![Codec::Pcma, Codec::Opus]));
        assert!(parse_codecs(&Raw::List(vec![])).is_err());
        assert_eq!(parse_bool(&Raw::Text("off".into())), Ok(false));
        assert!(
            check_url("http://127.0.0.1:9/cb").is_ok() && check_url("/cb").is_err() && check_url("ws://h/").is_err()
        );
        // Credentials in a callback URL are refused, and the message never repeats the URL.
        let m = check_url("https://user:hunter2@example.com/cb").expect_err("credentials");
        assert!(m.contains("password") && !m.contains("hunter2"), "{m}");
    }

    #[test]
    fn usage_errors() {
        assert!(parse_args(["--bogus".to_string()]).is_err());
        assert!(parse_args(["--rest-listen".to_string()]).is_err());
        assert!(parse_args(["stray".to_string()]).is_err());
        let a = args(&["--demo=false", "--config=x.toml", "--log-format", "json"]);
        assert_eq!(a.config, Some(PathBuf::from("x.toml")));
        assert_eq!(a.flags.len(), 2);
    }

    #[test]
    fn srtp_offer_globally_and_per_project() {
        let f = file(&format!(
            "[media]\nsrtp_offer = \"dtls\"\n[[projects]]\napi_key = \"1\"\napi_secret = \"{SECRET}\"\nsrtp_offer = \"sdes\"\n\
             [[projects]]\napi_key = \"2\"\napi_secret = \"{SECRET}\"\n"
        ));
        let s = load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])).expect("valid");
        assert_eq!(s.srtp_offer, SrtpOffer::Dtls);
        assert_eq!(s.projects[0].srtp_offer, Some(SrtpOffer::Sdes));
        assert_eq!(s.projects[1].srtp_offer, None);
        let f = file(&format!("[[projects]]\napi_key = \"1\"\napi_secret = \"{SECRET}\"\nsrtp_offer = \"zrtp\"\n"));
        let m = err(load(&args(&["--config", f.to_str().expect("utf-8")]), &env(&[])));
        assert!(m.contains("projects[0].srtp_offer") && m.contains("zrtp"), "{m}");
    }

    #[test]
    fn the_sample_file_is_valid_and_shows_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
        let s = load(&args(&["--config", path.to_str().expect("utf-8")]), &env(&[])).expect("the sample loads");
        assert!(!s.demo);
        assert_eq!(s.projects.len(), 1);
        assert_eq!(s.media_rtp_ports, (40000, 49999));
        let text = std::fs::read_to_string(&path).expect("read");
        for k in KEYS {
            let (table, name) = k.name.split_once('.').unwrap_or(("", k.name));
            let in_table = table.is_empty() || text.contains(&format!("[{table}]"));
            let shown = text.lines().any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{name} = ")));
            assert!(in_table && shown, "{} is missing from gateway.example.toml", k.name);
        }
    }

    #[test]
    fn the_readme_lists_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let text = std::fs::read_to_string(&path).expect("read the README");
        for k in KEYS {
            let row = format!("| `{}` | `{}`", k.name, env_name(k.name));
            assert!(text.contains(&row), "the README's configuration table lacks {}", k.name);
        }
        for v in PROJECT_ENV {
            assert!(text.contains(v), "the README does not mention {v}");
        }
    }

    #[test]
    fn every_key_has_an_environment_variable_and_a_flag() {
        for k in KEYS {
            assert!(env_name(k.name).starts_with("GATEWAY_"), "{}", k.name);
            assert!(!flag_name(k.name).contains(['.', '_']), "{}", k.name);
        }
        assert_eq!(env_name("sip.udp_bind"), "GATEWAY_SIP_UDP_BIND");
        assert_eq!(flag_name("sip.udp_bind"), "--sip-udp-bind");
    }
}
