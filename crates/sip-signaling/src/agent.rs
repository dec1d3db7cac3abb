//! The sans-IO user agent: outbound calls, their transactions and dialogs,
//! and the stateless wall around them.

use crate::custom_header::validate_custom_header;
use crate::dialog::Dialog;
use crate::digest::{self, Challenge, Credentials};
use crate::error::Error;
use crate::framer::{Frame, StreamFramer};
use crate::header::HeaderName;
use crate::message::{CSeq, Message, NameAddr, Via};
use crate::method::Method;
use crate::parse::{parse_message, Framing, Limits};
use crate::session_timer::{Refresher, SessionExpires, SessionTimer};
use crate::transaction::{ClientState, ClientTx, Purpose, ServerTx, Timers};
use crate::transport::{Target, Transmit, Transport};
use crate::uri::{Host, SipUri, Uri};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY, PRACK";
/// The extensions (option tags) we support: RFC 4028 session timers and RFC 3262 reliable
/// provisional responses (as the UAS of a re-INVITE we send no provisional response but 100,
/// which is never reliable, so requiring 100rel of us asks nothing we do not do).
const SUPPORTED: [&str; 2] = ["100rel", "timer"];

/// Configuration of a [`UserAgent`].
#[derive(Debug, Clone)]
pub struct Config {
    /// `User-Agent` header value.
    pub user_agent: String,
    /// User part of From when a call gives none.
    pub default_from_user: String,
    /// Host of From for bare numbers; `None` uses the local address.
    pub from_domain: Option<String>,
    /// The local (bound) address of each transport, used in Via and Contact.
    pub local_addrs: Vec<(Transport, SocketAddr)>,
    /// A public IP to advertise in Via and Contact instead (NAT).
    pub public_ip: Option<IpAddr>,
    /// RFC 3261 timers.
    pub timers: Timers,
    /// Session-Expires to request (RFC 4028); `None` disables session timers.
    pub session_expires: Option<u32>,
    /// Our Min-SE (at least 90).
    pub min_se: u32,
    /// Give up ringing after this long (CANCEL, then a 408 failure).
    pub ring_timeout: Option<Duration>,
    /// Max-Forwards of new requests.
    pub max_forwards: u8,
    /// Parser limits.
    pub limits: Limits,
    /// Stateless rejections of stray requests allowed per second; the rest
    /// are dropped silently.
    pub reject_rate: u32,
    /// RFC 3261 §18.1.1: a request larger than this many bytes that would go over UDP goes over
    /// TCP to the same address instead (the path MTU is unknown; 1300 is the RFC's figure), so
    /// that it is not fragmented (NATs and firewalls often drop IP fragments). When the TCP
    /// connection cannot be made the request goes over UDP after all, and that address gets UDP
    /// only for [`TCP_REFUSED_FOR`]. Calls to a URI that says `transport=udp` stay on UDP, and so
    /// does everything without a TCP entry in `local_addrs` (RFC 3261 §18.1.2: the far end must be
    /// able to connect back to the Via's address). `None`: every request keeps its transport.
    pub udp_size_limit: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user_agent: concat!("sip-interconnect/", env!("CARGO_PKG_VERSION")).to_owned(),
            default_from_user: "gateway".to_owned(),
            from_domain: None,
            local_addrs: Vec::new(),
            public_ip: None,
            timers: Timers::default(),
            session_expires: Some(1800),
            min_se: 90,
            ring_timeout: Some(Duration::from_secs(180)),
            max_forwards: 70,
            limits: Limits::default(),
            reject_rate: 200,
            udp_size_limit: Some(1300),
        }
    }
}

/// How long an address whose TCP connection failed gets large requests over UDP without trying
/// TCP again (each try can cost a connect timeout).
pub const TCP_REFUSED_FOR: Duration = Duration::from_secs(600);
/// Most addresses remembered as refusing TCP.
const TCP_REFUSED_MAX: usize = 4096;

/// Identifies one call of a [`UserAgent`] (not the SIP Call-ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

impl fmt::Display for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// What the caller asks for when dialling.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The URI to call (Request-URI and To).
    pub uri: Uri,
    /// The resolved next hop (see [`crate::driver`] for RFC 3263).
    pub destination: Target,
    /// The From identity: a SIP/tel URI, `user@host`, or a bare number
    /// (becomes the user part); `None` uses the configured default.
    pub from: Option<String>,
    /// Optional display name for From.
    pub display_name: Option<String>,
    /// Extra headers; core headers are refused.
    pub headers: Vec<(String, String)>,
    /// Digest credentials for 401/407 challenges.
    pub credentials: Option<Credentials>,
    /// The SDP offer.
    pub sdp: Option<Bytes>,
    /// A pre-loaded route set (RFC 3261 §8.1.2): an outbound proxy, such as a carrier's SBC,
    /// that every request goes through while the Request-URI names the callee (`destination`
    /// is then the proxy's address). Each URI is loose-routed (`lr` is added). When the answer
    /// brings no Record-Route, requests inside the dialog keep going through it.
    pub route: Vec<Uri>,
}

/// Why an answered call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up (BYE sent and answered, or not answered in time).
    LocalHangup,
    /// We hung up before the answer (CANCEL).
    Cancelled,
    /// The ring timeout passed and the answer crossed its CANCEL: ACKed, then ended with BYE (a
    /// no-answer, as the 487 after that CANCEL would have been).
    NoAnswer,
    /// The peer sent BYE.
    RemoteHangup,
    /// No session refresh in time (RFC 4028).
    SessionExpired,
    /// An in-dialog request got 408 or 481, or no answer at all.
    DialogGone,
    /// The peer never ACKed our 2xx to its re-INVITE.
    AckTimeout,
    /// The transport to the peer failed.
    TransportFailure,
}

/// Which request carried a remote offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferKind {
    /// A re-INVITE.
    ReInvite,
    /// An UPDATE.
    Update,
}

/// Call progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// 100 Trying.
    Trying,
    /// 180/181/182: the far end is alerting.
    Ringing {
        /// The status code.
        code: u16,
    },
    /// A provisional response other than 180-182 (183 Session Progress), with its SDP: an early
    /// answer for early media (RFC 3960), which the caller may play.
    Progress {
        /// Early SDP, if any.
        sdp: Option<Bytes>,
    },
    /// 2xx: the call is up.
    Answered {
        /// The SDP answer.
        sdp: Option<Bytes>,
    },
    /// The call failed before it was answered. Final event.
    Failed {
        /// Final SIP status (408 for a timeout, 503 for a transport failure).
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The peer sent an offer; reply with [`UserAgent::answer`] or
    /// [`UserAgent::reject_offer`].
    RemoteOffer {
        /// The offer.
        sdp: Bytes,
        /// re-INVITE or UPDATE.
        kind: OfferKind,
    },
    /// An offerless re-INVITE: reply with our offer via [`UserAgent::answer`];
    /// the peer's answer arrives as [`CallEvent::RemoteAnswer`] (in the ACK).
    OfferRequested,
    /// The peer's answer to an offer of ours.
    RemoteAnswer {
        /// The answer.
        sdp: Bytes,
    },
    /// Our re-INVITE or UPDATE was refused.
    OfferRejected {
        /// Status.
        code: u16,
    },
    /// An INFO from the peer (DTMF relay, for instance); answered 200.
    Info {
        /// Content-Type.
        content_type: Option<String>,
        /// Body.
        body: Bytes,
    },
    /// The final response to an INFO we sent.
    InfoResponse {
        /// Status.
        code: u16,
    },
    /// The session was refreshed (RFC 4028).
    SessionRefreshed {
        /// Interval now in force, seconds.
        interval: u32,
    },
    /// The answered call ended. Final event.
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// The INVITE was redirected (3xx other than 380): the targets its `Contact` gives, best
    /// first (RFC 3261 §8.1.3.4: by `q`, then in the order written). Final event of this
    /// attempt: a new call to one of them follows it (the driver does that, see
    /// `driver::DriverConfig::max_redirects`), or the call fails with `code`.
    Redirected {
        /// The 3xx status.
        code: u16,
        /// Its reason phrase.
        reason: String,
        /// Where to, best first (`sip:`, `sips:` and `tel:` URIs only; at most 16).
        contacts: Vec<Uri>,
    },
}

impl CallEvent {
    /// Whether this is the last event of the call.
    pub fn is_final(&self) -> bool {
        matches!(self, CallEvent::Failed { .. } | CallEvent::Ended { .. } | CallEvent::Redirected { .. })
    }
}

/// The targets of a 3xx: its `Contact` URIs (`sip:`, `sips:`, `tel:`), by `q` (1.0 when absent)
/// highest first, ties in the order written; at most 16; unparsable entries skipped.
pub fn redirect_contacts(msg: &Message) -> Vec<Uri> {
    let mut found: Vec<(u32, Uri)> = msg
        .headers
        .values(&HeaderName::Contact)
        .flat_map(crate::message::split_list)
        .filter_map(|entry| NameAddr::parse(entry.trim()).ok())
        .filter(|na| matches!(na.uri, Uri::Sip(_) | Uri::Tel(_)))
        .map(|na| {
            let q: f32 = na.params.get("q").flatten().and_then(|q| q.trim().parse().ok()).unwrap_or(1.0);
            let q = if q.is_finite() { q.clamp(0.0, 1.0) } else { 0.0 };
            ((q * 1000.0).round() as u32, na.uri)
        })
        .take(16)
        .collect();
    // Stable: equal q keeps the order written.
    found.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    found.into_iter().map(|(_, uri)| uri).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE sent, no provisional yet.
    Calling,
    /// Provisional received.
    Proceeding,
    /// 2xx received and ACKed.
    Confirmed,
    /// BYE sent, waiting for its answer.
    Ending,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Calling => "calling",
            State::Proceeding => "proceeding",
            State::Confirmed => "confirmed",
            State::Ending => "ending",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TxKey {
    branch: String,
    method: Method,
}

/// What a timer-heap entry refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKey {
    Client(TxKey),
    Server(TxKey),
    Call(u64),
}

#[derive(Debug)]
struct AuthState {
    challenge: Challenge,
    header: HeaderName,
    nc: u32,
}

#[derive(Debug)]
struct PendingIn {
    key: TxKey,
    request: Message,
    source: Target,
    kind: OfferKind,
    se: Option<SessionExpires>,
    deadline: Instant,
}

#[derive(Debug)]
struct AckWait {
    cseq: u32,
    response: Vec<u8>,
    target: Target,
    retransmit: Option<(Instant, Duration)>,
    deadline: Instant,
    expect_answer: bool,
}

#[derive(Debug)]
struct Call {
    state: State,
    call_id: String,
    local: NameAddr,
    remote: NameAddr,
    request_uri: Uri,
    initial_target: Target,
    /// Where the current INVITE went (its CANCEL and non-2xx ACK follow it): `initial_target`, or
    /// the same address over TCP when the INVITE was too large for UDP.
    invite_target: Target,
    /// The dialled URI says `transport=udp`: requests are never moved to TCP for their size.
    udp_only: bool,
    /// The pre-loaded route set (an outbound proxy), loose-routed.
    preloaded: Vec<NameAddr>,
    contact: String,
    custom: Vec<(String, String)>,
    creds: Option<Credentials>,
    auth: Vec<AuthState>,
    auth_failures: u32,
    sdp: Option<Bytes>,
    cseq: u32,
    invite_branch: String,
    invite_bytes: Message,
    got_provisional: bool,
    cancel_requested: bool,
    cancel_sent: bool,
    no_answer: bool,
    ring_deadline: Option<Instant>,
    dialog: Option<Dialog>,
    ack_2xx: Option<(u32, Vec<u8>, Target)>,
    session_expires: Option<u32>,
    tried_422: bool,
    /// Min-SE of our INVITE: the configured one, raised by a 422.
    min_se: u32,
    timer: Option<SessionTimer>,
    peer_allows_update: bool,
    pending_in: Option<PendingIn>,
    ack_wait: Option<AckWait>,
    offer_out: bool,
    /// The SDP of our outstanding offer; it replaces `sdp` only once
    /// accepted (RFC 3261 14.1: a refused offer changes nothing).
    offer_sdp: Option<Bytes>,
    /// Early dialogs (1xx with a To tag), before the answer.
    early: Vec<Dialog>,
    /// The highest CSeq of the far end's requests in each early dialog, by its tag: a request at
    /// or below it is a retransmission (answered again, not reported again).
    early_cseq: Vec<(String, u32)>,
    /// The RSeq of the last reliable provisional response (RFC 3262) of each early dialog, by its
    /// tag: one at or below it is a retransmission.
    early_rseq: Vec<(String, u32)>,
    /// The highest CSeq our requests in early dialogs (PRACKs) used: the dialog the 2xx confirms
    /// goes on above it.
    early_seq_max: u32,
    /// Dialogs of other branches' 2xx, acknowledged and ended (RFC 3261 §13.2.2.4): their To tag,
    /// ACK and its target, to acknowledge a retransmission again without a second BYE. At most
    /// [`MAX_FORKS`].
    forks: Vec<(String, Vec<u8>, Target)>,
    end_reason: EndReason,
}

/// Most forked dialogs a call acknowledges and ends: a forking proxy has a few branches, but a
/// far end answering 2xx after 2xx with new To tags (and Contacts anywhere) must not make us send
/// a BYE, and perhaps open a connection, for every one.
const MAX_FORKS: usize = 8;

/// The sans-IO SIP user agent. See the crate documentation.
#[derive(Debug)]
pub struct UserAgent {
    config: Config,
    rng: StdRng,
    next_handle: u64,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    client_txs: HashMap<TxKey, ClientTx>,
    server_txs: HashMap<TxKey, ServerTx>,
    transmits: VecDeque<Transmit>,
    /// Deadlines of transactions and calls; entries may be stale (a
    /// popped entry is checked against the entity's real deadline).
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    /// Entities changed since the last reschedule.
    touched: Vec<TimerKey>,
    events: VecDeque<(CallHandle, CallEvent)>,
    reject_tokens: f64,
    reject_refill: Option<Instant>,
    /// Stream framers by transport, address and connection (see [`UserAgent::handle_stream_input`]).
    framers: HashMap<(Transport, SocketAddr, u64), StreamFramer>,
    /// Stream connections to close (see [`UserAgent::poll_close`]).
    closes: VecDeque<(Target, u64)>,
    /// Stream connections whose input is ignored until they are forgotten: closed for
    /// unframeable input ([`UserAgent::forget_stream`] ends the entry).
    refused_streams: HashSet<(Transport, SocketAddr, u64)>,
    stats: Stats,
    /// Addresses whose TCP connection failed for a large request, until when they get UDP only.
    tcp_refused: HashMap<SocketAddr, Instant>,
    /// The deadline each timer key was last pushed with (the heap gets a key again only when its
    /// deadline comes earlier, so touching an entity does not grow the heap).
    scheduled: HashMap<TimerKey, Instant>,
    /// The last 2xx ACK of each call that ended, by Call-ID, kept for 64*T1: a 2xx retransmitted
    /// after the call is gone (our ACK was lost, and the BYE finished first) is still ACKed.
    ended_acks: HashMap<String, EndedAck>,
    /// When expired `ended_acks` are next swept (a sweep per ended call would cost as many steps
    /// as calls ended within 64*T1).
    ended_sweep_at: Option<Instant>,
}

/// The last 2xx ACK of an ended call (see [`UserAgent::ended_acks`]).
#[derive(Debug)]
struct EndedAck {
    to_tag: Option<String>,
    seq: u32,
    bytes: Vec<u8>,
    target: Target,
    until: Instant,
}

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages that failed to parse.
    pub malformed: u64,
    /// Stray requests answered statelessly.
    pub rejected: u64,
    /// Stray requests dropped by the rate limit.
    pub dropped: u64,
    /// Responses that matched nothing.
    pub stray_responses: u64,
}

impl UserAgent {
    /// A user agent with this configuration; `seed` feeds the generator of
    /// tags, branches, Call-IDs and cnonces (use a random seed in
    /// production, a fixed one in tests).
    pub fn new(config: Config, seed: u64) -> UserAgent {
        UserAgent {
            reject_tokens: f64::from(config.reject_rate),
            config,
            rng: StdRng::seed_from_u64(seed),
            next_handle: 1,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            client_txs: HashMap::new(),
            server_txs: HashMap::new(),
            transmits: VecDeque::new(),
            timers: BinaryHeap::new(),
            scheduled: HashMap::new(),
            ended_acks: HashMap::new(),
            ended_sweep_at: None,
            tcp_refused: HashMap::new(),
            touched: Vec::new(),
            events: VecDeque::new(),
            reject_refill: None,
            framers: HashMap::new(),
            closes: VecDeque::new(),
            refused_streams: HashSet::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of live calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// How many entries the timer heap holds (it grows with the entities that have deadlines, not
    /// with the requests they see): a measure of the state held, for flood tests.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Number of live transactions (client and server): a measure of the
    /// state held, for flood tests.
    pub fn transaction_count(&self) -> usize {
        self.client_txs.len() + self.server_txs.len()
    }

    /// The SIP Call-ID of a call.
    pub fn sip_call_id(&self, call: CallHandle) -> Option<&str> {
        self.calls.get(&call.0).map(|c| c.call_id.as_str())
    }

    // ----- identifiers -----

    fn random_token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| ALPHABET[self.rng.gen_range(0..ALPHABET.len())] as char).collect()
    }

    fn new_branch(&mut self) -> String {
        format!("z9hG4bK{}", self.random_token(16))
    }

    fn local_addr(&self, transport: Transport) -> SocketAddr {
        let addr = self
            .config
            .local_addrs
            .iter()
            .find(|(t, _)| *t == transport)
            .or_else(|| self.config.local_addrs.first())
            .map(|(_, a)| *a)
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060));
        match self.config.public_ip {
            Some(ip) => SocketAddr::new(ip, addr.port()),
            None => addr,
        }
    }

    fn via(&self, transport: Transport, branch: &str) -> String {
        let a = self.local_addr(transport);
        // RFC 5923: over TLS the far end may send its requests back on this connection (its
        // certificate checked once), rather than opening one to our sent-by.
        let alias = if transport == Transport::Tls { ";alias" } else { "" };
        format!("SIP/2.0/{} {}:{};branch={};rport{alias}", transport.via_token(), Host::from(a.ip()), a.port(), branch)
    }

    fn contact_for(&self, transport: Transport, user: Option<&str>) -> String {
        let a = self.local_addr(transport);
        // `user` is already in its escaped form (taken from our From URI).
        let mut uri = SipUri::new(false, None, Host::from(a.ip()), Some(a.port()));
        uri.user = user.map(str::to_owned);
        if let Some(p) = transport.uri_param() {
            uri.params.set("transport", Some(p.to_owned()));
        }
        format!("<{uri}>")
    }

    /// Builds the From identity of a call.
    fn local_identity(
        &mut self,
        from: Option<&str>,
        display: Option<&str>,
        transport: Transport,
    ) -> Result<NameAddr, Error> {
        let domain = match &self.config.from_domain {
            Some(d) => Host::parse(d).map_err(|e| Error::InvalidArgument(format!("from_domain: {e}")))?,
            None => Host::from(self.local_addr(transport).ip()),
        };
        let uri = match from.map(str::trim).filter(|s| !s.is_empty()) {
            None => Uri::Sip(SipUri::new(false, Some(&self.config.default_from_user), domain, None)),
            Some(s) if s.contains(':') && Uri::parse(s).is_ok_and(|u| !matches!(u, Uri::Other(_))) => {
                Uri::parse(s).map_err(|e| Error::InvalidArgument(format!("from: {e}")))?
            }
            Some(s) if s.contains('@') => {
                let (user, host) = s.rsplit_once('@').unwrap_or((s, ""));
                let host =
                    crate::uri::split_host_port(host).map_err(|e| Error::InvalidArgument(format!("from host: {e}")))?;
                Uri::Sip(SipUri::new(false, Some(user), host.0, host.1))
            }
            Some(s) => Uri::Sip(SipUri::new(false, Some(s), domain, None)),
        };
        let mut na = NameAddr::new(uri);
        if let Some(d) = display {
            if d.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                return Err(Error::InvalidArgument("display name contains CR, LF or NUL".into()));
            }
            na.display = Some(d.to_owned());
        }
        let tag = self.random_token(12);
        na.params.set("tag", Some(tag));
        Ok(na)
    }

    // ----- the call API -----

    /// Starts a call: sends the INVITE. Events follow on
    /// [`poll_event`](Self::poll_event).
    pub fn call(&mut self, now: Instant, req: CallRequest) -> Result<CallHandle, Error> {
        let r = self.call_inner(now, req);
        if let Ok(h) = &r {
            self.touched.push(TimerKey::Call(h.0));
        }
        self.reschedule();
        r
    }

    fn call_inner(&mut self, now: Instant, req: CallRequest) -> Result<CallHandle, Error> {
        for (n, v) in &req.headers {
            validate_custom_header(n, v)?;
        }
        let request_uri = match &req.uri {
            Uri::Sip(u) => Uri::Sip(u.request_uri()),
            Uri::Tel(_) => req.uri.clone(),
            Uri::Other(_) => return Err(Error::InvalidArgument("only sip:, sips: and tel: URIs can be called".into())),
        };
        let transport = req.destination.transport;
        // The operator's `transport=udp`: on the first hop's URI (the outbound proxy, when one is
        // pre-loaded), which is what the request goes to.
        let udp_only = req
            .route
            .first()
            .unwrap_or(&req.uri)
            .as_sip()
            .is_some_and(|u| u.transport_param().is_some_and(|t| t.eq_ignore_ascii_case("udp")));
        let preloaded: Vec<NameAddr> = req
            .route
            .iter()
            .map(|u| {
                let mut u = u.clone();
                if let Uri::Sip(s) = &mut u {
                    s.headers = None;
                    s.params.set("lr", None);
                }
                NameAddr::new(u)
            })
            .collect();
        let local = self.local_identity(req.from.as_deref(), req.display_name.as_deref(), transport)?;
        let mut remote_uri = req.uri.clone();
        if let Uri::Sip(u) = &mut remote_uri {
            u.headers = None;
            u.params.remove("method");
        }
        let remote = NameAddr::new(remote_uri);
        let user = local.uri.as_sip().and_then(|u| u.user.clone());
        let contact = self.contact_for(transport, user.as_deref());
        let call_id = self.random_token(24);
        let handle = self.next_handle;
        self.next_handle += 1;
        let call = Call {
            state: State::Calling,
            call_id: call_id.clone(),
            local,
            remote,
            request_uri,
            invite_target: req.destination.clone(),
            initial_target: req.destination,
            udp_only,
            preloaded,
            contact,
            custom: req.headers,
            creds: req.credentials,
            auth: Vec::new(),
            auth_failures: 0,
            sdp: req.sdp.clone(),
            cseq: 0,
            invite_branch: String::new(),
            invite_bytes: Message::response(0, ""),
            got_provisional: false,
            cancel_requested: false,
            cancel_sent: false,
            no_answer: false,
            ring_deadline: self.config.ring_timeout.map(|d| now + d),
            dialog: None,
            ack_2xx: None,
            session_expires: self.config.session_expires.map(|s| s.max(self.config.min_se)),
            tried_422: false,
            min_se: self.config.min_se.max(90),
            timer: None,
            peer_allows_update: false,
            pending_in: None,
            ack_wait: None,
            offer_out: false,
            offer_sdp: None,
            early: Vec::new(),
            forks: Vec::new(),
            early_cseq: Vec::new(),
            early_rseq: Vec::new(),
            early_seq_max: 0,
            end_reason: EndReason::LocalHangup,
        };
        info!(call = %CallHandle(handle), call_id = %call_id, uri = %req.uri, target = %call.initial_target, "dialling");
        self.calls.insert(handle, call);
        self.by_call_id.insert(call_id, handle);
        self.send_invite(now, handle);
        Ok(CallHandle(handle))
    }

    fn send_invite(&mut self, now: Instant, h: u64) {
        let branch = self.new_branch();
        let (ua, mf) = (self.config.user_agent.clone(), self.config.max_forwards);
        let Some(call) = self.calls.get_mut(&h) else { return };
        call.cseq += 1;
        // RFC 3261 §9.1: a CANCEL waits for a provisional response to this INVITE, not to the one
        // it replaces (a digest or 422 retry).
        call.got_provisional = false;
        call.cancel_sent = false;
        // The early dialogs of the INVITE this one replaces ended with its final response (RFC
        // 3261 §12.3), and with them their reliable provisional responses' RSeq (RFC 3262 §4).
        call.early.clear();
        call.early_cseq.clear();
        call.early_rseq.clear();
        let seq = call.cseq;
        let target = call.initial_target.clone();
        let mut m = Message::request(Method::Invite, call.request_uri.clone());
        m.headers.push(HeaderName::MaxForwards, mf.to_string());
        for r in &call.preloaded {
            m.headers.push(HeaderName::Route, r.to_string());
        }
        m.headers.push(HeaderName::From, call.local.to_string());
        m.headers.push(HeaderName::To, call.remote.to_string());
        m.headers.push(HeaderName::CallId, call.call_id.clone());
        m.headers.push(HeaderName::CSeq, format!("{seq} INVITE"));
        m.headers.push(HeaderName::Contact, call.contact.clone());
        m.headers.push(HeaderName::Allow, ALLOW);
        // RFC 3262: reliable provisional responses are PRACKed (carriers that require them
        // refuse an INVITE without this with 421).
        if let Some(se) = call.session_expires {
            m.headers.push(HeaderName::Supported, "100rel, timer");
            m.headers.push(HeaderName::SessionExpires, se.to_string());
            m.headers.push(HeaderName::MinSe, call.min_se.to_string());
        } else {
            m.headers.push(HeaderName::Supported, "100rel");
        }
        m.headers.push(HeaderName::UserAgent, ua);
        for (n, v) in &call.custom {
            m.headers.push(HeaderName::parse(n), v.clone());
        }
        if let Some(sdp) = &call.sdp {
            m.headers.push(HeaderName::ContentType, "application/sdp");
            m.body = sdp.clone();
        }
        // finish_and_send records the INVITE as sent (with Via and credentials).
        call.invite_branch = branch.clone();
        self.finish_and_send(now, h, m, branch, Purpose::Invite, target, seq);
    }

    /// Adds Via and credentials, starts the client transaction and queues
    /// the bytes.
    #[allow(clippy::too_many_arguments)]
    fn finish_and_send(
        &mut self,
        now: Instant,
        h: u64,
        mut m: Message,
        branch: String,
        purpose: Purpose,
        target: Target,
        seq: u32,
    ) {
        let via = self.via(target.transport, &branch);
        m.headers.0.insert(0, crate::header::Header { name: HeaderName::Via, value: via });
        if !m.headers.0.iter().any(|x| x.name == HeaderName::MaxForwards) {
            m.headers.0.insert(
                1,
                crate::header::Header { name: HeaderName::MaxForwards, value: self.config.max_forwards.to_string() },
            );
        }
        self.add_auth(h, &mut m);
        let method = m.method().cloned().unwrap_or(Method::Invite);
        let mut bytes = m.to_bytes();
        let mut target = target;
        let mut udp_fallback = None;
        if self.too_large_for_udp(now, h, &target, bytes.len()) {
            info!(call = %CallHandle(h), %method, size = bytes.len(), %target, "request too large for UDP: sending it over TCP (RFC 3261 §18.1.1)");
            target = Target { transport: Transport::Tcp, ..target };
            set_top_via(&mut m, self.via(Transport::Tcp, &branch));
            udp_fallback = Some(std::mem::replace(&mut bytes, m.to_bytes()));
        }
        if let Some(call) = self.calls.get_mut(&h) {
            if purpose == Purpose::Invite {
                call.invite_bytes = m;
                call.invite_target = target.clone();
            }
        }
        let is_invite = method == Method::Invite;
        let mut tx = ClientTx::new(h, purpose, is_invite, bytes.clone(), target.clone(), now, &self.config.timers);
        tx.moved = udp_fallback.is_some();
        tx.udp_fallback = udp_fallback;
        debug!(call = %CallHandle(h), %method, seq, %target, "sending request");
        let key = TxKey { branch, method };
        self.touched.push(TimerKey::Client(key.clone()));
        self.client_txs.insert(key, tx);
        self.transmits.push_back(Transmit { target, payload: bytes });
    }

    /// Whether a request of `size` bytes to `target` must move from UDP to TCP (RFC 3261
    /// §18.1.1; see [`Config::udp_size_limit`]).
    fn too_large_for_udp(&self, now: Instant, h: u64, target: &Target, size: usize) -> bool {
        target.transport == Transport::Udp
            && self.config.udp_size_limit.is_some_and(|limit| size > limit)
            && self.config.local_addrs.iter().any(|(t, _)| *t == Transport::Tcp)
            && !self.calls.get(&h).is_some_and(|c| c.udp_only)
            && self.tcp_refused.get(&target.addr).is_none_or(|until| *until <= now)
    }

    fn add_auth(&mut self, h: u64, m: &mut Message) {
        let cnonce = self.random_token(16);
        let Some(call) = self.calls.get_mut(&h) else { return };
        let Some(creds) = &call.creds else { return };
        let (method, uri) = match &m.start {
            crate::StartLine::Request { method, uri } => (method.as_str().to_owned(), uri.to_string()),
            crate::StartLine::Response { .. } => return,
        };
        if method == "ACK" || method == "CANCEL" {
            return;
        }
        for a in &mut call.auth {
            let value = digest::authorization(&a.challenge, creds, &method, &uri, a.nc, &cnonce);
            a.nc += 1;
            m.headers.push(a.header.clone(), value);
        }
    }

    /// Hangs up: CANCEL while the call is being set up, BYE once answered.
    pub fn hangup(&mut self, now: Instant, call: CallHandle) -> Result<(), Error> {
        self.touched.push(TimerKey::Call(call.0));
        let r = self.hangup_inner(now, call);
        self.reschedule();
        r
    }

    fn hangup_inner(&mut self, now: Instant, call: CallHandle) -> Result<(), Error> {
        let h = call.0;
        let c = self.calls.get_mut(&h).ok_or(Error::UnknownCall)?;
        match c.state {
            State::Calling | State::Proceeding => {
                c.cancel_requested = true;
                if c.got_provisional {
                    self.send_cancel(now, h);
                }
                Ok(())
            }
            State::Confirmed => {
                self.send_bye(now, h, EndReason::LocalHangup);
                Ok(())
            }
            State::Ending => Ok(()),
        }
    }

    fn send_cancel(&mut self, now: Instant, h: u64) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        if c.cancel_sent {
            return;
        }
        c.cancel_sent = true;
        let inv = &c.invite_bytes;
        let uri = match &inv.start {
            crate::StartLine::Request { uri, .. } => uri.clone(),
            crate::StartLine::Response { .. } => return,
        };
        let mut m = Message::request(Method::Cancel, uri);
        for name in [HeaderName::Via, HeaderName::MaxForwards, HeaderName::From, HeaderName::To, HeaderName::CallId] {
            let v = inv.headers.values(&name).next().map(str::to_owned);
            if let Some(v) = v {
                m.headers.push(name, v);
            }
        }
        for r in inv.headers.get_all(&HeaderName::Route) {
            m.headers.push(HeaderName::Route, r.to_owned());
        }
        m.headers.push(HeaderName::CSeq, format!("{} CANCEL", c.cseq));
        m.headers.push(HeaderName::UserAgent, self.config.user_agent.clone());
        let branch = c.invite_branch.clone();
        let target = c.invite_target.clone();
        let bytes = m.to_bytes();
        let tx = ClientTx::new(h, Purpose::Cancel, false, bytes.clone(), target.clone(), now, &self.config.timers);
        // RFC 3261 9.1: without a final response 64*T1 after the CANCEL,
        // the INVITE is given up.
        let give_up = now + self.config.timers.t64();
        if let Some(inv) = self.client_txs.get_mut(&TxKey { branch: branch.clone(), method: Method::Invite }) {
            if matches!(inv.state, ClientState::Calling | ClientState::Proceeding) {
                inv.timeout = Some(inv.timeout.map_or(give_up, |t| t.min(give_up)));
                self.touched.push(TimerKey::Client(TxKey { branch: branch.clone(), method: Method::Invite }));
            }
        }
        info!(call = %CallHandle(h), "sending CANCEL");
        let key = TxKey { branch, method: Method::Cancel };
        self.touched.push(TimerKey::Client(key.clone()));
        self.client_txs.insert(key, tx);
        self.transmits.push_back(Transmit { target, payload: bytes });
    }

    fn send_bye(&mut self, now: Instant, h: u64, reason: EndReason) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        if c.state == State::Ending {
            return;
        }
        c.state = State::Ending;
        c.end_reason = reason;
        c.timer = None;
        c.ack_wait = None;
        c.pending_in = None;
        info!(call = %CallHandle(h), ?reason, "sending BYE");
        self.send_in_dialog(now, h, Method::Bye, Purpose::Bye, None, None);
    }

    /// PRACKs the reliable provisional response `rseq` (RFC 3262 §7.2) of the early dialog `tag`:
    /// `RAck` names it and the INVITE's CSeq `invite_seq`.
    fn send_prack(&mut self, now: Instant, h: u64, tag: &str, rseq: u32, invite_seq: u32) {
        let branch = self.new_branch();
        let ua = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&h) else { return };
        let Some(d) = c.early.iter_mut().find(|d| d.remote.tag() == Some(tag)) else { return };
        let seq = d.next_seq();
        let mut m = d.request(Method::Prack, seq);
        let target = d.next_hop.clone();
        c.early_seq_max = c.early_seq_max.max(seq);
        m.headers.push(HeaderName::RAck, format!("{rseq} {invite_seq} INVITE"));
        m.headers.push(HeaderName::UserAgent, ua);
        debug!(call = %CallHandle(h), rseq, "PRACK");
        self.finish_and_send(now, h, m, branch, Purpose::Prack, target, seq);
    }

    /// Sends an in-dialog request; returns false when there is no dialog.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        h: u64,
        method: Method,
        purpose: Purpose,
        body: Option<(String, Bytes)>,
        extra: Option<(HeaderName, String)>,
    ) -> bool {
        let branch = self.new_branch();
        let ua = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&h) else { return false };
        let Some(d) = c.dialog.as_mut() else { return false };
        let seq = d.next_seq();
        let mut m = d.request(method.clone(), seq);
        let target = d.next_hop.clone();
        if matches!(method, Method::Invite | Method::Update) {
            m.headers.push(HeaderName::Contact, c.contact.clone());
            m.headers.push(HeaderName::Allow, ALLOW);
        }
        if let Some((n, v)) = extra {
            if n == HeaderName::SessionExpires {
                m.headers.push(HeaderName::Supported, "timer");
            }
            m.headers.push(n, v);
        }
        m.headers.push(HeaderName::UserAgent, ua);
        if let Some((ct, b)) = body {
            m.headers.push(HeaderName::ContentType, ct);
            m.body = b;
        }
        self.finish_and_send(now, h, m, branch, purpose, target, seq);
        true
    }

    /// Sends a re-INVITE with a new offer. The answer arrives as
    /// [`CallEvent::RemoteAnswer`] or [`CallEvent::OfferRejected`].
    pub fn reinvite(&mut self, now: Instant, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.touched.push(TimerKey::Call(call.0));
        let r = self.reinvite_inner(now, call, sdp);
        self.reschedule();
        r
    }

    fn reinvite_inner(&mut self, now: Instant, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.offer(now, call, sdp, Method::Invite)
    }

    /// Sends an UPDATE with a new offer (RFC 3311).
    pub fn update(&mut self, now: Instant, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.touched.push(TimerKey::Call(call.0));
        let r = self.update_inner(now, call, sdp);
        self.reschedule();
        r
    }

    fn update_inner(&mut self, now: Instant, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.offer(now, call, sdp, Method::Update)
    }

    fn offer(&mut self, now: Instant, call: CallHandle, sdp: Bytes, method: Method) -> Result<(), Error> {
        let refreshing = self.refresh_invite_pending(call.0);
        let c = self.calls.get_mut(&call.0).ok_or(Error::UnknownCall)?;
        if c.state != State::Confirmed {
            return Err(Error::InvalidState(c.state.name()));
        }
        if c.offer_out || refreshing || c.pending_in.is_some() || c.ack_wait.is_some() {
            return Err(Error::InvalidState("offer/answer exchange in progress"));
        }
        c.offer_out = true;
        c.offer_sdp = Some(sdp.clone());
        let purpose = if method == Method::Invite { Purpose::ReInvite } else { Purpose::UpdateOffer };
        let se = c.timer.map(|t| {
            (
                HeaderName::SessionExpires,
                SessionExpires { interval: t.interval, refresher: Some(Refresher::Uac) }.to_header(),
            )
        });
        self.send_in_dialog(now, call.0, method, purpose, Some(("application/sdp".into(), sdp)), se);
        Ok(())
    }

    /// Whether a session refresh re-INVITE of this call awaits its final
    /// response (RFC 3261 14.1: one INVITE transaction at a time, and one
    /// offer).
    fn refresh_invite_pending(&self, h: u64) -> bool {
        self.client_txs.values().any(|t| {
            t.call == h
                && t.is_invite
                && t.purpose == Purpose::Refresh
                && matches!(t.state, ClientState::Calling | ClientState::Proceeding)
        })
    }

    /// Sends an INFO (for example `application/dtmf-relay`).
    pub fn info(&mut self, now: Instant, call: CallHandle, content_type: &str, body: Bytes) -> Result<(), Error> {
        self.touched.push(TimerKey::Call(call.0));
        let r = self.info_inner(now, call, content_type, body);
        self.reschedule();
        r
    }

    fn info_inner(&mut self, now: Instant, call: CallHandle, content_type: &str, body: Bytes) -> Result<(), Error> {
        if content_type.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Error::InvalidArgument("content type contains CR, LF or NUL".into()));
        }
        let c = self.calls.get(&call.0).ok_or(Error::UnknownCall)?;
        if c.state != State::Confirmed {
            return Err(Error::InvalidState(c.state.name()));
        }
        self.send_in_dialog(now, call.0, Method::Info, Purpose::Info, Some((content_type.to_owned(), body)), None);
        Ok(())
    }

    /// Answers a [`CallEvent::RemoteOffer`] (with our answer) or an
    /// [`CallEvent::OfferRequested`] (with our offer).
    pub fn answer(&mut self, now: Instant, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        self.touched.push(TimerKey::Call(call.0));
        let r = self.answer_inner(now, call, sdp);
        self.reschedule();
        r
    }

    fn answer_inner(&mut self, now: Instant, call: CallHandle, sdp: Bytes) -> Result<(), Error> {
        let c = self.calls.get_mut(&call.0).ok_or(Error::UnknownCall)?;
        let p = c.pending_in.take().ok_or(Error::InvalidState("no offer to answer"))?;
        c.sdp = Some(sdp.clone());
        let offerless = p.request.body.is_empty();
        let mut resp = self.response_for(&p.request, 200, "OK", None);
        resp.headers.push(HeaderName::ContentType, "application/sdp");
        resp.body = sdp;
        self.finish_server_response(now, call.0, p, resp, offerless);
        Ok(())
    }

    /// Refuses a remote offer (488 Not Acceptable Here, for instance).
    pub fn reject_offer(&mut self, now: Instant, call: CallHandle, code: u16, reason: &str) -> Result<(), Error> {
        self.touched.push(TimerKey::Call(call.0));
        let r = self.reject_offer_inner(now, call, code, reason);
        self.reschedule();
        r
    }

    fn reject_offer_inner(&mut self, now: Instant, call: CallHandle, code: u16, reason: &str) -> Result<(), Error> {
        if !(300..700).contains(&code) {
            return Err(Error::InvalidArgument(format!("{code} is not a final error status")));
        }
        let c = self.calls.get_mut(&call.0).ok_or(Error::UnknownCall)?;
        let p = c.pending_in.take().ok_or(Error::InvalidState("no offer to answer"))?;
        let resp = self.response_for(&p.request, code, reason, None);
        self.finish_server_response(now, call.0, p, resp, false);
        Ok(())
    }

    fn finish_server_response(&mut self, now: Instant, h: u64, p: PendingIn, mut resp: Message, offerless: bool) {
        let code = resp.status().unwrap_or(500);
        let t = self.config.timers;
        let Some(c) = self.calls.get_mut(&h) else { return };
        if (200..300).contains(&code) {
            resp.headers.push(HeaderName::Contact, c.contact.clone());
            resp.headers.push(HeaderName::Allow, ALLOW);
            // RFC 4028 section 9: echo the interval and refresher.
            if let Some(se) = p.se {
                // A far end without timer support cannot refresh: we do (RFC 4028 §9).
                let timer_supported = p.request.headers.has_token(&HeaderName::Supported, "timer");
                let refresher = if timer_supported { se.refresher.unwrap_or(Refresher::Uac) } else { Refresher::Uas };
                resp.headers.push(
                    HeaderName::SessionExpires,
                    SessionExpires { interval: se.interval, refresher: Some(refresher) }.to_header(),
                );
                if timer_supported {
                    resp.headers.push(HeaderName::Require, "timer");
                }
                c.timer = Some(SessionTimer::start(now, se.interval, refresher == Refresher::Uas));
            } else {
                c.timer = None;
            }
            if let Some(d) = c.dialog.as_mut() {
                d.refresh_target(&p.request, &c.initial_target);
            }
        }
        resp.headers.push(HeaderName::Server, self.config.user_agent.clone());
        let bytes = resp.to_bytes();
        let reliable = p.source.transport.is_reliable();
        let is_invite = p.kind == OfferKind::ReInvite;
        if is_invite && (200..300).contains(&code) {
            let cseq = p.request.cseq().map(|c| c.seq).unwrap_or(0);
            c.ack_wait = Some(AckWait {
                cseq,
                response: bytes.clone(),
                target: p.source.clone(),
                retransmit: (!reliable).then(|| (now + t.t1, t.t1)),
                deadline: now + t.t64(),
                expect_answer: offerless,
            });
        }
        let (retransmit, awaiting_ack, expires) = if is_invite && code >= 300 {
            ((!reliable).then(|| (now + t.t1, t.t1)), true, now + t.t64())
        } else {
            (None, false, now + if reliable { Duration::ZERO } else { t.t64() })
        };
        self.touched.push(TimerKey::Server(p.key.clone()));
        self.touched.push(TimerKey::Call(h));
        self.server_txs.insert(
            p.key,
            ServerTx {
                is_invite,
                response: Some(bytes.clone()),
                target: p.source.clone(),
                retransmit,
                expires,
                awaiting_ack,
            },
        );
        self.transmits.push_back(Transmit { target: p.source, payload: bytes });
    }

    // ----- input -----

    /// Feeds bytes received from `source`. For UDP pass one datagram; for
    /// TCP and TLS pass whatever the socket returned (the user agent frames
    /// the stream of each address; an application that may hold two
    /// connections to one address uses [`handle_stream_input`](Self::handle_stream_input)).
    pub fn handle_input(&mut self, now: Instant, source: Target, data: &[u8]) {
        self.handle_input_inner(now, source, 0, data);
        self.reschedule();
    }

    /// Feeds bytes read from stream connection `connection` (an identifier the application
    /// chooses, not 0) to `source`. Each connection is framed on its own, so two connections
    /// with one address (the far end's connection to us arriving from the port ours went to,
    /// as stacks that reuse their listening port do) never mix their bytes. Once the connection
    /// is gone, [`forget_stream`](Self::forget_stream) drops what it left half-read.
    pub fn handle_stream_input(&mut self, now: Instant, source: Target, connection: u64, data: &[u8]) {
        self.handle_input_inner(now, source, connection, data);
        self.reschedule();
    }

    fn handle_input_inner(&mut self, now: Instant, source: Target, connection: u64, data: &[u8]) {
        if !source.transport.is_reliable() {
            if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                return; // UDP keep-alive
            }
            self.handle_datagram(now, &source, data, Framing::Datagram);
            return;
        }
        let limits = self.config.limits;
        let key = (source.transport, source.addr, connection);
        if self.refused_streams.contains(&key) {
            return;
        }
        let framer = self.framers.entry(key).or_insert_with(|| StreamFramer::new(limits));
        framer.push(data);
        let mut frames = Vec::new();
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    // No message boundary can be trusted after this (on a stream, RFC 3261 §18.3
                    // leaves Content-Length the only one): what follows is never read as
                    // messages of its own, and the connection is closed (our policy).
                    warn!(%source, error = %e, "unframeable stream: closing its connection");
                    self.stats.malformed += 1;
                    self.framers.remove(&key);
                    self.refused_streams.insert(key);
                    self.closes.push_back((source.clone(), connection));
                    break;
                }
            }
        }
        for f in frames {
            match f {
                Frame::Message(bytes) => self.handle_datagram(now, &source, &bytes, Framing::Stream),
                Frame::Ping => self.transmits.push_back(Transmit { target: source.clone(), payload: b"\r\n".to_vec() }),
                Frame::Pong => {}
            }
        }
    }

    /// A stream connection closed. Its partial data is forgotten, and every
    /// answered call whose requests went over it is probed with an in-dialog
    /// OPTIONS (RFC 3261 section 11), which opens a new connection: a peer that
    /// is gone (connection refused, no answer, 408 or 481) ends the call with
    /// [`EndReason::TransportFailure`] or [`EndReason::DialogGone`]; any other
    /// answer, 405 included, keeps it up. A peer that closes idle connections
    /// on purpose loses nothing; one that crashed is noticed at once rather
    /// than when the media times out.
    ///
    /// What the connection left half-read is dropped for [`handle_input`](Self::handle_input)'s
    /// streams; a connection fed through [`handle_stream_input`](Self::handle_stream_input) is
    /// forgotten with [`forget_stream`](Self::forget_stream).
    pub fn handle_connection_closed(&mut self, now: Instant, source: &Target) {
        self.framers.remove(&(source.transport, source.addr, 0));
        self.refused_streams.remove(&(source.transport, source.addr, 0));
        if !source.transport.is_reliable() {
            return;
        }
        // An in-dialog request moved to TCP for its size whose connection closed before its final
        // response fails alone (it may have arrived: it is not sent again over UDP, which the far
        // end could take for a second request); the dialog, on UDP, goes on.
        let moved: Vec<TxKey> = self
            .client_txs
            .iter()
            .filter(|(_, t)| {
                t.moved
                    && t.purpose != Purpose::Invite
                    && matches!(t.state, ClientState::Calling | ClientState::Proceeding)
                    && t.target.transport == source.transport
                    && t.target.addr == source.addr
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in moved {
            if let Some(tx) = self.client_txs.remove(&k) {
                warn!(call = %CallHandle(tx.call), %source, "the connection of a large request closed before its answer");
                self.in_dialog_failed(now, tx);
            }
        }
        let probing: Vec<u64> = self
            .client_txs
            .values()
            .filter(|t| {
                t.purpose == Purpose::Probe && matches!(t.state, ClientState::Calling | ClientState::Proceeding)
            })
            .map(|t| t.call)
            .collect();
        let calls: Vec<u64> = self
            .calls
            .iter()
            .filter(|(h, c)| {
                c.state == State::Confirmed
                    && c.dialog.as_ref().is_some_and(|d| &d.next_hop == source)
                    && !probing.contains(h)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in calls {
            info!(call = %CallHandle(h), %source, "the connection under the call closed: probing the peer with OPTIONS");
            self.touched.push(TimerKey::Call(h));
            self.send_in_dialog(
                now,
                h,
                Method::Options,
                Purpose::Probe,
                None,
                Some((HeaderName::Accept, "application/sdp".to_owned())),
            );
        }
        self.reschedule();
    }

    fn handle_datagram(&mut self, now: Instant, source: &Target, data: &[u8], framing: Framing) {
        let msg = match parse_message(data, &self.config.limits, framing) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                warn!(%source, error = %e, "malformed SIP message dropped");
                return;
            }
        };
        if let Err(e) = msg.validate() {
            self.stats.malformed += 1;
            warn!(%source, error = %e, "invalid SIP message");
            if msg.is_request() && msg.method() != Some(&Method::Ack) {
                self.reject_stateless(now, &msg, source, 400, &format!("Bad Request ({e})"));
            }
            return;
        }
        if msg.is_request() {
            self.handle_request(now, source, msg);
        } else {
            self.handle_response(now, msg);
        }
    }

    fn handle_response(&mut self, now: Instant, msg: Message) {
        let code = msg.status().unwrap_or(500);
        let (Ok(via), Ok(cseq)) = (msg.top_via(), msg.cseq()) else { return };
        let method = cseq.method.clone();
        let key = TxKey { branch: via.branch().unwrap_or_default().to_owned(), method: method.clone() };
        let t = self.config.timers;
        let Some(tx) = self.client_txs.get_mut(&key) else {
            // A 2xx retransmission after the transaction is gone, or a fork.
            if method == Method::Invite && (200..300).contains(&code) {
                self.handle_late_2xx(now, &msg);
            } else {
                self.stats.stray_responses += 1;
                debug!(code, "stray response dropped");
            }
            return;
        };
        let h = tx.call;
        let purpose = tx.purpose;
        // A challenged request is sent again as it was.
        let original = (code == 401 || code == 407).then(|| tx.request.clone());
        match tx.state {
            ClientState::Completed => {
                if let Some(ack) = &tx.ack {
                    let a = Transmit { target: tx.target.clone(), payload: ack.clone() };
                    self.transmits.push_back(a);
                }
                return;
            }
            ClientState::Accepted => {
                if (200..300).contains(&code) {
                    self.handle_late_2xx(now, &msg);
                }
                return;
            }
            ClientState::Calling | ClientState::Proceeding => {}
        }
        self.touched.push(TimerKey::Client(key.clone()));
        self.touched.push(TimerKey::Call(h));
        if code < 200 {
            tx.on_provisional(now, &t);
        } else {
            tx.on_final(now, (200..300).contains(&code), &t);
            if tx.is_invite && code >= 300 {
                let ack = build_non2xx_ack(&tx.request, &msg, self.config.limits);
                if let Some(ack) = ack {
                    tx.ack = Some(ack.clone());
                    let target = tx.target.clone();
                    self.transmits.push_back(Transmit { target, payload: ack });
                }
            }
        }
        match purpose {
            Purpose::Invite => self.invite_response(now, h, msg, code),
            Purpose::Cancel => {
                if code >= 300 {
                    self.cancel_refused(h);
                }
            }
            Purpose::Bye => {
                if code >= 200 {
                    if (code == 401 || code == 407) && self.retry_with_auth(h, &msg, code) {
                        if let Some(c) = self.calls.get_mut(&h) {
                            c.state = State::Confirmed;
                        }
                        let reason = self.calls.get(&h).map(|c| c.end_reason).unwrap_or(EndReason::LocalHangup);
                        self.send_bye(now, h, reason);
                        return;
                    }
                    self.finish_call(now, h, None);
                }
            }
            // A PRACK challenged (a proxy that authenticates every request): sent again with
            // credentials, once per realm; any other answer changes nothing.
            Purpose::Prack => {
                if (code == 401 || code == 407) && self.retry_with_auth(h, &msg, code) {
                    let tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
                    let again = self.calls.get(&h).and_then(|c| {
                        let tag = tag?;
                        let rseq = c.early_rseq.iter().find(|(t, _)| *t == tag)?.1;
                        Some((tag, rseq, c.cseq))
                    });
                    if let Some((tag, rseq, invite_seq)) = again {
                        self.send_prack(now, h, &tag, rseq, invite_seq);
                    }
                }
            }
            Purpose::ForkBye => {}
            Purpose::ReInvite | Purpose::UpdateOffer | Purpose::Refresh | Purpose::Info | Purpose::Probe => {
                self.in_dialog_response(now, h, purpose, msg, code, original)
            }
        }
    }

    /// A 2xx for an INVITE whose transaction already accepted one.
    fn handle_late_2xx(&mut self, now: Instant, msg: &Message) {
        let Ok(call_id) = msg.call_id() else { return };
        let Some(&h) = self.by_call_id.get(call_id) else {
            self.ack_after_end(now, msg, call_id);
            return;
        };
        self.touched.push(TimerKey::Call(h));
        let Some(c) = self.calls.get(&h) else { return };
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        let same_dialog = c.dialog.as_ref().is_some_and(|d| d.remote.tag() == to_tag.as_deref());
        if same_dialog {
            if let Some((seq, ack, target)) = &c.ack_2xx {
                if *seq == cseq {
                    debug!(call = %CallHandle(h), "2xx retransmission: resending ACK");
                    self.transmits.push_back(Transmit { target: target.clone(), payload: ack.clone() });
                }
            }
        } else if to_tag.is_some() {
            self.ack_and_bye_fork(now, h, msg);
        }
    }

    /// A 2xx for a call that has ended: its ACK is sent again when the 2xx repeats the one it
    /// acknowledged (same dialog, same CSeq); anything else is stray.
    fn ack_after_end(&mut self, now: Instant, msg: &Message, call_id: &str) {
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        match self.ended_acks.get(call_id) {
            Some(e) if e.until > now && e.seq == seq && e.to_tag == to_tag => {
                debug!(call_id, "2xx retransmission after the call ended: resending ACK");
                self.transmits.push_back(Transmit { target: e.target.clone(), payload: e.bytes.clone() });
            }
            _ => {
                self.stats.stray_responses += 1;
                debug!("stray 2xx dropped");
            }
        }
    }

    /// RFC 3261 13.2.2.4: a second dialog from a forking proxy is
    /// acknowledged and then ended.
    fn ack_and_bye_fork(&mut self, now: Instant, h: u64, msg: &Message) {
        let Some(c) = self.calls.get(&h) else { return };
        // Only a 2xx to our INVITE: its From tag ours, its CSeq the INVITE's.
        let ours = msg.from().ok().and_then(|f| f.tag().map(str::to_owned)) == c.local.tag().map(str::to_owned)
            && msg.cseq().ok().map(|s| s.seq) == c.invite_bytes.cseq().ok().map(|s| s.seq);
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
        if !ours {
            self.stats.stray_responses += 1;
            debug!(call = %CallHandle(h), "a 2xx that does not answer our INVITE dropped");
            return;
        }
        if let Some((_, ack, target)) = c.forks.iter().find(|(tag, ..)| *tag == to_tag) {
            debug!(call = %CallHandle(h), "forked 2xx retransmission: resending its ACK");
            self.transmits.push_back(Transmit { target: target.clone(), payload: ack.clone() });
            return;
        }
        if c.forks.len() >= MAX_FORKS {
            self.stats.stray_responses += 1;
            warn!(call = %CallHandle(h), "forked 2xx beyond {MAX_FORKS} dialogs dropped");
            return;
        }
        let Ok(mut d) = Dialog::from_response(msg, &c.local, msg.cseq().map(|s| s.seq).unwrap_or(1), &c.initial_target)
            .map(|d| d.through(&c.preloaded, &c.initial_target))
        else {
            return;
        };
        info!(call = %CallHandle(h), "forked 2xx from another branch: ACK and BYE");
        let above_pracks = c.early_seq_max;
        let ack = self.send_2xx_ack(d.request(Method::Ack, d.local_seq), &d.next_hop);
        // Its BYE goes above any PRACK its early dialog had.
        d.local_seq = d.local_seq.max(above_pracks);
        if let Some(c) = self.calls.get_mut(&h) {
            c.forks.push((to_tag, ack, d.next_hop.clone()));
        }
        let seq = d.next_seq();
        let bye = d.request(Method::Bye, seq);
        let branch = self.new_branch();
        self.finish_and_send(now, h, bye, branch, Purpose::ForkBye, d.next_hop.clone(), seq);
    }

    fn invite_response(&mut self, now: Instant, h: u64, msg: Message, code: u16) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        let handle = CallHandle(h);
        if code < 200 {
            let first = !c.got_provisional;
            c.got_provisional = true;
            if c.state == State::Calling {
                c.state = State::Proceeding;
            }
            let tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
            if let Some(tag) = tag {
                // An early dialog per To tag (forking makes several); the
                // one whose tag the 2xx carries is confirmed.
                if c.dialog.is_none()
                    && !c.early.iter().any(|d| d.remote.tag() == Some(tag.as_str()))
                    && c.early.len() < 16
                {
                    if let Ok(d) = Dialog::from_response(&msg, &c.local, c.cseq, &c.initial_target)
                        .map(|d| d.through(&c.preloaded, &c.initial_target))
                    {
                        debug!(call = %handle, %tag, "early dialog");
                        c.early.push(d);
                    }
                }
            }
            // RFC 3262: a reliable provisional response is PRACKed once, in its early dialog; its
            // retransmissions (the far end's until our PRACK reaches it) are not reported again.
            let mut again = false;
            if code > 100 && msg.headers.has_token(&HeaderName::Require, "100rel") {
                match reliable_provisional(c, &msg) {
                    Reliable::New { tag, rseq } => {
                        if let Ok(invite) = msg.cseq() {
                            self.send_prack(now, h, &tag, rseq, invite.seq);
                        }
                    }
                    Reliable::Again => again = true,
                    Reliable::Unusable => {}
                }
            }
            let Some(c) = self.calls.get_mut(&h) else { return };
            let ev = match code {
                100 => CallEvent::Trying,
                180..=182 => CallEvent::Ringing { code },
                _ => CallEvent::Progress { sdp: (!msg.body.is_empty()).then(|| msg.body.clone()) },
            };
            let _ = first;
            // A CANCEL not sent yet (or refused: the INVITE had not arrived) goes now.
            let cancel = c.cancel_requested && !c.cancel_sent;
            if !again {
                self.events.push_back((handle, ev));
            }
            if cancel {
                self.send_cancel(now, h);
            }
            return;
        }
        if (200..300).contains(&code) {
            let local_seq = c.cseq;
            let dialog = match Dialog::from_response(&msg, &c.local, local_seq, &c.initial_target)
                .map(|d| d.through(&c.preloaded, &c.initial_target))
            {
                // Our later requests go on above the PRACKs of the early dialogs.
                Ok(d) => Dialog { local_seq: d.local_seq.max(c.early_seq_max), ..d },
                Err(e) => {
                    warn!(call = %handle, error = %e, "2xx without a usable dialog; failing the call");
                    self.events
                        .push_back((handle, CallEvent::Failed { code: 502, reason: format!("Bad Gateway ({e})") }));
                    self.remove_call(now, h);
                    return;
                }
            };
            let ack = {
                let mut ack = dialog.request(Method::Ack, local_seq);
                for x in c
                    .invite_bytes
                    .headers
                    .0
                    .iter()
                    .filter(|x| matches!(x.name, HeaderName::Authorization | HeaderName::ProxyAuthorization))
                {
                    ack.headers.push(x.name.clone(), x.value.clone());
                }
                ack
            };
            let target = dialog.next_hop.clone();
            c.peer_allows_update = msg.headers.has_token(&HeaderName::Allow, "UPDATE");
            c.dialog = Some(dialog);
            // RFC 3261 13.2.2.4: the route set is recomputed from the 2xx;
            // the other early dialogs end with the confirmation.
            c.early.clear();
            c.state = State::Confirmed;
            // Session timer from the 2xx (RFC 4028 section 7.2).
            c.timer = match (c.session_expires, SessionExpires::from_message(&msg)) {
                (Some(asked), Some(se)) => {
                    let we_refresh = se.refresher != Some(Refresher::Uas);
                    Some(SessionTimer::start(
                        now,
                        session_interval(se.interval, Some(asked), we_refresh, c.min_se),
                        we_refresh,
                    ))
                }
                _ => None,
            };
            let cancel_requested = c.cancel_requested;
            let no_answer = c.no_answer;
            let bytes = self.send_2xx_ack(ack, &target);
            if let Some(c) = self.calls.get_mut(&h) {
                c.ack_2xx = Some((local_seq, bytes, target));
            }
            if cancel_requested {
                // The answer crossed our CANCEL: ACK it, then BYE.
                self.send_bye(now, h, if no_answer { EndReason::NoAnswer } else { EndReason::Cancelled });
                return;
            }
            info!(call = %handle, code, "answered");
            self.events
                .push_back((handle, CallEvent::Answered { sdp: (!msg.body.is_empty()).then(|| msg.body.clone()) }));
            return;
        }
        // Final failure.
        if (code == 401 || code == 407) && !c.cancel_requested && self.retry_with_auth(h, &msg, code) {
            self.send_invite(now, h);
            return;
        }
        let Some(c) = self.calls.get_mut(&h) else { return };
        if code == 422 && !c.tried_422 && !c.cancel_requested {
            if let Some(min) =
                msg.headers.get(&HeaderName::MinSe).and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok())
            {
                c.tried_422 = true;
                c.session_expires = Some(min.max(c.session_expires.unwrap_or(0)));
                // RFC 4028 7.4: the retry carries the Min-SE of the 422.
                c.min_se = c.min_se.max(min);
                info!(call = %handle, min, "422: retrying with a larger Session-Expires");
                self.send_invite(now, h);
                return;
            }
        }
        let reason = match &msg.start {
            crate::StartLine::Response { reason, .. } => reason.clone(),
            crate::StartLine::Request { .. } => String::new(),
        };
        // A redirect (380 Alternative Service names no target for this request).
        if (300..400).contains(&code) && code != 380 && !c.cancel_requested && !c.no_answer {
            let contacts = redirect_contacts(&msg);
            if !contacts.is_empty() {
                info!(call = %handle, code, targets = contacts.len(), "redirected");
                self.events.push_back((handle, CallEvent::Redirected { code, reason, contacts }));
                self.remove_call(now, h);
                return;
            }
        }
        if c.cancel_requested && !c.no_answer {
            self.events.push_back((handle, CallEvent::Ended { reason: EndReason::Cancelled }));
        } else if c.no_answer {
            self.events
                .push_back((handle, CallEvent::Failed { code: 408, reason: "Request Timeout (no answer)".into() }));
        } else {
            info!(call = %handle, code, %reason, "call failed");
            self.events.push_back((handle, CallEvent::Failed { code, reason }));
        }
        self.remove_call(now, h);
    }

    /// Records the challenge of a 401/407 so the next request answers it.
    /// Returns false when there is nothing to answer with or we already
    /// answered this realm and the server rejected it (no loops).
    fn retry_with_auth(&mut self, h: u64, msg: &Message, code: u16) -> bool {
        let Some(c) = self.calls.get_mut(&h) else { return false };
        if c.creds.is_none() {
            return false;
        }
        let (chal_name, auth_name) = if code == 401 {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        } else {
            (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization)
        };
        let challenge = match Challenge::pick(msg.headers.get_all(&chal_name)) {
            Ok(Some(ch)) => ch,
            Ok(None) => return false,
            Err(e) => {
                warn!(call = %CallHandle(h), error = %e, "unusable challenge");
                return false;
            }
        };
        let existing = c.auth.iter().position(|a| a.challenge.realm == challenge.realm && a.header == auth_name);
        if let Some(i) = existing {
            let same_nonce = c.auth[i].challenge.nonce == challenge.nonce;
            if !challenge.stale || same_nonce {
                info!(call = %CallHandle(h), realm = %challenge.realm, "credentials rejected");
                return false;
            }
            c.auth.remove(i);
        }
        c.auth_failures += 1;
        if c.auth_failures > 5 {
            return false;
        }
        debug!(call = %CallHandle(h), realm = %challenge.realm, "answering digest challenge");
        c.auth.push(AuthState { challenge, header: auth_name, nc: 1 });
        true
    }

    /// The ACK of a 2xx to our re-INVITE (or refresh by re-INVITE), which also refreshes the
    /// dialog's remote target; kept to answer retransmissions of the 2xx.
    fn ack_reinvite_2xx(&mut self, h: u64, msg: &Message) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        let Some(d) = c.dialog.as_mut() else { return };
        d.refresh_target(msg, &c.initial_target);
        let seq = msg.cseq().map(|s| s.seq).unwrap_or(0);
        let ack = d.request(Method::Ack, seq);
        let target = d.next_hop.clone();
        let bytes = self.send_2xx_ack(ack, &target);
        if let Some(c) = self.calls.get_mut(&h) {
            c.ack_2xx = Some((seq, bytes, target));
        }
    }

    /// Sends the ACK of a 2xx (RFC 3261 §13.2.2.4: its own transaction-less request, with a new
    /// branch) to `target`; returns its bytes, for retransmissions of the 2xx.
    fn send_2xx_ack(&mut self, mut ack: Message, target: &Target) -> Vec<u8> {
        let branch = self.new_branch();
        ack.headers
            .0
            .insert(0, crate::header::Header { name: HeaderName::Via, value: self.via(target.transport, &branch) });
        ack.headers.push(HeaderName::MaxForwards, self.config.max_forwards.to_string());
        let bytes = ack.to_bytes();
        self.transmits.push_back(Transmit { target: target.clone(), payload: bytes.clone() });
        bytes
    }

    fn in_dialog_response(
        &mut self,
        now: Instant,
        h: u64,
        purpose: Purpose,
        msg: Message,
        code: u16,
        original: Option<Vec<u8>>,
    ) {
        if code < 200 {
            return;
        }
        let handle = CallHandle(h);
        // A 2xx to our re-INVITE is ACKed whatever the call's state (RFC 3261 §13.2.2.4): one
        // that crosses our BYE would otherwise be retransmitted for 64*T1.
        let reinvite = matches!(purpose, Purpose::ReInvite | Purpose::Refresh)
            && msg.cseq().is_ok_and(|s| s.method == Method::Invite);
        if reinvite && (200..300).contains(&code) {
            self.ack_reinvite_2xx(h, &msg);
        }
        let Some(c) = self.calls.get_mut(&h) else { return };
        if c.state == State::Ending {
            return;
        }
        if code == 401 || code == 407 {
            let method = msg.cseq().map(|s| s.method).unwrap_or(Method::Info);
            if self.retry_with_auth(h, &msg, code) {
                // Re-send the same request (body, Session-Expires) with
                // credentials.
                let original = original.and_then(|b| parse_message(&b, &self.config.limits, Framing::Stream).ok());
                let body = original.as_ref().filter(|m| !m.body.is_empty()).map(|m| {
                    let ct = m.headers.get(&HeaderName::ContentType).unwrap_or("application/sdp");
                    (ct.to_owned(), m.body.clone())
                });
                let se = original
                    .as_ref()
                    .and_then(|m| m.headers.get(&HeaderName::SessionExpires))
                    .map(|v| (HeaderName::SessionExpires, v.to_owned()));
                self.send_in_dialog(now, h, method, purpose, body, se);
                return;
            }
        }
        if (200..300).contains(&code) {
            let Some(c) = self.calls.get_mut(&h) else { return };
            if let Some(se) = SessionExpires::from_message(&msg) {
                let we_refresh = se.refresher != Some(Refresher::Uas);
                let interval = session_interval(se.interval, c.session_expires, we_refresh, c.min_se);
                c.timer = Some(SessionTimer::start(now, interval, we_refresh));
                if purpose == Purpose::Refresh {
                    self.events.push_back((handle, CallEvent::SessionRefreshed { interval }));
                }
            } else if purpose == Purpose::Refresh {
                // The peer dropped the timer (RFC 4028 section 7.4).
                c.timer = None;
            }
            match purpose {
                Purpose::ReInvite | Purpose::UpdateOffer => {
                    c.offer_out = false;
                    if let Some(sdp) = c.offer_sdp.take() {
                        c.sdp = Some(sdp);
                    }
                    if !msg.body.is_empty() {
                        self.events.push_back((handle, CallEvent::RemoteAnswer { sdp: msg.body }));
                    }
                }
                Purpose::Info => self.events.push_back((handle, CallEvent::InfoResponse { code })),
                _ => {}
            }
            return;
        }
        // Failures. RFC 3261 12.2.1.2: 408 and 481 end the dialog.
        let Some(c) = self.calls.get_mut(&h) else { return };
        if matches!(purpose, Purpose::ReInvite | Purpose::UpdateOffer) {
            c.offer_out = false;
            c.offer_sdp = None;
        }
        if code == 408 || code == 481 {
            warn!(call = %handle, code, "in-dialog request failed: dialog gone");
            if code == 481 {
                self.events.push_back((handle, CallEvent::Ended { reason: EndReason::DialogGone }));
                self.remove_call(now, h);
            } else {
                self.send_bye(now, h, EndReason::DialogGone);
            }
            return;
        }
        match purpose {
            Purpose::ReInvite | Purpose::UpdateOffer => {
                self.events.push_back((handle, CallEvent::OfferRejected { code }))
            }
            Purpose::Info => self.events.push_back((handle, CallEvent::InfoResponse { code })),
            Purpose::Refresh => {
                let by_update = msg.cseq().is_ok_and(|s| s.method == Method::Update);
                // RFC 3261 §14.1: after a 491 the Call-ID's owner (us) tries again in 2.1 to 4 s.
                let glare = Duration::from_millis(self.rng.gen_range(2100..=4000));
                let Some(c) = self.calls.get_mut(&h) else { return };
                if let Some(t) = c.timer.as_mut() {
                    t.refreshing = false;
                    let remaining = t.expiry.saturating_duration_since(now);
                    t.deadline = if code == 491 {
                        (now + glare).min(t.expiry)
                    } else if by_update {
                        // Its Allow named UPDATE, but it refuses a refresh by it (a bodiless
                        // UPDATE is not what every peer takes): by re-INVITE from now on, at once.
                        c.peer_allows_update = false;
                        now
                    } else {
                        // Try again once more before expiry.
                        now + remaining / 2
                    };
                    self.touched.push(TimerKey::Call(h));
                }
            }
            _ => {}
        }
    }

    fn handle_request(&mut self, now: Instant, source: &Target, msg: Message) {
        let Some(method) = msg.method().cloned() else { return };
        let Ok(via) = msg.top_via() else { return };
        let branch = via.branch().unwrap_or_default().to_owned();
        // Retransmission of a request we already answered?
        let server_key = TxKey {
            branch: branch.clone(),
            method: if method == Method::Ack { Method::Invite } else { method.clone() },
        };
        if let Some(stx) = self.server_txs.get_mut(&server_key) {
            if method == Method::Ack {
                if stx.awaiting_ack {
                    stx.awaiting_ack = false;
                    stx.retransmit = None;
                    let wait = if source.transport.is_reliable() { Duration::ZERO } else { self.config.timers.t4 };
                    stx.expires = now + wait;
                    self.touched.push(TimerKey::Server(server_key.clone()));
                }
                // An ACK for a 2xx has its own branch; fall through otherwise.
                if !stx.is_invite || stx.response.as_ref().is_none_or(|r| !r.starts_with(b"SIP/2.0 2")) {
                    return;
                }
            } else {
                if let Some(r) = stx.response.clone() {
                    self.transmits.push_back(Transmit { target: source.clone(), payload: r });
                }
                return;
            }
        }
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        let from_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let h = self.by_call_id.get(&call_id).copied().filter(|h| {
            self.calls
                .get(h)
                .and_then(|c| c.dialog.as_ref())
                .is_some_and(|d| d.matches_request(&call_id, from_tag.as_deref(), to_tag.as_deref()))
        });
        if method == Method::Ack {
            if let Some(h) = h {
                self.handle_ack(h, &msg);
            }
            return; // never answer an ACK
        }
        // A retransmission of the re-offer the application is answering (no response yet to
        // resend): a re-INVITE gets its 100 again, anything else waits for the answer.
        let pending = h.and_then(|h| self.calls.get(&h)).and_then(|c| c.pending_in.as_ref());
        if let Some(p) = pending.filter(|p| p.key == server_key) {
            if method == Method::Invite {
                let trying = self.response_for(&p.request, 100, "Trying", None);
                self.transmits.push_back(Transmit { target: source.clone(), payload: trying.to_bytes() });
            }
            return;
        }
        if h.is_none() && method != Method::Cancel {
            // A request inside an early dialog (before the answer).
            let early = self.by_call_id.get(&call_id).copied().filter(|h| {
                self.calls.get(h).is_some_and(|c| {
                    c.early.iter().any(|d| d.matches_request(&call_id, from_tag.as_deref(), to_tag.as_deref()))
                })
            });
            if let Some(h) = early {
                self.early_dialog_request(h, source, &msg, &method);
                return;
            }
        }
        if method == Method::Cancel {
            let key = TxKey { branch, method: Method::Invite };
            let pending =
                h.and_then(|h| self.calls.get(&h)).and_then(|c| c.pending_in.as_ref()).is_some_and(|p| p.key == key);
            if let (Some(h), true) = (h, pending) {
                let ok = self.response_for(&msg, 200, "OK", None);
                self.transmits.push_back(Transmit { target: source.clone(), payload: ok.to_bytes() });
                if let Some(p) = self.calls.get_mut(&h).and_then(|c| c.pending_in.take()) {
                    let resp = self.response_for(&p.request, 487, "Request Terminated", None);
                    self.finish_server_response(now, h, p, resp, false);
                }
            } else {
                self.reject_stateless(now, &msg, source, 481, "Call/Transaction Does Not Exist");
            }
            return;
        }
        let Some(h) = h else {
            let (code, reason) = match (&method, to_tag.is_some()) {
                (_, true) => (481, "Call/Transaction Does Not Exist"),
                (Method::Bye | Method::Update | Method::Info | Method::Prack | Method::Notify, false) => {
                    (481, "Call/Transaction Does Not Exist")
                }
                _ => (403, "Forbidden (this user agent only places calls)"),
            };
            self.reject_stateless(now, &msg, source, code, reason);
            return;
        };
        self.in_dialog_request(now, h, source, msg, method, branch);
    }

    /// Requests in an early dialog: INFO, OPTIONS and NOTIFY are answered
    /// (INFO reported); an offer cannot be taken before the answer (500 with
    /// Retry-After, RFC 3311 5.2); anything else is not allowed yet.
    fn early_dialog_request(&mut self, h: u64, source: &Target, msg: &Message, method: &Method) {
        let (code, reason) = match method {
            Method::Info | Method::Options | Method::Notify => (200, "OK"),
            Method::Update | Method::Invite | Method::Prack => (500, "Server Internal Error"),
            Method::Bye => (200, "OK"),
            Method::Extension(_) => (501, "Not Implemented"),
            _ => (405, "Method Not Allowed"),
        };
        let mut resp = self.response_for(msg, code, reason, None);
        if code == 500 {
            resp.headers.push(HeaderName::RetryAfter, "1");
        }
        if code == 405 {
            resp.headers.push(HeaderName::Allow, ALLOW);
        }
        self.transmits.push_back(Transmit { target: source.clone(), payload: resp.to_bytes() });
        match method {
            Method::Info => {
                // Answered without a server transaction: a retransmission (our 200 lost) carries
                // the CSeq already seen in its dialog, and is not a second INFO.
                let tag = msg.from().ok().and_then(|f| f.tag().map(str::to_owned)).unwrap_or_default();
                let seq = msg.cseq().map(|s| s.seq).unwrap_or(0);
                let Some(c) = self.calls.get_mut(&h) else { return };
                match c.early_cseq.iter().position(|(t, _)| *t == tag) {
                    Some(i) if seq <= c.early_cseq[i].1 => return,
                    Some(i) => c.early_cseq[i].1 = seq,
                    None if c.early_cseq.len() < 8 => c.early_cseq.push((tag, seq)),
                    None => {}
                }
                let ct = msg.headers.get(&HeaderName::ContentType).map(str::to_owned);
                self.events.push_back((CallHandle(h), CallEvent::Info { content_type: ct, body: msg.body.clone() }));
            }
            Method::Bye => {
                // A BYE on an early dialog ends that branch; the call goes
                // on with the others (RFC 3261 15: the callee should have
                // sent a final error instead).
                let to_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
                if let Some(c) = self.calls.get_mut(&h) {
                    c.early.retain(|d| d.remote.tag() != to_tag.as_deref());
                }
            }
            _ => {}
        }
    }

    fn handle_ack(&mut self, h: u64, msg: &Message) {
        self.touched.push(TimerKey::Call(h));
        let Some(c) = self.calls.get_mut(&h) else { return };
        let seq = msg.cseq().map(|s| s.seq).unwrap_or(0);
        if c.ack_wait.as_ref().is_some_and(|a| a.cseq == seq) {
            let Some(a) = c.ack_wait.take() else { return };
            if a.expect_answer {
                if msg.body.is_empty() {
                    warn!(call = %CallHandle(h), "ACK without the answer to our offer");
                } else {
                    self.events.push_back((CallHandle(h), CallEvent::RemoteAnswer { sdp: msg.body.clone() }));
                }
            }
        }
    }

    fn in_dialog_request(
        &mut self,
        now: Instant,
        h: u64,
        source: &Target,
        msg: Message,
        method: Method,
        branch: String,
    ) {
        self.touched.push(TimerKey::Call(h));
        let handle = CallHandle(h);
        let Ok(cseq) = msg.cseq() else { return };
        let Some(c) = self.calls.get_mut(&h) else { return };
        let Some(d) = c.dialog.as_mut() else { return };
        if d.remote_seq.is_some_and(|r| cseq.seq <= r) {
            // RFC 3261 12.2.2: lower CSeq out of order.
            let resp = self.response_for(&msg, 500, "Server Internal Error (CSeq out of order)", None);
            self.transmits.push_back(Transmit { target: source.clone(), payload: resp.to_bytes() });
            return;
        }
        d.remote_seq = Some(cseq.seq);
        let key = TxKey { branch, method: method.clone() };
        let state = c.state;
        // RFC 3261 §8.2.2.3: a request that requires an extension we do not have is refused,
        // naming it; the dialog goes on.
        let unknown: Vec<String> = msg
            .headers
            .values(&HeaderName::Require)
            .filter(|t| !SUPPORTED.iter().any(|s| t.eq_ignore_ascii_case(s)))
            .map(str::to_owned)
            .collect();
        if !unknown.is_empty() {
            info!(call = %handle, %method, unknown = %unknown.join(", "), "a required extension we do not have: 420");
            let mut resp = self.response_for(&msg, 420, "Bad Extension", None);
            resp.headers.push(HeaderName::Unsupported, unknown.join(", "));
            let kind = if method == Method::Invite { OfferKind::ReInvite } else { OfferKind::Update };
            let p = PendingIn { key, request: msg, source: source.clone(), kind, se: None, deadline: now };
            self.finish_server_response(now, h, p, resp, false);
            return;
        }
        match method {
            Method::Bye => {
                info!(call = %handle, "BYE from the peer");
                self.respond_simple(now, h, key, source, &msg, 200, "OK", false);
                self.events.push_back((handle, CallEvent::Ended { reason: EndReason::RemoteHangup }));
                self.remove_call(now, h);
            }
            Method::Invite | Method::Update => {
                let kind = if method == Method::Invite { OfferKind::ReInvite } else { OfferKind::Update };
                let refreshing = self.refresh_invite_pending(h);
                let Some(c) = self.calls.get_mut(&h) else { return };
                if state != State::Confirmed {
                    self.respond_simple(
                        now,
                        h,
                        key,
                        source,
                        &msg,
                        500,
                        "Server Internal Error",
                        kind == OfferKind::ReInvite,
                    );
                    return;
                }
                if (c.offer_out || refreshing) && (kind == OfferKind::ReInvite || !msg.body.is_empty()) {
                    // Glare (RFC 3261 14.2).
                    self.respond_simple(now, h, key, source, &msg, 491, "Request Pending", kind == OfferKind::ReInvite);
                    return;
                }
                if c.pending_in.is_some() || c.ack_wait.is_some() {
                    let mut resp = self.response_for(&msg, 500, "Server Internal Error", None);
                    resp.headers.push(HeaderName::RetryAfter, (self.rng.gen_range(0..10)).to_string());
                    let p = PendingIn { key, request: msg, source: source.clone(), kind, se: None, deadline: now };
                    self.finish_server_response(now, h, p, resp, false);
                    return;
                }
                let min_se = c.min_se;
                let mut se = SessionExpires::from_message(&msg);
                if let Some(asked) = se.filter(|s| s.interval < min_se) {
                    if msg.headers.has_token(&HeaderName::Supported, "timer") {
                        // RFC 4028 §9: below our minimum, refused with it (the far end asks again
                        // with at least that); a refresh every half second is not a session timer.
                        info!(call = %handle, asked = asked.interval, min_se, "session interval too small: 422");
                        let mut resp = self.response_for(&msg, 422, "Session Interval Too Small", None);
                        resp.headers.push(HeaderName::MinSe, min_se.to_string());
                        let p = PendingIn { key, request: msg, source: source.clone(), kind, se: None, deadline: now };
                        self.finish_server_response(now, h, p, resp, false);
                        return;
                    }
                    // A far end without timer support cannot ask again: the interval is raised to
                    // our minimum instead (RFC 4028 §9, erratum 1687).
                    se = Some(SessionExpires { interval: min_se, ..asked });
                }
                let p = PendingIn {
                    key,
                    request: msg.clone(),
                    source: source.clone(),
                    kind,
                    se,
                    deadline: now + self.config.timers.t64(),
                };
                if kind == OfferKind::Update && msg.body.is_empty() {
                    // A session refresh without a new offer.
                    let resp = self.response_for(&msg, 200, "OK", None);
                    self.finish_server_response(now, h, p, resp, false);
                    if let Some(se) = se {
                        self.events.push_back((handle, CallEvent::SessionRefreshed { interval: se.interval }));
                    }
                    return;
                }
                if kind == OfferKind::ReInvite {
                    // RFC 3261 §17.2.1: the application may take longer than 200 ms to answer.
                    let trying = self.response_for(&msg, 100, "Trying", None);
                    self.transmits.push_back(Transmit { target: source.clone(), payload: trying.to_bytes() });
                }
                let Some(c) = self.calls.get_mut(&h) else { return };
                c.pending_in = Some(p);
                if msg.body.is_empty() {
                    self.events.push_back((handle, CallEvent::OfferRequested));
                } else {
                    if let Some(se) = se {
                        self.events.push_back((handle, CallEvent::SessionRefreshed { interval: se.interval }));
                    }
                    self.events.push_back((handle, CallEvent::RemoteOffer { sdp: msg.body, kind }));
                }
            }
            Method::Info => {
                let ct = msg.headers.get(&HeaderName::ContentType).map(str::to_owned);
                self.respond_simple(now, h, key, source, &msg, 200, "OK", false);
                self.events.push_back((handle, CallEvent::Info { content_type: ct, body: msg.body }));
            }
            Method::Options | Method::Notify => {
                self.respond_simple(now, h, key, source, &msg, 200, "OK", false);
            }
            Method::Extension(_) => self.respond_simple(now, h, key, source, &msg, 501, "Not Implemented", false),
            _ => self.respond_simple(now, h, key, source, &msg, 405, "Method Not Allowed", false),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_simple(
        &mut self,
        now: Instant,
        h: u64,
        key: TxKey,
        source: &Target,
        req: &Message,
        code: u16,
        reason: &str,
        is_invite: bool,
    ) {
        let mut resp = self.response_for(req, code, reason, None);
        if code == 405 || req.method() == Some(&Method::Options) {
            resp.headers.push(HeaderName::Allow, ALLOW);
        }
        if req.method() == Some(&Method::Options) {
            resp.headers.push(HeaderName::Accept, "application/sdp");
            resp.headers.push(HeaderName::Supported, SUPPORTED.join(", "));
        }
        let kind = if is_invite { OfferKind::ReInvite } else { OfferKind::Update };
        let p = PendingIn { key, request: req.clone(), source: source.clone(), kind, se: None, deadline: now };
        if is_invite || code >= 300 {
            self.finish_server_response(now, h, p, resp, false);
        } else {
            let t = self.config.timers;
            resp.headers.push(HeaderName::Server, self.config.user_agent.clone());
            let bytes = resp.to_bytes();
            let expires = now + if source.transport.is_reliable() { Duration::ZERO } else { t.t64() };
            self.touched.push(TimerKey::Server(p.key.clone()));
            self.server_txs.insert(
                p.key,
                ServerTx {
                    is_invite: false,
                    response: Some(bytes.clone()),
                    target: source.clone(),
                    retransmit: None,
                    expires,
                    awaiting_ack: false,
                },
            );
            self.transmits.push_back(Transmit { target: source.clone(), payload: bytes });
        }
    }

    /// A response to `req` with Via, From, To, Call-ID and CSeq copied
    /// (RFC 3261 8.2.6.2), a To tag added when missing, and RFC 3581
    /// `received`/`rport` filled in by the caller's source.
    fn response_for(&self, req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut r = Message::response(code, reason);
        for v in req.headers.get_all(&HeaderName::Via) {
            r.headers.push(HeaderName::Via, v.to_owned());
        }
        if let Some(f) = req.headers.get(&HeaderName::From) {
            r.headers.push(HeaderName::From, f.to_owned());
        }
        if let Some(t) = req.headers.get(&HeaderName::To) {
            let needs_tag = code > 100 && req.to().is_ok_and(|t| t.tag().is_none());
            let value = match (needs_tag, to_tag) {
                (true, Some(tag)) => format!("{t};tag={tag}"),
                (true, None) => format!("{t};tag=x{:08x}", fnv(req.call_id().unwrap_or_default())),
                _ => t.to_owned(),
            };
            r.headers.push(HeaderName::To, value);
        }
        if let Some(c) = req.headers.get(&HeaderName::CallId) {
            r.headers.push(HeaderName::CallId, c.to_owned());
        }
        if let Some(c) = req.headers.get(&HeaderName::CSeq) {
            r.headers.push(HeaderName::CSeq, c.to_owned());
        }
        r
    }

    /// Answers a request that belongs to nothing of ours, creating no state.
    fn reject_stateless(&mut self, now: Instant, req: &Message, source: &Target, code: u16, reason: &str) {
        // Token bucket: at most `reject_rate` answers per second.
        let rate = f64::from(self.config.reject_rate);
        if let Some(last) = self.reject_refill {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.reject_tokens = (self.reject_tokens + elapsed * rate).min(rate);
        }
        self.reject_refill = Some(now);
        if self.reject_tokens < 1.0 {
            self.stats.dropped += 1;
            return;
        }
        self.reject_tokens -= 1.0;
        self.stats.rejected += 1;
        debug!(%source, code, method = ?req.method(), "stateless rejection");
        let mut resp = self.response_for(req, code, reason, None);
        // RFC 3581: tell the sender where its request came from.
        if let Some(first) = resp.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) {
            let original = first.value.clone();
            let top = crate::split_list(&original).next().unwrap_or_default().to_owned();
            if let Ok(mut via) = Via::parse(&top) {
                if via.host.ip() != Some(source.addr.ip()) {
                    via.params.set("received", Some(source.addr.ip().to_string()));
                }
                if via.params.contains("rport") {
                    via.params.set("rport", Some(source.addr.port().to_string()));
                }
                let rest: Vec<&str> = crate::split_list(&original).skip(1).collect();
                first.value = std::iter::once(via.to_string())
                    .chain(rest.into_iter().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
        }
        if code == 405 {
            resp.headers.push(HeaderName::Allow, ALLOW);
        }
        resp.headers.push(HeaderName::Server, self.config.user_agent.clone());
        self.transmits.push_back(Transmit { target: source.clone(), payload: resp.to_bytes() });
    }

    /// The transport to `target` failed (connection refused or lost, ICMP
    /// unreachable): pending transactions towards it fail (RFC 3261 8.1.3.1).
    pub fn handle_transport_error(&mut self, now: Instant, target: &Target) {
        self.handle_transport_error_inner(now, target);
        self.reschedule();
    }

    /// A stream connection to `target` could not be made at all (refused, timed out, TLS
    /// handshake failed): what was moved to it from UDP for its size never left, and goes over
    /// UDP after all (RFC 3261 §18.1.1); the rest fails as on [`handle_transport_error`](Self::handle_transport_error).
    pub fn handle_connect_failed(&mut self, now: Instant, target: &Target) {
        let moved: Vec<TxKey> = self
            .client_txs
            .iter()
            .filter(|(_, t)| {
                t.state == ClientState::Calling
                    && t.udp_fallback.is_some()
                    && t.target.transport == target.transport
                    && t.target.addr == target.addr
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in moved {
            if let Some(mut tx) = self.client_txs.remove(&k) {
                if let Some(udp) = tx.udp_fallback.take() {
                    self.fall_back_to_udp(now, k, tx, udp);
                }
            }
        }
        self.handle_transport_error_inner(now, target);
        self.reschedule();
    }

    /// Whether anything still goes to or comes from `target` (its transport and address): a
    /// call's first or INVITE target, a dialog's next hop (early, confirmed or a fork being
    /// ended), or a transaction. A stream connection to a target nothing uses may be closed.
    pub fn uses_target(&self, target: &Target) -> bool {
        let same = |t: &Target| t.transport == target.transport && t.addr == target.addr;
        self.calls.values().any(|c| {
            same(&c.initial_target)
                || same(&c.invite_target)
                || c.dialog.as_ref().is_some_and(|d| same(&d.next_hop))
                || c.early.iter().any(|d| same(&d.next_hop))
                || c.forks.iter().any(|(_, _, t)| same(t))
        }) || self.client_txs.values().any(|t| same(&t.target))
            || self.server_txs.values().any(|t| same(&t.target))
    }

    /// Forgets what stream connection `connection` to `source` left half-read (0: the stream of
    /// [`handle_input`](Self::handle_input)), without anything else: for a connection that is
    /// gone, reported or not by [`handle_connection_closed`](Self::handle_connection_closed).
    pub fn forget_stream(&mut self, source: &Target, connection: u64) {
        let key = (source.transport, source.addr, connection);
        self.framers.remove(&key);
        self.refused_streams.remove(&key);
    }

    fn handle_transport_error_inner(&mut self, now: Instant, target: &Target) {
        // One connection per transport and address, whatever name it was reached by.
        let same = |t: &Target| t.transport == target.transport && t.addr == target.addr;
        let keys: Vec<TxKey> = self
            .client_txs
            .iter()
            .filter(|(_, t)| same(&t.target) && matches!(t.state, ClientState::Calling | ClientState::Proceeding))
            .map(|(k, _)| k.clone())
            .collect();
        self.framers.remove(&(target.transport, target.addr, 0));
        for k in keys {
            let Some(tx) = self.client_txs.remove(&k) else { continue };
            warn!(call = %CallHandle(tx.call), %target, "transport failure");
            if tx.moved && tx.purpose != Purpose::Invite {
                // Only this request's connection failed, not the dialog's path.
                self.in_dialog_failed(now, tx);
                continue;
            }
            self.tx_failed(now, tx, 503, "Service Unavailable (transport failure)");
        }
        // A broken connection under an answered call: the dialog cannot be
        // reached any more (a clean close is not an error: the next request
        // opens a new connection).
        if target.transport.is_reliable() {
            let lost: Vec<u64> = self
                .calls
                .iter()
                .filter(|(_, c)| c.state == State::Confirmed && c.dialog.as_ref().is_some_and(|d| same(&d.next_hop)))
                .map(|(h, _)| *h)
                .collect();
            for h in lost {
                warn!(call = %CallHandle(h), %target, "connection to the peer failed mid-call");
                if let Some(c) = self.calls.get_mut(&h) {
                    c.end_reason = EndReason::TransportFailure;
                }
                self.finish_call(now, h, None);
            }
        }
    }

    /// A request moved to TCP for its size whose connection failed before anything came back:
    /// sent over UDP after all, as the same transaction (a fragmented request may still arrive;
    /// no request at all surely does not).
    fn fall_back_to_udp(&mut self, now: Instant, key: TxKey, mut tx: ClientTx, udp: Vec<u8>) {
        let target = Target { transport: Transport::Udp, ..tx.target.clone() };
        warn!(call = %CallHandle(tx.call), %target, size = udp.len(), "TCP connection failed: sending the large request over UDP");
        if self.tcp_refused.len() >= TCP_REFUSED_MAX {
            self.tcp_refused.retain(|_, until| *until > now);
            if self.tcp_refused.len() >= TCP_REFUSED_MAX {
                self.tcp_refused.clear();
            }
        }
        self.tcp_refused.insert(target.addr, now + TCP_REFUSED_FOR);
        if tx.purpose == Purpose::Invite {
            let via = self.via(Transport::Udp, &key.branch);
            if let Some(c) = self.calls.get_mut(&tx.call) {
                set_top_via(&mut c.invite_bytes, via);
                c.invite_target = target.clone();
            }
        }
        tx.resend_to(target.clone(), udp.clone(), now, &self.config.timers);
        self.touched.push(TimerKey::Client(key.clone()));
        self.client_txs.insert(key, tx);
        self.transmits.push_back(Transmit { target, payload: udp });
    }

    /// An in-dialog request moved to TCP for its size got no answer because that connection
    /// failed after it was written: the request fails as if refused with 503, the dialog stays.
    fn in_dialog_failed(&mut self, now: Instant, tx: ClientTx) {
        let h = tx.call;
        self.touched.push(TimerKey::Call(h));
        match tx.purpose {
            Purpose::Bye => self.finish_call(now, h, None),
            Purpose::ReInvite | Purpose::UpdateOffer | Purpose::Refresh | Purpose::Info | Purpose::Probe => {
                let resp = Message::response(503, "Service Unavailable (transport failure)");
                self.in_dialog_response(now, h, tx.purpose, resp, 503, None);
            }
            Purpose::Invite | Purpose::Cancel | Purpose::ForkBye | Purpose::Prack => {}
        }
    }

    fn tx_failed(&mut self, now: Instant, tx: ClientTx, code: u16, reason: &str) {
        self.touched.push(TimerKey::Call(tx.call));
        let h = tx.call;
        let handle = CallHandle(h);
        match tx.purpose {
            Purpose::Invite => {
                let Some(c) = self.calls.get(&h) else { return };
                if c.state != State::Calling && c.state != State::Proceeding {
                    return;
                }
                let ev = if c.cancel_requested && !c.no_answer {
                    CallEvent::Ended { reason: EndReason::Cancelled }
                } else {
                    CallEvent::Failed { code, reason: reason.to_owned() }
                };
                self.events.push_back((handle, ev));
                self.remove_call(now, h);
            }
            Purpose::Cancel => self.cancel_refused(h),
            Purpose::ForkBye | Purpose::Prack => {}
            Purpose::Bye => self.finish_call(now, h, None),
            _ => {
                if code == 503 {
                    if let Some(c) = self.calls.get_mut(&h) {
                        c.state = State::Ending;
                        c.end_reason = EndReason::TransportFailure;
                    }
                    self.finish_call(now, h, None);
                } else {
                    self.send_bye(now, h, EndReason::DialogGone);
                }
            }
        }
    }

    /// Our CANCEL was refused (481: the INVITE had not reached the far end yet) or got no answer:
    /// it goes again with the INVITE's next provisional response.
    fn cancel_refused(&mut self, h: u64) {
        if let Some(c) = self.calls.get_mut(&h) {
            if matches!(c.state, State::Calling | State::Proceeding) {
                c.cancel_sent = false;
            }
        }
    }

    fn finish_call(&mut self, now: Instant, h: u64, reason: Option<EndReason>) {
        let Some(c) = self.calls.get(&h) else { return };
        let reason = reason.unwrap_or(c.end_reason);
        info!(call = %CallHandle(h), ?reason, "call ended");
        self.events.push_back((CallHandle(h), CallEvent::Ended { reason }));
        self.remove_call(now, h);
    }

    fn remove_call(&mut self, now: Instant, h: u64) {
        if let Some(c) = self.calls.remove(&h) {
            self.by_call_id.remove(&c.call_id);
            // Kept for 64*T1, the time a far end retransmits a 2xx (RFC 3261 §13.3.1.4). Expired
            // entries are swept here every eighth of that, so the map holds about the calls ended
            // within 64*T1 and a lookup checks the expiry itself.
            if self.ended_sweep_at.is_none_or(|t| t <= now) {
                self.ended_acks.retain(|_, e| e.until > now);
                self.ended_sweep_at = Some(now + self.config.timers.t64() / 8);
            }
            if let Some((seq, bytes, target)) = c.ack_2xx {
                let to_tag = c.dialog.as_ref().and_then(|d| d.remote.tag().map(str::to_owned));
                let until = now + self.config.timers.t64();
                self.ended_acks.insert(c.call_id, EndedAck { to_tag, seq, bytes, target, until });
            }
        }
        // Requests of the call still waiting for an answer are given up (finished transactions
        // linger on their own timers, to absorb retransmissions). A BYE to an extra forked dialog
        // goes on: that dialog is not this call's.
        self.client_txs.retain(|_, t| {
            t.call != h
                || t.purpose == Purpose::ForkBye
                || !matches!(t.state, ClientState::Calling | ClientState::Proceeding)
        });
    }

    // ----- time -----

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// has work to do (possibly a little early: the timer heap is lazy).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Pushes the current deadline of every entity changed since the last
    /// call onto the timer heap.
    fn reschedule(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for key in touched.drain(..) {
            let deadline = match &key {
                TimerKey::Client(k) => self.client_txs.get(k).and_then(ClientTx::deadline),
                TimerKey::Server(k) => self.server_txs.get(k).map(ServerTx::deadline),
                TimerKey::Call(h) => self.calls.get(h).and_then(call_deadline),
            };
            if let Some(d) = deadline {
                if self.scheduled.get(&key).is_none_or(|s| d < *s) {
                    self.scheduled.insert(key.clone(), d);
                    self.timers.push(Reverse((d, key)));
                }
            }
        }
        self.touched = touched;
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((at, key))) = self.timers.pop() {
                if self.scheduled.get(&key) == Some(&at) {
                    self.scheduled.remove(&key);
                }
                due.push(key);
            }
        }
        due.sort_unstable();
        due.dedup();
        for key in due {
            match key {
                TimerKey::Client(k) => self.client_timer(now, k),
                TimerKey::Server(k) => self.server_timer(now, k),
                TimerKey::Call(h) => {
                    self.touched.push(TimerKey::Call(h));
                    if self.calls.get(&h).and_then(call_deadline).is_some_and(|d| d <= now) {
                        self.call_timers(now, h);
                    }
                }
            }
        }
        self.reschedule();
    }

    fn client_timer(&mut self, now: Instant, k: TxKey) {
        let t = self.config.timers;
        let Some(tx) = self.client_txs.get_mut(&k) else { return };
        if tx.retransmit_due(now, &t) {
            let tr = Transmit { target: tx.target.clone(), payload: tx.request.clone() };
            self.transmits.push_back(tr);
        }
        let timed_out = tx.timeout.is_some_and(|d| d <= now);
        if timed_out || tx.linger.is_some_and(|d| d <= now) {
            let Some(tx) = self.client_txs.remove(&k) else { return };
            if timed_out {
                debug!(call = %CallHandle(tx.call), "transaction timed out");
                self.tx_failed(now, tx, 408, "Request Timeout");
            }
            return;
        }
        self.touched.push(TimerKey::Client(k));
    }

    fn server_timer(&mut self, now: Instant, k: TxKey) {
        let t = self.config.timers;
        let Some(s) = self.server_txs.get_mut(&k) else { return };
        if s.expires <= now {
            self.server_txs.remove(&k);
            return;
        }
        if let Some((at, iv)) = s.retransmit {
            if at <= now {
                let next = (iv * 2).min(t.t2);
                s.retransmit = Some((now + next, next));
                if let Some(r) = &s.response {
                    let tr = Transmit { target: s.target.clone(), payload: r.clone() };
                    self.transmits.push_back(tr);
                }
            }
        }
        self.touched.push(TimerKey::Server(k));
    }

    fn call_timers(&mut self, now: Instant, h: u64) {
        let t = self.config.timers;
        let handle = CallHandle(h);
        let Some(c) = self.calls.get_mut(&h) else { return };
        if c.ring_deadline.is_some_and(|d| d <= now) {
            c.ring_deadline = None;
            // A call hung up already stays a cancellation, not a no-answer.
            if matches!(c.state, State::Calling | State::Proceeding) && !c.cancel_requested {
                info!(call = %handle, "no answer: cancelling");
                c.no_answer = true;
                c.cancel_requested = true;
                if c.got_provisional {
                    self.send_cancel(now, h);
                }
            }
        }
        let Some(c) = self.calls.get_mut(&h) else { return };
        if let Some(p) = &c.pending_in {
            if p.deadline <= now {
                warn!(call = %handle, "offer not answered in time: 500");
                let Some(p) = c.pending_in.take() else { return };
                let resp = self.response_for(&p.request, 500, "Server Internal Error", None);
                self.finish_server_response(now, h, p, resp, false);
            }
        }
        let Some(c) = self.calls.get_mut(&h) else { return };
        if let Some(a) = c.ack_wait.as_mut() {
            if a.deadline <= now {
                c.ack_wait = None;
                warn!(call = %handle, "no ACK for our 2xx: ending the call");
                self.send_bye(now, h, EndReason::AckTimeout);
                return;
            }
            if let Some((at, iv)) = a.retransmit {
                if at <= now {
                    let next = (iv * 2).min(t.t2);
                    a.retransmit = Some((now + next, next));
                    let tr = Transmit { target: a.target.clone(), payload: a.response.clone() };
                    self.transmits.push_back(tr);
                }
            }
        }
        let Some(c) = self.calls.get_mut(&h) else { return };
        if let Some(timer) = c.timer.as_mut() {
            if timer.expiry <= now || (!timer.we_refresh && timer.deadline <= now) {
                warn!(call = %handle, "session expired without refresh");
                c.timer = None;
                self.send_bye(now, h, EndReason::SessionExpired);
                return;
            }
            if timer.we_refresh && !timer.refreshing && timer.deadline <= now && c.state == State::Confirmed {
                if c.offer_out || c.pending_in.is_some() || c.ack_wait.is_some() {
                    // An offer exchange is under way (its 2xx may refresh the session): the
                    // refresh waits a little, and is not lost if that exchange fails.
                    timer.deadline = (now + Duration::from_secs(2)).min(timer.expiry);
                    return;
                }
                timer.refreshing = true;
                // Wait for the answer until expiry.
                timer.deadline = timer.expiry;
                let interval = timer.interval;
                let se = SessionExpires { interval, refresher: Some(Refresher::Uac) }.to_header();
                info!(call = %handle, interval, "refreshing the session");
                if c.peer_allows_update {
                    self.send_in_dialog(
                        now,
                        h,
                        Method::Update,
                        Purpose::Refresh,
                        None,
                        Some((HeaderName::SessionExpires, se)),
                    );
                } else {
                    let body = c.sdp.clone().map(|b| ("application/sdp".to_owned(), b));
                    self.send_in_dialog(
                        now,
                        h,
                        Method::Invite,
                        Purpose::Refresh,
                        body,
                        Some((HeaderName::SessionExpires, se)),
                    );
                }
            }
        }
    }

    // ----- output -----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next call event.
    pub fn poll_event(&mut self) -> Option<(CallHandle, CallEvent)> {
        self.events.pop_front()
    }

    /// The next stream connection to close (its transport, its address and the `connection`
    /// given to [`handle_stream_input`](Self::handle_stream_input), 0 for
    /// [`handle_input`](Self::handle_input)): one that sent what cannot be framed. Input still
    /// given for it is ignored until [`forget_stream`](Self::forget_stream) (or, for 0,
    /// [`handle_connection_closed`](Self::handle_connection_closed)).
    pub fn poll_close(&mut self) -> Option<(Target, u64)> {
        self.closes.pop_front()
    }
}

fn call_deadline(c: &Call) -> Option<Instant> {
    let timer = c.timer.map(|t| if t.we_refresh && t.refreshing { t.expiry } else { t.deadline.min(t.expiry) });
    [
        c.ring_deadline.filter(|_| matches!(c.state, State::Calling | State::Proceeding)),
        c.pending_in.as_ref().map(|p| p.deadline),
        c.ack_wait.as_ref().map(|a| a.retransmit.map_or(a.deadline, |r| r.0.min(a.deadline))),
        timer,
    ]
    .into_iter()
    .flatten()
    .min()
}

/// The ACK for a non-2xx final response (RFC 3261 17.1.1.3): same branch,
/// Request-URI, Call-ID, From and Route as the INVITE, To from the response.
fn build_non2xx_ack(invite: &[u8], resp: &Message, limits: Limits) -> Option<Vec<u8>> {
    let inv = parse_message(invite, &limits, Framing::Stream).ok()?;
    let crate::StartLine::Request { uri, .. } = &inv.start else { return None };
    let mut ack = Message::request(Method::Ack, uri.clone());
    ack.headers.push(HeaderName::Via, inv.headers.values(&HeaderName::Via).next()?.to_owned());
    ack.headers.push(HeaderName::MaxForwards, "70");
    ack.headers.push(HeaderName::From, inv.headers.get(&HeaderName::From)?.to_owned());
    ack.headers.push(HeaderName::To, resp.headers.get(&HeaderName::To)?.to_owned());
    ack.headers.push(HeaderName::CallId, inv.headers.get(&HeaderName::CallId)?.to_owned());
    let seq = inv.cseq().ok()?.seq;
    ack.headers.push(HeaderName::CSeq, CSeq { seq, method: Method::Ack }.to_string());
    for r in inv.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, r.to_owned());
    }
    Some(ack.to_bytes())
}

/// The session interval a 2xx sets: what it says, except that when we refresh a value larger than
/// we asked is not kept (a UAS may only lower it, RFC 4028 §9). When the far end refreshes, its
/// own interval is what it refreshes by, so expiring the session earlier would end a live call.
fn session_interval(answered: u32, asked: Option<u32>, we_refresh: bool, min_se: u32) -> u32 {
    let interval = match asked {
        Some(asked) if we_refresh => answered.min(asked),
        _ => answered,
    };
    // RFC 4028 §9: a UAS never answers below the request's Min-SE (ours), and nothing is ever
    // below 90 s. A far end that does is not followed there: refreshes every half second, or a
    // session given up after seconds, are not what a session timer is for.
    if interval < min_se {
        warn!(answered = interval, min_se, "a session interval below our Min-SE answered: raised to it");
    }
    interval.max(min_se)
}

/// Replaces the value of a message's top Via.
/// What a provisional response with `Require: 100rel` is to the call.
enum Reliable {
    /// The next one of its early dialog: PRACK it.
    New { tag: String, rseq: u32 },
    /// One of its early dialog already PRACKed (a retransmission) or out of order: dropped.
    Again,
    /// Without a To tag or a usable RSeq: not PRACKable, handled as unreliable.
    Unusable,
}

/// Classifies a reliable provisional response by its early dialog's last RSeq (RFC 3262 §4: the
/// first one sets the sequence; then only the next number is new).
fn reliable_provisional(c: &mut Call, msg: &Message) -> Reliable {
    let tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
    let rseq = msg.headers.get(&HeaderName::RSeq).and_then(|v| v.trim().parse::<u32>().ok());
    let (Some(tag), Some(rseq)) = (tag, rseq) else { return Reliable::Unusable };
    if !c.early.iter().any(|d| d.remote.tag() == Some(tag.as_str())) {
        return Reliable::Unusable;
    }
    // Only early dialogs still there count (one a BYE ended leaves room).
    let early = &c.early;
    c.early_rseq.retain(|(t, _)| early.iter().any(|d| d.remote.tag() == Some(t.as_str())));
    let known = c.early_rseq.len();
    match c.early_rseq.iter_mut().find(|(t, _)| *t == tag) {
        Some((_, last)) if rseq == last.wrapping_add(1) => {
            *last = rseq;
            Reliable::New { tag, rseq }
        }
        Some(_) => Reliable::Again,
        None if known < 16 => {
            c.early_rseq.push((tag.clone(), rseq));
            Reliable::New { tag, rseq }
        }
        None => Reliable::Unusable,
    }
}

fn set_top_via(m: &mut Message, value: String) {
    if let Some(v) = m.headers.0.iter_mut().find(|x| x.name == HeaderName::Via) {
        v.value = value;
    }
}

/// A small stable hash for stateless To tags (the same request always gets
/// the same tag, so retransmissions get identical answers).
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}
