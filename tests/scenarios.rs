//! Application scenarios written for Redis, run unchanged against the
//! memory backend and against a real redis-server through keyway: the
//! results must be the same.

mod common;

use std::time::Duration;

use common::{Keyway, RedisServer};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

async fn connect(kw: &Keyway) -> MultiplexedConnection {
    kw.client().await
}

/// Producers, a delayed set moved in transactions, workers on BRPOP.
async fn job_queue(kw: &Keyway) -> Vec<String> {
    let mut log = Vec::new();
    let mut producer = connect(kw).await;
    for i in 0..6 {
        let _: () = producer.lpush("jobs", format!("now-{i}")).await.unwrap();
    }
    // Delayed jobs: due ones are moved to the queue atomically.
    for (i, due) in [(0, 0), (1, 0), (2, 1_000_000)] {
        let _: () = producer
            .zadd("delayed", format!("later-{i}"), due)
            .await
            .unwrap();
    }
    let due: Vec<String> = producer
        .zrangebyscore_limit("delayed", "-inf", 10, 0, 10)
        .await
        .unwrap();
    for job in &due {
        let (removed, len): (i64, i64) = redis::pipe()
            .atomic()
            .zrem("delayed", job)
            .lpush("jobs", job)
            .query_async(&mut producer)
            .await
            .unwrap();
        log.push(format!("moved {job}: {removed} {len}"));
    }
    // Two workers drain the queue; BRPOP times out when it is empty.
    let mut workers = Vec::new();
    for w in 0..2 {
        let mut c = connect(kw).await;
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let got: Option<(String, String)> = c.brpop("jobs", 0.3).await.unwrap();
                match got {
                    Some((_, job)) => {
                        let _: () = c.rpush(format!("done:{w}"), &job).await.unwrap();
                        done.push(job);
                    }
                    None => return done,
                }
            }
        }));
    }
    // A late job wakes a blocked worker.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = producer.lpush("jobs", "late").await.unwrap();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    log.push(format!("processed {all:?}"));
    let left: i64 = producer.llen("jobs").await.unwrap();
    let delayed: Vec<(String, i64)> = producer.zrange_withscores("delayed", 0, -1).await.unwrap();
    let d0: i64 = producer.llen("done:0").await.unwrap();
    let d1: i64 = producer.llen("done:1").await.unwrap();
    log.push(format!(
        "left {left}, delayed {delayed:?}, done {}",
        d0 + d1
    ));
    log
}

/// A fixed-window limiter (INCR + EXPIRE) and an optimistic one (WATCH).
async fn rate_limiter(kw: &Keyway) -> Vec<String> {
    let mut log = Vec::new();
    let mut c = connect(kw).await;
    for attempt in 0..8 {
        let n: i64 = c.incr("rl:alice", 1).await.unwrap();
        if n == 1 {
            let _: () = c.expire("rl:alice", 60).await.unwrap();
        }
        log.push(format!(
            "fixed {attempt}: {}",
            if n <= 5 { "allowed" } else { "limited" }
        ));
    }
    let ttl: i64 = c.ttl("rl:alice").await.unwrap();
    log.push(format!("ttl {ttl}"));

    // WATCH-based: read, decide, write in MULTI; retry when someone else
    // wrote between the read and the EXEC.
    let mut other = connect(kw).await;
    // WATCH needs a connection of its own (a multiplexed one is shared).
    let mut dedicated = kw.raw().await;
    for attempt in 0..4 {
        let mut tries = 0;
        loop {
            tries += 1;
            dedicated.check("WATCH rl:bob", "+OK\r\n").await;
            dedicated.send(&common::resp(&["GET", "rl:bob"])).await;
            let current = String::from_utf8_lossy(&dedicated.reply().await).into_owned();
            let n: i64 = current
                .lines()
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if attempt == 1 && tries == 1 {
                // Someone else takes a token meanwhile.
                let _: () = other.incr("rl:bob", 1).await.unwrap();
            }
            if n >= 3 {
                dedicated.check("UNWATCH", "+OK\r\n").await;
                log.push(format!("watch {attempt}: limited after {tries} tries"));
                break;
            }
            dedicated.check("MULTI", "+OK\r\n").await;
            dedicated
                .check(&format!("SET rl:bob {} EX 60", n + 1), "+QUEUED\r\n")
                .await;
            dedicated.send(&common::resp(&["EXEC"])).await;
            let exec = dedicated.reply().await;
            if exec == b"*-1\r\n" {
                continue;
            }
            log.push(format!("watch {attempt}: allowed after {tries} tries"));
            break;
        }
    }
    let bob: i64 = c.get("rl:bob").await.unwrap();
    log.push(format!("bob {bob}"));
    log
}

#[tokio::test]
async fn job_queue_and_rate_limiter_behave_as_on_redis() {
    let server = RedisServer::start();
    let on_memory = Keyway::start().await;
    let on_redis = Keyway::with_toml(&format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"app\"\nprefix = \"\"\nbackend = \"r\"\n",
        server.port
    ))
    .await;
    let memory = (job_queue(&on_memory).await, rate_limiter(&on_memory).await);
    let redis = (job_queue(&on_redis).await, rate_limiter(&on_redis).await);
    assert_eq!(
        memory.0,
        vec![
            "moved later-0: 1 7",
            "moved later-1: 1 8",
            "processed [\"late\", \"later-0\", \"later-1\", \"now-0\", \"now-1\", \"now-2\", \"now-3\", \"now-4\", \"now-5\"]",
            "left 0, delayed [(\"later-2\", 1000000)], done 9",
        ]
    );
    assert_eq!(
        memory.1,
        vec![
            "fixed 0: allowed",
            "fixed 1: allowed",
            "fixed 2: allowed",
            "fixed 3: allowed",
            "fixed 4: allowed",
            "fixed 5: limited",
            "fixed 6: limited",
            "fixed 7: limited",
            "ttl 60",
            "watch 0: allowed after 1 tries",
            "watch 1: allowed after 2 tries",
            "watch 2: limited after 1 tries",
            "watch 3: limited after 1 tries",
            "bob 3",
        ]
    );
    assert_eq!(memory, redis);
}
