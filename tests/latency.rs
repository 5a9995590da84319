//! LATENCY over keyway's latency monitor: off until CONFIG SET
//! latency-monitor-threshold, then a `command` sample for each request at
//! least that slow, read and reset as in Redis.

mod common;

use common::Keyway;

#[tokio::test]
async fn slow_requests_are_latency_samples_once_a_threshold_is_set() {
    let kw = Keyway::with_toml(
        "[server]\nenable_debug_command = \"yes\"\n\
         [backends.mem]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"mem\"\n",
    )
    .await;
    let mut c = kw.client().await;
    let cmd = |words: &str| {
        let mut c = redis::cmd(words.split(' ').next().unwrap_or_default());
        for w in words.split(' ').skip(1) {
            c.arg(w);
        }
        c
    };
    // Off: nothing is kept, and DOCTOR says how to turn it on.
    let _: () = cmd("DEBUG SLEEP 0.15").query_async(&mut c).await.unwrap();
    let latest: Vec<redis::Value> = cmd("LATENCY LATEST").query_async(&mut c).await.unwrap();
    assert!(latest.is_empty());
    let doctor: String = cmd("LATENCY DOCTOR").query_async(&mut c).await.unwrap();
    assert!(doctor.contains("latency-monitor-threshold"), "{doctor}");

    let _: () = cmd("CONFIG SET latency-monitor-threshold 100")
        .query_async(&mut c)
        .await
        .unwrap();
    let got: Vec<String> = cmd("CONFIG GET latency-monitor-threshold")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(got, ["latency-monitor-threshold", "100"]);
    let doctor: String = cmd("LATENCY DOCTOR").query_async(&mut c).await.unwrap();
    assert!(doctor.contains("no latency spike"), "{doctor}");
    // Below the threshold: no sample; above it: one, under `command`.
    let _: () = cmd("DEBUG SLEEP 0").query_async(&mut c).await.unwrap();
    let _: () = cmd("DEBUG SLEEP 0.15").query_async(&mut c).await.unwrap();
    let latest: Vec<(String, i64, i64, i64)> =
        cmd("LATENCY LATEST").query_async(&mut c).await.unwrap();
    assert_eq!(latest.len(), 1, "{latest:?}");
    let (event, at, ms, max) = &latest[0];
    assert_eq!(event, "command");
    assert!(*at > 1_700_000_000 && *ms >= 150 && max >= ms, "{latest:?}");
    let history: Vec<(i64, i64)> = cmd("LATENCY HISTORY command")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(history, [(*at, *ms)]);
    let graph: String = cmd("LATENCY GRAPH command")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(graph.starts_with("command - high "), "{graph}");
    let doctor: String = cmd("LATENCY DOCTOR").query_async(&mut c).await.unwrap();
    assert!(doctor.contains("1. command: 1 latency spikes"), "{doctor}");
    // RESET of an unknown event resets none; of all, the one there is.
    let n: i64 = cmd("LATENCY RESET nosuchevent")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n: i64 = cmd("LATENCY RESET").query_async(&mut c).await.unwrap();
    assert_eq!(n, 1);
    let err = cmd("LATENCY GRAPH command")
        .query_async::<String>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("No samples available for event 'command'"),
        "{err}"
    );
    let err = cmd("CONFIG SET latency-monitor-threshold -1")
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("latency-monitor-threshold"),
        "{err}"
    );
}
