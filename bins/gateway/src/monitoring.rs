//! From what happened to the callback queue: the bridge's call events (through
//! [`bridge::CallReporter`]) and the sessions' events (`connectionCreated`, `streamCreated`, ...,
//! turned into the contract's §6 bodies here), both counted in the [`Metrics`] on the way.
//!
//! Enqueueing commits to disk (an fsync), so it happens on one thread of its own, the
//! [`Writer`], never on the async workers. One FIFO keeps each call's and each session's events in
//! the order they happened; [`Writer::flush`] waits until everything sent before it is committed.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use callbacks::{CallbackError, Callbacks, Delivery, Enqueued};
use serde_json::{json, Map, Value};
use session::{Connection, Event, EventKind, ProjectId, Stream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Most events committed in one store transaction.
const BATCH: usize = 256;

enum Message {
    Deliver(Delivery),
    Flush(oneshot::Sender<()>),
}

/// The handle of the thread that commits events to the callback store (cheap to clone).
#[derive(Clone)]
pub struct Writer {
    tx: std_mpsc::Sender<Message>,
}

impl Writer {
    /// Starts the writer thread over `callbacks`. It ends when every handle is dropped.
    pub fn start(callbacks: Callbacks) -> std::io::Result<Writer> {
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new().name("callback-writer".into()).spawn(move || write_loop(&callbacks, &rx))?;
        Ok(Writer { tx })
    }

    /// Queues one event (returns at once).
    pub fn send(&self, delivery: Delivery) {
        if self.tx.send(Message::Deliver(delivery)).is_err() {
            warn!("the callback writer has stopped; event not queued");
        }
    }

    /// Waits (at most `timeout`) until every event sent before this call is committed.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Flush(ack)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, done).await, Ok(Ok(())))
    }
}

fn write_loop(callbacks: &Callbacks, rx: &std_mpsc::Receiver<Message>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut ack = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Deliver(d) => batch.push(d),
                Message::Flush(a) => {
                    ack = Some(a);
                    break;
                }
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        // A panic in the store must not stop the writer: every later event would be lost.
        let n = batch.len();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(callbacks, batch))).is_err() {
            tracing::error!(events = n, "callback events lost: the store panicked while committing them");
        }
        if let Some(a) = ack {
            let _ = a.send(());
        }
    }
}

/// How often a batch is tried again when the store fails (a full disk, a passing IO error), and
/// how long the writer waits before each try: about six seconds in all, while events wait in the
/// channel behind it.
const STORE_RETRIES: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(400), Duration::from_millis(1500), Duration::from_millis(4000)];

fn commit(callbacks: &Callbacks, batch: Vec<Delivery>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let mut result = callbacks.enqueue_many(batch.clone());
    for wait in STORE_RETRIES {
        match &result {
            Err(e @ (CallbackError::Store(_) | CallbackError::Io { .. })) => {
                warn!(error = %e, events = n, ?wait, "callback store failed; trying again");
                std::thread::sleep(wait);
                result = callbacks.enqueue_many(batch.clone());
            }
            _ => break,
        }
    }
    match result {
        Ok(results) => {
            let dropped = results.iter().filter(|r| **r == Enqueued::NoCallbackUrl).count();
            debug!(queued = n - dropped, dropped, "callback events committed");
        }
        Err(CallbackError::BodyTooLarge { .. }) if n > 1 => {
            // One event too large must not take the others with it.
            for d in batch {
                commit(callbacks, vec![d]);
            }
        }
        Err(e) => tracing::error!(error = %e, events = n, "callback events lost: not queued"),
    }
}

/// The bridge's [`bridge::CallReporter`]: counts each call event and queues it, keyed by the
/// call id.
pub struct CallEvents {
    /// Where events go.
    pub writer: Writer,
    /// What counts them.
    pub metrics: Arc<Metrics>,
}

impl bridge::CallReporter for CallEvents {
    fn report(&self, project: &ProjectId, order_key: &str, body: Value) {
        self.metrics.observe_call_event(&body);
        self.writer.send(Delivery { project: project.as_str().to_owned(), order_key: order_key.to_owned(), body });
    }

    fn call_quality(&self, _project: &ProjectId, quality: &bridge::CallQuality) {
        self.metrics.observe_call_quality(quality);
    }

    fn video_quality(&self, _project: &ProjectId, quality: &bridge::VideoQuality) {
        self.metrics.observe_video_quality(quality);
    }
}

/// The session monitoring callback of an event (contract §6), or `None` for the kinds that are
/// not callbacks (signals, mutes, the end of a session).
pub fn session_callback(event: &Event) -> Option<Value> {
    let (name, detail) = match &event.kind {
        EventKind::ConnectionCreated(c) => ("connectionCreated", json!({"connection": connection(c)})),
        EventKind::ConnectionDestroyed { connection: c, reason } => {
            ("connectionDestroyed", json!({"connection": connection(c), "reason": reason.as_wire()}))
        }
        EventKind::StreamCreated { stream: s, connection: c } => ("streamCreated", json!({"stream": stream(s, c)})),
        EventKind::StreamDestroyed { stream: s, connection: c, reason } => {
            ("streamDestroyed", json!({"stream": stream(s, c), "reason": reason.as_wire()}))
        }
        _ => return None,
    };
    let mut body = json!({
        "sessionId": event.session.as_str(),
        "projectId": event.session.project(),
        "event": name,
        "timestamp": event.at_ms,
    });
    if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), detail) {
        obj.extend(more);
    }
    Some(body)
}

fn connection(c: &Connection) -> Value {
    json!({"id": c.id.as_str(), "createdAt": c.created_ms, "data": c.data})
}

/// `videoType` is left out for an audio-only stream, as in the REST answers.
fn stream(s: &Stream, c: &Connection) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), s.id.as_str().into());
    v.insert("connection".into(), connection(c));
    v.insert("createdAt".into(), s.created_ms.into());
    v.insert("name".into(), s.name.clone().into());
    if let Some(t) = s.video_type {
        v.insert("videoType".into(), t.as_wire().into());
    }
    Value::Object(v)
}

/// Asks the session follower to pass on what it has received so far.
#[derive(Clone)]
pub struct Drain {
    tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Drain {
    /// Waits (at most `timeout`) until every session event already delivered to the follower is
    /// handed to the writer.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(ack).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, done).await, Ok(Ok(())))
    }
}

/// Starts the task that turns session events into callbacks (keyed by the session id).
pub fn follow_sessions(
    mut events: mpsc::UnboundedReceiver<Arc<Event>>,
    writer: Writer,
    metrics: Arc<Metrics>,
) -> Drain {
    let (tx, mut requests) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let handle = move |e: &Event| {
        metrics.observe_session_event(e);
        if let Some(body) = session_callback(e) {
            writer.send(Delivery {
                project: e.session.project().to_owned(),
                order_key: e.session.as_str().to_owned(),
                body,
            });
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                e = events.recv() => match e {
                    Some(e) => handle(&e),
                    None => break,
                },
                Some(ack) = requests.recv() => {
                    while let Ok(e) = events.try_recv() {
                        handle(&e);
                    }
                    let _ = ack.send(());
                }
            }
        }
        debug!("the session service stopped; session callbacks end");
    });
    Drain { tx }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session::{ConnectionId, DisconnectReason, Role, SessionId, StreamEndReason, StreamId, VideoType};
    use std::time::SystemTime;

    fn fixture() -> (SessionId, Connection, Stream) {
        let mut rng = rand::thread_rng();
        let project = ProjectId::api_key("4615005").expect("key");
        let session = SessionId::mint(&project, None, SystemTime::now(), &mut rng);
        let c = Connection {
            id: ConnectionId::random(&mut rng),
            session: session.clone(),
            kind: session::ConnectionKind::Sip,
            created_ms: 1_700_000_000_000,
            data: "from-token".into(),
            role: Role::Publisher,
        };
        let s = Stream {
            id: StreamId::random(&mut rng),
            connection: c.id.clone(),
            created_ms: 1_700_000_000_001,
            name: "sip:alice@example.com".into(),
            has_audio: true,
            has_video: false,
            video_type: None,
            layout_class_list: Vec::new(),
            audio_muted: false,
        };
        (session, c, s)
    }

    #[test]
    fn connection_events_have_the_contract_shape() {
        let (session, c, _) = fixture();
        let e = Event { session: session.clone(), at_ms: 5, kind: EventKind::ConnectionCreated(c.clone()) };
        let body = session_callback(&e).expect("a callback");
        assert_eq!(
            body,
            json!({"sessionId": session.as_str(), "projectId": "4615005", "event": "connectionCreated", "timestamp": 5,
                "connection": {"id": c.id.as_str(), "createdAt": 1_700_000_000_000u64, "data": "from-token"}})
        );
        let e = Event {
            session,
            at_ms: 6,
            kind: EventKind::ConnectionDestroyed { connection: c, reason: DisconnectReason::ForceDisconnected },
        };
        let body = session_callback(&e).expect("a callback");
        assert_eq!(body["event"], "connectionDestroyed");
        assert_eq!(body["reason"], "forceDisconnected");
        assert_eq!(body["connection"]["data"], "from-token");
    }

    #[test]
    fn stream_events_have_the_contract_shape() {
        let (session, c, mut s) = fixture();
        let e = Event {
            session: session.clone(),
            at_ms: 7,
            kind: EventKind::StreamCreated { stream: s.clone(), connection: c.clone() },
        };
        let body = session_callback(&e).expect("a callback");
        assert_eq!(body["event"], "streamCreated");
        assert_eq!(body["stream"]["id"], s.id.as_str());
        assert_eq!(body["stream"]["connection"]["id"], c.id.as_str());
        assert_eq!(body["stream"]["name"], "sip:alice@example.com");
        assert!(body["stream"].get("videoType").is_none(), "audio only: no videoType");
        assert!(body.get("reason").is_none());
        s.video_type = Some(VideoType::Screen);
        let e = Event {
            session,
            at_ms: 8,
            kind: EventKind::StreamDestroyed { stream: s, connection: c, reason: StreamEndReason::MediaStopped },
        };
        let body = session_callback(&e).expect("a callback");
        assert_eq!(body["reason"], "mediaStopped");
        assert_eq!(body["stream"]["videoType"], "screen");
        assert_eq!(body["timestamp"], 8);
    }

    #[test]
    fn other_events_are_not_callbacks() {
        let (session, _, _) = fixture();
        let e = Event { session, at_ms: 1, kind: EventKind::SessionEnded };
        assert!(session_callback(&e).is_none());
    }
}
