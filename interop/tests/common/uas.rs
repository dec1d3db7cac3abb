//! A minimal SIP user agent server on UDP, for far ends whose SDP or in-dialog requests a test
//! writes itself: it answers the first INVITE with the SDP the test makes of the offer (which it
//! hands over), answers BYE and OPTIONS with 200 (BYE after a delay the test may set), INFO with
//! 200 or the status the test sets (keeping what came), ignores ACK, and sends the INFO requests and re-INVITEs the test asks for in the dialog (ACKing the answers
//! to the latter, or, for a re-INVITE without an offer, answering the offer of the 200 in the ACK).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// The far end (dropping it stops it).
pub struct Uas {
    pub port: u16,
    pub offer: oneshot::Receiver<String>,
    /// In-dialog requests to send.
    requests: mpsc::UnboundedSender<Request>,
    /// When the first BYE arrived.
    bye_at: Arc<Mutex<Option<Instant>>>,
    /// The head (start line and headers) of the first INVITE and of the first BYE.
    heads: Arc<Mutex<(Option<String>, Option<String>)>>,
    /// How long the 200 to a BYE waits, in milliseconds.
    bye_delay: Arc<AtomicU64>,
    /// The final statuses of the answers to our re-INVITEs, by CSeq, in order.
    reinvite_statuses: Arc<Mutex<Vec<(u32, u16)>>>,
    /// The bodies of the 2xx answers to our re-INVITEs, in order.
    reinvite_answers: Arc<Mutex<Vec<String>>>,
    /// The status INFO requests get.
    info_status: Arc<AtomicU16>,
    /// The INFO requests that came: when, their Content-Type and body (retransmissions once).
    infos: Arc<Mutex<Vec<Info>>>,
    task: tokio::task::JoinHandle<()>,
}

/// An INFO request the far end got.
#[derive(Debug, Clone)]
pub struct Info {
    pub at: Instant,
    pub content_type: String,
    pub body: String,
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Uas {
    /// Sends an INFO in the dialog (once the INVITE was answered) with this body.
    pub fn info(&self, content_type: &str, body: &str) {
        let _ = self.requests.send(Request::new("INFO", content_type, body, None));
    }

    /// Sends a re-INVITE in the dialog with this SDP offer (the answer is ACKed).
    pub fn reinvite(&self, sdp: &str) {
        let _ = self.requests.send(Request::new("INVITE", "application/sdp", sdp, None));
    }

    /// Sends a re-INVITE without an offer (third-party call control): the 200 brings the
    /// gateway's offer, and `answer` goes back in the ACK.
    pub fn reinvite_offerless(&self, answer: &str) {
        let _ = self.requests.send(Request::new("INVITE", "", "", Some(answer)));
    }

    /// Answers BYE requests only after `delay`.
    pub fn delay_bye_replies(&self, delay: Duration) {
        self.bye_delay.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The start line and headers of the first INVITE and of the first BYE, as they came.
    pub fn heads(&self) -> (Option<String>, Option<String>) {
        self.heads.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// When the first BYE arrived, if one did.
    pub fn bye_at(&self) -> Option<Instant> {
        self.bye_at.lock().ok().and_then(|b| *b)
    }

    /// The final statuses of the answers to the re-INVITEs sent so far (retransmissions once).
    pub fn reinvite_statuses(&self) -> Vec<u16> {
        self.reinvite_statuses.lock().map(|s| s.iter().map(|(_, status)| *status).collect()).unwrap_or_default()
    }

    /// The SDP bodies of the 2xx answers to the re-INVITEs sent so far.
    pub fn reinvite_answers(&self) -> Vec<String> {
        self.reinvite_answers.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Answers INFO requests with `status` ("200 OK" until this is called).
    pub fn set_info_status(&self, status: u16) {
        self.info_status.store(status, Ordering::Relaxed);
    }

    /// The INFO requests that came so far.
    pub fn infos(&self) -> Vec<Info> {
        self.infos.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

/// An in-dialog request to send.
struct Request {
    method: &'static str,
    content_type: String,
    body: String,
    /// The SDP answer the ACK carries (an INVITE without an offer).
    ack_body: Option<String>,
}

impl Request {
    fn new(method: &'static str, content_type: &str, body: &str, ack_body: Option<&str>) -> Request {
        Request {
            method,
            content_type: content_type.to_owned(),
            body: body.to_owned(),
            ack_body: ack_body.map(str::to_owned),
        }
    }
}

/// The header lines of `head` (a request) named one of `names`, as they are.
pub fn headers_named<'a>(head: &'a str, names: &[&str]) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter(|l| l.split_once(':').is_some_and(|(n, _)| names.iter().any(|x| n.trim().eq_ignore_ascii_case(x))))
        .collect()
}

/// The value of the first header named `name`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    headers_named(head, &[name]).first().and_then(|l| l.split_once(':')).map(|(_, v)| v.trim())
}

fn response(head: &str, status: &str, port: u16, body: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for line in headers_named(head, &["Via", "From", "Call-ID", "CSeq"]) {
        r.push_str(line);
        r.push_str("\r\n");
    }
    for to in headers_named(head, &["To"]) {
        if to.contains(";tag=") {
            r.push_str(&format!("{to}\r\n"));
        } else {
            r.push_str(&format!("{to};tag=uas1\r\n"));
        }
    }
    r.push_str(&format!("Contact: <sip:uas@127.0.0.1:{port}>\r\n"));
    match body {
        Some(b) => r.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
        None => r.push_str("Content-Length: 0\r\n\r\n"),
    }
    r
}

/// What an in-dialog request of ours needs from the INVITE.
struct Dialog {
    to: SocketAddr,
    target: String,
    from: String,
    to_header: String,
    call_id: String,
}

impl Dialog {
    fn of(head: &str, from: SocketAddr) -> Option<Dialog> {
        let contact = header(head, "Contact")?;
        let target = contact.split('<').nth(1)?.split('>').next()?.to_owned();
        Some(Dialog {
            to: from,
            target,
            from: format!("{};tag=uas1", header(head, "To")?),
            to_header: header(head, "From")?.to_owned(),
            call_id: header(head, "Call-ID")?.to_owned(),
        })
    }

    /// An in-dialog request (`body` empty: none).
    fn request(&self, method: &str, port: u16, cseq: u32, content_type: &str, body: &str) -> String {
        let content = if body.is_empty() { String::new() } else { format!("Content-Type: {content_type}\r\n") };
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{port}{method}{cseq}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:uas@127.0.0.1:{port}>\r\n{content}Content-Length: {}\r\n\r\n{body}",
            self.target,
            self.from,
            self.to_header,
            self.call_id,
            body.len()
        )
    }
}

/// Starts the far end; `answer` makes its SDP from the offer.
pub async fn uas(answer: impl Fn(&str) -> String + Send + 'static) -> Uas {
    uas_early(answer, None).await
}

/// A far end with early media: the INVITE gets a 183 carrying the answer at once, then, after
/// `early.0`, the final response `early.1` ("200 OK" with the same answer, or a failure such as
/// "404 Not Found"); `early.2` changes the 200's answer (an SDP line added, as in
/// `Some("a=sendonly\r\n")`), or leaves it out (`None`: the answer was the 183's, as with
/// 100rel).
pub async fn uas_early(
    answer: impl Fn(&str) -> String + Send + 'static,
    early: Option<(Duration, &'static str, Option<&'static str>)>,
) -> Uas {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let port = socket.local_addr().expect("addr").port();
    let (tx, offer) = oneshot::channel();
    let (requests, mut to_send) = mpsc::unbounded_channel::<Request>();
    let (bye_at, bye_delay) = (Arc::new(Mutex::new(None)), Arc::new(AtomicU64::new(0)));
    let (bye_seen, delay) = (bye_at.clone(), bye_delay.clone());
    let heads = Arc::new(Mutex::new((None, None)));
    let seen_heads = heads.clone();
    let reinvite_statuses = Arc::new(Mutex::new(Vec::new()));
    let statuses = reinvite_statuses.clone();
    let reinvite_answers = Arc::new(Mutex::new(Vec::new()));
    let answers = reinvite_answers.clone();
    let (info_status, infos) = (Arc::new(AtomicU16::new(200)), Arc::new(Mutex::new(Vec::new())));
    let (info_answer, infos_seen) = (info_status.clone(), infos.clone());
    let mut info_cseqs: Vec<String> = Vec::new();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut answered: Option<String> = None;
        let mut dialog: Option<Dialog> = None;
        let mut cseq = 100;
        let mut ack_body: Option<String> = None;
        // Our re-INVITE still waiting for its final response: the next request waits for it, as a
        // user agent's would (one sent meanwhile would be refused with 500 and Retry-After).
        let mut inviting = false;
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = tokio::select! {
                biased;
                r = socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(_) => return,
                },
                Some(r) = to_send.recv(), if dialog.is_some() && !inviting => {
                    if let Some(d) = dialog.as_ref() {
                        cseq += 1;
                        if r.method == "INVITE" {
                            ack_body = r.ack_body;
                            inviting = true;
                        }
                        let _ = socket.send_to(d.request(r.method, port, cseq, &r.content_type, &r.body).as_bytes(), d.to).await;
                    }
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            // The final answer to our re-INVITE: noted once and ACKed (a 2xx's ACK carries the
            // answer to an offerless re-INVITE; a failure's is the transaction's own, same CSeq).
            let status = head.strip_prefix("SIP/2.0 ").and_then(|s| s.get(..3)?.parse::<u16>().ok());
            if let Some(status) = status.filter(|s| *s >= 200) {
                if header(head, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
                    inviting = false;
                    if let (Some(d), Some(n)) =
                        (dialog.as_ref(), header(head, "CSeq").and_then(|c| c.split(' ').next()?.parse::<u32>().ok()))
                    {
                        if let Ok(mut s) = statuses.lock() {
                            if !s.iter().any(|(seq, _)| *seq == n) {
                                s.push((n, status));
                                if status < 300 {
                                    if let Ok(mut a) = answers.lock() {
                                        a.push(body.to_owned());
                                    }
                                }
                            }
                        }
                        let answer = if status < 300 { ack_body.take().unwrap_or_default() } else { String::new() };
                        let mut ack = d.request("ACK", port, n, "application/sdp", &answer);
                        if status >= 300 {
                            // RFC 3261 §17.1.1.3: part of the INVITE's transaction, its branch.
                            ack = ack.replacen(&format!("z9hG4bK{port}ACK{n}"), &format!("z9hG4bK{port}INVITE{n}"), 1);
                        }
                        let _ = socket.send_to(ack.as_bytes(), d.to).await;
                    }
                }
                continue;
            }
            if let Ok(mut h) = seen_heads.lock() {
                if head.starts_with("INVITE ") && h.0.is_none() {
                    h.0 = Some(head.to_owned());
                } else if head.starts_with("BYE ") && h.1.is_none() {
                    h.1 = Some(head.to_owned());
                }
            }
            let reply = if head.starts_with("INVITE ") {
                let first = answered.is_none();
                let sdp = answered.get_or_insert_with(|| answer(body)).clone();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(body.to_owned());
                }
                dialog = dialog.or_else(|| Dialog::of(head, from));
                match early {
                    // A retransmission meanwhile: the 183 again.
                    Some(_) if !first && header(head, "To").is_some_and(|t| !t.contains("tag=")) => {
                        response(head, "183 Session Progress", port, Some(&sdp))
                    }
                    Some((after, status, added)) if first => {
                        let progress = response(head, "183 Session Progress", port, Some(&sdp));
                        let _ = socket.send_to(progress.as_bytes(), from).await;
                        let last_sdp = added.map(|added| format!("{sdp}{added}"));
                        let body = last_sdp.as_deref().filter(|_| status.starts_with("200"));
                        let last = response(head, status, port, body);
                        let socket = socket.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = socket.send_to(last.as_bytes(), from).await;
                        });
                        continue;
                    }
                    _ => response(head, "200 OK", port, Some(&sdp)),
                }
            } else if head.starts_with("BYE ") {
                if let Ok(mut b) = bye_seen.lock() {
                    b.get_or_insert_with(Instant::now);
                }
                let (reply, socket) = (response(head, "200 OK", port, None), socket.clone());
                let wait = Duration::from_millis(delay.load(Ordering::Relaxed));
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = socket.send_to(reply.as_bytes(), from).await;
                });
                continue;
            } else if head.starts_with("OPTIONS ") {
                response(head, "200 OK", port, None)
            } else if head.starts_with("INFO ") {
                // The answer is chosen before the INFO is recorded: a test that changes it once
                // it saw an INFO changes the next one's.
                let status = match info_answer.load(Ordering::Relaxed) {
                    200 => "200 OK".to_owned(),
                    code => format!("{code} Refused"),
                };
                let cseq = header(head, "CSeq").unwrap_or_default().to_owned();
                if !info_cseqs.contains(&cseq) {
                    info_cseqs.push(cseq);
                    let content_type = header(head, "Content-Type").or_else(|| header(head, "c")).unwrap_or_default();
                    let info =
                        Info { at: Instant::now(), content_type: content_type.to_owned(), body: body.to_owned() };
                    if let Ok(mut i) = infos_seen.lock() {
                        i.push(info);
                    }
                }
                response(head, &status, port, None)
            } else {
                continue;
            };
            let _ = socket.send_to(reply.as_bytes(), from).await;
        }
    });
    Uas {
        port,
        offer,
        requests,
        bye_at,
        bye_delay,
        heads,
        reinvite_statuses,
        reinvite_answers,
        info_status,
        infos,
        task,
    }
}

/// A redirect server: answers every INVITE with `302 Moved Temporarily` and the `Contact`
/// `contact` makes of its own port (ACKs ignored). Stops when dropped.
pub struct Redirector {
    pub port: u16,
    /// INVITEs it got.
    pub invites: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`Redirector`].
pub async fn redirector(contact: impl Fn(u16) -> String + Send + 'static) -> Redirector {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let invites = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = invites.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let head = text.split("\r\n\r\n").next().unwrap_or_default();
            if !head.starts_with("INVITE ") {
                continue;
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = "SIP/2.0 302 Moved Temporarily\r\n".to_owned();
            for line in headers_named(head, &["Via", "From", "Call-ID", "CSeq"]) {
                r.push_str(line);
                r.push_str("\r\n");
            }
            for to in headers_named(head, &["To"]) {
                r.push_str(&format!("{to};tag=redirect1\r\n"));
            }
            r.push_str(&format!("Contact: {}\r\nContent-Length: 0\r\n\r\n", contact(port)));
            let _ = socket.send_to(r.as_bytes(), from).await;
        }
    });
    Redirector { port, invites, task }
}
