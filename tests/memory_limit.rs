//! The memory backend's max_memory and eviction policies. One test in its
//! own process: the bound is on the process's allocated memory.

mod common;

use common::Keyway;
use keyway::wire::alloc::allocated;
use redis::AsyncCommands;

const MB: usize = 1024 * 1024;

fn config(max: usize, policy: &str) -> String {
    format!(
        "[backends.m]\ntype = \"memory\"\nmax_memory = {max}\neviction = \"{policy}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n"
    )
}

#[tokio::test]
async fn max_memory_bounds_the_store() {
    let value = vec![b'x'; 64 * 1024];
    // Slack for what else the process allocates meanwhile (buffers, the
    // test's client): the bound is checked before each write, so the data
    // stays within it plus about one value.
    let margin = 2 * MB;

    // noeviction: writes are refused with Redis's OOM error once over.
    let max = allocated() + 8 * MB;
    let kw = Keyway::with_toml(&config(max, "noeviction")).await;
    let mut c = kw.client().await;
    let mut raw = kw.raw().await;
    let mut stored = 0;
    for i in 0..1000 {
        let r: redis::RedisResult<()> = c.set(format!("k{i}"), &value[..]).await;
        match r {
            Ok(()) => stored += 1,
            Err(e) => {
                assert_eq!(e.code(), Some("OOM"), "{e}");
                break;
            }
        }
    }
    assert!(stored > 10 && stored < 1000, "{stored} values stored");
    assert!(allocated() <= max + margin, "{} over {max}", allocated());
    let big = String::from_utf8(value.clone()).unwrap();
    // Memory the process frees meanwhile (a client's spent buffers) can let
    // one more write in, so write until refused and check Redis's exact text.
    let mut refusal = None;
    for i in 0..64 {
        raw.send(&common::resp(&["SET", &format!("extra{i}"), &big]))
            .await;
        let reply = raw.reply().await;
        if reply != b"+OK\r\n" {
            refusal = Some(String::from_utf8_lossy(&reply).into_owned());
            break;
        }
    }
    assert_eq!(
        refusal.as_deref(),
        Some("-OOM command not allowed when used memory > 'maxmemory'.\r\n")
    );
    // Reads and deletes still work, and free room.
    raw.check("GET nope", "$-1\r\n").await;
    let keys: Vec<String> = (0..stored / 2).map(|i| format!("k{i}")).collect();
    let n: usize = c.del(&keys).await.unwrap();
    assert_eq!(n, keys.len());
    raw.send(&common::resp(&["SET", "one", &big])).await;
    raw.expect("+OK\r\n").await;
    let info: redis::InfoDict = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(info.get::<usize>("maxmemory"), Some(max));
    assert_eq!(
        info.get::<String>("maxmemory_policy").as_deref(),
        Some("noeviction")
    );
    assert!(info.get::<usize>("used_memory").unwrap_or(0) > 0);
    raw.check("FLUSHALL", "+OK\r\n").await;
    drop((c, raw, kw));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // allkeys-lru: every write succeeds; old keys make room.
    let max = allocated() + 8 * MB;
    let kw = Keyway::with_toml(&config(max, "allkeys-lru")).await;
    let mut c = kw.client().await;
    for i in 0..600 {
        let _: () = c.set(format!("k{i}"), &value[..]).await.unwrap();
        assert!(allocated() <= max + margin, "{} over {max}", allocated());
    }
    let n: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert!(n > 10 && n < 600, "{n} keys left");
    let newest: Option<Vec<u8>> = c.get("k599").await.unwrap();
    assert!(newest.is_some(), "the newest key was evicted");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    drop((c, kw));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // volatile-ttl: only keys with a TTL are evicted; with none left, OOM.
    let max = allocated() + 8 * MB;
    let kw = Keyway::with_toml(&config(max, "volatile-ttl")).await;
    let mut c = kw.client().await;
    for i in 0..20 {
        let _: () = c.set(format!("keep{i}"), &value[..]).await.unwrap();
    }
    for i in 0..400 {
        let _: () = c
            .set_ex(format!("tmp{i}"), &value[..], 1000 + i)
            .await
            .unwrap();
    }
    let kept: usize = c
        .exists((0..20).map(|i| format!("keep{i}")).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(kept, 20);
    let mut oom = false;
    for i in 0..1000 {
        let r: redis::RedisResult<()> = c.set(format!("more{i}"), &value[..]).await;
        if let Err(e) = r {
            assert_eq!(e.code(), Some("OOM"), "{e}");
            oom = true;
            break;
        }
    }
    assert!(oom, "persistent keys were evicted under volatile-ttl");
    let kept: usize = c
        .exists((0..20).map(|i| format!("keep{i}")).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(kept, 20);
}
