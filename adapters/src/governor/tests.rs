//! Unit tests of the governor: reserve and `Retry-After` pauses, one pause per burst,
//! the backoff doubling per consecutive pause up to its cap, the per-minute cap, and
//! pauses saved to and restored from a [`PauseStore`]. Time is passed in (`*_at`), so
//! a pause "ends" without waiting for it.

use std::collections::HashMap;

use super::*;

fn rate(limit: u64, remaining: u64, reset_in: u64) -> RateLimit {
    RateLimit {
        limit: Some(limit),
        remaining: Some(remaining),
        used: None,
        reset_at: Some(SystemTime::now() + Duration::from_secs(reset_in)),
        resource: None,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A store that remembers every save.
#[derive(Default)]
struct Saves {
    records: Mutex<HashMap<String, PauseRecord>>,
    log: Mutex<Vec<Option<PauseRecord>>>,
}

impl Saves {
    fn saved(&self) -> Vec<Option<PauseRecord>> {
        self.log.lock().unwrap().clone()
    }
}

impl PauseStore for Saves {
    fn load_pause(&self, key: &str) -> Option<PauseRecord> {
        self.records.lock().unwrap().get(key).cloned()
    }
    fn save_pause(&self, key: &str, record: Option<&PauseRecord>) {
        let mut records = self.records.lock().unwrap();
        match record {
            Some(r) => records.insert(key.to_owned(), r.clone()),
            None => records.remove(key),
        };
        self.log.lock().unwrap().push(record.cloned());
    }
}

fn policy(secondary: u64, cap: u64) -> RatePolicy {
    RatePolicy {
        secondary_wait: secs(secondary),
        max_backoff: secs(cap),
        ..RatePolicy::default()
    }
}

/// A governor saving into a fresh store under `KEY`.
fn kept(policy: RatePolicy) -> (Governor, Arc<Saves>) {
    let store = Arc::new(Saves::default());
    let mut g = Governor::new(policy);
    g.keep_in(store.clone(), KEY);
    (g, store)
}

const KEY: &str = "https://api.github.com";

fn admitted(g: &Governor, now: SystemTime) -> Ticket {
    match g.try_admit(Access::Read, now, Instant::now()) {
        Admission::Go(ticket) => ticket,
        Admission::Wait(d) => panic!("asked to wait {d:?}"),
        Admission::Refused(p) => panic!("refused: {p:?}"),
    }
}

fn paused_until(g: &Governor) -> Option<SystemTime> {
    g.lock().pause.as_ref().map(|p| p.until)
}

#[test]
fn pauses_under_the_reserve_until_the_reset() {
    let g = Governor::new(RatePolicy::default());
    let ticket = admitted(&g, SystemTime::now());
    g.observe_ok(ticket, Some(&rate(5000, 500, 100)));
    assert!(g.pause().is_none(), "10% left is not under 10%");
    g.observe_ok(ticket, Some(&rate(5000, 499, 100)));
    let pause = g.pause().unwrap();
    let left = pause.until.duration_since(SystemTime::now()).unwrap();
    assert!(left > secs(95) && left <= secs(100));
}

#[test]
fn retry_after_is_honoured_as_sent() {
    let g = Governor::new(policy(2, 3600));
    let now = SystemTime::now();
    g.observe_limited_at(admitted(&g, now), Some(secs(7)), None, now);
    assert_eq!(paused_until(&g), Some(now + secs(7)));
    assert_eq!(g.lock().step, 0, "a wait given is not a backoff");
}

#[test]
fn an_exhausted_budget_pauses_until_its_reset() {
    let g = Governor::new(RatePolicy::default());
    let ticket = admitted(&g, SystemTime::now());
    g.observe_limited(ticket, None, Some(&rate(60, 0, 30)));
    let left = g
        .pause()
        .unwrap()
        .until
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > secs(25) && left <= secs(30));
}

#[test]
fn a_burst_of_limited_answers_pauses_once_for_the_first_wait() {
    let (g, store) = kept(policy(60, 3600));
    let now = SystemTime::now();
    // 8 requests in flight together, all answered "limited" without a wait.
    let tickets: Vec<Ticket> = (0..8).map(|_| admitted(&g, now)).collect();
    for (i, ticket) in tickets.into_iter().enumerate() {
        g.observe_limited_at(ticket, None, None, now + Duration::from_millis(i as u64));
    }
    let record = PauseRecord {
        until: now + secs(60),
        reason: "limited without a wait given: backing off 60s".to_owned(),
        backoff_step: 1,
    };
    assert_eq!(
        store.saved(),
        [Some(record.clone())],
        "one pause, saved once"
    );
    assert_eq!(g.lock().record(), Some(record));
    assert!(matches!(
        g.try_admit(Access::Read, now + secs(59), Instant::now()),
        Admission::Refused(_)
    ));
}

#[test]
fn a_late_answer_asking_longer_extends_the_pause_without_backing_off() {
    let (g, store) = kept(policy(60, 3600));
    let now = SystemTime::now();
    let tickets: Vec<Ticket> = (0..3).map(|_| admitted(&g, now)).collect();
    g.observe_limited_at(tickets[0], Some(secs(30)), None, now);
    // Within a second of the end in force: the same pause.
    g.observe_limited_at(tickets[1], Some(secs(30)), None, now + secs(1));
    assert_eq!(paused_until(&g), Some(now + secs(30)));
    // Longer: extended; a late answer without a wait changes nothing.
    g.observe_limited_at(tickets[2], Some(secs(90)), None, now + secs(1));
    g.observe_limited_at(tickets[2], None, None, now + secs(2));
    assert_eq!(paused_until(&g), Some(now + secs(91)));
    assert_eq!(g.lock().step, 0);
    assert_eq!(store.saved().len(), 2);
    // A late success does not end the backoff of a pause that came after it.
    let (g, _) = kept(policy(60, 3600));
    let tickets: Vec<Ticket> = (0..2).map(|_| admitted(&g, now)).collect();
    g.observe_limited_at(tickets[0], None, None, now);
    g.observe_ok_at(tickets[1], None, now + secs(1));
    assert_eq!(g.lock().step, 1);
    assert_eq!(paused_until(&g), Some(now + secs(60)));
}

#[test]
fn consecutive_pauses_without_a_wait_double_up_to_the_cap() {
    let (g, store) = kept(policy(60, 300));
    let mut now = SystemTime::now();
    for (expected, step) in [(60, 1), (120, 2), (240, 3), (300, 4), (300, 5)] {
        // Limited again as soon as the previous pause is over (a burst of 3 each time).
        let tickets: Vec<Ticket> = (0..3).map(|_| admitted(&g, now)).collect();
        for ticket in tickets {
            g.observe_limited_at(ticket, None, None, now);
        }
        assert_eq!(paused_until(&g), Some(now + secs(expected)), "step {step}");
        assert_eq!(g.lock().step, step);
        now += secs(expected);
    }
    // A wait given in between neither doubles nor resets the backoff.
    g.observe_limited_at(admitted(&g, now), Some(secs(10)), None, now);
    now += secs(10);
    assert_eq!(g.lock().step, 5);
    // A success (sent after the last pause, as long after it as the last backoff wait)
    // ends it: the record is dropped.
    now += secs(300);
    g.observe_ok_at(admitted(&g, now), None, now);
    assert_eq!(store.saved().last(), Some(&None));
    assert_eq!(store.load_pause(KEY), None);
    g.observe_limited_at(admitted(&g, now), None, None, now);
    assert_eq!(paused_until(&g), Some(now + secs(60)));
    assert_eq!(store.saved().len(), 8);
}

#[test]
fn successes_in_the_burst_of_a_bare_429_do_not_restart_the_backoff() {
    let (g, store) = kept(policy(60, 3600));
    let mut now = SystemTime::now();
    // Each time the pause is over, a burst of 3: two answered 200 first, then a 429
    // without any header (GitLab's throttles; the first requests of a burst get through).
    for (expected, step) in [(60, 1), (120, 2), (240, 3)] {
        let tickets: Vec<Ticket> = (0..3).map(|_| admitted(&g, now)).collect();
        g.observe_ok_at(tickets[0], None, now);
        g.observe_ok_at(tickets[1], None, now + secs(1));
        g.observe_limited_at(tickets[2], None, None, now + secs(1));
        assert_eq!(
            paused_until(&g),
            Some(now + secs(1 + expected)),
            "pause {step}"
        );
        assert_eq!(g.lock().step, step);
        now += secs(1 + expected);
    }
    // Taken without a limit for as long as the last wait: the backoff is over.
    g.observe_ok_at(admitted(&g, now), None, now + secs(239));
    assert_eq!(g.lock().step, 3, "not yet");
    g.observe_ok_at(admitted(&g, now), None, now + secs(240));
    assert_eq!(g.lock().step, 0);
    assert_eq!(store.load_pause(KEY), None);
}

#[test]
fn a_restored_pause_is_in_force_and_keeps_its_backoff_step() {
    let now = SystemTime::now();
    let store = Arc::new(Saves::default());
    let record = PauseRecord {
        until: now + secs(30),
        reason: "Retry-After: 30s".to_owned(),
        backoff_step: 2,
    };
    store.save_pause(KEY, Some(&record));
    let mut g = Governor::new(policy(60, 3600));
    g.keep_in(store.clone(), KEY);
    assert_eq!(
        g.pause(),
        Some(Pause {
            until: record.until,
            reason: record.reason.clone()
        })
    );
    assert!(matches!(
        g.try_admit(Access::Read, now + secs(29), Instant::now()),
        Admission::Refused(_)
    ));
    // Limited again once it is over: the third pause in a row, 60 s · 2².
    let after = now + secs(30);
    g.observe_limited_at(admitted(&g, after), None, None, after);
    assert_eq!(paused_until(&g), Some(after + secs(240)));
    assert_eq!(store.load_pause(KEY).unwrap().backoff_step, 3);

    // Another key: nothing restored. A hostile end is cut to `MAX_PAUSE`.
    let mut g = Governor::new(policy(60, 3600));
    g.keep_in(store.clone(), "https://gitlab.example.org");
    assert_eq!(g.pause(), None);
    let mut g = Governor::new(policy(60, 3600));
    g.restore(
        PauseRecord {
            until: now + secs(10 * 365 * 86400),
            reason: "r".to_owned(),
            backoff_step: 99,
        },
        KEY,
        now,
    );
    assert_eq!(paused_until(&g), Some(now + MAX_PAUSE));
    assert_eq!(g.lock().step, MAX_STEP);
}

#[tokio::test(start_paused = true)]
async fn the_per_minute_cap_spaces_requests() {
    let g = Governor::new(RatePolicy {
        requests_per_minute: Some(2),
        ..RatePolicy::default()
    });
    let start = Instant::now();
    g.admit(Access::Read).await.unwrap();
    g.admit(Access::Read).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // The third waits until the first is a minute old.
    g.admit(Access::Read).await.unwrap();
    assert_eq!(start.elapsed(), secs(60));
}

#[tokio::test]
async fn refuses_while_paused() {
    let g = Governor::new(RatePolicy::default());
    let ticket = g.admit(Access::Read).await.unwrap();
    g.observe_limited(ticket, Some(secs(60)), None);
    assert!(g.admit(Access::Read).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn writes_over_their_budget_are_refused_at_once_and_reads_go_on() {
    let g = Governor::new(RatePolicy {
        writes_per_minute: Some(3),
        writes_per_hour: Some(500),
        ..RatePolicy::default()
    });
    let now = SystemTime::now();
    let write = |now| g.try_admit(Access::Write, now, Instant::now());
    for _ in 0..3 {
        assert!(matches!(write(now), Admission::Go(_)));
    }
    tokio::time::advance(secs(20)).await;
    // 20 s later (on both clocks): room again when the first is a minute old.
    let later = now + secs(20);
    match write(later) {
        Admission::Refused(Refusal::WriteLimited { until }) => assert_eq!(until, now + secs(60)),
        _ => panic!("the fourth write was not refused"),
    }
    // Reads are not held by the write budget, and a refused write counted nothing.
    for _ in 0..10 {
        assert!(matches!(
            g.try_admit(Access::Read, later, Instant::now()),
            Admission::Go(_)
        ));
    }
    tokio::time::advance(secs(40)).await;
    for _ in 0..3 {
        assert!(matches!(write(now + secs(60)), Admission::Go(_)));
    }
    assert!(matches!(
        write(now + secs(60)),
        Admission::Refused(Refusal::WriteLimited { .. })
    ));
    // A pause refuses writes as a pause, before the budget is looked at.
    let ticket = admitted(&g, now + secs(60));
    g.observe_limited_at(ticket, Some(secs(30)), None, now + secs(60));
    assert!(matches!(
        write(now + secs(61)),
        Admission::Refused(Refusal::Paused(_))
    ));
}
