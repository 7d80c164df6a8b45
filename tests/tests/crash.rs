//! End-to-end crash safety (SPEC §8): a seeded scenario of several hundred forge
//! events (pushes, PRs opened, pushed and closed) while `forgewatch once` is killed
//! again and again — by SIGKILL after a random number of forge requests, and at
//! named crash points (during a poll's cache write, after the outbox commit, after
//! the CI accepted a delivery, inside the transaction recording it) — and the CI
//! sometimes refuses. Afterwards: the last delivery of every build is its final
//! state, no build goes back to an older state, every delivered revision existed,
//! and a build delivered twice carried the same delivery id both times.
//!
//! And issue 14's item 11: a `kill -9` of `run` while a PR's base moves (GitHub
//! recomputing its mergeability, `null` first) delivers exactly what an
//! uninterrupted daemon delivers: nothing for the PR, whose head did not move.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use std::collections::{BTreeMap, BTreeSet};

use forgewatch_tests::fake_github::NewPr;
use forgewatch_tests::rng::Rng;
use forgewatch_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";
const REPOS: [&str; 5] = ["acme/r0", "acme/r1", "acme/r2", "acme/r3", "acme/r4"];
const CRASH_POINTS: [&str; 4] = [
    "http-cache-write",
    "after-enqueue",
    "after-accept",
    "record-delivery",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_at_any_point_lose_no_build_and_repeat_only_with_the_same_delivery_id() {
    let env = Env::new().await;
    let mut shas: BTreeSet<String> = BTreeSet::new();
    for repo in REPOS {
        shas.insert(env.github.create_repo(repo, MAIN));
    }
    env.configure(&[
        Ws {
            name: "w0",
            ci: "bb",
            packages: &[
                ("r0", "acme/r0", MAIN),
                ("r1", "acme/r1", MAIN),
                ("r2", "acme/r2", MAIN),
            ],
            pull_requests: true,
        },
        Ws {
            name: "w1",
            ci: "hook",
            packages: &[
                ("r2", "acme/r2", MAIN),
                ("r3", "acme/r3", MAIN),
                ("r4", "acme/r4", MAIN),
            ],
            pull_requests: true,
        },
    ]);
    let mut rng = Rng::new(0x5eed_f04e_u64);
    let mut open: Vec<(&str, u64)> = Vec::new();
    let (mut events, mut kills, mut crash_points_hit) = (0, 0, 0);
    for round in 0..40 {
        // A batch of forge events.
        for _ in 0..8 {
            events += 1;
            let repo = REPOS[rng.below(REPOS.len() as u64) as usize];
            match rng.below(10) {
                0..=3 => {
                    shas.insert(env.github.push(repo, MAIN));
                }
                4..=5 => {
                    let n = env
                        .github
                        .open_pr(repo, NewPr::new(MAIN, &format!("topic-{events}")));
                    open.push((repo, n));
                }
                6..=8 if !open.is_empty() => {
                    let (repo, n) = open[rng.below(open.len() as u64) as usize];
                    shas.insert(env.github.push_pr(repo, n));
                }
                _ if !open.is_empty() => {
                    let (repo, n) = open.remove(rng.below(open.len() as u64) as usize);
                    env.github.close_pr(repo, n);
                }
                _ => {
                    shas.insert(env.github.push(repo, MAIN));
                }
            }
        }
        if rng.below(5) == 0 {
            env.ci.fail_next(rng.below(4) as usize, 503);
        }
        let mut cmd = env.command(&["once"]);
        match rng.below(3) {
            // A named crash point, the first or a later time it is reached.
            0 => {
                let point = CRASH_POINTS[rng.below(CRASH_POINTS.len() as u64) as usize];
                cmd.env(
                    "FORGEWATCH_CRASH_AT",
                    format!("{point}:{}", 1 + rng.below(3)),
                );
                let output = tokio::time::timeout(DEADLINE, cmd.output())
                    .await
                    .unwrap()
                    .unwrap();
                // Aborted at the crash point, or finished cleanly before reaching it.
                match output.status.code() {
                    None => {
                        crash_points_hit += 1;
                        kills += 1;
                    }
                    code => {
                        assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&output.stderr))
                    }
                }
            }
            // SIGKILL after a random number of forge requests.
            1 => {
                let child = cmd.spawn().unwrap();
                let before = env.github.requests().len();
                let after = 1 + rng.below(12) as usize;
                let reached = env
                    .github
                    .wait_for_requests(before + after, std::time::Duration::from_secs(5))
                    .await;
                let pid = Pid::from_raw(child.id().unwrap_or(0) as i32);
                if reached && kill(pid, Signal::SIGKILL).is_ok() {
                    kills += 1;
                }
                let _ = tokio::time::timeout(DEADLINE, child.wait_with_output())
                    .await
                    .unwrap();
            }
            _ => {
                let output = tokio::time::timeout(DEADLINE, cmd.output())
                    .await
                    .unwrap()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert_eq!(output.status.code(), Some(0), "round {round}: {stderr}");
            }
        }
    }
    // The end: one more change to every repository, then a crash right after the CI
    // accepted the first delivery, then a run where the CI refuses everything, with
    // no forge change in between: the final states are only ever delivered if
    // nothing was recorded before the CI accepted it.
    for repo in REPOS {
        shas.insert(env.github.push(repo, MAIN));
    }
    let mut cmd = env.command(&["once"]);
    cmd.env("FORGEWATCH_CRASH_AT", "after-accept:1");
    let output = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), None, "the crash point was reached");
    kills += 1;
    env.ci.fail_next(1_000, 503);
    let output = tokio::time::timeout(DEADLINE, env.command(&["once"]).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    env.ci.fail_next(0, 503);
    for _ in 0..2 {
        let output = tokio::time::timeout(DEADLINE, env.command(&["once"]).output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "final run: {stderr}");
    }
    assert!(events >= 300, "{events} events");
    assert!(
        kills >= 20,
        "{kills} kills ({crash_points_hit} at crash points)"
    );
    assert!(crash_points_hit >= 5, "{crash_points_hit} crash points hit");

    // The final state, computed from scratch on a fresh state directory.
    let fresh = env.dir.path().join("fresh.yml");
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("state_dir: ./state", "state_dir: ./fresh-state");
    std::fs::write(&fresh, config).unwrap();
    let output = tokio::process::Command::new(support::binary())
        .args(["once", "--dry-run", "--json", "--config"])
        .arg(&fresh)
        .env("FW_E2E_TOKEN", support::TOKEN)
        .env("FW_E2E_HOOK_SECRET", support::HOOK_SECRET)
        .env("FW_E2E_TRIGGER_TOKEN", support::TRIGGER_TOKEN)
        .env("FW_E2E_ADMIN", support::ADMIN_TOKEN)
        .env("FW_E2E_GITHUB_HOOK", support::GITHUB_HOOK_SECRET)
        .env("FW_E2E_GITLAB_HOOK", support::GITLAB_HOOK_SECRET)
        .output()
        .await
        .unwrap();
    let finals: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let finals: BTreeMap<String, String> = finals
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["build_key"].as_str().unwrap().to_owned(),
                o["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(finals.len() >= 2);

    let accepted = env.ci.accepted();
    let mut by_key: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for d in &accepted {
        let p = d.properties();
        let revision = d
            .field("revision")
            .map(str::to_owned)
            .or_else(|| p["revision"].as_str().map(str::to_owned))
            .unwrap();
        by_key
            .entry(p["build_key"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                p["fingerprint"].as_str().unwrap().to_owned(),
                p["delivery_id"].as_str().unwrap().to_owned(),
                revision,
            ));
    }
    // Every build's last delivery is its final state.
    for (key, fingerprint) in &finals {
        let last = by_key
            .get(key)
            .and_then(|v| v.last())
            .unwrap_or_else(|| panic!("{key} never delivered"));
        assert_eq!(
            &last.0, fingerprint,
            "{key}: the last delivery is not the final state"
        );
    }
    let mut duplicates = 0;
    for (key, deliveries) in &by_key {
        // No build goes back to a state it had left.
        let mut seen: Vec<&str> = Vec::new();
        for (fp, _, _) in deliveries {
            if seen.last() != Some(&fp.as_str()) {
                assert!(
                    !seen.contains(&fp.as_str()),
                    "{key}: went back to an older state"
                );
                seen.push(fp);
            } else {
                duplicates += 1;
            }
        }
        // A repeated delivery carries the same id.
        let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (fp, id, _) in deliveries {
            ids.entry(fp).or_default().insert(id);
        }
        assert!(
            ids.values().all(|s| s.len() == 1),
            "{key}: one fingerprint, several delivery ids"
        );
    }
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates for {kills} kills"
    );
    // Every delivered mainline revision is a head the forge had.
    for (key, deliveries) in &by_key {
        if key.ends_with("/mainline") {
            for (_, _, revision) in deliveries {
                assert!(
                    shas.contains(revision),
                    "{key}: revision {revision} never existed"
                );
            }
        }
    }
}

const PR: &str = "ws/pr/github.com/acme/app/1";

/// What the fake CI accepted, in order: each build key with the ref a PR build
/// tests or the revision a mainline build builds.
fn deliveries(env: &Env) -> Vec<(String, String)> {
    env.ci
        .accepted()
        .iter()
        .map(|d| {
            let p = d.properties();
            let what = match p["pull_request"]["ref"].as_str() {
                Some(r) => r.to_owned(),
                None => d.field("revision").unwrap().to_owned(),
            };
            (p["build_key"].as_str().unwrap().to_owned(), what)
        })
        .collect()
}

fn mainlines(env: &Env) -> usize {
    env.delivered_keys(0)
        .iter()
        .filter(|k| *k == "ws/mainline")
        .count()
}

/// Item 11's scenario: PR acme/app#1 is delivered at its merge ref and recorded;
/// then its base (acme/app's main) moves — with `kill`, while the daemon is killed
/// (`kill -9`) and before it is started again — and GitHub recomputes the PR's
/// mergeability: `null` to the first request, `true` to the next one. Once both
/// were asked, acme/other moves: its mainline delivery marks a computation that
/// had the answer. Returns what the CI accepted.
async fn base_moves_under_an_unchanged_pr(kill: bool) -> Vec<(String, String)> {
    let env = Env::new().await;
    env.github.compute_mergeability_lazily();
    env.github.create_repo("acme/app", MAIN);
    env.github.create_repo("acme/other", MAIN);
    env.github.open_pr("acme/app", NewPr::new(MAIN, "feature"));
    env.configure(&[Ws {
        name: "ws",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN), ("other", "acme/other", MAIN)],
        pull_requests: true,
    }]);
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let events = format!("http://{}/api/v1/events", env.listen_address().await);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let recorded = eventually(DEADLINE, || async {
        let body = http.get(&events).send().await.ok()?.text().await.ok()?;
        let events: serde_json::Value = serde_json::from_str(&body).ok()?;
        let delivered = |e: &&serde_json::Value| e["kind"] == "delivered" && e["build_key"] == PR;
        events.as_array()?.iter().find(delivered).map(|_| ())
    })
    .await;
    assert!(recorded.is_some(), "{:?}", deliveries(&env));
    env.clear_requests();
    if kill {
        daemon.kill().await.unwrap();
    }
    env.github.push("acme/app", MAIN);
    if kill {
        daemon = env.command(&["run"]).spawn().unwrap();
    }
    let asked = eventually(DEADLINE, || async {
        (env.single_pr_requests().len() >= 2 && mainlines(&env) == 2).then_some(())
    })
    .await;
    assert!(asked.is_some(), "{:?}", deliveries(&env));
    env.github.push("acme/other", MAIN);
    let marked = eventually(DEADLINE, || async { (mainlines(&env) == 3).then_some(()) }).await;
    assert!(marked.is_some(), "{:?}", deliveries(&env));
    drop(daemon);
    deliveries(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_the_base_moves_resends_no_unchanged_pr() {
    let uninterrupted = base_moves_under_an_unchanged_pr(false).await;
    let killed = base_moves_under_an_unchanged_pr(true).await;
    let refs = |list: &[(String, String)]| -> Vec<String> {
        let pr = |(k, r): &(String, String)| (k == PR).then(|| r.clone());
        list.iter().filter_map(pr).collect()
    };
    assert_eq!(
        (refs(&uninterrupted), refs(&killed)),
        (
            vec!["refs/pull/1/merge".to_owned()],
            vec!["refs/pull/1/merge".to_owned()]
        ),
        "uninterrupted: {uninterrupted:?}, killed: {killed:?}"
    );
    // The fakes make the same shas in the same order: the lists compare as they are.
    let keys: Vec<&str> = killed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["ws/mainline", PR, "ws/mainline", "ws/mainline"]);
    assert_eq!(killed, uninterrupted);
}
