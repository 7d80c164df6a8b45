//! End-to-end: politeness and timeouts. A forge whose budget is spent is paused
//! until its reset and asked nothing meanwhile; `Retry-After` is honoured; a
//! secondary limit or a bare 429 backs off from the configured minimum; a paused
//! forge never holds up the other; a forge that accepts a connection and never
//! answers costs one target one cycle; a hostile forge echoing our headers back
//! never gets a secret printed.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";
const LIDAR_URL: &str = "https://gitlab.example.org/acme/robots/lidar";

/// `gh` watches a GitHub repository, `gl` a GitLab project; `extra` goes into the
/// configuration of both forges.
fn two_forges(env: &Env, extra: &str) {
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project("acme/robots/lidar", MAIN);
    env.configure(&[
        Ws {
            name: "gh",
            ci: "bb",
            packages: &[("app", "acme/app", MAIN)],
            pull_requests: true,
        },
        Ws {
            name: "gl",
            ci: "bb",
            packages: &[("lidar", LIDAR_URL, MAIN)],
            pull_requests: true,
        },
    ]);
    let config = std::fs::read_to_string(env.config_path()).unwrap().replace(
        "    max_concurrency: 4\n",
        &format!("    max_concurrency: 4\n{extra}"),
    );
    std::fs::write(env.config_path(), config).unwrap();
}

fn stop(daemon: &tokio::process::Child) {
    kill(Pid::from_raw(daemon.id().unwrap() as i32), Signal::SIGTERM).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_pauses_the_forge_until_its_reset_and_nothing_is_asked_meanwhile() {
    let env = Env::new().await;
    two_forges(&env, "");
    env.github.set_budget(0, Duration::from_secs(6));
    let mut daemon = env.command(&["run"]).spawn().unwrap();

    // GitLab keeps being polled every cycle while GitHub is paused.
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    assert_eq!(env.delivered_keys(0), ["gl/mainline"]);
    let github_before = env.github.requests().len();
    assert!(
        (1..=2).contains(&github_before),
        "only the first cycle's requests"
    );
    assert!(env.github.requests().iter().all(|r| r.status == 403));
    let gitlab_now = env.gitlab.requests().len();
    // One more GitLab cycle (well within the 6 s pause) while GitHub is asked nothing.
    assert!(
        env.gitlab.wait_for_requests(gitlab_now + 2, DEADLINE).await,
        "one more cycle"
    );
    assert_eq!(
        env.github.requests().len(),
        github_before,
        "nothing asked while paused"
    );

    // After the reset GitHub is asked again and its build goes out.
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    assert_eq!(env.delivered_keys(1), ["gh/mainline"]);
    stop(&daemon);
    assert_eq!(
        tokio::time::timeout(DEADLINE, daemon.wait())
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_bare_limit_backs_off_from_the_configured_minimum() {
    for (case, retry_after, expected) in [
        ("secondary with Retry-After", Some(2), "Retry-After: 2s"),
        ("secondary without", None, "backing off 2s"),
    ] {
        let env = Env::new().await;
        two_forges(&env, "    secondary_limit_wait: 2s\n");
        env.github.secondary_limit_next(1, retry_after);
        let run = env.forgewatch(&["once"]).await;
        assert_eq!(run.code, Some(0), "{case}: {run:#?}");
        assert!(run.stderr.contains(expected), "{case}: {}", run.stderr);
        // The other forge was not affected.
        assert!(
            run.keys_and_statuses()
                .contains(&"gl/mainline delivered".to_owned()),
            "{case}: {run:#?}"
        );
    }
    // GitLab's bare 429 (no header at all) backs off too; with Retry-After, as sent.
    for (retry_after, expected) in [(None, "backing off 2s"), (Some(3), "Retry-After: 3s")] {
        let env = Env::new().await;
        two_forges(&env, "    secondary_limit_wait: 2s\n");
        env.gitlab.fail_next(
            1,
            forgewatch_tests::fake_gitlab::Failure::Status429 { retry_after },
        );
        let run = env.forgewatch(&["once"]).await;
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        assert!(
            run.keys_and_statuses()
                .contains(&"gh/mainline delivered".to_owned()),
            "{run:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_run_a_paused_forge_resumes_after_retry_after() {
    let env = Env::new().await;
    two_forges(&env, "");
    env.github.secondary_limit_next(1, Some(2));
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    assert!(
        env.ci.wait_for_accepted(2, DEADLINE).await,
        "both builds delivered in the end"
    );
    let mut keys = env.delivered_keys(0);
    keys.sort();
    assert_eq!(keys, ["gh/mainline", "gl/mainline"]);
    assert_eq!(env.github.count_status(403), 1);
    stop(&daemon);
    assert_eq!(
        tokio::time::timeout(DEADLINE, daemon.wait())
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_that_never_answers_costs_one_target_one_cycle() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    env.github.create_repo("acme/stuck", MAIN);
    env.configure(&[
        Ws {
            name: "fine",
            ci: "bb",
            packages: &[("app", "acme/app", MAIN)],
            pull_requests: true,
        },
        Ws {
            name: "stuck",
            ci: "bb",
            packages: &[("stuck", "acme/stuck", MAIN)],
            pull_requests: true,
        },
    ]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen(
            "    max_concurrency: 4\n",
            "    max_concurrency: 4\n    request_timeout: 2s\n",
            1,
        );
    std::fs::write(env.config_path(), config).unwrap();
    env.github.hang_path("/repos/acme/stuck/");
    let started = std::time::Instant::now();
    let run = env.forgewatch(&["once"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.keys_and_statuses(), ["fine/mainline delivered"]);
    assert!(
        run.stderr.contains("acme/stuck") && run.stderr.contains("timed out"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the request timeout"
    );
    assert_eq!(env.github.hung_count(), 2);
    env.github.release_hung();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_echoing_our_headers_never_gets_a_secret_printed() {
    let env = Env::new().await;
    two_forges(&env, "");
    env.github.require_token(Some("not-ours"));
    env.gitlab.require_token(Some("not-ours"));
    env.github.echo_headers_on_401(true);
    env.gitlab.echo_headers_on_401(true);
    let mut cmd = env.command(&["once", "--json"]);
    cmd.env("RUST_LOG", "trace");
    let output = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("401"), "{text}");
    for secret in [support::TOKEN, support::HOOK_SECRET, support::TRIGGER_TOKEN] {
        assert!(!text.contains(secret), "a secret was printed");
    }
    // The fakes did echo it: the test would see a leak.
    assert!(
        env.github
            .requests()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(&format!("Bearer {}", support::TOKEN)))
    );
}
