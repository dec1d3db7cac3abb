//! The delivery schedule, sans-IO: which event to attempt next, and when.
//!
//! Events are queued per [`OrderKey`] (a project and the caller's order key, e.g. a call id). Only
//! the head of a key's queue is ever attempted, and only one attempt per key is in flight, so a key's
//! events reach the receiver in order; a key whose head keeps failing waits out its backoff while
//! the other keys carry on. Time comes in as `now`, jitter as a sample `r` in `[0, 1)`; the driver
//! owns the clock, the randomness, the store and the network.
//!
//! A project whose target fails attempt after attempt, whatever the key (the receiver is down),
//! gets a *circuit breaker*: after `circuit_after` failures in a row its keys hold instead of each
//! retrying on its own backoff (a thousand calls' keys would otherwise keep a thousand requests
//! going at a dead receiver); once a cooldown has passed (the backoff formula, counted in the
//! times the circuit opened) one attempt goes as a probe; its success releases every key, its
//! failure opens the circuit again for longer.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::backoff::Backoff;

/// The unit of ordering: events with the same project and order key are delivered one at a time,
/// in the order they were enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OrderKey {
    pub(crate) project: Arc<str>,
    pub(crate) key: Arc<str>,
}

impl OrderKey {
    pub(crate) fn new(project: &str, key: &str) -> Self {
        OrderKey { project: Arc::from(project), key: Arc::from(key) }
    }
}

/// An attempt the driver should make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) key: OrderKey,
    /// The event's sequence number in the store.
    pub(crate) seq: u64,
    /// 1 for the first attempt; earlier runs' failures count.
    pub(crate) attempt: u32,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The event stays at the head of its key and is attempted again at this instant.
    RetryAt(Instant),
    /// The attempt limit is reached: the event leaves the queue (the driver keeps it as a dead
    /// letter) and the key moves on.
    DeadLetter {
        /// Failed attempts in all.
        failures: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    seq: u64,
    failures: u32,
    /// Of those, the target's refusals of this event (see [`Scheduler::handle_refused`]).
    refusals: u32,
    /// When it was enqueued (see [`Scheduler::expire`]).
    enqueued: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing to do until something changes (its project has no target).
    Idle,
    /// In the ready queue.
    Ready,
    /// The head is being attempted.
    InFlight,
    /// The head failed; it is attempted again at this instant.
    Waiting(Instant),
    /// Ready, but its project's circuit is open: it waits in the circuit's list.
    Held,
}

/// A project's circuit breaker.
#[derive(Debug, Default)]
struct Circuit {
    /// Failed attempts in a row, across the project's keys.
    failures: u32,
    /// Times it opened in a row (the cooldown grows with them).
    opened: u32,
    /// Open: no attempt before this instant, then one probe.
    open_until: Option<Instant>,
    /// The key whose attempt is the probe, while it is in flight.
    probing: Option<OrderKey>,
    /// Keys waiting for the circuit to close (may hold stale entries).
    held: VecDeque<OrderKey>,
}

impl Circuit {
    fn blocks(&self, now: Instant) -> bool {
        self.probing.is_some() || self.open_until.is_some_and(|at| at > now)
    }
}

#[derive(Debug)]
struct KeyQueue {
    events: VecDeque<Queued>,
    state: State,
}

/// Attempts of an event its target refuses for good (see [`Scheduler::handle_refused`]).
pub(crate) const REFUSED_ATTEMPTS: u32 = 5;

/// Per-key queues, the ready queue and the retry timers.
#[derive(Debug)]
pub(crate) struct Scheduler {
    backoff: Backoff,
    max_attempts: Option<u32>,
    keys: HashMap<OrderKey, KeyQueue>,
    /// Keys whose head can be attempted now, oldest first. May hold stale entries: a popped key
    /// is only acted on when its state is still `Ready`.
    ready: VecDeque<OrderKey>,
    waiting: BTreeSet<(Instant, OrderKey)>,
    /// Projects that have a callback target.
    active: HashSet<Arc<str>>,
    /// Failures in a row after which a project's circuit opens (`None`: never).
    circuit_after: Option<u32>,
    /// Circuit breakers of projects that failed lately.
    circuits: HashMap<Arc<str>, Circuit>,
    len: usize,
    /// Events queued per project.
    per_project: HashMap<Arc<str>, usize>,
    /// The most events a project may have queued (`None`: no limit).
    project_cap: Option<usize>,
}

impl Scheduler {
    pub(crate) fn new(backoff: Backoff, max_attempts: Option<u32>) -> Self {
        Scheduler {
            backoff,
            max_attempts: max_attempts.map(|n| n.max(1)),
            keys: HashMap::new(),
            ready: VecDeque::new(),
            waiting: BTreeSet::new(),
            active: HashSet::new(),
            circuit_after: None,
            circuits: HashMap::new(),
            len: 0,
            per_project: HashMap::new(),
            project_cap: None,
        }
    }

    /// Lets a project have at most `n` events queued (`None`: no limit; `Some(0)` is `Some(1)`).
    pub(crate) fn with_project_cap(mut self, n: Option<usize>) -> Self {
        self.project_cap = n.map(|n| n.max(1));
        self
    }

    /// Counts `n` events of `project` gone from the queues.
    fn forget(&mut self, project: &Arc<str>, n: usize) {
        self.len -= n;
        if let Some(count) = self.per_project.get_mut(project) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.per_project.remove(project);
            }
        }
    }

    /// Opens a project's circuit after `n` failed attempts in a row (`None`: never; `Some(0)` is
    /// `Some(1)`).
    pub(crate) fn with_circuit_breaker(mut self, n: Option<u32>) -> Self {
        self.circuit_after = n.map(|n| n.max(1));
        self
    }

    /// Until when `project`'s circuit is open, if it is (for logs and stats).
    pub(crate) fn circuit_open_until(&self, project: &str) -> Option<Instant> {
        self.circuits.get(project).and_then(|c| c.open_until)
    }

    /// Projects whose circuit is open.
    pub(crate) fn open_circuits(&self) -> usize {
        self.circuits.values().filter(|c| c.open_until.is_some()).count()
    }

    /// Events queued (including those in flight).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends an event to its key; `failures` are the attempts that failed in earlier runs,
    /// `enqueued` when it was enqueued. False (nothing queued) when its project already has as
    /// many events queued as the project cap allows: the caller gives the event up.
    pub(crate) fn push(&mut self, key: OrderKey, seq: u64, failures: u32, enqueued: Instant) -> bool {
        let count = self.per_project.entry(key.project.clone()).or_insert(0);
        if self.project_cap.is_some_and(|cap| *count >= cap) {
            return false;
        }
        *count += 1;
        self.len += 1;
        let q = self.keys.entry(key.clone()).or_insert(KeyQueue { events: VecDeque::new(), state: State::Idle });
        q.events.push_back(Queued { seq, failures, refusals: 0, enqueued });
        if q.state == State::Idle {
            self.reschedule(&key);
        }
        true
    }

    /// Takes out of the queues every event enqueued before `before` that is not in flight, and
    /// returns them (sequence number, failed attempts) for the caller to give up. A key whose head
    /// went moves on to its next event at once.
    pub(crate) fn expire(&mut self, before: Instant) -> Vec<(u64, u32)> {
        let mut gone = Vec::new();
        let old: Vec<OrderKey> = self
            .keys
            .iter()
            .filter(|(_, q)| {
                let first = usize::from(q.state == State::InFlight);
                q.events.get(first).is_some_and(|e| e.enqueued < before)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in old {
            let Some(q) = self.keys.get_mut(&key) else { continue };
            let in_flight = q.state == State::InFlight;
            let first = usize::from(in_flight);
            // A key's events are in enqueue order: the old ones are the front.
            let n = q.events.iter().skip(first).take_while(|e| e.enqueued < before).count();
            gone.extend(q.events.drain(first..first + n).map(|e| (e.seq, e.failures)));
            if !in_flight {
                if let State::Waiting(at) = q.state {
                    self.waiting.remove(&(at, key.clone()));
                }
                // Ready or held keys are found again by their (now stale) entries' state check.
                q.state = State::Idle;
            }
            self.forget(&key.project, n);
            if !in_flight {
                self.reschedule(&key);
            }
        }
        gone
    }

    /// Gives a project a target (`true`) or takes it away (`false`). Giving one (again, e.g. a new
    /// URL) also ends the backoff of the project's waiting keys: they are attempted at once.
    pub(crate) fn set_project_active(&mut self, project: &str, active: bool) {
        if !active {
            self.active.remove(project);
            return;
        }
        if !self.active.contains(project) {
            self.active.insert(Arc::from(project));
        }
        // A new target starts with a closed circuit.
        self.circuits.remove(project);
        let keys: Vec<OrderKey> = self
            .keys
            .iter()
            .filter(|(k, q)| &*k.project == project && matches!(q.state, State::Idle | State::Waiting(_) | State::Held))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.reschedule(&k);
        }
    }

    /// Forgets every event of `project` and returns their sequence numbers (in-flight ones
    /// included: their outcome will be ignored).
    pub(crate) fn remove_project(&mut self, project: &str) -> Vec<u64> {
        self.active.remove(project);
        self.circuits.remove(project);
        let keys: Vec<OrderKey> = self.keys.keys().filter(|k| &*k.project == project).cloned().collect();
        let mut seqs = Vec::new();
        for k in keys {
            if let Some(q) = self.keys.remove(&k) {
                if let State::Waiting(at) = q.state {
                    self.waiting.remove(&(at, k.clone()));
                }
                self.forget(&k.project, q.events.len());
                seqs.extend(q.events.iter().map(|e| e.seq));
            }
        }
        seqs.sort_unstable();
        seqs
    }

    /// The next attempt to make at `now`, if any. The key is in flight until its outcome comes in.
    pub(crate) fn poll_attempt(&mut self, now: Instant) -> Option<Attempt> {
        while let Some((at, key)) = self.waiting.first().cloned() {
            if at > now {
                break;
            }
            self.waiting.pop_first();
            if self.keys.get(&key).is_some_and(|q| q.state == State::Waiting(at)) {
                self.reschedule(&key);
            }
        }
        if let Some(probe) = self.probe(now) {
            return Some(probe);
        }
        while let Some(key) = self.ready.pop_front() {
            let active = self.active.contains(&*key.project);
            let Some(q) = self.keys.get_mut(&key) else { continue };
            if q.state != State::Ready {
                continue;
            }
            if !active {
                q.state = State::Idle;
                continue;
            }
            if let Some(c) = self.circuits.get_mut(&key.project).filter(|c| c.open_until.is_some()) {
                if c.blocks(now) {
                    q.state = State::Held;
                    c.held.push_back(key);
                    continue;
                }
            }
            let Some(head) = q.events.front() else {
                self.keys.remove(&key);
                continue;
            };
            // The cooldown of an open circuit is over: this attempt is its probe.
            if let Some(c) = self.circuits.get_mut(&key.project).filter(|c| c.open_until.is_some()) {
                c.probing = Some(key.clone());
            }
            q.state = State::InFlight;
            return Some(Attempt { seq: head.seq, attempt: head.failures.saturating_add(1), key });
        }
        None
    }

    /// The probe of an open circuit whose cooldown is over, taken from its held keys.
    fn probe(&mut self, now: Instant) -> Option<Attempt> {
        for (project, c) in self.circuits.iter_mut() {
            if c.probing.is_some() || c.open_until.is_none_or(|at| at > now) || !self.active.contains(project) {
                continue;
            }
            while let Some(key) = c.held.pop_front() {
                let Some(q) = self.keys.get_mut(&key) else { continue };
                if q.state != State::Held {
                    continue;
                }
                let Some(head) = q.events.front() else { continue };
                q.state = State::InFlight;
                c.probing = Some(key.clone());
                return Some(Attempt { seq: head.seq, attempt: head.failures.saturating_add(1), key });
            }
        }
        None
    }

    /// When the next retry (or a circuit's probe) falls due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let probes =
            self.circuits.values().filter(|c| c.probing.is_none() && !c.held.is_empty()).filter_map(|c| c.open_until);
        self.waiting.first().map(|(at, _)| *at).into_iter().chain(probes).min()
    }

    /// The attempt of `seq` succeeded, or its event is gone from the store: the key moves on.
    /// Returns false when the outcome is stale (the project was removed meanwhile).
    pub(crate) fn handle_done(&mut self, key: &OrderKey, seq: u64) -> bool {
        if !self.is_in_flight(key, seq) {
            return false;
        }
        if let Some(q) = self.keys.get_mut(key) {
            q.events.pop_front();
            q.state = State::Idle;
            self.forget(&key.project, 1);
        }
        self.reschedule(key);
        self.close_circuit(&key.project);
        true
    }

    /// The project's target took an event: its circuit closes and its held keys go on.
    fn close_circuit(&mut self, project: &str) {
        let Some(c) = self.circuits.remove(project) else { return };
        for key in c.held {
            if self.keys.get(&key).is_some_and(|q| q.state == State::Held) {
                self.reschedule(&key);
            }
        }
    }

    /// The event of `seq` is gone from the store: the key moves on. Says nothing of the target, so
    /// an open circuit stays open (a probe that found its event gone frees the way for another).
    pub(crate) fn handle_gone(&mut self, key: &OrderKey, seq: u64) {
        if !self.is_in_flight(key, seq) {
            return;
        }
        self.end_probe(key);
        if let Some(q) = self.keys.get_mut(key) {
            q.events.pop_front();
            q.state = State::Idle;
            self.forget(&key.project, 1);
        }
        self.reschedule(key);
    }

    /// A probe that ended without a word from the target (returned, or its event gone).
    fn end_probe(&mut self, key: &OrderKey) {
        if let Some(c) = self.circuits.get_mut(&key.project) {
            if c.probing.as_ref() == Some(key) {
                c.probing = None;
            }
        }
    }

    /// The attempt of `seq` was not made (its project lost its target meanwhile): the event stays
    /// at the head, no failure counted, and waits for a target.
    pub(crate) fn handle_returned(&mut self, key: &OrderKey, seq: u64) {
        if self.is_in_flight(key, seq) {
            self.end_probe(key);
            if let Some(q) = self.keys.get_mut(key) {
                q.state = State::Idle;
            }
            self.reschedule(key);
        }
    }

    /// The attempt of `seq` failed at `now`; `r` is a uniform sample in `[0, 1)` for the jitter.
    /// `None` when the outcome is stale.
    pub(crate) fn handle_failed(&mut self, now: Instant, key: &OrderKey, seq: u64, r: f64) -> Option<AfterFailure> {
        self.failed(now, key, seq, r, true, None)
    }

    /// The attempt of `seq` failed here, before reaching the target: retried (and counted
    /// towards the event's dead letter) like any failure, but the project's circuit neither
    /// counts it nor takes it for its probe's answer (a probe that failed so frees the way).
    pub(crate) fn handle_local_failure(
        &mut self,
        now: Instant,
        key: &OrderKey,
        seq: u64,
        r: f64,
    ) -> Option<AfterFailure> {
        self.failed(now, key, seq, r, false, None)
    }

    /// The target refused the event for good (a 400, 413, 422...): retried a little (a receiver
    /// being deployed may refuse for a moment) but given up after [`REFUSED_ATTEMPTS`] refusals
    /// whatever `max_attempts` says, so the key's later events go on; the project's circuit
    /// ignores it (the target answered).
    pub(crate) fn handle_refused(&mut self, now: Instant, key: &OrderKey, seq: u64, r: f64) -> Option<AfterFailure> {
        self.failed(now, key, seq, r, false, Some(REFUSED_ATTEMPTS))
    }

    fn failed(
        &mut self,
        now: Instant,
        key: &OrderKey,
        seq: u64,
        r: f64,
        target: bool,
        limit: Option<u32>,
    ) -> Option<AfterFailure> {
        if !self.is_in_flight(key, seq) {
            return None;
        }
        if target {
            self.count_failure(now, key, r);
        } else {
            self.end_probe(key);
        }
        let q = self.keys.get_mut(key)?;
        let head = q.events.front_mut()?;
        head.failures = head.failures.saturating_add(1);
        let failures = head.failures;
        // A refusal limit counts refusals only: an outage's timeouts before a 400 do not use it up.
        let refused_out = limit.is_some_and(|l| {
            head.refusals = head.refusals.saturating_add(1);
            head.refusals >= l
        });
        if refused_out || self.max_attempts.is_some_and(|max| failures >= max) {
            q.events.pop_front();
            q.state = State::Idle;
            self.forget(&key.project, 1);
            self.reschedule(key);
            return Some(AfterFailure::DeadLetter { failures });
        }
        let at = now + self.backoff.delay(failures, r);
        q.state = State::Waiting(at);
        self.waiting.insert((at, key.clone()));
        Some(AfterFailure::RetryAt(at))
    }

    /// A failed attempt of `project`: its circuit opens after `circuit_after` in a row, and opens
    /// again (for longer) when its probe fails.
    fn count_failure(&mut self, now: Instant, key: &OrderKey, r: f64) {
        let Some(after) = self.circuit_after else { return };
        let c = self.circuits.entry(key.project.clone()).or_default();
        c.failures = c.failures.saturating_add(1);
        // The probe failed, or the circuit opens; a failure of an attempt that was in flight when
        // it opened changes nothing (the probe alone decides).
        let probe_failed = c.probing.as_ref() == Some(key);
        if probe_failed || (c.open_until.is_none() && c.failures >= after) {
            c.probing = None;
            c.opened = c.opened.saturating_add(1);
            c.open_until = Some(now + self.backoff.delay(c.opened, r));
        }
    }

    fn is_in_flight(&self, key: &OrderKey, seq: u64) -> bool {
        self.keys.get(key).is_some_and(|q| q.state == State::InFlight && q.events.front().is_some_and(|e| e.seq == seq))
    }

    /// Puts a key that is not in flight where it belongs: gone when empty, ready when its project
    /// is active, idle otherwise.
    fn reschedule(&mut self, key: &OrderKey) {
        let active = self.active.contains(&*key.project);
        let Some(q) = self.keys.get_mut(key) else { return };
        if let State::Waiting(at) = q.state {
            self.waiting.remove(&(at, key.clone()));
        }
        if q.events.is_empty() {
            self.keys.remove(key);
        } else if !active {
            q.state = State::Idle;
        } else if q.state != State::Ready {
            q.state = State::Ready;
            self.ready.push_back(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn sched(max_attempts: Option<u32>) -> Scheduler {
        let mut s = Scheduler::new(Backoff::new(MS * 10, MS * 80, 0.0), max_attempts);
        s.set_project_active("p", true);
        s
    }

    fn k(key: &str) -> OrderKey {
        OrderKey::new("p", key)
    }

    /// Ten keys of one project, each with one event, all in flight at `now`; the scheduler opens
    /// the project's circuit after `circuit_after` failures in a row.
    fn ten_in_flight(circuit_after: Option<u32>, now: Instant) -> (Scheduler, Vec<Attempt>) {
        let mut s = sched(None).with_circuit_breaker(circuit_after);
        for n in 0..10 {
            s.push(k(&format!("call{n}")), n, 0, Instant::now());
        }
        let attempts = drain(&mut s, now);
        assert_eq!(attempts.len(), 10);
        (s, attempts)
    }

    /// Events older than the cut-off leave the queues (not the one in flight); a key whose head
    /// went, even while it waited out a backoff, moves on to its next event at once; the counts
    /// follow.
    #[test]
    fn old_events_expire_and_their_keys_move_on() {
        let t0 = Instant::now();
        let mut s = sched(None);
        // Key a: events at 0, 10 and 50 ms; key b: at 0 and 60 ms; key c: at 0 ms.
        for (key, seq, at) in [("a", 0, 0), ("b", 1, 0), ("c", 2, 0), ("a", 3, 10), ("a", 4, 50), ("b", 5, 60)] {
            assert!(s.push(k(key), seq, 0, t0 + MS * at));
        }
        let first = drain(&mut s, t0);
        assert_eq!(first.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        // a's head fails and waits; b's head is still in flight; c's is delivered.
        assert!(matches!(s.handle_failed(t0, &k("a"), 0, 0.0), Some(AfterFailure::RetryAt(_))));
        assert!(s.handle_done(&k("c"), 2));
        let mut gone = s.expire(t0 + MS * 20);
        gone.sort_unstable();
        assert_eq!(gone, vec![(0, 1), (3, 0)], "a's two old events (its head with its failure); b's head is in flight");
        assert_eq!(s.len(), 3);
        // a goes on with its next event at once, not after the backoff.
        assert_eq!(drain(&mut s, t0 + MS * 21).iter().map(|a| a.seq).collect::<Vec<_>>(), vec![4]);
        assert!(s.handle_done(&k("b"), 1));
        assert!(s.expire(t0 + MS * 50).is_empty(), "nothing older than 50 ms is queued");
        let mut gone = s.expire(t0 + MS * 100);
        gone.sort_unstable();
        assert_eq!(gone, vec![(5, 0)], "b's event, not a's in flight");
        assert_eq!(s.len(), 1);
    }

    /// A project with as many events queued as its cap takes no more until one leaves; other
    /// projects are not affected.
    #[test]
    fn a_project_at_its_cap_takes_no_more() {
        let t0 = Instant::now();
        let mut s = sched(None).with_project_cap(Some(2));
        assert!(s.push(k("a"), 0, 0, t0));
        assert!(s.push(k("b"), 1, 0, t0));
        assert!(!s.push(k("a"), 2, 0, t0), "the third of p");
        assert!(s.push(OrderKey::new("q", "a"), 3, 0, t0), "another project");
        let attempts = drain(&mut s, t0);
        assert!(s.handle_done(&attempts[0].key, attempts[0].seq));
        assert!(s.push(k("a"), 4, 0, t0), "room again");
        assert!(!s.push(k("c"), 5, 0, t0));
        assert_eq!(s.remove_project("p").len(), 2);
        assert!(s.push(k("a"), 6, 0, t0), "a removed project's count is gone too");
    }

    /// A receiver that is down: after three failures in a row the project's keys hold, one probe
    /// goes when the cooldown is over (10 ms, then 20 ms after a failed probe), and the probe's
    /// success lets every key go on at once.
    #[test]
    fn a_failing_target_gets_one_probe_at_a_time() {
        let t0 = Instant::now();
        let (mut s, attempts) = ten_in_flight(Some(3), t0);
        for a in &attempts {
            s.handle_failed(t0, &a.key, a.seq, 0.0);
        }
        assert_eq!(s.circuit_open_until("p"), Some(t0 + MS * 10));
        assert_eq!(s.open_circuits(), 1);
        assert_eq!(s.poll_timeout(), Some(t0 + MS * 10));
        assert!(drain(&mut s, t0 + MS * 9).is_empty());
        let probe = drain(&mut s, t0 + MS * 10);
        assert_eq!(probe.len(), 1, "one probe, not ten retries");
        // The probe fails: open again, for twice as long.
        s.handle_failed(t0 + MS * 10, &probe[0].key, probe[0].seq, 0.0);
        assert_eq!(s.circuit_open_until("p"), Some(t0 + MS * 30));
        assert!(drain(&mut s, t0 + MS * 29).is_empty());
        let probe = drain(&mut s, t0 + MS * 30);
        assert_eq!(probe.len(), 1);
        // It succeeds: the circuit closes and the nine other keys go at once.
        assert!(s.handle_done(&probe[0].key, probe[0].seq));
        assert_eq!((s.circuit_open_until("p"), s.open_circuits()), (None, 0));
        let rest = drain(&mut s, t0 + MS * 30);
        assert_eq!(rest.len(), 9, "{rest:?}");
        assert!(rest.iter().all(|a| a.key != probe[0].key));
    }

    /// Only the probe's outcome decides: a failure of an attempt that was in flight when the
    /// circuit opened neither reopens it nor lets a second probe go; a probe whose event vanished
    /// (or was returned) frees the way for the next probe without closing the circuit.
    #[test]
    fn only_the_probe_decides() {
        let t0 = Instant::now();
        let (mut s, attempts) = ten_in_flight(Some(3), t0);
        for a in &attempts[..3] {
            s.handle_failed(t0, &a.key, a.seq, 0.0);
        }
        let opened = s.circuit_open_until("p");
        assert_eq!(opened, Some(t0 + MS * 10));
        let probe = drain(&mut s, t0 + MS * 10);
        assert_eq!(probe.len(), 1);
        // A straggler (in flight since before the circuit opened) fails: nothing changes.
        s.handle_failed(t0 + MS * 11, &attempts[5].key, attempts[5].seq, 0.0);
        assert_eq!(s.circuit_open_until("p"), opened);
        assert!(drain(&mut s, t0 + MS * 50).is_empty(), "no second probe while the first is out");
        // The probe's event is gone: the circuit stays open, the next probe may go.
        s.handle_gone(&probe[0].key, probe[0].seq);
        assert_eq!(s.circuit_open_until("p"), opened);
        let next = drain(&mut s, t0 + MS * 60);
        assert_eq!(next.len(), 1, "one probe again: {next:?}");
        // Returned (the project lost its target meanwhile): also frees the way.
        s.handle_returned(&next[0].key, next[0].seq);
        assert_eq!(drain(&mut s, t0 + MS * 61).len(), 1);
    }

    /// A failure here (the store unreadable, a request that could not be built) is retried on the
    /// key's backoff but never opens the circuit; a probe that fails so frees the way for the next
    /// probe and leaves the circuit open.
    #[test]
    fn local_failures_do_not_open_the_circuit() {
        let t0 = Instant::now();
        let (mut s, attempts) = ten_in_flight(Some(3), t0);
        for a in &attempts {
            let after = s.handle_local_failure(t0, &a.key, a.seq, 0.0);
            assert_eq!(after, Some(AfterFailure::RetryAt(t0 + MS * 10)));
        }
        assert_eq!((s.circuit_open_until("p"), s.open_circuits()), (None, 0));
        let retries = drain(&mut s, t0 + MS * 10);
        assert_eq!(retries.len(), 10, "every key retries on its own");
        // The target now fails: the circuit opens after three, and a local failure of its probe
        // leaves it open and lets the next probe go.
        for a in &retries {
            s.handle_failed(t0 + MS * 10, &a.key, a.seq, 0.0);
        }
        let opened = s.circuit_open_until("p");
        assert!(opened.is_some());
        let probe = drain(&mut s, t0 + MS * 100);
        assert_eq!(probe.len(), 1);
        s.handle_local_failure(t0 + MS * 100, &probe[0].key, probe[0].seq, 0.0);
        assert_eq!(s.circuit_open_until("p"), opened, "not reopened for longer");
        assert_eq!(drain(&mut s, t0 + MS * 101).len(), 1, "the next probe goes");
    }

    /// Without a circuit breaker every key retries on its own backoff; with one, failures that a
    /// success interrupts do not open it; another project is not held by this one's circuit.
    #[test]
    fn the_circuit_counts_failures_in_a_row_of_one_project() {
        let t0 = Instant::now();
        let (mut s, attempts) = ten_in_flight(None, t0);
        for a in &attempts {
            s.handle_failed(t0, &a.key, a.seq, 0.0);
        }
        assert_eq!(drain(&mut s, t0 + MS * 10).len(), 10, "no breaker: ten retries");

        let (mut s, attempts) = ten_in_flight(Some(3), t0);
        s.set_project_active("q", true);
        s.push(OrderKey::new("q", "other"), 100, 0, Instant::now());
        let other = drain(&mut s, t0);
        assert_eq!(other.len(), 1);
        for (n, a) in attempts.iter().enumerate() {
            if n % 3 == 2 {
                s.handle_done(&a.key, a.seq);
            } else {
                s.handle_failed(t0, &a.key, a.seq, 0.0);
            }
        }
        assert_eq!(s.circuit_open_until("p"), None, "never three failures in a row");
        // Project q's target fails three times: its circuit opens, p's keys go on.
        s.handle_failed(t0, &other[0].key, other[0].seq, 0.0);
        // q's key retries after 10 ms, then 20 ms more.
        for at in [t0 + MS * 10, t0 + MS * 30] {
            let a = drain(&mut s, at);
            assert_eq!(a.iter().filter(|a| &*a.key.project == "q").count(), 1, "{a:?}");
            for a in &a {
                if &*a.key.project == "q" {
                    s.handle_failed(at, &a.key, a.seq, 0.0);
                } else {
                    s.handle_done(&a.key, a.seq);
                }
            }
        }
        assert!(s.circuit_open_until("q").is_some());
        assert_eq!(s.circuit_open_until("p"), None);
        // A new target for q closes its circuit: its key goes at once.
        s.set_project_active("q", true);
        assert_eq!(s.circuit_open_until("q"), None);
        assert!(drain(&mut s, t0 + MS * 31).iter().any(|a| &*a.key.project == "q"));
    }

    fn drain(s: &mut Scheduler, now: Instant) -> Vec<Attempt> {
        std::iter::from_fn(|| s.poll_attempt(now)).collect()
    }

    #[test]
    fn one_attempt_per_key_in_enqueue_order() {
        let now = Instant::now();
        let mut s = sched(None);
        for seq in 0..6 {
            s.push(k(if seq % 2 == 0 { "a" } else { "b" }), seq, 0, Instant::now());
        }
        let first = drain(&mut s, now);
        assert_eq!(first.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![0, 1], "one head per key");
        assert!(s.poll_attempt(now).is_none());
        let mut delivered = Vec::new();
        let mut inflight = first;
        while !inflight.is_empty() {
            for a in inflight.drain(..) {
                assert!(s.handle_done(&a.key, a.seq));
                delivered.push(a.seq);
            }
            inflight = drain(&mut s, now);
        }
        assert_eq!(delivered, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(s.len(), 0);
        assert!(s.keys.is_empty(), "empty keys are forgotten");
    }

    #[test]
    fn a_failing_head_blocks_only_its_own_key() {
        let t0 = Instant::now();
        let mut s = sched(None);
        s.push(k("bad"), 0, 0, Instant::now());
        s.push(k("bad"), 1, 0, Instant::now());
        s.push(k("good"), 2, 0, Instant::now());
        s.push(k("good"), 3, 0, Instant::now());
        let a = drain(&mut s, t0);
        assert_eq!(a.len(), 2);
        assert_eq!(s.handle_failed(t0, &k("bad"), 0, 0.0), Some(AfterFailure::RetryAt(t0 + MS * 10)));
        assert!(s.handle_done(&k("good"), 2));
        let next = drain(&mut s, t0);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].seq, 3, "the good key goes on while the bad one waits");
        assert_eq!(s.poll_timeout(), Some(t0 + MS * 10));
        assert!(drain(&mut s, t0 + MS * 9).is_empty(), "not before the backoff");
        let retry = drain(&mut s, t0 + MS * 10);
        assert_eq!(retry, vec![Attempt { key: k("bad"), seq: 0, attempt: 2 }], "the same head again");
    }

    #[test]
    fn backoff_doubles_per_failure_of_the_same_event() {
        let t0 = Instant::now();
        let mut s = sched(None);
        s.push(k("a"), 7, 0, Instant::now());
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let a = s.poll_attempt(now).expect("due");
            match s.handle_failed(now, &a.key, a.seq, 0.3) {
                Some(AfterFailure::RetryAt(at)) => {
                    waits.push(at - now);
                    now = at;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [10, 20, 40, 80, 80, 80].map(|m| MS * m).to_vec());
    }

    #[test]
    fn failures_from_an_earlier_run_count() {
        let now = Instant::now();
        let mut s = sched(Some(3));
        s.push(k("a"), 0, 2, Instant::now());
        s.push(k("a"), 1, 0, Instant::now());
        let a = s.poll_attempt(now).expect("due");
        assert_eq!(a.attempt, 3);
        assert_eq!(s.handle_failed(now, &a.key, 0, 0.0), Some(AfterFailure::DeadLetter { failures: 3 }));
        let b = s.poll_attempt(now).expect("the key moves on at once");
        assert_eq!((b.seq, b.attempt), (1, 1));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn events_of_a_project_without_target_wait_until_it_has_one() {
        let now = Instant::now();
        let mut s = sched(None);
        s.push(OrderKey::new("q", "call"), 0, 0, Instant::now());
        assert!(s.poll_attempt(now).is_none());
        assert_eq!(s.len(), 1);
        s.set_project_active("q", true);
        assert_eq!(s.poll_attempt(now).map(|a| a.seq), Some(0));
    }

    #[test]
    fn deactivating_parks_ready_keys_and_a_new_target_ends_the_backoff() {
        let t0 = Instant::now();
        let mut s = sched(None);
        s.push(k("a"), 0, 0, Instant::now());
        s.push(k("b"), 1, 0, Instant::now());
        let a = s.poll_attempt(t0).expect("a");
        s.set_project_active("p", false);
        assert!(s.poll_attempt(t0).is_none(), "b is parked");
        assert!(matches!(s.handle_failed(t0, &a.key, a.seq, 0.0), Some(AfterFailure::RetryAt(_))));
        assert!(s.poll_attempt(t0 + Duration::from_secs(1)).is_none(), "a's retry falls due but stays parked");
        s.set_project_active("p", true);
        let mut got: Vec<u64> = drain(&mut s, t0 + MS).iter().map(|a| a.seq).collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1]);

        // A new target for an active project: the waiting key is attempted at once.
        assert!(s.handle_failed(t0, &k("a"), 0, 0.0).is_some());
        assert!(s.poll_attempt(t0).is_none());
        s.set_project_active("p", true);
        assert_eq!(s.poll_attempt(t0).map(|a| a.seq), Some(0));
        assert_eq!(s.poll_timeout(), None, "the cancelled timer is gone");
    }

    #[test]
    fn removing_a_project_forgets_its_events_and_ignores_late_outcomes() {
        let now = Instant::now();
        let mut s = sched(None);
        s.set_project_active("other", true);
        s.push(k("a"), 0, 0, Instant::now());
        s.push(k("a"), 1, 0, Instant::now());
        s.push(OrderKey::new("other", "a"), 2, 0, Instant::now());
        let attempts = drain(&mut s, now);
        assert_eq!(attempts.len(), 2);
        assert_eq!(s.remove_project("p"), vec![0, 1]);
        assert!(!s.handle_done(&k("a"), 0), "stale outcome");
        assert_eq!(s.handle_failed(now, &k("a"), 0, 0.0), None);
        assert_eq!(s.len(), 1);
        s.push(k("a"), 3, 0, Instant::now());
        assert!(s.poll_attempt(now).is_none(), "removed means no target any more");
    }

    #[test]
    fn outcomes_for_the_wrong_event_are_ignored() {
        let now = Instant::now();
        let mut s = sched(None);
        s.push(k("a"), 0, 0, Instant::now());
        s.push(k("a"), 1, 0, Instant::now());
        assert!(!s.handle_done(&k("a"), 0), "not in flight yet");
        let a = s.poll_attempt(now).expect("a");
        assert!(!s.handle_done(&k("a"), 1), "not the head");
        assert!(s.handle_done(&a.key, 0));
        assert!(!s.handle_done(&a.key, 0), "twice");
        assert_eq!(s.poll_attempt(now).map(|a| a.seq), Some(1));
    }

    #[test]
    fn a_returned_attempt_waits_for_a_target_without_counting() {
        let now = Instant::now();
        let mut s = sched(None);
        s.push(k("a"), 0, 0, Instant::now());
        let a = s.poll_attempt(now).expect("a");
        s.set_project_active("p", false);
        s.handle_returned(&a.key, a.seq);
        assert!(s.poll_attempt(now).is_none());
        s.set_project_active("p", true);
        assert_eq!(s.poll_attempt(now), Some(Attempt { key: k("a"), seq: 0, attempt: 1 }));
    }

    #[test]
    fn keys_take_turns() {
        let now = Instant::now();
        let mut s = sched(None);
        for seq in 0..4 {
            s.push(k("a"), seq, 0, Instant::now());
        }
        s.push(k("b"), 10, 0, Instant::now());
        let a = s.poll_attempt(now).expect("a");
        assert!(s.handle_done(&a.key, a.seq));
        let order: Vec<u64> = drain(&mut s, now).iter().map(|a| a.seq).collect();
        assert_eq!(order, vec![10, 1], "b was ready before a's second event");
    }
}
