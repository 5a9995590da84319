//! TTLs under tokio's paused clock: time moves only when the test says so.

mod common;
use common::Keyway;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn keys_expire_exactly_when_due() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("SET k v PX 1500", "+OK\r\n").await;
    c.check("SET h x", "+OK\r\n").await;
    c.check("PEXPIRE h 3000", ":1\r\n").await;
    let t0 = tokio::time::Instant::now();
    c.check("GET k", "$1\r\nv\r\n").await;
    let drift = t0.elapsed().as_millis() as u64;
    assert_eq!(drift, 0, "the clock moved on its own");
    c.check("PTTL k", ":1500\r\n").await;
    tokio::time::advance(Duration::from_millis(1499)).await;
    c.check("PTTL k", ":1\r\n").await;
    c.check("GET k", "$1\r\nv\r\n").await;
    tokio::time::advance(Duration::from_millis(1)).await;
    c.check("GET k", "$-1\r\n").await;
    c.check("TTL k", ":-2\r\n").await;
    c.check("PTTL h", ":1500\r\n").await;
    c.check("TTL h", ":2\r\n").await;
    tokio::time::advance(Duration::from_millis(1500)).await;
    c.check("EXISTS h", ":0\r\n").await;
}

#[tokio::test(start_paused = true)]
async fn expired_keys_are_swept_without_being_touched() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    for i in 0..200 {
        c.check(&format!("SET k{i} v PX 100"), "+OK\r\n").await;
    }
    c.check("SET keep v", "+OK\r\n").await;
    // DBSIZE counts keys not yet swept, as Redis does.
    c.check("DBSIZE", ":201\r\n").await;
    tokio::time::advance(Duration::from_secs(3)).await;
    // Let the sweeper run for the time that passed.
    for _ in 0..40 {
        tokio::time::advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
    c.check("DBSIZE", ":1\r\n").await;
}
