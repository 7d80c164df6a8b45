//! Named crash points for the crash-safety tests: with the `crash-points` feature,
//! `FORGEWATCH_CRASH_AT=NAME` (or `NAME:N`, the N-th time) aborts the process right
//! there, as a `kill -9` would, and `FORGEWATCH_BLOCK_AT=NAME` blocks there forever
//! (a stuck loop). Without the feature every point is a no-op.

/// Aborts the process if `FORGEWATCH_CRASH_AT` names this point (and hit count).
#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    static HITS: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());
    static ENABLED: AtomicBool = AtomicBool::new(true);
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Ok(spec) = std::env::var("FORGEWATCH_CRASH_AT") else {
        ENABLED.store(false, Ordering::Relaxed);
        return;
    };
    let (wanted, nth) = match spec.split_once(':') {
        Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if wanted != name {
        return;
    }
    let mut hits = HITS.lock().unwrap_or_else(|p| p.into_inner());
    let count = match hits.iter_mut().find(|(n, _)| n == name) {
        Some((_, c)) => {
            *c += 1;
            *c
        }
        None => {
            hits.push((name.to_owned(), 1));
            1
        }
    };
    if count == nth {
        eprintln!("forgewatch: crash point {name}:{count}: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Blocks forever if `FORGEWATCH_BLOCK_AT` names this point: a stuck loop, for the
/// watchdog tests. Without the `crash-points` feature it returns at once.
#[cfg(feature = "crash-points")]
pub async fn block_point(name: &str) {
    if std::env::var("FORGEWATCH_BLOCK_AT").as_deref() == Ok(name) {
        eprintln!("forgewatch: block point {name}: blocking");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub async fn block_point(_name: &str) {}
