//! Callback delivery throughput: events committed to the store and delivered to a local receiver
//! that answers every request with an empty 200, end to end (enqueue in batches as the gateway's
//! writer does, delivery, removal from the store), on the store's real disk.
//!
//! The figure of interest is events per second through the whole queue; delivery is bound by the
//! store's commits, not by HTTP on loopback. `disk_sync_4k` is what one disk sync costs on the
//! same file system.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::path::PathBuf;
use std::time::{Duration, Instant};

use callbacks::{CallbackConfig, Callbacks, Delivery, ProjectCallbacks};
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Events per measured round.
const EVENTS: usize = 1000;
/// Most events committed in one store transaction (the gateway writer's batch).
const BATCH: usize = 256;

/// Serves HTTP/1.1 keep-alive connections, answering each request with `200` and no body.
async fn receiver() -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn));
        }
    });
    Ok(addr)
}

async fn serve(mut conn: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // One request: the head, then Content-Length bytes of body.
        let (head_end, body_len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, len);
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_end + body_len {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        if conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
            return;
        }
    }
}

fn body(n: usize) -> serde_json::Value {
    serde_json::json!({
        "sessionId": "1_MX4xMjM0NTZ-fjE3MDAwMDAwMDAwMDB-YWJj", "projectId": "123456",
        "event": "callUpdated", "state": "ACTIVE", "timestamp": 1_700_000_000_000u64 + n as u64,
        "call": {"id": format!("call-{}", n % 100), "connectionId": "k", "createdAt": 1_700_000_000_000u64},
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir: PathBuf = std::env::temp_dir().join(format!("callbacks-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let callbacks = rt.block_on(async {
        let addr = receiver().await.expect("receiver");
        let mut config = CallbackConfig::default();
        config.projects.insert("123456".into(), ProjectCallbacks::new(format!("http://{addr}/cb")));
        Callbacks::open(&dir.join("bench.redb"), config).await.expect("open")
    });
    let mut group = c.benchmark_group("callbacks");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(BenchmarkId::new("enqueue_and_deliver", EVENTS), |b| {
        b.iter_custom(|rounds| {
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let start = Instant::now();
                for first in (0..EVENTS).step_by(BATCH) {
                    let batch = (first..(first + BATCH).min(EVENTS)).map(|n| Delivery {
                        project: "123456".into(),
                        order_key: format!("call-{}", n % 100),
                        body: body(n),
                    });
                    callbacks.enqueue_many(batch).expect("enqueue");
                }
                assert!(rt.block_on(callbacks.flush(Duration::from_secs(120))), "delivered in time");
                total += start.elapsed();
            }
            total
        })
    });
    // What one disk sync costs here: the bound on deliveries when every removal synced.
    group.throughput(Throughput::Elements(1));
    let mut file = std::fs::File::create(dir.join("sync-probe")).expect("probe file");
    group.bench_function("disk_sync_4k", |b| {
        use std::io::{Seek, Write};
        let page = [7u8; 4096];
        b.iter(|| {
            file.seek(std::io::SeekFrom::Start(0)).expect("seek");
            file.write_all(&page).expect("write");
            file.sync_data().expect("sync");
        })
    });
    group.finish();
    rt.block_on(callbacks.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
