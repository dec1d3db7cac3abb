//! The delivery task: runs the [`Scheduler`] against the clock, the store and the network.
//!
//! One task owns the scheduler; each attempt runs in its own task (at most `max_in_flight`), reads
//! its event from the store, signs it and posts it; its outcome comes back here, where the store is
//! updated (on the blocking pool) and the scheduler told.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::client::PostOutcome;
use crate::schedule::{AfterFailure, Attempt, OrderKey, Scheduler};
use crate::signature;
use crate::Shared;

/// How long a removal or a failure count committed without a sync waits for one (a crash
/// within it delivers the event again, or retries it once more).
const SYNC_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What the handles tell the delivery task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Events committed to the store, in sequence order.
    Enqueued(Vec<(u64, OrderKey)>),
    /// A project got a (new) target.
    ProjectSet(String),
    /// A project lost its target; its queued events are discarded.
    ProjectRemoved(String),
}

/// The result of one attempt task.
#[derive(Debug)]
enum Outcome {
    Post(PostOutcome),
    /// The event is no longer in the store.
    Gone,
    /// The project has no target any more: the event goes back to wait for one.
    NoTarget,
}

/// How the delivery task runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Requests in flight at most.
    pub(crate) max_in_flight: usize,
    /// Events older than this are given up ([`CallbackConfig::max_age`](crate::CallbackConfig::max_age)).
    pub(crate) max_age: Option<std::time::Duration>,
}

/// How often events are looked at for their age: a tenth of the age allowed, between 10 ms and
/// a minute.
fn sweep_interval(max_age: std::time::Duration) -> std::time::Duration {
    (max_age / 10).clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(60))
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut sched: Scheduler,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut stop: watch::Receiver<bool>,
    settings: Settings,
    over_cap: Vec<(u64, u32)>,
) {
    let max_in_flight = settings.max_in_flight.max(1);
    give_up(&shared, over_cap, "the project's backlog is full".into()).await;
    let mut sweep = settings.max_age.map(|age| {
        let mut every = tokio::time::interval(sweep_interval(age));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (age, every)
    });
    let mut rng = StdRng::from_entropy();
    let mut in_flight: JoinSet<Outcome> = JoinSet::new();
    let mut attempts: HashMap<tokio::task::Id, Attempt> = HashMap::new();
    // When the removals and failure counts committed without a sync get one.
    let mut sync_due: Option<tokio::time::Instant> = None;
    // Delivered events to remove from the store.
    let mut delivered: Vec<u64> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if sync_due.is_none() && shared.store.needs_sync() {
            sync_due = Some(tokio::time::Instant::now() + SYNC_AFTER);
        }
        while in_flight.len() < max_in_flight {
            let Some(a) = sched.poll_attempt(Instant::now()) else { break };
            let span = tracing::debug_span!("callback", project = %a.key.project, order_key = %a.key.key, seq = a.seq);
            let handle = in_flight.spawn(attempt(shared.clone(), a.clone()).instrument(span));
            attempts.insert(handle.id(), a);
        }
        // With every slot taken, a due retry waits for a slot (an outcome wakes the loop): a
        // deadline already past would make this loop spin.
        let deadline =
            sched.poll_timeout().filter(|_| in_flight.len() < max_in_flight).map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            changed = stop.changed() => if changed.is_err() {
                break;
            },
            command = commands.recv() => match command {
                Some(c) => handle_command(&shared, &mut sched, c).await,
                None => break,
            },
            Some(joined) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                // This outcome and every other one already in: their delivered events are removed
                // from the store in one transaction.
                let mut next = Some(joined);
                while let Some(joined) = next.take() {
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, outcome),
                        Err(e) => (e.id(), Outcome::Post(PostOutcome::Failed("attempt task failed".into()))),
                    };
                    if let Some(a) = attempts.remove(&id) {
                        handle_outcome(&shared, &mut sched, &mut rng, a, outcome, &mut delivered).await;
                    }
                    next = in_flight.try_join_next_with_id();
                }
                remove_delivered(&shared, &mut delivered).await;
            }
            _ = sleep_until(deadline), if deadline.is_some() => {}
            _ = async {
                match sweep.as_mut() {
                    Some((_, every)) => every.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((age, _)) = sweep {
                    if let Some(before) = Instant::now().checked_sub(age) {
                        let old = sched.expire(before);
                        if !old.is_empty() {
                            tracing::warn!(events = old.len(), ?age, "callbacks undelivered for too long: given up, kept as dead letters");
                            give_up(&shared, old, format!("undelivered for {age:?}")).await;
                        }
                    }
                }
            }
            _ = sleep_until(sync_due), if sync_due.is_some() => {
                sync_due = None;
                if let Err(e) = blocking(&shared, |s| s.sync()).await {
                    tracing::warn!(error = %e, "callback store: sync failed");
                }
            }
        }
    }
    // Abandon what is in flight (those events stay queued), make the last removals durable and
    // let go of the file.
    in_flight.shutdown().await;
    let store = shared.clone();
    let synced = tokio::task::spawn_blocking(move || store.store.sync()).await;
    if let Ok(Err(e)) = synced {
        tracing::warn!(error = %e, "callback store: final sync failed");
    }
    shared.store.close();
    tracing::debug!(queued = sched.len(), "callback delivery stopped");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs a store operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    op: impl FnOnce(&crate::store::Store) -> Result<T, crate::CallbackError> + Send + 'static,
) -> Result<T, crate::CallbackError> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || op(&s.store)).await.unwrap_or(Err(crate::CallbackError::ShutDown))
}

/// [`blocking`] for a change that must reach the store (removing a delivered event, burying a
/// dead letter): a failure is tried again three times, 50, 200 and 800 ms later. An event left
/// on disk after its call's later events were delivered would be sent again after them at the
/// next start, out of order.
async fn blocking_retried<T: Send + 'static>(
    shared: &Arc<Shared>,
    op: impl Fn(&crate::store::Store) -> Result<T, crate::CallbackError> + Send + Sync + 'static,
) -> Result<T, crate::CallbackError> {
    let op = Arc::new(op);
    let mut wait = std::time::Duration::from_millis(50);
    for _ in 0..3 {
        let once = op.clone();
        match blocking(shared, move |s| once(s)).await {
            Err(crate::CallbackError::ShutDown) => return Err(crate::CallbackError::ShutDown),
            Err(e) => {
                tracing::warn!(error = %e, ?wait, "callback store: trying again");
                tokio::time::sleep(wait).await;
                wait *= 4;
            }
            ok => return ok,
        }
    }
    blocking(shared, move |s| op(s)).await
}

async fn handle_command(shared: &Arc<Shared>, sched: &mut Scheduler, command: Command) {
    match command {
        Command::Enqueued(events) => {
            let now = Instant::now();
            let mut over_cap = Vec::new();
            for (seq, key) in events {
                if !sched.push(key, seq, 0, now) {
                    over_cap.push((seq, 0));
                }
            }
            if !over_cap.is_empty() {
                // Once a batch, not once an event: a project over its cap may get thousands.
                tracing::warn!(
                    events = over_cap.len(),
                    "callback backlog of a project full: events given up, kept as dead letters"
                );
                give_up(shared, over_cap, "the project's backlog is full".into()).await;
            }
        }
        Command::ProjectSet(project) => {
            sched.set_project_active(&project, true);
            note_circuits(shared, sched);
        }
        Command::ProjectRemoved(project) => {
            let seqs = sched.remove_project(&project);
            note_circuits(shared, sched);
            if seqs.is_empty() {
                return;
            }
            match blocking(shared, move |s| s.remove(&seqs)).await {
                Ok(n) => {
                    shared.counters.add_dropped(n);
                    shared.sub_backlog(n);
                    tracing::info!(project = %project, discarded = n, "callback project removed");
                }
                Err(e) => tracing::warn!(project = %project, error = %e, "callback store: discarding failed"),
            }
        }
    }
}

async fn handle_outcome(
    shared: &Arc<Shared>,
    sched: &mut Scheduler,
    rng: &mut StdRng,
    a: Attempt,
    outcome: Outcome,
    delivered: &mut Vec<u64>,
) {
    let key = &a.key;
    let was_open = sched.circuit_open_until(&key.project);
    record_outcome(shared, sched, rng, &a, outcome, delivered).await;
    let now_open = sched.circuit_open_until(&key.project);
    match (was_open, now_open) {
        (None, Some(until)) => {
            let probe_in = until.saturating_duration_since(Instant::now());
            tracing::warn!(project = %key.project, ?probe_in, "callback target failing: the project's deliveries wait for a probe");
        }
        (Some(_), None) => tracing::info!(project = %key.project, "callback target answers again: deliveries go on"),
        (Some(before), Some(until)) if until != before => {
            let probe_in = until.saturating_duration_since(Instant::now());
            tracing::debug!(project = %key.project, ?probe_in, "callback probe failed");
        }
        _ => {}
    }
    note_circuits(shared, sched);
}

/// Tells the schedule (and the store, but for a delivered event, which goes into `delivered`
/// for [`remove_delivered`]).
async fn record_outcome(
    shared: &Arc<Shared>,
    sched: &mut Scheduler,
    rng: &mut StdRng,
    a: &Attempt,
    outcome: Outcome,
    delivered: &mut Vec<u64>,
) {
    let (key, seq) = (&a.key, a.seq);
    match outcome {
        Outcome::Post(PostOutcome::Delivered(status)) => {
            shared.counters.add_delivered();
            if sched.handle_done(key, seq) {
                // Before the removal lowers the backlog: a `flush` that returns sees the circuit
                // this success closed.
                note_circuits(shared, sched);
                delivered.push(seq);
            }
            tracing::debug!(project = %key.project, order_key = %key.key, seq, status, attempt = a.attempt, "callback delivered");
        }
        Outcome::Gone => {
            sched.handle_gone(key, seq);
        }
        Outcome::NoTarget => {
            sched.handle_returned(key, seq);
        }
        Outcome::Post(outcome @ (PostOutcome::Failed(_) | PostOutcome::Local(_) | PostOutcome::Refused(_))) => {
            shared.counters.add_failed();
            let (now, r) = (Instant::now(), rng.gen::<f64>());
            let (after, why) = match outcome {
                PostOutcome::Refused(code) => (sched.handle_refused(now, key, seq, r), format!("HTTP {code}")),
                PostOutcome::Local(why) => (sched.handle_local_failure(now, key, seq, r), why),
                PostOutcome::Failed(why) => (sched.handle_failed(now, key, seq, r), why),
                PostOutcome::Delivered(_) => return,
            };
            match after {
                Some(AfterFailure::RetryAt(at)) => {
                    let retry_in = at.saturating_duration_since(Instant::now());
                    // A long outage fails every key over and over: warn on the first attempts
                    // and every tenth, the rest at debug level.
                    if a.attempt <= 3 || a.attempt.is_multiple_of(10) {
                        tracing::warn!(project = %key.project, order_key = %key.key, seq, attempt = a.attempt, error = %why, ?retry_in, "callback attempt failed");
                    } else {
                        tracing::debug!(project = %key.project, order_key = %key.key, seq, attempt = a.attempt, error = %why, ?retry_in, "callback attempt failed");
                    }
                    let failures = a.attempt;
                    if let Err(e) = blocking(shared, move |s| s.set_failures(seq, failures)).await {
                        tracing::warn!(seq, error = %e, "callback store: recording a failure failed");
                    }
                }
                Some(AfterFailure::DeadLetter { failures }) => {
                    note_circuits(shared, sched);
                    tracing::error!(project = %key.project, order_key = %key.key, seq, failures, error = %why, "callback given up: kept as a dead letter");
                    give_up(shared, vec![(seq, failures)], why).await;
                }
                None => {}
            }
        }
    }
}

/// Removes delivered events from the store, in one transaction, and from the backlog.
async fn remove_delivered(shared: &Arc<Shared>, delivered: &mut Vec<u64>) {
    if delivered.is_empty() {
        return;
    }
    let seqs = std::mem::take(delivered);
    match blocking_retried(shared, move |s| s.remove(&seqs)).await {
        Ok(n) => shared.sub_backlog(n),
        Err(e) => tracing::warn!(error = %e, "callback store: removing delivered events failed"),
    }
}

/// Publishes how many projects' circuits are open.
fn note_circuits(shared: &Shared, sched: &Scheduler) {
    shared.counters.open_circuits.store(sched.open_circuits() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Moves events the schedule let go of (sequence number, failed attempts) to the dead letters,
/// counted.
async fn give_up(shared: &Arc<Shared>, events: Vec<(u64, u32)>, why: String) {
    if events.is_empty() {
        return;
    }
    let n = events.len();
    match blocking_retried(shared, move |s| s.bury(&events, &why)).await {
        Ok(buried) => {
            shared.sub_backlog(buried.moved);
            if buried.trimmed > 0 {
                tracing::warn!(deleted = buried.trimmed, "callback dead letters over their cap: the oldest deleted");
            }
        }
        Err(e) => tracing::warn!(events = n, error = %e, "callback store: keeping dead letters failed"),
    }
}

/// One attempt: read, sign, post.
async fn attempt(shared: Arc<Shared>, a: Attempt) -> Outcome {
    let target = shared.target(&a.key.project);
    let Some(target) = target else { return Outcome::NoTarget };
    // A small read of a committed row; no fsync, so it stays on this task.
    let event = match shared.store.get(a.seq) {
        Ok(Some(e)) => e,
        Ok(None) => return Outcome::Gone,
        Err(e) => return Outcome::Post(PostOutcome::Local(format!("store: {e}"))),
    };
    // A replayed dead letter keeps the id it was first enqueued under.
    let id = format!("{:016x}-{}", shared.store.id(), event.id);
    let authorization = target.secret.as_ref().map(|secret| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        signature::sign(secret, &event.body, &id, now)
    });
    tracing::trace!(attempt = a.attempt, host = ?target.uri.host(), signed = authorization.is_some(), "posting callback");
    Outcome::Post(shared.client.post(&target.uri, Bytes::from(event.body), &id, authorization).await)
}
