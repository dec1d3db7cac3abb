//! `Callbacks` against a real HTTP receiver on loopback: order, retries, independence of keys,
//! signing, TLS, durability across shutdown, drop and a killed process, hostile store files.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use callbacks::{CallbackConfig, CallbackError, Callbacks, Enqueued, ProjectCallbacks};
use common::{
    assert_attempts_ordered, delivered_by_key, event, fast_config, open_when_free, temp_store, Receiver, Recorded,
    Reply,
};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(20);

fn config_for(projects: &[(&str, ProjectCallbacks)]) -> CallbackConfig {
    let mut c = fast_config();
    for (p, t) in projects {
        c.projects.insert(p.to_string(), t.clone());
    }
    c
}

fn expect_in_order(delivered: &BTreeMap<(String, String), Vec<u64>>, project: &str, key: &str, count: u64) {
    let got = delivered.get(&(project.to_string(), key.to_string())).cloned().unwrap_or_default();
    assert_eq!(got, (0..count).collect::<Vec<_>>(), "{project}/{key}");
}

/// Polls the counters until `done` holds (bounded by [`WAIT`]); returns the last reading.
async fn wait_for_stats(cb: &Callbacks, done: impl Fn(&callbacks::CallbackStats) -> bool) -> callbacks::CallbackStats {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let stats = cb.stats();
        if done(&stats) || std::time::Instant::now() >= end {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A port on loopback that refuses connections (bound, then released).
fn refusing_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}/cb", l.local_addr().expect("addr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_each_key_in_order() {
    let rx = Receiver::start().await;
    let path = temp_store("order");
    let cb = Callbacks::open(&path, config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))])).await.expect("open");
    // Four threads enqueue concurrently, each its own key, plus interleaved keys from here.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cb = cb.clone();
            std::thread::spawn(move || {
                for n in 0..25 {
                    let queued = cb.enqueue(event("p", &format!("thread-{t}"), n)).expect("enqueue");
                    assert!(matches!(queued, Enqueued::Queued(_)));
                }
            })
        })
        .collect();
    for n in 0..25 {
        for key in ["call-a", "call-b"] {
            cb.enqueue(event("p", key, n)).expect("enqueue");
        }
    }
    for t in threads {
        t.join().expect("enqueuing thread");
    }
    assert!(cb.flush(WAIT).await, "backlog never emptied: {:?}", cb.stats());
    let requests = rx.requests();
    assert_eq!(requests.len(), 150, "exactly once with a healthy receiver");
    let delivered = delivered_by_key(&requests);
    for t in 0..4 {
        expect_in_order(&delivered, "p", &format!("thread-{t}"), 25);
    }
    expect_in_order(&delivered, "p", "call-a", 25);
    expect_in_order(&delivered, "p", "call-b", 25);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/cb");
        assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert!(r.headers.get("authorization").is_none(), "unsigned project");
    }
    // Every event has its own id, in the webhook-id header of an unsigned project too.
    let mut ids: Vec<&str> =
        requests.iter().filter_map(|r| r.headers.get(callbacks::EVENT_ID_HEADER)?.to_str().ok()).collect();
    assert_eq!(ids.len(), 150, "an id on each request");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 150, "ids differ between events");
    let stats = cb.stats();
    assert_eq!((stats.backlog, stats.delivered, stats.failed_attempts), (0, 150, 0));
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_until_delivered_keeping_order() {
    let rx = Receiver::start().await;
    // The first 7 requests fail, then every third one until the 60th.
    rx.set_policy(|_, n| if n < 7 || (n < 60 && n % 3 == 1) { Reply::Status(500) } else { Reply::Status(200) });
    let path = temp_store("retry");
    let cb = Callbacks::open(&path, config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))])).await.expect("open");
    for n in 0..15 {
        for key in ["a", "b", "c"] {
            cb.enqueue(event("p", key, n)).expect("enqueue");
        }
    }
    assert!(cb.flush(WAIT).await, "backlog never emptied: {:?}", cb.stats());
    let requests = rx.requests();
    assert_attempts_ordered(&requests);
    let delivered = delivered_by_key(&requests);
    for key in ["a", "b", "c"] {
        expect_in_order(&delivered, "p", key, 15);
    }
    let failures = requests.iter().filter(|r| !r.delivered()).count() as u64;
    assert!(failures >= 7, "{failures}");
    let stats = cb.stats();
    assert_eq!((stats.delivered, stats.failed_attempts, stats.backlog), (45, failures, 0));
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_or_project_never_blocks_the_others() {
    let rx = Receiver::start().await;
    rx.set_policy(|r, _| if r.key() == "poison" { Reply::Status(503) } else { Reply::Status(200) });
    let path = temp_store("independent");
    let cfg =
        config_for(&[("up", ProjectCallbacks::new(rx.url("/up"))), ("down", ProjectCallbacks::new(refusing_url()))]);
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    for n in 0..10 {
        cb.enqueue(event("down", "call-1", n)).expect("enqueue");
        cb.enqueue(event("up", "poison", n)).expect("enqueue");
        cb.enqueue(event("up", "call-1", n)).expect("enqueue");
        cb.enqueue(event("up", "call-2", n)).expect("enqueue");
    }
    let healthy = |reqs: &[Recorded]| reqs.iter().filter(|r| r.delivered()).count() == 20;
    assert!(rx.wait_until(WAIT, healthy).await, "healthy keys not delivered: {:?}", cb.stats());
    // Let the failing ones fail a few more times, then check nothing of theirs got through.
    let poison_attempts = |reqs: &[Recorded]| reqs.iter().filter(|r| r.key() == "poison").count() >= 3;
    assert!(rx.wait_until(WAIT, poison_attempts).await);
    let requests = rx.requests();
    assert_attempts_ordered(&requests);
    let delivered = delivered_by_key(&requests);
    expect_in_order(&delivered, "up", "call-1", 10);
    expect_in_order(&delivered, "up", "call-2", 10);
    assert!(requests.iter().filter(|r| r.key() == "poison").all(|r| r.n() == 0), "poison's later events wait");
    assert!(requests.iter().all(|r| r.project() == "up"), "the down project reached nobody");
    // The receiver saw the last 2xx a moment before the delivery task removed the event.
    let stats = wait_for_stats(&cb, |s| s.backlog == 20).await;
    assert_eq!(stats.backlog, 20, "10 of the down project and 10 poison events wait: {stats:?}");
    assert!(stats.failed_attempts >= 3);
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_callbacks_verify_with_the_secret_and_bind_the_body() {
    let rx = Receiver::start().await;
    // The receiver checks each signed request the way an application would.
    rx.set_policy(|r, _| {
        let Some(auth) = r.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return Reply::Status(if r.project() == "plain" { 200 } else { 401 });
        };
        let Ok(jwt) = session::jwt::UnverifiedJwt::decode(auth) else { return Reply::Status(400) };
        if jwt.verify_hs256(b"the-project-secret").is_err() {
            return Reply::Status(401);
        }
        let hash = hex::encode(Sha256::digest(&r.body));
        let (iat, exp) = (jwt.claim_seconds("iat").unwrap_or(0), jwt.claim_seconds("exp").unwrap_or(0));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let ok = jwt.claim_str("payload_hash") == Some(hash.as_str())
            && jwt.claim_str("iss") == Some(callbacks::ISSUER)
            && exp - iat == 300
            && (iat - now).abs() < 60
            && jwt.claim_str("jti").is_some_and(|j| !j.is_empty());
        Reply::Status(if ok { 200 } else { 403 })
    });
    let path = temp_store("signed");
    let cfg = config_for(&[
        ("signed", ProjectCallbacks::signed(rx.url("/s"), "the-project-secret")),
        ("plain", ProjectCallbacks::new(rx.url("/p"))),
        ("wrong", ProjectCallbacks::signed(rx.url("/w"), "not-the-secret")),
    ]);
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    for n in 0..5 {
        for p in ["signed", "plain", "wrong"] {
            cb.enqueue(event(p, "call", n)).expect("enqueue");
        }
    }
    let done = |reqs: &[Recorded]| {
        reqs.iter().filter(|r| r.delivered()).count() == 10
            && reqs.iter().filter(|r| r.project() == "wrong").count() >= 2
    };
    assert!(rx.wait_until(WAIT, done).await, "{:?}", cb.stats());
    let requests = rx.requests();
    let delivered = delivered_by_key(&requests);
    expect_in_order(&delivered, "signed", "call", 5);
    expect_in_order(&delivered, "plain", "call", 5);
    assert!(!delivered.contains_key(&("wrong".to_string(), "call".to_string())), "a bad signature must fail the check");
    assert!(requests.iter().filter(|r| r.project() == "wrong").all(|r| r.reply == Reply::Status(401)));
    // The same event keeps its jti across attempts; different events differ.
    let jtis: Vec<String> = requests
        .iter()
        .filter(|r| r.project() == "signed")
        .filter_map(|r| r.headers.get("authorization")?.to_str().ok().map(str::to_string))
        .filter_map(|t| session::jwt::UnverifiedJwt::decode(&t).ok()?.claim_str("jti").map(str::to_string))
        .collect();
    let mut unique = jtis.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((jtis.len(), unique.len()), (5, 5));
    let wrong: Vec<_> = requests.iter().filter(|r| r.project() == "wrong").collect();
    let first_jti = |r: &Recorded| {
        let t = r.headers.get("authorization")?.to_str().ok()?.to_string();
        session::jwt::UnverifiedJwt::decode(&t).ok()?.claim_str("jti").map(str::to_string)
    };
    assert_eq!(first_jti(wrong[0]), first_jti(wrong[1]), "retries carry the event's jti");
    let header_id = |r: &Recorded| r.headers.get(callbacks::EVENT_ID_HEADER)?.to_str().ok().map(str::to_string);
    assert_eq!(header_id(wrong[0]), first_jti(wrong[0]), "the webhook-id header is the jti");
    assert_eq!(header_id(wrong[0]), header_id(wrong[1]), "and stays across retries");
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_events_survive_shutdown_and_reopen() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, _| Reply::Close);
    let path = temp_store("shutdown");
    let cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    let cb = Callbacks::open(&path, cfg.clone()).await.expect("open");
    for n in 0..10 {
        for key in ["a", "b", "c"] {
            cb.enqueue(event("p", key, n)).expect("enqueue");
        }
    }
    assert!(rx.wait_until(WAIT, |r| r.len() >= 6).await, "the receiver was tried");
    assert_eq!(cb.stats().backlog, 30);
    let other_clone = cb.clone();
    cb.shutdown().await;
    assert!(matches!(other_clone.enqueue(event("p", "a", 99)), Err(CallbackError::ShutDown)));
    drop(other_clone);

    rx.settle().await;
    rx.set_policy(|_, _| Reply::Status(200));
    let before = rx.requests().len();
    let cb = Callbacks::open(&path, cfg.clone()).await.expect("reopen right after shutdown");
    assert_eq!(cb.stats().backlog, 30, "loaded from disk");
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let after: Vec<Recorded> = rx.requests().split_off(before);
    let delivered = delivered_by_key(&after);
    for key in ["a", "b", "c"] {
        expect_in_order(&delivered, "p", key, 10);
    }
    assert_eq!(after.len(), 30, "each exactly once after the restart");
    cb.shutdown().await;

    // Delivered events are gone for good.
    let cb = Callbacks::open(&path, cfg).await.expect("third open");
    assert_eq!(cb.stats().backlog, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.requests().len(), before + 30, "nothing delivered twice");
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_handle_is_dropped_without_shutdown() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, _| Reply::Status(503));
    let path = temp_store("drop");
    let cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    let cb = Callbacks::open(&path, cfg.clone()).await.expect("open");
    for n in 0..20 {
        cb.enqueue(event("p", if n % 2 == 0 { "even" } else { "odd" }, n / 2)).expect("enqueue");
    }
    drop(cb);
    rx.settle().await;
    rx.set_policy(|_, _| Reply::Status(200));
    let before = rx.requests().len();
    let cb = open_when_free(&path, cfg).await;
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let after = rx.requests().split_off(before);
    let delivered = delivered_by_key(&after);
    expect_in_order(&delivered, "p", "even", 10);
    expect_in_order(&delivered, "p", "odd", 10);
    cb.shutdown().await;
}

const CRASH_STORE: &str = "CALLBACKS_TEST_CRASH_STORE";
const CRASH_URL: &str = "CALLBACKS_TEST_CRASH_URL";
/// `wait`: wait for the store's sync of the removals before aborting.
const CRASH_WAIT: &str = "CALLBACKS_TEST_CRASH_WAIT";

/// Run only as the child of the abort tests: enqueues 30 events, lets the delivery task work on
/// them for 100 ms (or, with [`CRASH_WAIT`], until they are delivered and then a second and a
/// half), then aborts the process (no destructors, no shutdown, no final sync).
#[test]
#[ignore = "a helper: runs in a child process of the abort tests"]
fn crash_child() {
    let (Ok(store), Ok(url)) = (std::env::var(CRASH_STORE), std::env::var(CRASH_URL)) else { return };
    let wait = std::env::var(CRASH_WAIT).is_ok();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cb = Callbacks::open(std::path::Path::new(&store), config_for(&[("p", ProjectCallbacks::new(url))]))
            .await
            .expect("child open");
        for n in 0..10 {
            for key in ["x", "y", "z"] {
                cb.enqueue(event("p", key, n)).expect("child enqueue");
            }
        }
        if wait {
            assert!(cb.flush(WAIT).await, "child delivered everything");
            tokio::time::sleep(Duration::from_millis(1500)).await;
        } else {
            // Give the delivery task time to make (failing) attempts and write failure counts.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("ENQUEUED 30");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::abort();
    });
}

/// Runs [`crash_child`] against `store` and `url` and checks that it got to the abort.
async fn run_crash_child(store: &std::path::Path, url: String, wait: bool) {
    let exe = std::env::current_exe().expect("test binary");
    let store = store.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(exe);
        child.args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
        child.env(CRASH_STORE, &store).env(CRASH_URL, &url);
        if wait {
            child.env(CRASH_WAIT, "1");
        }
        child.output().expect("run the child")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ENQUEUED 30"),
        "child did not get to the crash: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the child aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_process_aborts() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, _| Reply::Close);
    let path = temp_store("abort");
    run_crash_child(&path, rx.url("/cb"), false).await;

    rx.settle().await;
    rx.set_policy(|_, _| Reply::Status(200));
    let before = rx.requests().len();
    let cb = Callbacks::open(&path, config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]))
        .await
        .expect("reopen after the crash");
    assert_eq!(cb.stats().backlog, 30);
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let after = rx.requests().split_off(before);
    let delivered = delivered_by_key(&after);
    for key in ["x", "y", "z"] {
        expect_in_order(&delivered, "p", key, 10);
    }
    cb.shutdown().await;
}

/// Removals of delivered events are committed without a disk sync each, and synced within a
/// second: a process that aborts a second and a half after its deliveries sends none of them
/// again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_stay_delivered_after_an_abort() {
    let rx = Receiver::start().await;
    let path = temp_store("abort-delivered");
    run_crash_child(&path, rx.url("/cb"), true).await;
    let delivered = delivered_by_key(&rx.requests());
    for key in ["x", "y", "z"] {
        expect_in_order(&delivered, "p", key, 10);
    }
    let cb = Callbacks::open(&path, config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]))
        .await
        .expect("reopen after the crash");
    assert_eq!(cb.stats().backlog, 0, "the removals were synced before the abort");
    cb.shutdown().await;
}

#[tokio::test]
async fn a_garbage_store_file_is_a_clear_error() {
    let path = temp_store("garbage");
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).expect("write");
    match Callbacks::open(&path, CallbackConfig::default()).await {
        Err(e @ CallbackError::NotAStore { .. }) => {
            let text = e.to_string();
            assert!(text.contains("callbacks.redb") && text.contains("not a usable callback store"), "{text}");
        }
        other => panic!("garbage opened: {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read"), garbage, "left untouched");

    let path = temp_store("second-open");
    let cb = Callbacks::open(&path, CallbackConfig::default()).await.expect("open");
    assert!(matches!(Callbacks::open(&path, CallbackConfig::default()).await, Err(CallbackError::AlreadyOpen { .. })));
    cb.shutdown().await;

    let mut bad = CallbackConfig::default();
    bad.projects.insert("p".into(), ProjectCallbacks::new("ftp://example.com/"));
    let path = temp_store("bad-url");
    assert!(matches!(Callbacks::open(&path, bad).await, Err(CallbackError::InvalidUrl { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_after_max_attempts_and_the_key_moves_on() {
    let rx = Receiver::start().await;
    rx.set_policy(|r, _| if r.n() == 1 { Reply::Status(500) } else { Reply::Status(200) });
    let path = temp_store("dead");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    cfg.max_attempts = Some(3);
    let cb = Callbacks::open(&path, cfg.clone()).await.expect("open");
    for n in 0..4 {
        cb.enqueue(event("p", "call", n)).expect("enqueue");
    }
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let requests = rx.requests();
    let attempts: Vec<u64> = requests.iter().map(|r| r.n()).collect();
    assert_eq!(attempts, vec![0, 1, 1, 1, 2, 3], "three tries of event 1, then the key moves on");
    let stats = cb.stats();
    assert_eq!((stats.delivered, stats.failed_attempts, stats.dead_letters, stats.backlog), (3, 3, 1, 0));
    let dead = cb.dead_letters().expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].order_key.as_str(), dead[0].failures, dead[0].last_error.as_str()), ("call", 3, "HTTP 500"));
    let body: serde_json::Value = serde_json::from_slice(&dead[0].body).expect("json");
    assert_eq!(body["n"], 1);
    cb.shutdown().await;
    let cb = Callbacks::open(&path, cfg).await.expect("reopen");
    assert_eq!(cb.stats().dead_letters, 1, "dead letters are kept across restarts");
    cb.shutdown().await;
}

/// An event its receiver refuses for good (a 400, 413, 422...) is given up after five refusals
/// even with no `max_attempts`, so the key's later events go on; the project's circuit stays
/// closed (the receiver answered). A 429 is not such a refusal: it is retried until taken, and
/// failures before the refusals do not use them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_refused_for_good_is_given_up_and_the_key_moves_on() {
    let rx = Receiver::start().await;
    let throttled = std::sync::atomic::AtomicU32::new(0);
    let outage = std::sync::atomic::AtomicU32::new(0);
    rx.set_policy(move |r, _| match r.n() {
        1 if outage.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 => Reply::Status(503),
        1 => Reply::Status(400),
        2 if throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 => Reply::Status(429),
        _ => Reply::Status(200),
    });
    let path = temp_store("refused");
    let cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    assert_eq!(cfg.max_attempts, None);
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    for n in 0..3 {
        cb.enqueue(event("p", "call", n)).expect("enqueue");
    }
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let attempts: Vec<u64> = rx.requests().iter().map(|r| r.n()).collect();
    assert_eq!(
        attempts,
        vec![0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2],
        "three 503s, then five refusals of the refused one; the 429s retried until taken"
    );
    assert_eq!(cb.stats().open_circuits, 0, "refusals say nothing of the receiver's health");
    let stats = cb.stats();
    assert_eq!((stats.delivered, stats.dead_letters, stats.backlog), (2, 1, 0));
    let dead = cb.dead_letters().expect("dead letters");
    assert_eq!((dead[0].failures, dead[0].last_error.as_str()), (8, "HTTP 400"));
    cb.shutdown().await;
}

/// A 2xx whose body never ends is a delivery: the event is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_with_an_endless_body_is_delivered_once() {
    let rx = Receiver::start().await;
    rx.set_policy(|r, _| if r.n() == 0 { Reply::EndlessBody } else { Reply::Status(200) });
    let path = temp_store("endless");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    cfg.request_timeout = Duration::from_millis(500);
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    cb.enqueue(event("p", "call", 0)).expect("enqueue");
    cb.enqueue(event("p", "call", 1)).expect("enqueue");
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let attempts: Vec<u64> = rx.requests().iter().map(|r| r.n()).collect();
    assert_eq!(attempts, vec![0, 1], "no second delivery of the first");
    assert_eq!((cb.stats().delivered, cb.stats().failed_attempts), (2, 0));
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_retried() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, n| if n == 0 { Reply::Hang(Duration::from_secs(3)) } else { Reply::Status(200) });
    let path = temp_store("timeout");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    cfg.request_timeout = Duration::from_millis(200);
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    cb.enqueue(event("p", "call", 0)).expect("enqueue");
    cb.enqueue(event("p", "call", 1)).expect("enqueue");
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let requests = rx.requests();
    assert_eq!(
        requests.iter().map(|r| (r.n(), r.delivered())).collect::<Vec<_>>(),
        vec![(0, false), (0, true), (1, true)]
    );
    assert_eq!(cb.stats().failed_attempts, 1);
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_url_takes_over_waiting_events() {
    let rx = Receiver::start().await;
    let path = temp_store("new-url");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(refusing_url()))]);
    // Long backoff: only set_project can make the retry come soon.
    cfg.initial_backoff = Duration::from_secs(60);
    cfg.max_backoff = Duration::from_secs(60);
    cfg.jitter = 0.0;
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    for n in 0..3 {
        cb.enqueue(event("p", "call", n)).expect("enqueue");
    }
    wait_for_stats(&cb, |s| s.failed_attempts > 0).await;
    assert_eq!(cb.stats().failed_attempts, 1);
    assert!(matches!(cb.set_project("p", ProjectCallbacks::new("gopher://x")), Err(CallbackError::InvalidUrl { .. })));
    cb.set_project("p", ProjectCallbacks::new(rx.url("/new"))).expect("set");
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    expect_in_order(&delivered_by_key(&rx.requests()), "p", "call", 3);
    assert!(rx.requests().iter().all(|r| r.path == "/new"));
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_without_a_target_drop_new_events_and_keep_old_ones() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, _| Reply::Status(500));
    let path = temp_store("targets");
    let cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb"))), ("q", ProjectCallbacks::new(rx.url("/cb")))]);
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    assert_eq!(cb.enqueue(event("nobody", "call", 0)).expect("enqueue"), Enqueued::NoCallbackUrl);
    let results = cb
        .enqueue_many([event("p", "call", 0), event("nobody", "call", 1), event("q", "call", 0), event("q", "call", 1)])
        .expect("enqueue_many");
    assert!(matches!(results[0], Enqueued::Queued(_)));
    assert_eq!(results[1], Enqueued::NoCallbackUrl);
    assert!(matches!((results[2], results[3]), (Enqueued::Queued(a), Enqueued::Queued(b)) if a < b));
    assert_eq!((cb.stats().backlog, cb.stats().dropped), (3, 2));

    // Removing q discards its two events.
    cb.remove_project("q");
    let stats = wait_for_stats(&cb, |s| s.backlog == 1).await;
    assert_eq!((stats.backlog, stats.dropped), (1, 4));
    assert_eq!(cb.enqueue(event("q", "call", 2)).expect("enqueue"), Enqueued::NoCallbackUrl);
    cb.shutdown().await;

    // Reopened without any project: p's event waits on disk until p has a target again.
    rx.settle().await;
    rx.set_policy(|_, _| Reply::Status(200));
    let before = rx.requests().len();
    let cb = Callbacks::open(&path, fast_config()).await.expect("reopen");
    assert_eq!(cb.stats().backlog, 1);
    assert!(!cb.flush(Duration::from_millis(100)).await, "nowhere to send it yet");
    assert_eq!(rx.requests().len(), before);
    cb.set_project("p", ProjectCallbacks::new(rx.url("/cb"))).expect("set");
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let after = rx.requests().split_off(before);
    assert_eq!(after.iter().map(|r| (r.project(), r.n())).collect::<Vec<_>>(), vec![("p".to_string(), 0)]);
    cb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_over_https_and_checks_the_certificate() {
    let (acceptor, ca) = test_tls();
    let rx = Receiver::start_with(Some(acceptor)).await;
    let url = format!("https://127.0.0.1:{}/secure", rx.addr.port());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("ca");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut cfg = config_for(&[("p", ProjectCallbacks::signed(url.clone(), "k"))]);
    cfg.tls = Some(Arc::new(client));
    let path = temp_store("https");
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    for n in 0..3 {
        cb.enqueue(event("p", "call", n)).expect("enqueue");
    }
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    expect_in_order(&delivered_by_key(&rx.requests()), "p", "call", 3);
    assert!(rx.requests().iter().all(|r| r.path == "/secure" && r.headers.contains_key("authorization")));
    cb.shutdown().await;

    // With the system roots only, the test CA is not trusted: attempts fail before any request.
    let before = rx.requests().len();
    let path = temp_store("https-untrusted");
    let cb = Callbacks::open(&path, config_for(&[("p", ProjectCallbacks::new(url))])).await.expect("open");
    cb.enqueue(event("p", "call", 0)).expect("enqueue");
    let stats = wait_for_stats(&cb, |s| s.failed_attempts >= 2).await;
    assert!(stats.failed_attempts >= 2, "{stats:?}");
    assert_eq!(rx.requests().len(), before, "no request over an unverified connection");
    cb.shutdown().await;
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, made at test time.
fn test_tls() -> (tokio_rustls::TlsAcceptor, rustls::pki_types::CertificateDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "callbacks test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let mut leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).expect("leaf cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    (tokio_rustls::TlsAcceptor::from(Arc::new(server)), ca.der().clone())
}

/// A receiver that is down for a second, with twenty calls' events waiting: with the circuit
/// breaker (the default, after 5 failures in a row) it sees the first attempts and then one probe
/// at a time; without it, every key keeps retrying on its own backoff. Once it is up again, the
/// next probe's success lets every event through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_gets_one_probe_at_a_time() {
    let mut counts = Vec::new();
    for circuit_after in [None, Some(5)] {
        let rx = Receiver::start().await;
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_up = up.clone();
        rx.set_policy(move |_, _| {
            if is_up.load(std::sync::atomic::Ordering::Relaxed) {
                Reply::Status(200)
            } else {
                Reply::Status(503)
            }
        });
        let path = temp_store(&format!("circuit-{}", circuit_after.is_some()));
        let mut cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
        cfg.circuit_after = circuit_after;
        let cb = Callbacks::open(&path, cfg).await.expect("open");
        for n in 0..20 {
            cb.enqueue(event("p", &format!("call-{n}"), 0)).expect("enqueue");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let while_down = rx.requests().len();
        let open = cb.stats().open_circuits;
        up.store(true, std::sync::atomic::Ordering::Relaxed);
        let stats = wait_for_stats(&cb, |s| s.delivered == 20 && s.backlog == 0).await;
        assert_eq!((stats.delivered, stats.backlog), (20, 0), "{stats:?}");
        assert_eq!(stats.open_circuits, 0, "closed once the receiver answers");
        counts.push((while_down, open));
        cb.shutdown().await;
    }
    let [(without, open_without), (with, open_with)] = counts[..] else { panic!("two runs") };
    assert_eq!((open_without, open_with), (0, 1));
    // Without: 20 keys retrying every 10-40 ms for a second (hundreds). With: the 20 first
    // attempts and a probe per cooldown (10, 20, 40, 40... ms with jitter: a few dozen).
    assert!(without >= 200, "without a breaker: {without} requests in a second");
    assert!(with <= 20 + 60, "with one: {with} requests in a second");
}

/// An event still undelivered `max_age` after its enqueue is given up (a dead letter), whatever
/// its key is doing, and the key's next event goes ahead; once the receiver is back, the dead
/// letters are queued again (`replay_dead_letters`) and delivered in their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_become_dead_letters_and_can_be_replayed() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, _| Reply::Status(503));
    let path = temp_store("max-age");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    cfg.max_age = Some(Duration::from_millis(400));
    let cb = Callbacks::open(&path, cfg).await.expect("open");
    for n in 0..3 {
        cb.enqueue(event("p", "call", n)).expect("enqueue");
    }
    let stats = wait_for_stats(&cb, |s| s.dead_letters == 3 && s.backlog == 0).await;
    assert_eq!((stats.dead_letters, stats.backlog, stats.delivered), (3, 0, 0), "{stats:?}");
    let dead = cb.dead_letters().expect("list");
    assert!(dead.iter().all(|d| d.last_error.starts_with("undelivered for")), "{dead:?}");
    rx.settle().await;
    // The ids the receiver saw: a replayed event keeps its own, for the receiver to dedupe by.
    let ids_by_n = |requests: &[Recorded]| {
        let mut ids: Vec<(u64, String)> = requests
            .iter()
            .filter_map(|r| Some((r.n(), r.headers.get(callbacks::EVENT_ID_HEADER)?.to_str().ok()?.to_string())))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let first_ids = ids_by_n(&rx.requests());
    rx.set_policy(|_, _| Reply::Status(200));
    let before = rx.requests().len();
    assert_eq!(cb.replay_dead_letters(Some("other")).expect("replay"), 0);
    assert_eq!(cb.replay_dead_letters(Some("p")).expect("replay"), 3);
    assert!(cb.flush(WAIT).await, "{:?}", cb.stats());
    let after = rx.requests().split_off(before);
    expect_in_order(&delivered_by_key(&after), "p", "call", 3);
    // Events 0, 1 and 2 were enqueued as 0, 1 and 2 in this fresh store: those stay their ids.
    let replayed_ids = ids_by_n(&after);
    assert_eq!(replayed_ids.len(), 3, "{replayed_ids:?}");
    assert!(replayed_ids.iter().all(|(n, id)| id.ends_with(&format!("-{n}"))), "{replayed_ids:?}");
    assert!(first_ids.iter().all(|id| replayed_ids.contains(id)), "{first_ids:?} then {replayed_ids:?}");
    let stats = cb.stats();
    assert_eq!((stats.dead_letters, stats.backlog, stats.delivered), (0, 0, 3), "{stats:?}");
    assert!(cb.dead_letters().expect("list").is_empty());
    cb.shutdown().await;
}

/// An event's age counts from its enqueue, across restarts: events left by a run that stopped
/// long enough ago are given up as soon as the store opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_age_counts_across_restarts() {
    let rx = Receiver::start().await;
    rx.set_policy(|_, _| Reply::Close);
    let path = temp_store("age-restart");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(rx.url("/cb")))]);
    cfg.max_age = Some(Duration::from_millis(1500));
    let cb = Callbacks::open(&path, cfg.clone()).await.expect("open");
    for n in 0..2 {
        cb.enqueue(event("p", "call", n)).expect("enqueue");
    }
    cb.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let opened = std::time::Instant::now();
    let cb = Callbacks::open(&path, cfg).await.expect("reopen");
    let stats = wait_for_stats(&cb, |s| s.dead_letters == 2 && s.backlog == 0).await;
    assert_eq!((stats.dead_letters, stats.backlog), (2, 0), "{stats:?}");
    assert!(opened.elapsed() < Duration::from_millis(1000), "given up at once, not 1.5 s after the open");
    cb.shutdown().await;
}

/// A project's backlog is capped (`max_backlog_per_project`): beyond it, new events are given up
/// at once as dead letters, and the dead letters themselves are capped (`max_dead_letters`, the
/// oldest deleted) and can be purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_backlog_and_the_dead_letters_are_capped() {
    let path = temp_store("caps");
    let mut cfg = config_for(&[("p", ProjectCallbacks::new(refusing_url()))]);
    cfg.max_backlog_per_project = Some(5);
    cfg.max_dead_letters = Some(2);
    let cb = Callbacks::open(&path, cfg.clone()).await.expect("open");
    for n in 0..8 {
        assert!(matches!(cb.enqueue(event("p", &format!("call{n}"), n)).expect("enqueue"), Enqueued::Queued(_)));
    }
    let stats = wait_for_stats(&cb, |s| s.dead_letters == 2 && s.backlog == 5).await;
    assert_eq!((stats.backlog, stats.dead_letters), (5, 2), "{stats:?}");
    let dead: Vec<u64> = cb.dead_letters().expect("list").iter().map(|d| d.id.0).collect();
    assert_eq!(dead, vec![6, 7], "the newest three given up, the oldest of them deleted");
    cb.shutdown().await;
    // A lower cap after a restart gives up what is over it.
    cfg.max_backlog_per_project = Some(3);
    let cb = open_when_free(&path, cfg).await;
    let stats = wait_for_stats(&cb, |s| s.backlog == 3).await;
    assert_eq!((stats.backlog, stats.dead_letters), (3, 2), "{stats:?}");
    assert_eq!(cb.purge_dead_letters(None).expect("purge"), 2);
    assert_eq!(cb.stats().dead_letters, 0);
    assert!(cb.dead_letters().expect("list").is_empty());
    cb.shutdown().await;
}
