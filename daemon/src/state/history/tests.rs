//! The history's tests: results on their deliveries, adoption, filters and pruning.

use forgewatch_adapters::results::{BuildResult, ResultRef};

use super::*;
use crate::plan::ids::BuildKey;
use crate::state::outbox::Enqueued;
use crate::state::tests::{inputs, pending};

/// Delivers `key` at `at_ms` with id `id`, head `head`, building `packages`.
fn deliver(state: &State, key: &str, id: &str, head: &str, packages: &[&str], at_ms: i64) {
    let mut item = pending(&BuildKey::from_stored(key.into()), &inputs(head), id);
    item.trigger
        .properties
        .insert("package_names".into(), serde_json::json!(packages));
    item.trigger.properties.insert(
        "overrides".into(),
        serde_json::json!([{ "a": { "remote_branch": format!("refs/pull/{head}/merge") } }]),
    );
    state.enqueue(&[Enqueued::from(&item)], &[], at_ms).unwrap();
    state
        .complete_delivery(&item, at_ms, "delivered", &[])
        .unwrap();
}

fn result(id: &str, state: BuildState, url: &str) -> ReportedResult {
    ReportedResult {
        reference: ResultRef {
            delivery_id: Some(id.into()),
            ..ResultRef::default()
        },
        result: BuildResult {
            state,
            url: Some(url.into()),
            summary: None,
            started_at: Some(1),
            finished_at: None,
        },
    }
}

#[test]
fn results_update_their_delivery_once_and_flag_the_unknown_and_superseded() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    deliver(&state, "w/mainline", "d1", "h1", &["a"], 1_000);
    let running = state
        .record_result("api", &result("d1", BuildState::Running, "u1"), 2_000)
        .unwrap();
    assert_eq!(
        running,
        ResultOutcome {
            repeated: false,
            flag: None,
            delivery: Some(("w/mainline".into(), "bb".into(), 1_000)),
            changed: true,
            statuses: 0,
        }
    );
    let again = state
        .record_result("api", &result("d1", BuildState::Running, "u1"), 3_000)
        .unwrap();
    assert!(again.repeated && !again.changed);
    state
        .record_result("api", &result("d1", BuildState::Failure, "u1"), 4_000)
        .unwrap();
    // A start arriving after the end changes nothing.
    let late = ReportedResult {
        result: BuildResult {
            started_at: Some(2),
            ..result("d1", BuildState::Running, "u1").result
        },
        ..result("d1", BuildState::Running, "u1")
    };
    assert!(!state.record_result("api", &late, 5_000).unwrap().changed);
    let rows = state.builds(&BuildsQuery::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, Some(BuildState::Failure));
    assert_eq!(rows[0].package_names, ["a"]);
    assert_eq!(state.results_of("d1").unwrap().len(), 3);

    let unknown = state
        .record_result("api", &result("nope", BuildState::Success, "u"), 6_000)
        .unwrap();
    assert_eq!((unknown.flag, unknown.delivery), (Some("unknown"), None));

    deliver(&state, "w/mainline", "d2", "h2", &["a"], 7_000);
    let old = state
        .record_result("api", &result("d1", BuildState::Success, "u9"), 8_000)
        .unwrap();
    assert_eq!(old.flag, Some("superseded"));
    assert_eq!(
        state.last_overrides("w/mainline").unwrap(),
        Some(vec![("a".to_owned(), "refs/pull/h2/merge".to_owned())])
    );
    assert_eq!(state.last_overrides("w/other").unwrap(), None);
}

#[test]
fn a_result_before_its_delivery_is_recorded_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let early = state
        .record_result("buildbot", &result("d1", BuildState::Running, "u"), 500)
        .unwrap();
    assert_eq!(early.flag, Some("unknown"));
    deliver(&state, "w/mainline", "d1", "h1", &["a"], 1_000);
    let rows = state.builds(&BuildsQuery::default()).unwrap();
    assert_eq!(rows[0].state, Some(BuildState::Running));
    assert_eq!(state.results_of("d1").unwrap()[0].flag, None);
}

#[test]
fn builds_are_filtered_newest_first_and_pruned_but_the_last_of_each() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    for i in 0..20 {
        let (key, package) = if i % 2 == 0 {
            ("w/mainline", "a")
        } else {
            ("v/mainline", "b")
        };
        let id = format!("d{i}");
        deliver(&state, key, &id, &format!("h{i}"), &[package], 1_000 * i);
        let outcome = if i % 3 == 0 {
            BuildState::Failure
        } else {
            BuildState::Success
        };
        state
            .record_result("api", &result(&id, outcome, "u"), 1_000 * i + 1)
            .unwrap();
    }
    let ids = |query: BuildsQuery| -> Vec<String> {
        state
            .builds(&query)
            .unwrap()
            .into_iter()
            .map(|r| r.delivery_id)
            .collect()
    };
    let failed_w = BuildsQuery {
        workspace: Some("w".into()),
        state: Some(BuildState::Failure),
        ..BuildsQuery::default()
    };
    assert_eq!(ids(failed_w), ["d18", "d12", "d6", "d0"]);
    let by_package = BuildsQuery {
        package: Some("b".into()),
        limit: Some(2),
        ..BuildsQuery::default()
    };
    assert_eq!(ids(by_package), ["d19", "d17"]);
    let text = BuildsQuery {
        text: Some("D1".into()),
        since: Some(15_000),
        ..BuildsQuery::default()
    };
    assert_eq!(ids(text), ["d19", "d18", "d17", "d16", "d15"]);
    let latest = BuildsQuery {
        latest: true,
        ..BuildsQuery::default()
    };
    assert_eq!(ids(latest), ["d19", "d18"]);
    assert_eq!(state.prune_history(30_000).unwrap(), 36);
    assert_eq!(ids(BuildsQuery::default()), ["d19", "d18"]);
    assert_eq!(state.results_of("d0").unwrap(), []);
}

#[test]
fn a_thousand_deliveries_are_filtered_exactly_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut expected = Vec::new();
    for i in 0..1000_i64 {
        let workspace = ["w", "v", "u"][(i % 3) as usize];
        let key = format!("{workspace}/pr/github.com/acme/a/{}", i % 17);
        let id = format!("d{i:04}");
        deliver(&state, &key, &id, &format!("h{i}"), &["a"], 1_000 * i);
        // Some builds get no result, some a failure then a retry's success.
        let states: &[BuildState] = match (i * 7) % 5 {
            0 => &[],
            1 => &[BuildState::Running, BuildState::Failure],
            2 => &[BuildState::Failure, BuildState::Success],
            3 => &[BuildState::Error],
            _ => &[BuildState::Failure],
        };
        for (n, outcome) in states.iter().enumerate() {
            let url = format!("https://ci/{i}/{n}");
            let at = 1_000 * i + 1 + n as i64;
            state
                .record_result("api", &result(&id, *outcome, &url), at)
                .unwrap();
        }
        if workspace == "w" && states.last() == Some(&BuildState::Failure) {
            expected.push(id);
        }
    }
    expected.reverse();
    let query = BuildsQuery {
        workspace: Some("w".into()),
        state: Some(BuildState::Failure),
        limit: Some(BUILDS_LIMIT),
        ..BuildsQuery::default()
    };
    let rows = state.builds(&query).unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.delivery_id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(rows.iter().all(|r| r.workspace == "w" && r.url.is_some()));
    // The default limit is 100, newest first.
    let first = state
        .builds(&BuildsQuery {
            workspace: Some("w".into()),
            state: Some(BuildState::Failure),
            ..BuildsQuery::default()
        })
        .unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!(first[0].delivery_id, expected[0]);
}
