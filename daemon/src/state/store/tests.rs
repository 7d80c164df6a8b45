//! The store is off the runtime: on a runtime with one thread, a store call that
//! blocks (a call that waits to be released, a write waiting for a lock another
//! connection holds) leaves that thread to the other tasks; and what the store keeps
//! in memory is what its database says; a sender's trip records its previous
//! attempt before it reads the next item; a recorded event is published to the
//! streams listening.

use std::time::Duration;

use super::*;
use crate::state::DATABASE_FILE;

/// Bounds a blocked call, so that a store running calls on the runtime's thread
/// fails these tests instead of hanging them. Never reached by a correct store.
const DEADLOCK_GUARD: Duration = Duration::from_secs(60);

fn cached() -> CachedResponse {
    CachedResponse {
        etag: Some("\"e\"".into()),
        last_modified: None,
        next_url: None,
        body: b"[]".to_vec(),
    }
}

/// Another task, spawned now, runs to its end while the test awaits it.
async fn another_task_runs() {
    let (done, ran) = oneshot::channel();
    tokio::spawn(async move { done.send("ran") });
    assert_eq!(ran.await, Ok("ran"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocked_store_call_leaves_the_runtime_thread_to_other_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let cache = store.http_cache(std::sync::Arc::new(|| 0));
    ValidatorStore::save(&cache, "k", &cached()).await;
    let (entered_tx, entered) = oneshot::channel();
    let (release, released) = mpsc::channel::<()>();
    let blocked = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .call(move |_| {
                    let _ = entered_tx.send(());
                    released
                        .recv_timeout(DEADLOCK_GUARD)
                        .map_err(|_| StateError::Stopped)?;
                    Ok(7)
                })
                .await
        }
    });
    entered.await.unwrap();
    // The store's thread is inside the call: what comes after it waits there, the
    // forge clients' cache reads included, and the runtime's one thread is free.
    let load = tokio::spawn(async move { ValidatorStore::load(&cache, "k").await });
    let marks = tokio::spawn({
        let store = store.clone();
        async move { store.build_marks().await.map(|m| m.len()) }
    });
    another_task_runs().await;
    assert!(!blocked.is_finished());
    assert!(!load.is_finished());
    assert!(!marks.is_finished());
    release.send(()).unwrap();
    assert_eq!(blocked.await.unwrap().unwrap(), 7);
    assert_eq!(load.await.unwrap(), Some(cached()));
    assert_eq!(marks.await.unwrap().unwrap(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_write_waiting_for_a_database_lock_leaves_the_runtime_thread_to_other_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    // Another connection holds the write lock: the store's write waits for it
    // (SQLite's busy timeout) on the store's thread.
    let other = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (entered_tx, entered) = oneshot::channel();
    let write = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .call(move |b| {
                    let _ = entered_tx.send(());
                    b.save_mergeable("github.com/acme/a#1", "b1", "h1", true)
                })
                .await
        }
    });
    entered.await.unwrap();
    another_task_runs().await;
    assert!(!write.is_finished(), "the lock is still held");
    other.execute_batch("COMMIT").unwrap();
    write.await.unwrap().unwrap();
    assert_eq!(
        store.mergeable("github.com/acme/a#1", "h1").await.unwrap(),
        Some(("b1".to_owned(), true))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_call_panics_its_caller_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let panicked = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .call(|_| -> Result<(), StateError> { panic!("boom") })
                .await
        }
    });
    assert!(panicked.await.unwrap_err().is_panic());
    assert_eq!(store.pending_summaries().await.unwrap(), vec![]);
}

fn record(config_pr: &str, job_id: i64) -> DiscoveryRecord {
    DiscoveryRecord {
        config_pr: config_pr.to_owned(),
        head_sha: "h".to_owned(),
        test_ref: "refs/pull/3/head".to_owned(),
        outcome: Err("failed".to_owned()),
        job_id,
    }
}

fn pause(step: u32) -> PauseRecord {
    PauseRecord {
        until: std::time::UNIX_EPOCH + Duration::from_millis(1_900_000_000_123),
        reason: "Retry-After: 60s".to_owned(),
        backoff_step: step,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn discoveries_and_pauses_in_memory_are_those_of_the_database() {
    const ORIGIN: &str = "https://api.github.com";
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).await.unwrap();
        store.save_discovery("ws", &record("b#2", 1)).await.unwrap();
        store.save_discovery("ws", &record("a#1", 2)).await.unwrap();
        store.save_discovery("ws", &record("b#2", 3)).await.unwrap();
        store
            .save_discovery("other", &record("c#3", 4))
            .await
            .unwrap();
        store.forget_discovery("other", "c#3").await.unwrap();
        assert_eq!(
            store.discoveries_of("ws"),
            vec![record("a#1", 2), record("b#2", 3)]
        );
        assert_eq!(store.discoveries_of("other"), vec![]);
        store.save_pause(ORIGIN, Some(&pause(1)));
        store.save_pause(ORIGIN, Some(&pause(2)));
        assert_eq!(store.load_pause(ORIGIN), Some(pause(2)));
        store.flush().await;
    }
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(
        store.discoveries_of("ws"),
        vec![record("a#1", 2), record("b#2", 3)]
    );
    assert_eq!(store.discoveries_of("other"), vec![]);
    assert_eq!(store.load_pause(ORIGIN), Some(pause(2)));
    // A dry run reads them and changes nothing, in memory or on disk.
    let dry = Store::open_read_only(dir.path()).await.unwrap();
    dry.save_pause(ORIGIN, None);
    dry.save_discovery("ws", &record("d#4", 5)).await.unwrap();
    dry.flush().await;
    assert_eq!(dry.load_pause(ORIGIN), Some(pause(2)));
    assert_eq!(dry.discoveries_of("ws").len(), 2);
    drop((store, dry));
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.load_pause(ORIGIN), Some(pause(2)));
    assert_eq!(store.discoveries_of("ws").len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn opening_a_corrupt_database_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), vec![0x5a; 8192]).unwrap();
    let message = Store::open(dir.path()).await.err().unwrap().to_string();
    assert!(
        message.contains("state.sqlite3 exists but is not a forgewatch state database"),
        "{message}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_senders_trip_records_its_previous_attempt_then_reads_the_next_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let inputs = crate::state::tests::inputs("1");
    let (a, b) = (BuildKey::mainline("wa"), BuildKey::mainline("wb"));
    let items = [
        crate::state::tests::pending(&a, &inputs, "id-a"),
        crate::state::tests::pending(&b, &inputs, "id-b"),
    ];
    store
        .enqueue(items.iter().map(Enqueued::from).collect(), Vec::new(), 0)
        .await
        .unwrap();

    let first = store.record_then_read(None, Some(a.clone())).await.unwrap();
    assert_eq!(first.as_ref(), Some(&items[0]));
    let accepted = Attempt::Accepted {
        item: items[0].clone(),
        at_ms: 5_000,
        message: "delivered".into(),
        statuses: Vec::new(),
        result: None,
    };
    let second = store
        .record_then_read(Some(accepted), Some(b.clone()))
        .await
        .unwrap();
    assert_eq!(second.as_ref(), Some(&items[1]));
    let delivered = DeliveredBuild {
        fingerprint: inputs.fingerprint(),
        inputs: Some(inputs.clone()),
        delivered_at: Some(5),
    };
    assert_eq!(store.delivered(&a).await.unwrap(), Some(delivered));
    let failed = Attempt::Failed {
        item: items[1].clone(),
        attempts: 1,
        next_attempt: 9_000,
        error: "down".into(),
        at_ms: 6_000,
        message: "attempt 1 failed: down".into(),
    };
    assert_eq!(
        store.record_then_read(Some(failed), None).await.unwrap(),
        None
    );
    let left: Vec<_> = store
        .pending_summaries()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.key, p.attempts, p.next_attempt, p.last_error))
        .collect();
    assert_eq!(left, vec![(b.clone(), 1, 9_000, Some("down".to_owned()))]);
    assert_eq!(store.delivered(&b).await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn a_recorded_event_is_published_to_its_listeners_and_a_read_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store.record_event(1, "delivered", Some("a"), None, "nobody listens");
    let mut newest = store.subscribe_events();
    // The first call after someone listens catches up with what was recorded.
    store.flush().await;
    assert!(newest.has_changed().unwrap());
    assert_eq!(*newest.borrow_and_update(), 1);
    // A read records nothing: no news.
    assert_eq!(store.events(&EventQuery::default()).await.unwrap().len(), 1);
    assert!(!newest.has_changed().unwrap());
    // An event recorded by any call is.
    store.record_event(2, "result", Some("a"), Some("a/mainline"), "success");
    store.flush().await;
    assert!(newest.has_changed().unwrap());
    assert_eq!(*newest.borrow_and_update(), 2);
    drop(store);
    // The last handle gone, the stream's wait ends.
    assert!(newest.changed().await.is_err());
}
