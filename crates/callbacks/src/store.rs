//! The durable queue: one redb database file.
//!
//! Layout (layout version 1):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` | `u64`: `"layout"` = 1, `"next_seq"` = the next sequence number, `"store_id"` = a random id fixed at creation |
//! | `events` | `u64` sequence number | `(project, order_key, body)` = `(&str, &str, &[u8])`, the body as it is sent |
//! | `failures` | `u64` sequence number | `u32` failed attempts so far (absent = none) |
//! | `dead_letters` | `u64` sequence number | `(project, order_key, body, failures, last_error)` = `(&str, &str, &[u8], u32, &str)` |
//! | `enqueued_at` | `u64` sequence number | `u64`: when the event was enqueued, in ms since the Unix epoch (stores made before this table have none for their old events: they count from the open) |
//! | `origin` | `u64` sequence number | `u64`: the sequence number a replayed dead letter was first enqueued under, which stays its id |
//!
//! Sequence numbers grow with every enqueue and are never reused, so within an order key they
//! give the delivery order. Enqueues and dead letters commit with [`Durability::Immediate`] (an
//! fsync before `enqueue` returns). Removals and failure counts commit without a sync
//! ([`Durability::None`]; redb's `Eventual` is an fsync too on Linux): they become durable with
//! the next immediate commit, which is every [`MAX_UNSYNCED`]-th of them at the latest, or the
//! delivery task's [`Store::sync`] a moment later ([`Store::needs_sync`]), and at shutdown. Losing
//! one of those in a crash only means an event is delivered again or retried once more; not
//! syncing each one lets deliveries go as fast as the receiver takes them instead of one per disk
//! sync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{Database, DatabaseError, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::error::CallbackError;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<'_, u64, (&str, &str, &[u8])> = TableDefinition::new("events");
const FAILURES: TableDefinition<'_, u64, u32> = TableDefinition::new("failures");
const DEAD: TableDefinition<'_, u64, (&str, &str, &[u8], u32, &str)> = TableDefinition::new("dead_letters");
const ENQUEUED: TableDefinition<'_, u64, u64> = TableDefinition::new("enqueued_at");
const ORIGIN: TableDefinition<'_, u64, u64> = TableDefinition::new("origin");

/// An event to append: project, order key, body.
pub(crate) type Row<'a> = (&'a str, &'a str, &'a [u8]);

/// The layout this version writes and reads.
pub(crate) const LAYOUT: u64 = 1;

/// Commits without a sync after which the next one syncs (redb frees pages only in synced
/// commits, so this also bounds the file's growth).
pub(crate) const MAX_UNSYNCED: u32 = 256;

/// An event on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvent {
    pub(crate) seq: u64,
    /// Its id: its sequence number, or, replayed from the dead letters, the one it was first
    /// enqueued under.
    pub(crate) id: u64,
    pub(crate) project: String,
    pub(crate) order_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) failures: u32,
}

/// An event that reached the attempt limit, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event's id (the one it was first enqueued under, which its `webhook-id` carries).
    pub id: crate::EventId,
    /// Its project.
    pub project: String,
    /// Its order key.
    pub order_key: String,
    /// The JSON body as it was sent.
    pub body: Vec<u8>,
    /// Failed attempts in all.
    pub failures: u32,
    /// The last attempt's failure (an HTTP status or a transport error, never a header value).
    pub last_error: String,
}

/// What [`Store::open`] found.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Undelivered events in sequence order (bodies not loaded): sequence number, project, order
    /// key, failed attempts, when it was enqueued (ms since the Unix epoch, if known).
    pub(crate) events: Vec<(u64, String, String, u32, Option<u64>)>,
    pub(crate) dead_letters: u64,
}

/// What moving events to the dead letters did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Buried {
    /// Events moved (those no longer queued are skipped).
    pub(crate) moved: u64,
    /// The oldest dead letters dropped to keep within the cap.
    pub(crate) trimmed: u64,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The open database. Every method is blocking IO: call it from a blocking context.
pub(crate) struct Store {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    /// The next sequence number; held across an enqueue's commit so that sequence order is commit
    /// order.
    next_seq: Mutex<u64>,
    id: u64,
    /// Commits made without a sync, counted (while their transaction is open) since the open.
    unsynced_commits: AtomicU64,
    /// Of those, how many a synced commit has made durable.
    synced_upto: AtomicU64,
    /// The most dead letters kept (the oldest go first).
    max_dead_letters: Option<u64>,
    /// Dead letters in the table; changed only under `dead_lock`, with the commit that changed
    /// the table.
    dead_count: AtomicU64,
    dead_lock: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("id", &format_args!("{:016x}", self.id)).finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` and reads what is queued.
    ///
    /// redb asserts on some damaged files (a truncated one, for instance) instead of returning an
    /// error; such a panic is caught here and reported as [`CallbackError::NotAStore`] (the
    /// default panic hook still prints it).
    pub(crate) fn open(path: &Path) -> Result<(Store, Loaded), CallbackError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Store::open_unguarded(path))) {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                Err(CallbackError::NotAStore { path: path.to_path_buf(), reason: format!("damaged ({what})") })
            }
        }
    }

    fn open_unguarded(path: &Path) -> Result<(Store, Loaded), CallbackError> {
        let not_a_store = |reason: String| CallbackError::NotAStore { path: path.to_path_buf(), reason };
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(CallbackError::AlreadyOpen { path: path.to_path_buf() });
            }
            // redb reports a file without its magic number as invalid data.
            Err(DatabaseError::Storage(redb::StorageError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(not_a_store(format!("not a redb database ({e})")));
            }
            Err(DatabaseError::Storage(redb::StorageError::Io(source))) => {
                return Err(CallbackError::Io { path: path.to_path_buf(), source });
            }
            Err(e) => return Err(not_a_store(e.to_string())),
        };
        // A redb file of another program: refuse rather than add our tables to it.
        {
            let txn = db.begin_read()?;
            let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
            if !tables.is_empty() && !tables.iter().any(|t| t == META.name()) {
                return Err(not_a_store(format!("a redb database with other tables ({})", tables.join(", "))));
            }
        }
        let type_error = |e: redb::TableError| match e {
            redb::TableError::Storage(s) => CallbackError::from(s),
            other => not_a_store(other.to_string()),
        };
        let (next_seq, id) = {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            let ids;
            {
                let mut meta = txn.open_table(META).map_err(type_error)?;
                let layout = meta.get("layout")?.map(|v| v.value());
                match layout {
                    None => {
                        meta.insert("layout", LAYOUT)?;
                    }
                    Some(LAYOUT) => {}
                    Some(other) => {
                        return Err(not_a_store(format!("store layout {other}, this version reads {LAYOUT}")))
                    }
                }
                let stored_id = meta.get("store_id")?.map(|v| v.value());
                let id = match stored_id {
                    Some(id) => id,
                    None => {
                        let id = rand::random::<u64>();
                        meta.insert("store_id", id)?;
                        id
                    }
                };
                let next = meta.get("next_seq")?.map(|v| v.value()).unwrap_or(0);
                ids = (next, id);
                txn.open_table(EVENTS).map_err(type_error)?;
                txn.open_table(FAILURES).map_err(type_error)?;
                txn.open_table(DEAD).map_err(type_error)?;
                txn.open_table(ENQUEUED).map_err(type_error)?;
                txn.open_table(ORIGIN).map_err(type_error)?;
            }
            txn.commit()?;
            ids
        };
        let loaded = {
            let txn = db.begin_read()?;
            let events_t = txn.open_table(EVENTS)?;
            let failures_t = txn.open_table(FAILURES)?;
            let enqueued_t = txn.open_table(ENQUEUED)?;
            let mut events = Vec::new();
            let mut max_seq = None;
            for row in events_t.iter()? {
                let (k, v) = row?;
                let seq = k.value();
                let (project, order_key, _) = v.value();
                let failures = failures_t.get(seq)?.map(|f| f.value()).unwrap_or(0);
                let enqueued = enqueued_t.get(seq)?.map(|t| t.value());
                events.push((seq, project.to_string(), order_key.to_string(), failures, enqueued));
                max_seq = Some(seq);
            }
            let dead = txn.open_table(DEAD)?;
            let dead_letters = dead.len()?;
            let dead_max = dead.last()?.map(|(k, _)| k.value());
            // Never reuse a sequence number, even if `next_seq` was lost.
            let floor = max_seq.max(dead_max).map_or(0, |s| s + 1);
            (Loaded { events, dead_letters }, floor)
        };
        let (loaded, floor) = loaded;
        let store = Store {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            next_seq: Mutex::new(next_seq.max(floor)),
            id,
            unsynced_commits: AtomicU64::new(0),
            synced_upto: AtomicU64::new(0),
            max_dead_letters: None,
            dead_count: AtomicU64::new(loaded.dead_letters),
            dead_lock: Mutex::new(()),
        };
        Ok((store, loaded))
    }

    /// Keeps at most `max` dead letters: burying more drops the oldest (`None`: no limit).
    pub(crate) fn with_dead_letter_cap(mut self, max: Option<u64>) -> Self {
        self.max_dead_letters = max;
        self
    }

    /// The random id fixed when the store was created.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn db(&self) -> Result<Arc<Database>, CallbackError> {
        self.db.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or(CallbackError::ShutDown)
    }

    /// Commits `events` (project, order key, body) durably and returns their sequence numbers.
    /// `after_commit` runs before the next append can start, so whoever it tells learns of
    /// events in sequence order.
    pub(crate) fn append<R>(
        &self,
        events: &[Row<'_>],
        after_commit: impl FnOnce(&[u64]) -> R,
    ) -> Result<R, CallbackError> {
        let db = self.db()?;
        let mut next = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
        let seqs: Vec<u64> = (*next..).take(events.len()).collect();
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(EVENTS)?;
            let mut enqueued = txn.open_table(ENQUEUED)?;
            let now = unix_ms_now();
            for (seq, (project, key, body)) in seqs.iter().zip(events) {
                table.insert(*seq, (*project, *key, *body))?;
                enqueued.insert(*seq, now)?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert("next_seq", *next + events.len() as u64)?;
        }
        self.commit(txn, true)?;
        *next += events.len() as u64;
        Ok(after_commit(&seqs))
    }

    /// The event `seq`, if it is still queued.
    pub(crate) fn get(&self, seq: u64) -> Result<Option<StoredEvent>, CallbackError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let Some(row) = events.get(seq)? else { return Ok(None) };
        let (project, order_key, body) = row.value();
        let failures = txn.open_table(FAILURES)?.get(seq)?.map(|f| f.value()).unwrap_or(0);
        let id = txn.open_table(ORIGIN)?.get(seq)?.map_or(seq, |o| o.value());
        Ok(Some(StoredEvent {
            seq,
            id,
            project: project.to_string(),
            order_key: order_key.to_string(),
            body: body.to_vec(),
            failures,
        }))
    }

    /// Removes queued events; returns how many were there.
    pub(crate) fn remove(&self, seqs: &[u64]) -> Result<u64, CallbackError> {
        let db = self.db()?;
        let mut txn = db.begin_write()?;
        let synced = self.lazy_durability(&mut txn);
        let mut removed = 0;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut failures = txn.open_table(FAILURES)?;
            let mut enqueued = txn.open_table(ENQUEUED)?;
            let mut origin = txn.open_table(ORIGIN)?;
            for seq in seqs {
                if events.remove(*seq)?.is_some() {
                    removed += 1;
                }
                failures.remove(*seq)?;
                enqueued.remove(*seq)?;
                origin.remove(*seq)?;
            }
        }
        self.commit(txn, synced)?;
        Ok(removed)
    }

    /// Records the failed-attempt count of a queued event.
    pub(crate) fn set_failures(&self, seq: u64, count: u32) -> Result<(), CallbackError> {
        let db = self.db()?;
        let mut txn = db.begin_write()?;
        let synced = self.lazy_durability(&mut txn);
        {
            let events = txn.open_table(EVENTS)?;
            if events.get(seq)?.is_some() {
                txn.open_table(FAILURES)?.insert(seq, count)?;
            }
        }
        self.commit(txn, synced)?;
        Ok(())
    }

    /// Moves queued events (sequence number, failed attempts) to the dead letters with
    /// `last_error`, in one durable commit; events no longer queued are skipped. Beyond the dead
    /// letter cap, the oldest dead letters are dropped.
    pub(crate) fn bury(&self, events: &[(u64, u32)], last_error: &str) -> Result<Buried, CallbackError> {
        let db = self.db()?;
        let _counted = self.dead_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut buried = Buried::default();
        let count;
        {
            let mut queued = txn.open_table(EVENTS)?;
            let mut dead = txn.open_table(DEAD)?;
            let mut failures_t = txn.open_table(FAILURES)?;
            let mut enqueued = txn.open_table(ENQUEUED)?;
            let mut origin_t = txn.open_table(ORIGIN)?;
            for (seq, failures) in events {
                if let Some(row) = queued.remove(*seq)? {
                    let (project, key, body) = row.value();
                    dead.insert(*seq, (project, key, body, *failures, last_error))?;
                    buried.moved += 1;
                }
                failures_t.remove(*seq)?;
                enqueued.remove(*seq)?;
            }
            if let Some(max) = self.max_dead_letters {
                while dead.len()? > max {
                    let Some((gone, _)) = dead.pop_first()? else { break };
                    origin_t.remove(gone.value())?;
                    buried.trimmed += 1;
                }
            }
            count = dead.len()?;
        }
        self.commit(txn, true)?;
        self.dead_count.store(count, Ordering::Relaxed);
        Ok(buried)
    }

    /// Puts the dead letters (of `project`, or all) back in the queue, oldest first, under new
    /// sequence numbers (each keeps the id it was first enqueued under) and with a fresh start (no
    /// failures, enqueued now), in one durable commit. `after_commit` gets their sequence numbers,
    /// projects and order keys before the next append can start (see [`append`](Store::append)).
    pub(crate) fn revive<R>(
        &self,
        project: Option<&str>,
        after_commit: impl FnOnce(&[(u64, String, String)]) -> R,
    ) -> Result<R, CallbackError> {
        let db = self.db()?;
        // Read first, without holding up enqueues; the write below takes only those still there.
        let mut old = Vec::new();
        {
            let txn = db.begin_read()?;
            for row in txn.open_table(DEAD)?.iter()? {
                let (k, v) = row?;
                let (p, key, body, _, _) = v.value();
                if project.is_none_or(|want| want == p) {
                    old.push((k.value(), p.to_string(), key.to_string(), body.to_vec()));
                }
            }
        }
        let _counted = self.dead_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut revived = Vec::new();
        let count;
        {
            let mut dead = txn.open_table(DEAD)?;
            let mut queued = txn.open_table(EVENTS)?;
            let mut enqueued = txn.open_table(ENQUEUED)?;
            let mut origin = txn.open_table(ORIGIN)?;
            let now = unix_ms_now();
            for (old_seq, p, key, body) in old {
                if dead.remove(old_seq)?.is_none() {
                    continue;
                }
                let first = origin.remove(old_seq)?.map_or(old_seq, |o| o.value());
                let seq = *next + revived.len() as u64;
                queued.insert(seq, (p.as_str(), key.as_str(), body.as_slice()))?;
                enqueued.insert(seq, now)?;
                origin.insert(seq, first)?;
                revived.push((seq, p, key));
            }
            txn.open_table(META)?.insert("next_seq", *next + revived.len() as u64)?;
            count = dead.len()?;
        }
        self.commit(txn, true)?;
        self.dead_count.store(count, Ordering::Relaxed);
        *next += revived.len() as u64;
        Ok(after_commit(&revived))
    }

    /// Deletes the dead letters (of `project`, or all); returns how many.
    pub(crate) fn purge(&self, project: Option<&str>) -> Result<u64, CallbackError> {
        let db = self.db()?;
        let _counted = self.dead_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut purged = 0;
        let count;
        {
            let mut dead = txn.open_table(DEAD)?;
            let mut origin = txn.open_table(ORIGIN)?;
            let mut gone = Vec::new();
            for row in dead.iter()? {
                let (k, v) = row?;
                if project.is_none_or(|want| want == v.value().0) {
                    gone.push(k.value());
                }
            }
            for seq in gone {
                if dead.remove(seq)?.is_some() {
                    purged += 1;
                }
                origin.remove(seq)?;
            }
            count = dead.len()?;
        }
        self.commit(txn, true)?;
        self.dead_count.store(count, Ordering::Relaxed);
        Ok(purged)
    }

    /// Dead letters in the store now.
    pub(crate) fn dead_letter_count(&self) -> u64 {
        self.dead_count.load(Ordering::Relaxed)
    }

    /// Every dead letter, oldest first.
    pub(crate) fn dead_letters(&self) -> Result<Vec<DeadLetter>, CallbackError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let dead = txn.open_table(DEAD)?;
        let origin = txn.open_table(ORIGIN)?;
        let mut out = Vec::new();
        for row in dead.iter()? {
            let (k, v) = row?;
            let (project, order_key, body, failures, last_error) = v.value();
            // A replayed event given up again: the id it was first enqueued under.
            let id = origin.get(k.value())?.map_or(k.value(), |o| o.value());
            out.push(DeadLetter {
                id: crate::EventId(id),
                project: project.to_string(),
                order_key: order_key.to_string(),
                body: body.to_vec(),
                failures,
                last_error: last_error.to_string(),
            });
        }
        Ok(out)
    }

    /// Makes every earlier commit durable.
    pub(crate) fn sync(&self) -> Result<(), CallbackError> {
        let db = self.db()?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        self.commit(txn, true)
    }

    /// Whether commits were made without a sync since the last synced one.
    pub(crate) fn needs_sync(&self) -> bool {
        self.unsynced_commits.load(Ordering::Acquire) > self.synced_upto.load(Ordering::Acquire)
    }

    /// Sets a removal's or a failure count's durability: no sync, unless [`MAX_UNSYNCED`] went
    /// by without one. True when this commit syncs.
    fn lazy_durability(&self, txn: &mut redb::WriteTransaction) -> bool {
        let pending =
            self.unsynced_commits.load(Ordering::Acquire).saturating_sub(self.synced_upto.load(Ordering::Acquire));
        let sync = pending >= u64::from(MAX_UNSYNCED);
        txn.set_durability(if sync { Durability::Immediate } else { Durability::None });
        sync
    }

    /// Commits, keeping count of the commits made without a sync. Both counts are taken while
    /// the transaction is open (redb runs one write transaction at a time), so a synced commit
    /// covers exactly the commits without a sync made before it, whatever the threads do after.
    fn commit(&self, txn: redb::WriteTransaction, synced: bool) -> Result<(), CallbackError> {
        if synced {
            let covered = self.unsynced_commits.load(Ordering::Acquire);
            txn.commit()?;
            self.synced_upto.fetch_max(covered, Ordering::AcqRel);
        } else {
            // Counted before its commit: a commit that fails only costs a sync more.
            self.unsynced_commits.fetch_add(1, Ordering::AcqRel);
            txn.commit()?;
        }
        Ok(())
    }

    /// Drops this handle's reference to the database: once the last in-flight user is done, the
    /// file is closed and its lock released. Later calls fail with [`CallbackError::ShutDown`].
    pub(crate) fn close(&self) {
        self.db.write().unwrap_or_else(PoisonError::into_inner).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store path in a fresh directory under the system temp dir; the directory is removed on drop
    /// (redb preallocates a few MiB per file).
    pub(crate) struct TempStore {
        dir: PathBuf,
        path: PathBuf,
    }

    impl std::ops::Deref for TempStore {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.path
        }
    }

    impl AsRef<std::path::Path> for TempStore {
        fn as_ref(&self) -> &std::path::Path {
            &self.path
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub(crate) fn temp_path(name: &str) -> TempStore {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "callbacks-unit-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempStore { path: dir.join("store.redb"), dir }
    }

    #[test]
    fn events_survive_a_reopen_in_sequence_order() {
        let path = temp_path("reopen");
        {
            let (store, loaded) = Store::open(&path).expect("open");
            assert!(loaded.events.is_empty());
            let seqs =
                store.append(&[("p", "a", b"{\"n\":0}"), ("p", "b", b"{\"n\":1}")], |s| s.to_vec()).expect("append");
            assert_eq!(seqs, vec![0, 1]);
            store.append(&[("q", "a", b"{}")], |_| ()).expect("append");
            store.set_failures(1, 4).expect("failures");
            assert_eq!(store.remove(&[0]).expect("remove"), 1);
            assert_eq!(store.remove(&[0]).expect("remove again"), 0);
            store.sync().expect("sync");
            store.close();
            assert!(matches!(store.get(1), Err(CallbackError::ShutDown)));
        }
        let (store, loaded) = Store::open(&path).expect("reopen");
        let found: Vec<_> = loaded.events.iter().map(|(s, p, k, f, _)| (*s, p.as_str(), k.as_str(), *f)).collect();
        assert_eq!(found, vec![(1, "p", "b", 4), (2, "q", "a", 0)]);
        assert!(loaded.events.iter().all(|e| e.4.is_some_and(|at| at + 60_000 > unix_ms_now())), "enqueue times kept");
        let e = store.get(1).expect("get").expect("queued");
        assert_eq!((e.body.as_slice(), e.failures), (&b"{\"n\":1}"[..], 4));
        let seqs = store.append(&[("p", "c", b"{}")], |s| s.to_vec()).expect("append");
        assert_eq!(seqs, vec![3], "sequence numbers are never reused");
    }

    /// Dead letters come back into the queue under new sequence numbers (a project's, or all),
    /// or are deleted; beyond the cap the oldest are dropped as new ones come.
    #[test]
    fn dead_letters_are_revived_purged_and_capped() {
        let path = temp_path("revive");
        let (store, _) = Store::open(&path).expect("open");
        let store = store.with_dead_letter_cap(Some(3));
        let rows: [Row<'_>; 4] =
            [("p", "a", b"{\"n\":0}"), ("q", "a", b"{}"), ("p", "b", b"{\"n\":2}"), ("p", "a", b"{}")];
        store.append(&rows, |_| ()).expect("append");
        assert_eq!(store.bury(&[(0, 1), (1, 1), (2, 1)], "HTTP 500").expect("bury"), Buried { moved: 3, trimmed: 0 });
        assert_eq!(
            store.bury(&[(3, 2)], "expired").expect("bury"),
            Buried { moved: 1, trimmed: 1 },
            "over the cap of 3"
        );
        let dead: Vec<u64> = store.dead_letters().expect("list").iter().map(|d| d.id.0).collect();
        assert_eq!(dead, vec![1, 2, 3], "the oldest went");
        assert_eq!(store.dead_letter_count(), 3);
        let revived = store.revive(Some("p"), |r| r.to_vec()).expect("revive");
        assert_eq!(revived, vec![(4, "p".to_string(), "b".to_string()), (5, "p".to_string(), "a".to_string())]);
        assert_eq!(store.get(4).expect("get").map(|e| (e.body, e.failures, e.id)), Some((b"{\"n\":2}".to_vec(), 0, 2)));
        assert_eq!(store.get(5).expect("get").map(|e| e.id), Some(3), "a revived event keeps its first id");
        assert_eq!(store.dead_letter_count(), 1);
        assert_eq!(store.dead_letters().expect("list").len(), 1, "q's stays");
        // Given up and revived again: still its first id, as listed and as sent.
        assert_eq!(store.bury(&[(5, 1)], "HTTP 500").expect("bury").moved, 1);
        let listed: Vec<u64> = store.dead_letters().expect("list").iter().map(|d| d.id.0).collect();
        assert_eq!(listed, vec![1, 3]);
        let again = store.revive(Some("p"), |r| r.to_vec()).expect("revive");
        assert_eq!(again, vec![(6, "p".to_string(), "a".to_string())]);
        assert_eq!(store.get(6).expect("get").map(|e| e.id), Some(3));
        assert_eq!(store.remove(&[4, 6]).expect("remove"), 2);
        assert_eq!(store.purge(Some("p")).expect("purge"), 0);
        assert_eq!(store.purge(None).expect("purge"), 1);
        store.close();
        drop(store);
        let (store, loaded) = Store::open(&path).expect("reopen");
        assert_eq!(loaded.dead_letters, 0);
        assert!(loaded.events.is_empty());
        assert_eq!(store.append(&[("p", "c", b"{}")], |s| s[0]).expect("append"), 7, "never reused");
        assert_eq!(store.get(7).expect("get").map(|e| e.id), Some(7));
    }

    /// Removals and failure counts are committed without a sync, but never more than
    /// [`MAX_UNSYNCED`] in a row; an enqueue or a sync makes them durable.
    #[test]
    fn removals_are_synced_at_least_every_max_unsynced() {
        let path = temp_path("unsynced");
        let (store, _) = Store::open(&path).expect("open");
        let n = MAX_UNSYNCED as usize + 1;
        let rows: Vec<Row<'_>> = (0..n).map(|_| ("p", "a", &b"{}"[..])).collect();
        let seqs = store.append(&rows, |s| s.to_vec()).expect("append");
        assert!(!store.needs_sync());
        store.set_failures(seqs[0], 1).expect("failures");
        assert!(store.needs_sync());
        for seq in &seqs[..n - 2] {
            store.remove(&[*seq]).expect("remove");
            assert!(store.needs_sync());
        }
        // The 257th commit since the last sync syncs.
        store.remove(&[seqs[n - 2]]).expect("remove");
        assert!(!store.needs_sync());
        store.remove(&[seqs[n - 1]]).expect("remove");
        assert!(store.needs_sync());
        store.append(&[("p", "b", b"{}")], |_| ()).expect("append");
        assert!(!store.needs_sync(), "an enqueue syncs");
        store.set_failures(n as u64, 2).expect("failures");
        store.sync().expect("sync");
        assert!(!store.needs_sync());
    }

    #[test]
    fn dead_letters_are_kept_and_listed() {
        let path = temp_path("dead");
        let (store, _) = Store::open(&path).expect("open");
        store.append(&[("p", "a", b"{\"x\":1}")], |_| ()).expect("append");
        assert_eq!(store.bury(&[(0, 3)], "HTTP 500").expect("bury").moved, 1);
        assert_eq!(store.bury(&[(0, 3)], "HTTP 500").expect("bury twice").moved, 0);
        assert_eq!(store.get(0).expect("get"), None);
        store.close();
        drop(store);
        let (store, loaded) = Store::open(&path).expect("reopen");
        assert_eq!(loaded.dead_letters, 1);
        assert!(loaded.events.is_empty());
        let dead = store.dead_letters().expect("list");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].id.0, dead[0].failures, dead[0].last_error.as_str()), (0, 3, "HTTP 500"));
        assert_eq!(store.append(&[("p", "a", b"{}")], |s| s[0]).expect("append"), 1);
    }

    #[test]
    fn damaged_stores_give_errors_or_their_data_never_a_panic() {
        let original = temp_path("damaged-src");
        {
            let (store, _) = Store::open(&original).expect("open");
            for i in 0..20u8 {
                store.append(&[("p", "k", &[b'{', b'"', b'a' + i, b'"', b':', b'1', b'}'])], |_| ()).expect("append");
            }
            store.remove(&[3, 4]).expect("remove");
            store.sync().expect("sync");
        }
        let bytes = std::fs::read(&original).expect("read");
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for cut in [0, 1, 16, 64, 320, 512, 4096, 4097, bytes.len() / 2, bytes.len() - 1] {
            variants.push(bytes[..cut.min(bytes.len())].to_vec());
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = bytes.clone();
            // Half the flips hit the header and first pages, where redb keeps its roots.
            let span = if i % 2 == 0 { v.len().min(8192) } else { v.len() };
            let at = (x as usize) % span;
            v[at] ^= 1 << (x >> 60 & 7);
            variants.push(v);
        }
        let path = temp_path("damaged");
        let mut refused = 0;
        for v in &variants {
            std::fs::write(&path, v).expect("write");
            // Whatever opens must also read without panicking.
            let outcome = std::panic::catch_unwind(|| match Store::open(&path) {
                Ok((store, loaded)) => {
                    for (seq, ..) in &loaded.events {
                        let _ = store.get(*seq);
                    }
                    let _ = store.dead_letters();
                    true
                }
                Err(_) => false,
            });
            match outcome {
                Ok(true) => {}
                Ok(false) => refused += 1,
                Err(_) => panic!("a damaged store panicked after opening"),
            }
        }
        assert!(refused > 0, "truncations must be refused");
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let path = temp_path("twice");
        let (_store, _) = Store::open(&path).expect("open");
        assert!(matches!(Store::open(&path), Err(CallbackError::AlreadyOpen { .. })));
    }

    #[test]
    fn garbage_and_foreign_files_are_refused() {
        let path = temp_path("garbage");
        let mut junk = Vec::new();
        let mut x: u32 = 0x1234_5678;
        for _ in 0..65536 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk.push(x as u8);
        }
        std::fs::write(&path, &junk).expect("write");
        match Store::open(&path) {
            Err(e @ CallbackError::NotAStore { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&*path.to_string_lossy()) && text.contains("not a redb database"), "{text}");
            }
            other => panic!("garbage opened: {other:?}"),
        }
        assert_eq!(std::fs::read(&path).expect("read"), junk, "the file is left as it was");

        // A store that cannot be created (its directory is a file) names the path.
        let blocked = temp_path("blocked");
        let blocker = blocked.with_file_name("not-a-dir");
        std::fs::write(&blocker, b"x").expect("write");
        match Store::open(&blocker.join("store.redb")) {
            Err(e @ CallbackError::Io { .. }) => assert!(e.to_string().contains("not-a-dir"), "{e}"),
            other => panic!("{other:?}"),
        }

        // A truncated store: the first page of a real one.
        let real = temp_path("truncated");
        {
            let (store, _) = Store::open(&real).expect("open");
            store.append(&[("p", "a", b"{}")], |_| ()).expect("append");
        }
        let bytes = std::fs::read(&real).expect("read");
        std::fs::write(&real, &bytes[..bytes.len().min(700)]).expect("truncate");
        match Store::open(&real) {
            Err(CallbackError::NotAStore { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!("truncated store: {other:?}"),
        }

        let path = temp_path("foreign");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            {
                let t: TableDefinition<'_, &str, &str> = TableDefinition::new("settings");
                txn.open_table(t).expect("table").insert("a", "b").expect("insert");
            }
            txn.commit().expect("commit");
        }
        match Store::open(&path) {
            Err(CallbackError::NotAStore { reason, .. }) => assert!(reason.contains("settings"), "{reason}"),
            other => panic!("foreign database opened: {other:?}"),
        }

        let path = temp_path("newer");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META).expect("meta").insert("layout", 99).expect("insert");
            txn.commit().expect("commit");
        }
        match Store::open(&path) {
            Err(CallbackError::NotAStore { reason, .. }) => assert!(reason.contains("99"), "{reason}"),
            other => panic!("newer layout opened: {other:?}"),
        }
    }
}
