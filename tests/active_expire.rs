//! DEBUG SET-ACTIVE-EXPIRE on the memory backend, compared byte for byte
//! with redis-server. A binary of its own: the setting is process-wide, as
//! it is server-wide in Redis, and would reach other tests' stores.

mod common;

use std::time::Duration;

use common::{Keyway, RedisServer, same_replies_words};

/// The tests here take turns: the setting is the process's.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn keys_past_their_ttl_stay_until_read_while_active_expiry_is_off() {
    let _turn = TURN.lock().await;
    let redis = RedisServer::with_args(&["--enable-debug-command", "yes"]);
    let kw = Keyway::with_toml(
        "[server]\nenable_debug_command = \"yes\"\n\
         [backends.mem]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"mem\"\n",
    )
    .await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));

    same_replies_words(
        &mut r,
        &mut k,
        &[
            "DEBUG SET-ACTIVE-EXPIRE 0",
            "SET gone 1 PX 20",
            "SET stale foo PX 1",
            "SET lazy 1 PX 100",
            "WATCH lazy",
        ],
    )
    .await;
    // Past every TTL, and past a whole pass of keyway's sweep (1 s).
    pause(2000).await;
    same_replies_words(
        &mut r,
        &mut k,
        &[
            // Not swept: still counted, though dead to every command.
            "DBSIZE",
            "EXISTS gone",
            // A watched key that expired after WATCH fails the EXEC.
            "MULTI",
            "INCR lazy",
            "EXEC",
            // One already expired when watched does not.
            "WATCH stale",
            "MULTI",
            "PING",
            "EXEC",
            "DEBUG SET-ACTIVE-EXPIRE 1",
            "SET later 1 PX 20",
        ],
    )
    .await;
    pause(2000).await;
    same_replies_words(
        &mut r,
        &mut k,
        &[
            "DBSIZE",
            "DEBUG SET-ACTIVE-EXPIRE x",
            "DEBUG SET-ACTIVE-EXPIRE 1",
        ],
    )
    .await;
}

/// Redis's "should actively expire keys incrementally": keys past their
/// TTL leave DBSIZE within two seconds with nobody reading them.
#[tokio::test]
async fn keys_past_their_ttl_are_swept_within_two_seconds() {
    let _turn = TURN.lock().await;
    let kw = Keyway::start().await;
    let mut c = kw.client().await;
    for k in ["key1", "key2", "key3"] {
        let _: () = redis::cmd("PSETEX")
            .arg(k)
            .arg(500)
            .arg("a")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    loop {
        let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{n} keys still there 2 s after their TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
