//! The tokio driver: runs a [`UserAgent`] over UDP, TCP and TLS sockets.
//!
//! One task owns the user agent, the UDP socket, a TCP listener (so peers
//! can open connections back to our Contact) and the table of stream
//! connections, keyed by transport and remote address (and for TLS the
//! server name checked) and reused for every message to that peer. [`SipHandle`] sends it commands; each call gets
//! its own event channel.

mod resolve;
mod tls;

pub use resolve::Resolver;
pub use tls::TlsOptions;

use crate::agent::{CallEvent, CallHandle, CallRequest, Config, UserAgent};
use crate::digest::Credentials;
use crate::error::Error;
use crate::transport::{Target, Transmit, Transport};
use crate::uri::Uri;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// UDP socket address (port 0 picks one).
    pub udp_bind: SocketAddr,
    /// TCP listener address; `None` disables accepting connections.
    pub tcp_bind: Option<SocketAddr>,
    /// TLS certificate checks.
    pub tls: TlsOptions,
    /// SIP over TLS from peers (RFC 3261 §26.2): with a server configuration, a listener at
    /// `tls_bind` whose address our Via and Contact carry on calls over TLS, so a far end can
    /// open its own connection to us (for a BYE or a re-INVITE). Without it, a TLS call's Contact
    /// names the TCP listener, and the far end must reuse our connection instead (our Via asks
    /// for that with RFC 5923's `alias`).
    pub tls_bind: Option<SocketAddr>,
    /// The TLS listener's certificate and key (see `tls_bind`).
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Connect timeout for TCP and TLS.
    pub connect_timeout: std::time::Duration,
    /// Most connections accepted from peers at once; more are closed at once.
    pub max_inbound_connections: usize,
    /// Most of them from one IP address (a PBX or an SBC uses one or a few): one host cannot
    /// take every slot and leave the real peers without a way to send their BYEs.
    pub max_inbound_per_address: usize,
    /// A DNS server to use instead of the system's (`/etc/resolv.conf`).
    pub dns_server: Option<SocketAddr>,
    /// RFC 5626 keep-alive: a CRLFCRLF ping on connections we opened after
    /// this long without sending (keeps NAT and SBC state alive).
    pub keepalive_interval: Option<std::time::Duration>,
    /// A connection we opened is closed once no call, dialog or transaction has used its address
    /// for this long (its keep-alive pings do not count). Connections to a far end's Contact (a
    /// forked 2xx, a redirect) would otherwise stay for the process's life.
    pub outbound_idle: std::time::Duration,
    /// The user agent's configuration (`local_addrs` is filled in from
    /// the bound sockets).
    pub ua: Config,
    /// Redirects (3xx) followed per call at most: each a new INVITE to the best target of the
    /// response's `Contact` not tried yet (RFC 3261 §8.1.3.4). 0 fails the call with the 3xx.
    pub max_redirects: u8,
    /// An outbound proxy (`sip:sbc.example.com`, `sips:...`, `sip:192.0.2.7:5080;transport=tcp`):
    /// every call goes to it (RFC 3263 on its URI, with failover among its targets) with a
    /// pre-loaded `Route` naming it, while the Request-URI names the callee, whose host is then
    /// never resolved (it may be a carrier's domain only the proxy knows). See
    /// [`CallRequest::route`].
    pub outbound_proxy: Option<String>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tcp_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            tls: TlsOptions::default(),
            tls_bind: None,
            tls_server: None,
            connect_timeout: std::time::Duration::from_secs(5),
            max_inbound_connections: 1024,
            max_inbound_per_address: 32,
            dns_server: None,
            keepalive_interval: Some(std::time::Duration::from_secs(30)),
            outbound_idle: std::time::Duration::from_secs(300),
            ua: Config::default(),
            max_redirects: 3,
            outbound_proxy: None,
        }
    }
}

/// What to dial.
#[derive(Debug, Clone, Default)]
pub struct Dial {
    /// Target URI (`sip:`, `sips:`; `transport=` picks UDP, TCP or TLS).
    pub uri: String,
    /// From identity (see [`CallRequest::from`]).
    pub from: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Custom headers.
    pub headers: Vec<(String, String)>,
    /// Digest credentials.
    pub credentials: Option<Credentials>,
    /// SDP offer.
    pub sdp: Option<Bytes>,
}

/// A call placed through the driver: its handle and its events.
#[derive(Debug)]
pub struct Call {
    /// The user agent's handle.
    pub handle: CallHandle,
    /// Where the INVITE went.
    pub target: Target,
    /// Progress events; the channel closes after the final one.
    pub events: mpsc::UnboundedReceiver<CallEvent>,
}

enum Command {
    Call(
        Box<CallRequest>,
        Vec<Target>,
        oneshot::Sender<Result<(CallHandle, mpsc::UnboundedReceiver<CallEvent>), Error>>,
    ),
    Act(CallHandle, Action, oneshot::Sender<Result<(), Error>>),
    /// A redirect target of the caller's call, resolved (or not).
    Redirect(CallHandle, Uri, Result<Vec<Target>, Error>),
    Stats(oneshot::Sender<DriverStats>),
    Shutdown(oneshot::Sender<()>),
}

/// A snapshot of the driver's state, for monitoring and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverStats {
    /// The user agent's counters.
    pub ua: crate::agent::Stats,
    /// Live calls.
    pub calls: usize,
    /// Live transactions.
    pub transactions: usize,
    /// Open stream connections.
    pub connections: usize,
}

enum Action {
    Hangup,
    Reinvite(Bytes),
    Update(Bytes),
    Info(String, Bytes),
    Answer(Bytes),
    Reject(u16, String),
}

enum Net {
    /// Bytes read from a connection (by its id).
    Data(Target, u64, Vec<u8>),
    /// A connection (by its id) closed cleanly.
    Closed(Target, u64),
    /// A connection (by its id) failed: before it was established (`false`: nothing was sent on
    /// it) or after.
    Failed(Target, u64, String, bool),
    Accepted(Target, u64, mpsc::UnboundedSender<Vec<u8>>),
}

/// A stream connection of ours: its id and the writer to its task.
type Connection = (u64, mpsc::UnboundedSender<Vec<u8>>);

/// What a stream connection is found by: transport and address, and for TLS the name its server
/// certificate was checked for (`None`: the address; a connection a peer opened to us). A second
/// domain served at the same address gets its own connection, checked for its own name, rather
/// than one verified for another (RFC 5922 §7: the identity is the name dialled).
type ConnectionKey = (Transport, SocketAddr, Option<String>);

fn connection_key(t: &Target) -> ConnectionKey {
    let name = match t.transport {
        Transport::Tls => t.server_name.as_ref().map(|n| n.trim_end_matches('.').to_ascii_lowercase()),
        Transport::Udp | Transport::Tcp => None,
    };
    (t.transport, t.addr, name)
}

/// Ids of stream connections: an event of a connection that was replaced (the peer closed it
/// while a new one to the same address was being opened) must not touch the new one.
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn connection_id() -> u64 {
    NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A cloneable handle to the driver task.
#[derive(Clone, Debug)]
pub struct SipHandle {
    cmd: mpsc::UnboundedSender<Command>,
    resolver: Arc<Resolver>,
    local: Vec<(Transport, SocketAddr)>,
    proxy: Option<Uri>,
}

impl SipHandle {
    /// The addresses the driver bound, per transport.
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.local
    }

    /// Resolves a URI per RFC 3263 into the targets to try, in order.
    pub async fn resolve(&self, uri: &str) -> Result<Vec<Target>, Error> {
        let uri = Uri::parse(uri).map_err(|e| Error::InvalidArgument(format!("uri: {e}")))?;
        self.resolver.resolve(&uri).await
    }

    /// Resolves the URI (RFC 3263; the outbound proxy's, when one is set) and sends the INVITE.
    pub async fn call(&self, dial: Dial) -> Result<Call, Error> {
        let targets = self.targets(&dial).await?;
        self.call_to(dial, targets).await
    }

    /// Where `dial` would go (RFC 3263, through the outbound proxy when one is set), in order,
    /// without sending anything: the slow part of [`call`](Self::call) (DNS), safe to abandon
    /// (drop the future) when the call is no longer wanted.
    pub async fn targets(&self, dial: &Dial) -> Result<Vec<Target>, Error> {
        let uri = Uri::parse(&dial.uri).map_err(|e| Error::InvalidArgument(format!("uri: {e}")))?;
        self.resolver.resolve(self.proxy.as_ref().unwrap_or(&uri)).await
    }

    /// Sends the INVITE of `dial` to the first of `targets` (from [`targets`](Self::targets)),
    /// the others tried in order when one fails before answering.
    pub async fn call_to(&self, dial: Dial, targets: Vec<Target>) -> Result<Call, Error> {
        let uri = Uri::parse(&dial.uri).map_err(|e| Error::InvalidArgument(format!("uri: {e}")))?;
        let mut targets = targets.into_iter();
        let target = targets.next().ok_or(Error::Resolve { host: dial.uri.clone(), reason: "no targets".into() })?;
        // RFC 3263 section 4.3: the others are tried in order when a target
        // fails before answering anything (transport error or timeout).
        let fallbacks: Vec<Target> = targets.collect();
        let req = CallRequest {
            uri,
            destination: target.clone(),
            from: dial.from,
            display_name: dial.display_name,
            headers: dial.headers,
            credentials: dial.credentials,
            sdp: dial.sdp,
            route: self.proxy.iter().cloned().collect(),
        };
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Command::Call(Box::new(req), fallbacks, tx)).map_err(|_| Error::DriverGone)?;
        let (handle, events) = rx.await.map_err(|_| Error::DriverGone)??;
        Ok(Call { handle, target, events })
    }

    async fn act(&self, call: CallHandle, action: Action) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Command::Act(call, action, tx)).map_err(|_| Error::DriverGone)?;
        rx.await.map_err(|_| Error::DriverGone)?
    }

    /// CANCEL or BYE.
    pub async fn hangup(&self, call: CallHandle) -> Result<(), Error> {
        self.act(call, Action::Hangup).await
    }

    /// Sends a re-INVITE with a new offer.
    pub async fn reinvite(&self, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.act(call, Action::Reinvite(sdp)).await
    }

    /// Sends an UPDATE with a new offer.
    pub async fn update(&self, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.act(call, Action::Update(sdp)).await
    }

    /// Sends an INFO.
    pub async fn info(&self, call: CallHandle, content_type: &str, body: Bytes) -> Result<(), Error> {
        self.act(call, Action::Info(content_type.to_owned(), body)).await
    }

    /// Answers a remote offer (or an offer request).
    pub async fn answer(&self, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.act(call, Action::Answer(sdp)).await
    }

    /// Refuses a remote offer.
    pub async fn reject_offer(&self, call: CallHandle, code: u16, reason: &str) -> Result<(), Error> {
        self.act(call, Action::Reject(code, reason.to_owned())).await
    }

    /// Counters and sizes of the driver's state.
    pub async fn stats(&self) -> Result<DriverStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Command::Stats(tx)).map_err(|_| Error::DriverGone)?;
        rx.await.map_err(|_| Error::DriverGone)
    }

    /// Stops the driver (calls still up are not hung up: do that first).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Binds the sockets and spawns the driver task on the current runtime.
pub async fn start(config: DriverConfig) -> Result<SipHandle, Error> {
    let proxy = match &config.outbound_proxy {
        None => None,
        Some(p) => match Uri::parse(p) {
            Ok(u @ Uri::Sip(_)) => Some(u),
            Ok(_) => return Err(Error::InvalidArgument(format!("outbound proxy {p:?}: not a sip: or sips: URI"))),
            Err(e) => return Err(Error::InvalidArgument(format!("outbound proxy {p:?}: {e}"))),
        },
    };
    let udp = UdpSocket::bind(config.udp_bind).await?;
    let udp_addr = advertised(udp.local_addr()?);
    let listener = match config.tcp_bind {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let tls_listener = match (config.tls_bind, &config.tls_server) {
        (Some(a), Some(server)) => Some((TcpListener::bind(a).await?, tokio_rustls::TlsAcceptor::from(server.clone()))),
        _ => None,
    };
    let mut local = vec![(Transport::Udp, udp_addr)];
    if let Some(l) = &listener {
        let a = advertised(l.local_addr()?);
        local.push((Transport::Tcp, a));
        if tls_listener.is_none() {
            local.push((Transport::Tls, a));
        }
    }
    if let Some((l, _)) = &tls_listener {
        local.push((Transport::Tls, advertised(l.local_addr()?)));
    }
    let tls = config.tls.client_config()?;
    let mut ua_config = config.ua.clone();
    ua_config.local_addrs = local.clone();
    let seed: u64 = rand::random();
    let ua = UserAgent::new(ua_config, seed);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (net_tx, net_rx) = mpsc::unbounded_channel();
    // One budget of inbound connections for both listeners.
    let slots = Arc::new(InboundSlots::new(config.max_inbound_connections, config.max_inbound_per_address));
    if let Some(l) = listener {
        tokio::spawn(accept_loop(l, net_tx.clone(), slots.clone(), None));
    }
    if let Some((l, acceptor)) = tls_listener {
        tokio::spawn(accept_loop(l, net_tx.clone(), slots, Some(acceptor)));
    }
    let resolver = Arc::new(match config.dns_server {
        Some(server) => Resolver::with_nameserver(server),
        None => Resolver::from_system(),
    });
    let task = Task {
        ua,
        udp: Arc::new(udp),
        tls: tls.clone(),
        connect_timeout: config.connect_timeout,
        keepalive: config.keepalive_interval,
        conns: HashMap::new(),
        outbound: HashMap::new(),
        outbound_idle: config.outbound_idle,
        net_tx,
        calls: HashMap::new(),
        aliases: HashMap::new(),
        redirecting: HashMap::new(),
        max_redirects: config.max_redirects,
        proxy: proxy.clone(),
        resolver: resolver.clone(),
        commands: cmd_tx.clone(),
    };
    tokio::spawn(task.run(cmd_rx, net_rx));
    info!(?local, "SIP driver started");
    Ok(SipHandle { cmd: cmd_tx, resolver, local, proxy })
}

/// An unspecified bind address is advertised as the address the host
/// would use to reach the outside, or loopback when there is none.
fn advertised(a: SocketAddr) -> SocketAddr {
    if !a.ip().is_unspecified() {
        return a;
    }
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| {
        s.connect("192.0.2.1:9")?;
        s.local_addr()
    });
    match probe {
        Ok(p) if !p.ip().is_unspecified() => SocketAddr::new(p.ip(), a.port()),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port()),
    }
}

struct Task {
    ua: UserAgent,
    udp: Arc<UdpSocket>,
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: std::time::Duration,
    keepalive: Option<std::time::Duration>,
    conns: HashMap<ConnectionKey, Connection>,
    /// The connections we opened, by id: when a message last went or came over each.
    outbound: HashMap<u64, Instant>,
    /// See [`DriverConfig::outbound_idle`].
    outbound_idle: std::time::Duration,
    net_tx: mpsc::UnboundedSender<Net>,
    calls: HashMap<CallHandle, Route>,
    /// The handle the caller holds -> the user agent's current call for it.
    aliases: HashMap<CallHandle, CallHandle>,
    /// Calls between a redirect and the new INVITE (their next target being resolved), by the
    /// caller's handle.
    redirecting: HashMap<CallHandle, Redirecting>,
    max_redirects: u8,
    /// The outbound proxy: what redirect targets are reached through (its address is resolved,
    /// not theirs).
    proxy: Option<Uri>,
    resolver: Arc<Resolver>,
    /// For resolutions done off the task to come back.
    commands: mpsc::UnboundedSender<Command>,
}

/// A call following a redirect.
struct Redirecting {
    route: Route,
    /// The targets left to try, best first.
    contacts: std::collections::VecDeque<Uri>,
    /// The redirect's status and reason: the call's failure if no target works.
    code: u16,
    reason: String,
}

/// Where a user agent call's events go, and what is left to try.
struct Route {
    user: CallHandle,
    events: mpsc::UnboundedSender<CallEvent>,
    request: CallRequest,
    fallbacks: std::collections::VecDeque<Target>,
    responded: bool,
    /// Redirects followed, and the URIs tried (a redirect back to one of them is a loop).
    redirects: u8,
    tried: Vec<String>,
}

impl Task {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>, mut net: mpsc::UnboundedReceiver<Net>) {
        let mut buf = vec![0u8; 65_536];
        let udp = self.udp.clone();
        let sweep_every =
            (self.outbound_idle / 2).clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(60));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush();
            let deadline = self.ua.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown(done)) => {
                        self.flush();
                        let _ = done.send(());
                        break;
                    }
                    Some(c) => self.command(c),
                },
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                        self.ua.handle_input(Instant::now(), Target::new(Transport::Udp, from), &buf[..n]);
                    }
                    Err(e) => debug!(error = %e, "UDP receive error (ICMP unreachable?)"),
                },
                Some(ev) = net.recv() => self.net(ev),
                _ = sleep => self.ua.handle_timeout(Instant::now()),
                _ = sweep.tick() => self.close_idle_outbound(Instant::now()),
            }
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Call(req, fallbacks, reply) => {
                let request = (*req).clone();
                let r = self.ua.call(now, *req).map(|h| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let tried = vec![request.uri.to_string()];
                    let route = Route {
                        user: h,
                        events: tx,
                        request,
                        fallbacks: fallbacks.into(),
                        responded: false,
                        redirects: 0,
                        tried,
                    };
                    self.calls.insert(h, route);
                    self.aliases.insert(h, h);
                    (h, rx)
                });
                let _ = reply.send(r);
            }
            Command::Act(user, Action::Hangup, reply) if self.redirecting.contains_key(&user) => {
                // Hung up while its next target was being resolved: nothing was sent to it yet.
                if let Some(r) = self.redirecting.remove(&user) {
                    self.aliases.remove(&user);
                    let _ = r.route.events.send(CallEvent::Ended { reason: crate::agent::EndReason::Cancelled });
                }
                let _ = reply.send(Ok(()));
            }
            Command::Redirect(user, uri, resolved) => self.redirect_resolved(user, uri, resolved),
            Command::Act(user, action, reply) => {
                let h = self.aliases.get(&user).copied().unwrap_or(user);
                let r = match action {
                    Action::Hangup => self.ua.hangup(now, h),
                    Action::Reinvite(s) => self.ua.reinvite(now, h, s),
                    Action::Update(s) => self.ua.update(now, h, s),
                    Action::Info(ct, b) => self.ua.info(now, h, &ct, b),
                    Action::Answer(s) => self.ua.answer(now, h, s),
                    Action::Reject(code, reason) => self.ua.reject_offer(now, h, code, &reason),
                };
                let _ = reply.send(r);
            }
            Command::Stats(reply) => {
                let _ = reply.send(DriverStats {
                    ua: self.ua.stats(),
                    calls: self.ua.call_count(),
                    transactions: self.ua.transaction_count(),
                    connections: self.conns.len(),
                });
            }
            Command::Shutdown(_) => {}
        }
    }

    fn net(&mut self, ev: Net) {
        let now = Instant::now();
        match ev {
            Net::Data(from, id, data) => {
                if let Some(used) = self.outbound.get_mut(&id) {
                    *used = now;
                }
                self.ua.handle_stream_input(now, from, id, &data)
            }
            Net::Closed(t, id) => {
                // Every connection reports its end once, after all its data (each pump's events
                // are in order), so its framer goes here.
                self.ua.forget_stream(&t, id);
                if self.forget_connection(&t, id) {
                    self.ua.handle_connection_closed(now, &t);
                }
            }
            Net::Failed(t, id, why, established) => {
                self.ua.forget_stream(&t, id);
                if !self.forget_connection(&t, id) {
                    debug!(target = %t, %why, "a replaced connection failed");
                } else if established {
                    warn!(target = %t, %why, "connection failed");
                    self.ua.handle_transport_error(now, &t);
                } else {
                    warn!(target = %t, %why, "connection could not be made");
                    self.ua.handle_connect_failed(now, &t);
                }
            }
            Net::Accepted(t, id, writer) => {
                self.conns.insert(connection_key(&t), (id, writer));
            }
        }
    }

    /// Forgets connection `id` to `t`; false when another connection to that address replaced it
    /// (the event is stale and left alone).
    fn forget_connection(&mut self, t: &Target, id: u64) -> bool {
        self.outbound.remove(&id);
        let key = connection_key(t);
        match self.conns.get(&key) {
            Some((current, _)) if *current != id => false,
            _ => {
                self.conns.remove(&key);
                true
            }
        }
    }

    /// Sends every pending transmit and delivers every pending event.
    fn flush(&mut self) {
        loop {
            while let Some(t) = self.ua.poll_transmit() {
                self.send(t);
            }
            while let Some((t, id)) = self.ua.poll_close() {
                // Its writer dropped, the connection's pump shuts it down and reports it closed.
                let key = connection_key(&t);
                if self.conns.get(&key).is_some_and(|(current, _)| *current == id) {
                    self.conns.remove(&key);
                }
            }
            let mut retried = false;
            while let Some((h, ev)) = self.ua.poll_event() {
                let Some(mut route) = self.calls.remove(&h) else { continue };
                let failed_silently = matches!(ev, CallEvent::Failed { code: 408 | 503, .. }) && !route.responded;
                if failed_silently {
                    if let Some(next) = route.fallbacks.pop_front() {
                        info!(call = %route.user, failed = %route.request.destination, next = %next, "target failed: trying the next one (RFC 3263)");
                        route.request.destination = next;
                        match self.ua.call(Instant::now(), route.request.clone()) {
                            Ok(h2) => {
                                self.aliases.insert(route.user, h2);
                                self.calls.insert(h2, route);
                                retried = true;
                                continue;
                            }
                            Err(e) => warn!(error = %e, "retry failed"),
                        }
                    }
                }
                let ev = match ev {
                    CallEvent::Redirected { code, reason, contacts } => {
                        match self.follow(route, code, reason, contacts) {
                            // Being followed: the caller hears of it only through the new attempt.
                            None => continue,
                            Some((r, failed)) => {
                                route = r;
                                failed
                            }
                        }
                    }
                    ev => ev,
                };
                route.responded |= !matches!(ev, CallEvent::Failed { .. });
                let last = ev.is_final();
                let _ = route.events.send(ev);
                if last {
                    self.aliases.remove(&route.user);
                } else {
                    self.calls.insert(h, route);
                }
            }
            if !retried {
                break;
            }
        }
    }

    /// A redirect of `route`'s call: its best target not tried yet is resolved (off the task)
    /// and called; `None` when that is under way, or the route back with the failure to report
    /// (no redirects left, no new target: the 3xx itself).
    fn follow(
        &mut self,
        mut route: Route,
        code: u16,
        reason: String,
        contacts: Vec<Uri>,
    ) -> Option<(Route, CallEvent)> {
        let fresh: std::collections::VecDeque<Uri> =
            contacts.into_iter().filter(|u| !route.tried.contains(&u.to_string())).collect();
        if route.redirects >= self.max_redirects || fresh.is_empty() {
            info!(call = %route.user, code, "redirect not followed (none left, or back to a target tried)");
            return Some((route, CallEvent::Failed { code, reason }));
        }
        route.redirects += 1;
        let user = route.user;
        self.redirecting.insert(user, Redirecting { route, contacts: fresh, code, reason });
        self.resolve_next(user);
        None
    }

    /// Resolves the next target of a call being redirected, or reports its failure when none is
    /// left.
    fn resolve_next(&mut self, user: CallHandle) {
        let Some(r) = self.redirecting.get_mut(&user) else { return };
        let Some(uri) = r.contacts.pop_front() else {
            if let Some(r) = self.redirecting.remove(&user) {
                self.aliases.remove(&user);
                let _ = r.route.events.send(CallEvent::Failed { code: r.code, reason: r.reason });
            }
            return;
        };
        r.route.tried.push(uri.to_string());
        let (resolver, commands) = (self.resolver.clone(), self.commands.clone());
        let via = self.proxy.clone();
        tokio::spawn(async move {
            let resolved = resolver.resolve(via.as_ref().unwrap_or(&uri)).await;
            let _ = commands.send(Command::Redirect(user, uri, resolved));
        });
    }

    /// A redirect target resolved: the call goes on to it (RFC 3263 fallbacks included), or to
    /// the next target when it cannot.
    fn redirect_resolved(&mut self, user: CallHandle, uri: Uri, resolved: Result<Vec<Target>, Error>) {
        let mut targets = match resolved {
            Ok(t) => t.into_iter(),
            Err(e) => {
                warn!(call = %user, %uri, error = %e, "redirect target does not resolve: trying the next");
                return self.resolve_next(user);
            }
        };
        let Some(destination) = targets.next() else { return self.resolve_next(user) };
        let Some(r) = self.redirecting.remove(&user) else { return };
        let mut route = r.route;
        route.request.uri = uri.clone();
        route.request.destination = destination;
        route.fallbacks = targets.collect();
        route.responded = false;
        match self.ua.call(Instant::now(), route.request.clone()) {
            Ok(h) => {
                info!(call = %user, %uri, "following the redirect");
                self.aliases.insert(user, h);
                self.calls.insert(h, route);
            }
            Err(e) => {
                warn!(call = %user, %uri, error = %e, "cannot call the redirect target: trying the next");
                self.redirecting.insert(user, Redirecting { route, ..r });
                self.resolve_next(user);
            }
        }
    }

    /// Closes the connections we opened that nothing has used for [`DriverConfig::outbound_idle`]
    /// and that no call, dialog or transaction still goes through: dropping the writer ends the
    /// connection, which then reports itself closed.
    fn close_idle_outbound(&mut self, now: Instant) {
        let idle = self.outbound_idle;
        let outbound = &self.outbound;
        let ua = &self.ua;
        let unused: Vec<ConnectionKey> = self
            .conns
            .iter()
            .filter(|(_, (id, _))| outbound.get(id).is_some_and(|used| now.saturating_duration_since(*used) >= idle))
            .filter(|(key, _)| !ua.uses_target(&Target::new(key.0, key.1)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in unused {
            debug!(transport = ?key.0, addr = %key.1, "an unused connection we opened: closing it");
            self.conns.remove(&key);
        }
    }

    fn send(&mut self, t: Transmit) {
        match t.target.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&t.payload, t.target.addr) {
                    warn!(target = %t.target, error = %e, "UDP send failed");
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        self.ua.handle_transport_error(Instant::now(), &t.target);
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                let key = connection_key(&t.target);
                if let Some((id, w)) = self.conns.get(&key) {
                    if w.send(t.payload.clone()).is_ok() {
                        if let Some(used) = self.outbound.get_mut(id) {
                            *used = Instant::now();
                        }
                        return;
                    }
                    self.conns.remove(&key);
                }
                let (wtx, wrx) = mpsc::unbounded_channel();
                let _ = wtx.send(t.payload);
                let id = connection_id();
                self.conns.insert(key, (id, wtx));
                self.outbound.insert(id, Instant::now());
                tokio::spawn(connect(
                    t.target,
                    id,
                    wrx,
                    self.net_tx.clone(),
                    self.tls.clone(),
                    self.connect_timeout,
                    self.keepalive,
                ));
            }
        }
    }
}

/// How long an accepted connection may take to say something (its TLS handshake included), and
/// then to stay silent (neither side sending), before it is closed: a peer that opens
/// connections and leaves them idle would otherwise hold every inbound slot. A peer that needs
/// one again connects again (RFC 3261 §18 lets either side close an idle connection).
const INBOUND_FIRST: std::time::Duration = std::time::Duration::from_secs(32);
const INBOUND_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// How long one write may take: a peer that stops reading fails its connection instead of
/// holding every later request to it.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The inbound connections' budget: so many in all, and so many from one IP address.
struct InboundSlots {
    all: Arc<tokio::sync::Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
}

/// One inbound connection's place in [`InboundSlots`], given back when dropped.
struct InboundSlot {
    slots: Arc<InboundSlots>,
    address: IpAddr,
    _all: tokio::sync::OwnedSemaphorePermit,
}

impl InboundSlots {
    fn new(max: usize, max_per_address: usize) -> InboundSlots {
        InboundSlots {
            all: Arc::new(tokio::sync::Semaphore::new(max.min(tokio::sync::Semaphore::MAX_PERMITS))),
            per_address: Mutex::new(HashMap::new()),
            max_per_address: max_per_address.max(1),
        }
    }

    /// A place for a connection from `address`; why not when it has none.
    fn take(self: &Arc<Self>, address: IpAddr) -> Result<InboundSlot, &'static str> {
        let all = self.all.clone().try_acquire_owned().map_err(|_| "too many inbound connections")?;
        let mut per = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if per.get(&address).is_some_and(|n| *n >= self.max_per_address) {
            return Err("too many inbound connections from one address");
        }
        *per.entry(address).or_insert(0) += 1;
        Ok(InboundSlot { slots: self.clone(), address, _all: all })
    }
}

impl Drop for InboundSlot {
    fn drop(&mut self) {
        let mut per = self.slots.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.address);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    net: mpsc::UnboundedSender<Net>,
    slots: Arc<InboundSlots>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    let mut last_warned: Option<tokio::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let permit = match slots.take(peer.ip()) {
                    Ok(permit) => permit,
                    Err(why) => {
                        // Said once in a while (a flood would fill the log), at debug otherwise.
                        let now = tokio::time::Instant::now();
                        if last_warned.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(10)) {
                            warn!(%peer, "{why}: closing (more are logged at debug for 10 s)");
                            last_warned = Some(now);
                        } else {
                            debug!(%peer, "{why}: closing");
                        }
                        drop(stream);
                        continue;
                    }
                };
                let target = Target::new(transport, peer);
                let _ = stream.set_nodelay(true);
                let (net, tls) = (net.clone(), tls.clone());
                tokio::spawn(async move {
                    let (wtx, wrx) = mpsc::unbounded_channel();
                    let id = connection_id();
                    let idle = Some((INBOUND_FIRST, INBOUND_IDLE));
                    match tls {
                        None => {
                            if net.send(Net::Accepted(target.clone(), id, wtx)).is_ok() {
                                pump(stream, target, id, wrx, net, None, idle).await;
                            }
                        }
                        Some(acceptor) => match tokio::time::timeout(INBOUND_FIRST, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => {
                                if net.send(Net::Accepted(target.clone(), id, wtx)).is_ok() {
                                    pump(s, target, id, wrx, net, None, idle).await;
                                }
                            }
                            Ok(Err(e)) => debug!(%peer, error = %e, "inbound TLS handshake failed"),
                            Err(_) => debug!(%peer, "inbound TLS handshake timed out"),
                        },
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connect(
    target: Target,
    id: u64,
    writes: mpsc::UnboundedReceiver<Vec<u8>>,
    net: mpsc::UnboundedSender<Net>,
    tls: Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
    keepalive: Option<std::time::Duration>,
) {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let _ = net.send(Net::Failed(target, id, e.to_string(), false));
            return;
        }
        Err(_) => {
            let _ = net.send(Net::Failed(target, id, "connect timeout".into(), false));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    match target.transport {
        Transport::Tls => {
            let name = match &target.server_name {
                Some(n) => rustls::pki_types::ServerName::try_from(n.clone()),
                None => Ok(rustls::pki_types::ServerName::IpAddress(target.addr.ip().into())),
            };
            let name = match name {
                Ok(n) => n,
                Err(e) => {
                    let _ = net.send(Net::Failed(target, id, format!("bad TLS server name: {e}"), false));
                    return;
                }
            };
            let connector = tokio_rustls::TlsConnector::from(tls);
            match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                Ok(Ok(s)) => pump(s, target, id, writes, net, keepalive, None).await,
                Ok(Err(e)) => {
                    let _ = net.send(Net::Failed(target, id, format!("TLS handshake: {e}"), false));
                }
                Err(_) => {
                    let _ = net.send(Net::Failed(target, id, "TLS handshake timeout".into(), false));
                }
            }
        }
        _ => pump(stream, target, id, writes, net, keepalive, None).await,
    }
}

/// Moves bytes between one stream and the driver until either side closes.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    target: Target,
    id: u64,
    mut writes: mpsc::UnboundedReceiver<Vec<u8>>,
    net: mpsc::UnboundedSender<Net>,
    keepalive: Option<std::time::Duration>,
    idle: Option<(std::time::Duration, std::time::Duration)>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 16_384];
    let started = tokio::time::Instant::now();
    let mut last_write = started;
    // When anything last went either way (accepted connections close after `idle`).
    let mut last_activity: Option<tokio::time::Instant> = None;
    let failed = |net: &mpsc::UnboundedSender<Net>, why: String| {
        let _ = net.send(Net::Failed(target.clone(), id, why, true));
    };
    loop {
        let ping_at = keepalive.map(|k| last_write + k);
        let ping = async {
            match ping_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let quiet_until = idle.map(|(first, later)| match last_activity {
            None => started + first,
            Some(t) => t + later,
        });
        let quiet = async {
            match quiet_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ping => {
                // RFC 5626 section 4.4.1: a double CRLF ping.
                match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(b"\r\n\r\n")).await {
                    Ok(Ok(())) => last_write = tokio::time::Instant::now(),
                    Ok(Err(e)) => return failed(&net, e.to_string()),
                    Err(_) => return failed(&net, "write timed out: the peer does not read".into()),
                }
            }
            _ = quiet => {
                debug!(target = %target, "an idle inbound connection closed");
                let _ = wr.shutdown().await;
                let _ = net.send(Net::Closed(target.clone(), id));
                return;
            }
            r = rd.read(&mut buf) => match r {
                Ok(0) => { let _ = net.send(Net::Closed(target.clone(), id)); return; }
                Ok(n) => {
                    last_activity = Some(tokio::time::Instant::now());
                    if net.send(Net::Data(target.clone(), id, buf[..n].to_vec())).is_err() { return; }
                }
                Err(e) => return failed(&net, e.to_string()),
            },
            w = writes.recv() => match w {
                Some(bytes) => {
                    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return failed(&net, e.to_string()),
                        Err(_) => return failed(&net, "write timed out: the peer does not read".into()),
                    }
                    last_write = tokio::time::Instant::now();
                    last_activity = Some(last_write);
                }
                None => {
                    // Replaced or the driver is gone: said as a close, after this connection's
                    // data, so that what it left half-read is forgotten.
                    let _ = wr.shutdown().await;
                    let _ = net.send(Net::Closed(target.clone(), id));
                    return;
                }
            },
        }
    }
}
