//! A transaction on a full memory backend is refused as Redis refuses it:
//! any command queued while over maxmemory gets OOM (and EXEC then
//! aborts), a transaction with a write gets EXECABORT ... OOM at EXEC, and
//! one of reads only runs. Compared byte for byte with redis-server. A binary of its
//! own: CONFIG SET maxmemory is the process's.

mod common;

use common::{Keyway, RedisServer, same_replies_words};

#[tokio::test]
async fn transactions_over_maxmemory_are_refused_as_in_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    let (mut r2, mut k2) = (redis.raw().await, kw.raw().await);
    same_replies_words(&mut r, &mut k, &["SET seed x", "CONFIG SET maxmemory 1"]).await;
    same_replies_words(
        &mut r,
        &mut k,
        &[
            // Refused while queued: the transaction is flagged.
            "MULTI",
            "SET x 1",
            "GET x",
            "EXEC",
            "MULTI",
            "SET x 1",
            "DISCARD",
            // Reads only: not refused.
            "MULTI",
            "GET seed",
            "EXEC",
            "CONFIG SET maxmemory 0",
            // Queued while there was room, run when there is none.
            "MULTI",
            "SET x 1",
            "GET x",
        ],
    )
    .await;
    same_replies_words(&mut r2, &mut k2, &["CONFIG SET maxmemory 1"]).await;
    same_replies_words(
        &mut r,
        &mut k,
        &[
            "EXEC",
            "CONFIG SET maxmemory 0",
            "MULTI",
            "SET x 1",
            "EXEC",
            // Reads queued while there was room run when there is none.
            "MULTI",
            "GET seed",
        ],
    )
    .await;
    same_replies_words(&mut r2, &mut k2, &["CONFIG SET maxmemory 1"]).await;
    same_replies_words(&mut r, &mut k, &["EXEC", "CONFIG SET maxmemory 0"]).await;
}
