//! End-to-end: the persisted outbox. While the CI is down, changed builds wait in
//! the outbox (across processes); a newer fingerprint replaces a pending one; once
//! the CI is back each build is delivered exactly once, with the newest inputs and
//! the delivery id of those inputs. One CI target that hangs does not hold up
//! deliveries to another.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";

fn two_workspaces(env: &Env) {
    env.github.create_repo("acme/a", MAIN);
    env.github.create_repo("acme/b", MAIN);
    env.configure(&[
        Ws {
            name: "wa",
            ci: "bb",
            packages: &[("a", "acme/a", MAIN)],
            pull_requests: false,
        },
        Ws {
            name: "wb",
            ci: "bb",
            packages: &[("b", "acme/b", MAIN)],
            pull_requests: false,
        },
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_wait_in_the_outbox_while_the_ci_is_down_and_only_the_newest_is_sent() {
    let env = Env::new().await;
    two_workspaces(&env);
    env.ci.fail_next(1_000, 503);

    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["wa/mainline failed", "wb/mainline failed"]
    );
    assert!(run.lines()[0].2.contains("HTTP 503"));

    // Two pushes to `a` while the CI is down: the pending delivery is replaced.
    env.github.push("acme/a", MAIN);
    let newest = env.github.push("acme/a", MAIN);
    let run = env.forgewatch(&["once", "--json"]).await;
    assert_eq!(run.code, Some(0));
    let outcomes: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let wa = outcomes
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["build_key"] == "wa/mainline")
        .unwrap()
        .clone();
    assert_eq!(wa["status"], "failed");
    assert_eq!(env.ci.accepted().len(), 0);
    let rejected_so_far = env.ci.rejected_count();
    assert_eq!(
        rejected_so_far, 4,
        "each once attempts each pending build once"
    );

    // The CI is back: each build once, `a` with its newest head and that delivery id.
    env.ci.fail_next(0, 503);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["wa/mainline delivered", "wb/mainline delivered"]
    );
    let accepted = env.ci.accepted();
    assert_eq!(accepted.len(), 2);
    let a = accepted
        .iter()
        .find(|d| d.properties()["build_key"] == "wa/mainline")
        .unwrap();
    assert_eq!(a.field("revision"), Some(newest.as_str()));
    assert_eq!(a.properties()["delivery_id"], wa["delivery_id"]);
    assert_eq!(a.properties()["fingerprint"], wa["fingerprint"]);
    assert_eq!(
        a.properties()["changed_packages"][0]["old"],
        serde_json::Value::Null,
        "first delivery of `wa`"
    );
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.ci.accepted().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_undone_while_pending_is_not_sent() {
    let env = Env::new().await;
    two_workspaces(&env);
    env.once().await;
    assert_eq!(env.ci.accepted().len(), 2);

    // A PR is opened and closed while the CI is down: nothing is sent afterwards.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replace("enabled: false", "enabled: true"),
    )
    .unwrap();
    env.github.open_pr(
        "acme/a",
        forgewatch_tests::fake_github::NewPr::new(MAIN, "x"),
    );
    env.ci.fail_next(1_000, 500);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["wa/pr/github.com/acme/a/1 failed"]
    );
    env.github.close_pr("acme/a", 1);
    env.ci.fail_next(0, 500);
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.ci.accepted().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_run_a_failed_delivery_waits_for_its_backoff_then_is_sent_once() {
    let env = Env::new().await;
    two_workspaces(&env);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replace(
            "poll_interval: 1s\n",
            "poll_interval: 1s\ndelivery: { retry_initial: 2s, retry_cap: 3s }\n",
        ),
    )
    .unwrap();
    env.ci.fail_next(2, 500);
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    assert!(
        env.ci.wait_for_accepted(2, DEADLINE).await,
        "the retries never came"
    );
    let seen = env.github.requests().len();
    // Two more cycles with nothing to do, then stop.
    assert!(env.github.wait_for_requests(seen + 4, DEADLINE).await);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        tokio::time::timeout(DEADLINE, daemon.wait())
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
    assert_eq!(env.ci.rejected_count(), 2);
    let mut keys = env.delivered_keys(0);
    keys.sort();
    assert_eq!(keys, ["wa/mainline", "wb/mainline"], "each exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_ci_target_does_not_hold_up_another() {
    let env = Env::new().await;
    env.github.create_repo("acme/a", MAIN);
    env.github.create_repo("acme/b", MAIN);
    // A "Buildbot" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            if let Ok((c, _)) = silent.accept().await {
                conns.push(c);
            }
        }
    });
    env.configure(&[
        Ws {
            name: "slow",
            ci: "bb",
            packages: &[("a", "acme/a", MAIN)],
            pull_requests: false,
        },
        Ws {
            name: "fast",
            ci: "hook",
            packages: &[("b", "acme/b", MAIN)],
            pull_requests: false,
        },
    ]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace(
            &env.ci.buildbot_url(),
            &format!("http://{silent_addr}/change_hook/base"),
        )
        .replace(
            "poll_interval: 1s\n",
            "poll_interval: 1s\ndelivery: { timeout: 3s }\n",
        );
    std::fs::write(env.config_path(), config).unwrap();

    let child = env.command(&["once"]).spawn().unwrap();
    // The webhook delivery arrives while the Buildbot one is still waiting.
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    assert_eq!(env.delivered_keys(0), ["fast/mainline"]);
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("fast/mainline\tdelivered"), "{stdout}");
    assert!(
        stdout.contains("slow/mainline\tfailed\ttimed out"),
        "{stdout}"
    );
    held.abort();
}
