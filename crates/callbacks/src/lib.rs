//! Delivery of monitoring callbacks (contract §6): events are written to a durable queue on disk,
//! `POST`ed as JSON to their project's callback URL, in order per order key, retried with
//! exponential backoff until a 2xx, optionally signed with an HS256 JWT, and picked up again
//! after a restart.
//!
//! This crate never decides what happened: the caller builds each event's JSON body and chooses
//! its order key (the call id for call events, the session id for session events); the crate only
//! delivers.
//!
//! # Guarantees
//!
//! - **Durable**: [`Callbacks::enqueue`] returns once the event is committed to the store (an
//!   fsync'd redb transaction). Undelivered events of an earlier run are delivered after
//!   [`Callbacks::open`], whether that run ended with [`Callbacks::shutdown`], a drop, or a crash.
//! - **Ordered per key**: events with the same project and order key are attempted one at a time in
//!   enqueue order; an event is attempted only after every earlier event of its key was delivered
//!   (or given up: [`CallbackConfig::max_attempts`], [`CallbackConfig::max_age`]). Different keys are independent: a key
//!   whose receiver fails never holds up another key.
//! - **At least once**: a delivered event (2xx) is removed from the store. Removals are synced to
//!   disk within a second (not one disk sync each, which would cap deliveries at the disk's sync
//!   rate). A crash between the 2xx and that sync, or a timeout after the receiver accepted, sends
//!   the event again; receivers that must not act twice dedupe by the event's id, which every
//!   attempt carries in the [`EVENT_ID_HEADER`] header (`webhook-id`, as Standard Webhooks name
//!   it) and, when signed, in the signature's `jti` claim.
//! - **Retried**: anything but a 2xx (a 3xx, 4xx or 5xx status, a timeout, a refused connection, a
//!   TLS failure) is a failed attempt, retried after the backoff described in [`CallbackConfig`].
//!
//! # Signing
//!
//! When a project has a [`ProjectCallbacks::signature_secret`], each request carries
//! `Authorization: <JWT>` (no `Bearer` prefix, as the hosted service sends it), signed HS256 with
//! that secret, with the claims `iss` = [`ISSUER`], `iat` (now, in seconds), `exp` = `iat` + 300,
//! `jti` (the event's id, `<store id as 16 hex digits>-<sequence number>`, the same on every
//! attempt) and `payload_hash` (lower-case hex SHA-256 of the exact body bytes). The secret and
//! the header are never logged.
//!
//! # Example
//!
//! See the crate's README (its example is compiled and run as a doctest).

mod backoff;
mod client;
mod config;
mod driver;
mod error;
mod schedule;
mod signature;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use client::EVENT_ID_HEADER;
pub use config::{CallbackConfig, ProjectCallbacks};
pub use error::CallbackError;
pub use signature::{ISSUER, SIGNATURE_LIFETIME_SECS};
pub use store::DeadLetter;

use client::HttpClient;
use config::Target;
use driver::Command;
use schedule::{OrderKey, Scheduler};
use store::Store;

/// The largest serialised event body [`Callbacks::enqueue`] accepts (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One event to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The project whose callback URL receives it.
    pub project: String,
    /// Events with the same project and order key are delivered strictly in order, one at a time;
    /// different keys independently. Use the call id for call events and the session id for
    /// session events.
    pub order_key: String,
    /// The JSON body, sent in its compact serialisation (`serde_json::to_vec`).
    pub body: serde_json::Value,
}

/// An event's id in its store: its sequence number, growing with every enqueue and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What [`Callbacks::enqueue`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Committed to the store; it will be delivered, unless given up (the project's backlog cap,
    /// [`CallbackConfig::max_age`], [`CallbackConfig::max_attempts`]) and kept as a dead letter.
    Queued(EventId),
    /// Its project has no callback target, so it has nowhere to go: it was not stored, and is
    /// counted in [`CallbackStats::dropped`].
    NoCallbackUrl,
}

/// Counters, for metrics and health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallbackStats {
    /// Events in the store waiting for delivery (in flight, backing off, or waiting for their
    /// project to get a target).
    pub backlog: u64,
    /// Events delivered (2xx) since `open`.
    pub delivered: u64,
    /// Failed attempts since `open`.
    pub failed_attempts: u64,
    /// Events kept as dead letters in the store (all runs).
    pub dead_letters: u64,
    /// Events dropped since `open`: enqueued for a project without a target, or discarded by
    /// [`Callbacks::remove_project`].
    pub dropped: u64,
    /// Projects whose circuit breaker is open (their target failed
    /// [`CallbackConfig::circuit_after`] attempts in a row; one probe at a time).
    pub open_circuits: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
    open_circuits: AtomicU64,
}

impl Counters {
    fn add_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    fn add_failed(&self) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
    }
    fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the handles and the delivery task share.
struct Shared {
    store: Store,
    client: HttpClient,
    /// Never held across an await.
    targets: RwLock<HashMap<String, Target>>,
    commands: mpsc::UnboundedSender<Command>,
    counters: Counters,
    backlog: watch::Sender<u64>,
}

impl Shared {
    fn target(&self, project: &str) -> Option<Target> {
        self.targets.read().unwrap_or_else(PoisonError::into_inner).get(project).cloned()
    }

    fn sub_backlog(&self, n: u64) {
        self.backlog.send_modify(|b| *b = b.saturating_sub(n));
    }
}

/// Stops the delivery task when the last handle goes.
struct Lifetime {
    stop: watch::Sender<bool>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The callback queue and its delivery task. Cheap to clone; every clone is the same queue.
///
/// Dropping the last clone without [`shutdown`](Callbacks::shutdown) stops delivery too (in the
/// background: the store file is released a moment later); nothing queued is lost either way.
#[derive(Clone)]
pub struct Callbacks {
    shared: Arc<Shared>,
    life: Arc<Lifetime>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks").field("store", &self.shared.store).field("stats", &self.stats()).finish()
    }
}

impl Callbacks {
    /// Opens (or creates) the store at `path`, loads what an earlier run left undelivered, and
    /// starts delivering on the current tokio runtime.
    ///
    /// Fails with [`CallbackError::InvalidUrl`] for a bad project URL in `config`,
    /// [`CallbackError::AlreadyOpen`] while another `Callbacks` holds the file,
    /// [`CallbackError::NotAStore`] for a file that is not a callback store (it is left untouched),
    /// and [`CallbackError::Io`], [`CallbackError::Store`] or [`CallbackError::Tls`] when the
    /// environment fails (a missing directory, no permission, a failing disk).
    pub async fn open(path: &Path, config: CallbackConfig) -> Result<Callbacks, CallbackError> {
        let mut targets = HashMap::new();
        for (project, target) in &config.projects {
            targets.insert(project.clone(), config::validate(project, target)?);
        }
        let client = HttpClient::new(config.tls.clone(), config.request_timeout)?;
        let owned = path.to_path_buf();
        let (store, loaded) =
            tokio::task::spawn_blocking(move || Store::open(&owned)).await.map_err(|_| CallbackError::ShutDown)??;
        let store = store.with_dead_letter_cap(config.max_dead_letters);
        let backoff = backoff::Backoff::new(config.initial_backoff, config.max_backoff, config.jitter);
        let project_cap = config.max_backlog_per_project.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut sched = Scheduler::new(backoff, config.max_attempts)
            .with_circuit_breaker(config.circuit_after)
            .with_project_cap(project_cap);
        for project in targets.keys() {
            sched.set_project_active(project, true);
        }
        let backlog = loaded.events.len() as u64;
        // Enqueue times on disk are wall-clock; the schedule counts on the monotonic clock.
        let (now, now_ms) = (std::time::Instant::now(), store::unix_ms_now());
        let mut over_cap = Vec::new();
        for (seq, project, key, failures, enqueued_ms) in loaded.events {
            let age = Duration::from_millis(enqueued_ms.map_or(0, |at| now_ms.saturating_sub(at)));
            let enqueued = now.checked_sub(age).unwrap_or(now);
            if !sched.push(OrderKey::new(&project, &key), seq, failures, enqueued) {
                over_cap.push((seq, failures));
            }
        }
        tracing::info!(path = %path.display(), backlog, dead_letters = loaded.dead_letters, "callback store opened");
        let (commands, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store,
            client,
            targets: RwLock::new(targets),
            commands,
            counters: Counters::default(),
            backlog: watch::Sender::new(backlog),
        });
        let (stop, stop_rx) = watch::channel(false);
        let settings = driver::Settings { max_in_flight: config.max_in_flight, max_age: config.max_age };
        let task = tokio::spawn(driver::run(shared.clone(), sched, rx, stop_rx, settings, over_cap));
        Ok(Callbacks { shared, life: Arc::new(Lifetime { stop, driver: Mutex::new(Some(task)) }) })
    }

    /// Sets (or replaces) a project's callback target. Its waiting events, including those left by
    /// an earlier run, are attempted at once with the new target.
    pub fn set_project(&self, project: &str, target: ProjectCallbacks) -> Result<(), CallbackError> {
        let target = config::validate(project, &target)?;
        let mut targets = self.shared.targets.write().unwrap_or_else(PoisonError::into_inner);
        targets.insert(project.to_string(), target);
        // Sent under the lock so the delivery task sees set/remove/enqueue in their real order.
        let _ = self.shared.commands.send(Command::ProjectSet(project.to_string()));
        Ok(())
    }

    /// Removes a project's target and **discards its queued events** from the store (counted in
    /// [`CallbackStats::dropped`]); an attempt already in flight finishes, its outcome ignored. Later
    /// events of the project are dropped at enqueue until it has a target again.
    pub fn remove_project(&self, project: &str) {
        let mut targets = self.shared.targets.write().unwrap_or_else(PoisonError::into_inner);
        targets.remove(project);
        let _ = self.shared.commands.send(Command::ProjectRemoved(project.to_string()));
    }

    /// Queues one event; see [`enqueue_many`](Callbacks::enqueue_many).
    pub fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, CallbackError> {
        let mut done = self.enqueue_many(std::iter::once(delivery))?;
        Ok(done.pop().unwrap_or(Enqueued::NoCallbackUrl))
    }

    /// Queues events in one store transaction: when this returns `Ok`, every
    /// [`Enqueued::Queued`] event is committed to disk (one fsync for the batch) and its
    /// delivery is under way. Events of a project without a target are not stored
    /// ([`Enqueued::NoCallbackUrl`]). The results are in the input's order.
    ///
    /// This blocks the calling thread for the commit (an fsync, typically well under a
    /// millisecond to a few milliseconds); from async code that enqueues at a high rate, call it
    /// through `spawn_blocking`.
    ///
    /// Fails, storing nothing, when a body exceeds [`MAX_BODY_BYTES`], after
    /// [`shutdown`](Callbacks::shutdown), or when the store cannot be written.
    pub fn enqueue_many(&self, deliveries: impl IntoIterator<Item = Delivery>) -> Result<Vec<Enqueued>, CallbackError> {
        let mut bodies = Vec::new();
        for d in deliveries {
            // `Value`'s `Display` is its compact JSON serialisation, which cannot fail.
            let body = d.body.to_string().into_bytes();
            if body.len() > MAX_BODY_BYTES {
                return Err(CallbackError::BodyTooLarge { len: body.len(), max: MAX_BODY_BYTES });
            }
            bodies.push((d, body));
        }
        if *self.life.stop.borrow() {
            return Err(CallbackError::ShutDown);
        }
        // Held across the commit so a concurrent `remove_project` is seen by the delivery task
        // either before or after these events, never in between.
        let targets = self.shared.targets.read().unwrap_or_else(PoisonError::into_inner);
        let mut results = vec![Enqueued::NoCallbackUrl; bodies.len()];
        let rows: Vec<(usize, store::Row<'_>)> = bodies
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| targets.contains_key(&d.project))
            .map(|(i, (d, body))| (i, (d.project.as_str(), d.order_key.as_str(), body.as_slice())))
            .collect();
        let dropped = (bodies.len() - rows.len()) as u64;
        if dropped > 0 {
            self.shared.counters.add_dropped(dropped);
            tracing::debug!(dropped, "callback events of projects without a callback URL dropped");
        }
        if rows.is_empty() {
            return Ok(results);
        }
        let events: Vec<store::Row<'_>> = rows.iter().map(|(_, row)| *row).collect();
        let shared = &self.shared;
        let seqs = shared.store.append(&events, |seqs| {
            shared.backlog.send_modify(|b| *b += seqs.len() as u64);
            let keys = seqs.iter().zip(&events).map(|(seq, (p, k, _))| (*seq, OrderKey::new(p, k))).collect();
            let _ = shared.commands.send(Command::Enqueued(keys));
            seqs.to_vec()
        })?;
        for ((i, _), seq) in rows.iter().zip(seqs) {
            results[*i] = Enqueued::Queued(EventId(seq));
        }
        Ok(results)
    }

    /// The counters.
    pub fn stats(&self) -> CallbackStats {
        let c = &self.shared.counters;
        CallbackStats {
            backlog: *self.shared.backlog.borrow(),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            dead_letters: self.shared.store.dead_letter_count(),
            dropped: c.dropped.load(Ordering::Relaxed),
            open_circuits: c.open_circuits.load(Ordering::Relaxed),
        }
    }

    /// Every dead letter in the store, oldest first (a blocking read).
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, CallbackError> {
        self.shared.store.dead_letters()
    }

    /// Puts the dead letters of `project` (or, with `None`, all of them) back in the queue, oldest
    /// first, and returns how many: once the receiver is fixed, what it missed is delivered after
    /// all. Each goes to the end of its order key's queue with no failures counted and its age
    /// counted from now, and keeps its event id (the `webhook-id` a receiver that did take it
    /// once dedupes by). Those of a project without a target wait for one, like events left by an
    /// earlier run; those over the project's backlog cap are given up again. A blocking store
    /// commit, like [`enqueue`](Callbacks::enqueue).
    pub fn replay_dead_letters(&self, project: Option<&str>) -> Result<u64, CallbackError> {
        if *self.life.stop.borrow() {
            return Err(CallbackError::ShutDown);
        }
        let shared = &self.shared;
        let n = shared.store.revive(project, |revived| {
            let n = revived.len() as u64;
            if n > 0 {
                shared.backlog.send_modify(|b| *b += n);
                let keys = revived.iter().map(|(seq, p, k)| (*seq, OrderKey::new(p, k))).collect();
                let _ = shared.commands.send(Command::Enqueued(keys));
            }
            n
        })?;
        if n > 0 {
            tracing::info!(project = project.unwrap_or("*"), events = n, "callback dead letters queued again");
        }
        Ok(n)
    }

    /// Deletes the dead letters of `project` (or, with `None`, all of them) and returns how many.
    pub fn purge_dead_letters(&self, project: Option<&str>) -> Result<u64, CallbackError> {
        let n = self.shared.store.purge(project)?;
        if n > 0 {
            tracing::info!(project = project.unwrap_or("*"), events = n, "callback dead letters deleted");
        }
        Ok(n)
    }

    /// Waits until the backlog is empty (true) or `timeout` passes (false). Events waiting for a
    /// project target count in the backlog. Meant for shutdown: `flush`, then
    /// [`shutdown`](Callbacks::shutdown).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let mut backlog = self.shared.backlog.subscribe();
        let emptied = tokio::time::timeout(timeout, backlog.wait_for(|b| *b == 0)).await;
        matches!(emptied, Ok(Ok(_)))
    }

    /// Stops delivery for every clone of this handle: attempts in flight are abandoned (their
    /// events stay queued), the store is synced and closed. Undelivered events stay on disk for
    /// the next [`open`](Callbacks::open). Afterwards the other clones' `enqueue` fails with
    /// [`CallbackError::ShutDown`]. When this returns, the file can be opened again.
    pub async fn shutdown(self) {
        self.life.stop.send_replace(true);
        let task = self.life.driver.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // The driver closed the store on its way out; make sure even if it had died.
        self.shared.store.close();
    }
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
