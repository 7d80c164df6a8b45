//! End-to-end: politeness and timeouts. A forge whose budget is spent is paused
//! until its reset and asked nothing meanwhile; `Retry-After` is honoured; a
//! secondary limit (GitHub's old-style "abuse detection" 403 too) or a bare 429 backs
//! off from the configured minimum, doubling with each pause that follows; a paused
//! forge never holds up the other; a forge that accepts a connection and never
//! answers costs one target one cycle; a hostile forge echoing our headers back
//! never gets a secret printed. A burst of limited answers pauses the forge once, for
//! the wait they ask; a pause is state: it outlives a reload, a restart and `once`.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forgewatch_tests::format::rfc3339;
use forgewatch_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
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

/// Now, in epoch seconds.
fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `run` daemon and its API.
struct Daemon {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts `forgewatch run`; a previous daemon's address file is removed first so
    /// the one read is this daemon's.
    async fn start(env: &Env) -> Daemon {
        let _ = std::fs::remove_file(env.state_dir().join("listen-address"));
        let child = env.command(&["run"]).spawn().unwrap();
        let address = env.listen_address().await;
        Daemon {
            child,
            base: format!("http://{address}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    async fn json(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    /// Waits until the daemon is ready (its first cycle, which polls every target, is
    /// done).
    async fn ready(&self) {
        eventually(DEADLINE, || async {
            (self.json("/api/v1/status").await["ready"] == true).then_some(())
        })
        .await
        .expect("never ready");
    }

    /// The number of cycles done so far.
    async fn cycles(&self) -> u64 {
        self.json("/api/v1/status").await["cycles"]
            .as_u64()
            .unwrap()
    }

    /// `(paused_until, pause_reason)` of forge `name` in `/api/v1/status`.
    async fn pause_of(&self, name: &str) -> (Value, Value) {
        let status = self.json("/api/v1/status").await;
        let forge = &status["forges"][name];
        (forge["paused_until"].clone(), forge["pause_reason"].clone())
    }

    async fn stop(self) {
        support::stop(self.child).await;
    }
}

/// The wait after a secondary limit without `Retry-After` in the burst test: long
/// enough that the pause outlasts the test, far from the 3600 s cap.
const BURST_WAIT: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_secondary_limits_pauses_the_forge_once_for_the_configured_wait() {
    let env = Env::new().await;
    // GitHub (first in the file) sends its 8 branch heads at once.
    env.configure_burst(&format!("    secondary_limit_wait: {BURST_WAIT}s\n"));

    // All 8 requests are in flight before any is answered; then all 8 get a secondary
    // limit without `Retry-After`.
    env.github.hold_responses();
    env.github.secondary_limit_next(8, None);
    let once = env.command(&["once"]).spawn().unwrap();
    assert!(env.github.wait_for_in_flight(8, DEADLINE).await);
    let released = epoch_now();
    env.github.release_all();
    let output = tokio::time::timeout(DEADLINE, once.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let answered = epoch_now();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no watch target could be polled (8 failed requests"),
        "{stderr}"
    );
    let statuses: Vec<u16> = env.github.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403; 8], "{stderr}");
    // One pause, logged once, for the configured wait (not doubled per answer).
    let pauses: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pausing this forge"))
        .collect();
    assert_eq!(pauses.len(), 1, "{stderr}");
    assert!(
        pauses[0].contains(&format!("backing off {BURST_WAIT}s")),
        "{stderr}"
    );

    // The pause was persisted: a daemon started now shows it, for exactly that wait,
    // and asks GitHub nothing.
    let daemon = Daemon::start(&env).await;
    daemon.ready().await;
    let (until, reason) = daemon.pause_of("github").await;
    let until = until
        .as_str()
        .unwrap_or_else(|| panic!("not paused: {until}"));
    assert!(
        (rfc3339(released + BURST_WAIT - 1)..=rfc3339(answered + BURST_WAIT))
            .contains(&until.to_owned()),
        "paused until {until}, {released}+{BURST_WAIT}s expected"
    );
    assert_eq!(
        reason,
        format!("limited without a wait given: backing off {BURST_WAIT}s").as_str()
    );
    assert_eq!(env.github.requests().len(), 8, "nothing asked while paused");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_pause_outlives_a_reload_a_restart_and_once() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project("acme/robots/lidar", MAIN);
    // One request per cycle to each forge: the branch head.
    env.configure(&[
        Ws {
            name: "gh",
            ci: "bb",
            packages: &[("app", "acme/app", MAIN)],
            pull_requests: false,
        },
        Ws {
            name: "gl",
            ci: "bb",
            packages: &[("lidar", LIDAR_URL, MAIN)],
            pull_requests: false,
        },
    ]);
    env.github.secondary_limit_next(1, Some(60));
    let limited = std::time::Instant::now();
    let daemon = Daemon::start(&env).await;
    daemon.ready().await;
    let statuses: Vec<u16> = env.github.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403]);
    let (until, reason) = daemon.pause_of("github").await;
    assert!(until.is_string(), "{until}");
    assert_eq!(reason, "Retry-After: 60s");

    // A reload with the forge unchanged: the new client keeps the pause. The reload's
    // first cycle polls every target.
    kill(
        Pid::from_raw(daemon.child.id().unwrap() as i32),
        Signal::SIGHUP,
    )
    .unwrap();
    eventually(DEADLINE, || async {
        let events = daemon.json("/api/v1/events").await;
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "reloaded")
            .then_some(())
    })
    .await
    .expect("never reloaded");
    let cycles = daemon.cycles().await;
    eventually(DEADLINE, || async {
        (daemon.cycles().await > cycles).then_some(())
    })
    .await
    .expect("no cycle after the reload");
    assert_eq!(daemon.pause_of("github").await.0, until);
    assert_eq!(env.github.requests().len(), 1, "asked after the reload");
    daemon.stop().await;

    // A restart: its first cycle polls every target.
    let daemon = Daemon::start(&env).await;
    daemon.ready().await;
    assert_eq!(daemon.pause_of("github").await, (until.clone(), reason));
    assert_eq!(env.github.requests().len(), 1, "asked after the restart");
    daemon.stop().await;

    // `once` right after.
    let run = env.forgewatch(&["once"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(env.github.requests().len(), 1, "asked by once: {run:#?}");
    assert!(
        limited.elapsed() < Duration::from_secs(59),
        "the test outlived the pause: it proves nothing"
    );
}

/// `gh` watches one GitHub branch (one request per cycle), with `extra` in GitHub's
/// configuration.
fn one_github_branch(env: &Env, extra: &str) {
    env.github.create_repo("acme/app", MAIN);
    env.configure(&[Ws {
        name: "gh",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN)],
        pull_requests: false,
    }]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen(
            "    max_concurrency: 4\n",
            &format!("    max_concurrency: 4\n{extra}"),
            1,
        );
    std::fs::write(env.config_path(), config).unwrap();
}

/// The waits of the pauses the daemon logged (`backing off Ns`), in order.
fn backoffs_logged(env: &Env) -> Vec<String> {
    let log = std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("pausing this forge"))
        .filter_map(|l| l.split("backing off ").nth(1)?.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abuse_detection_403_pauses_the_forge_with_the_doubling_backoff() {
    let env = Env::new().await;
    one_github_branch(&env, "    secondary_limit_wait: 1s\n");
    env.github.abuse_detection_next(3);
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    assert!(
        env.ci.wait_for_accepted(1, DEADLINE).await,
        "delivered in the end"
    );
    stop(&daemon);
    assert_eq!(
        tokio::time::timeout(DEADLINE, daemon.wait())
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
    let requests = env.github.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 403, 403, 200]);
    assert_eq!(backoffs_logged(&env), ["1s", "2s", "4s"]);
    // Nothing was asked before each pause was over.
    for (pair, wait) in requests.windows(2).zip([1, 2, 4]) {
        let gap = pair[1].arrived.duration_since(pair[0].arrived).unwrap();
        assert!(gap >= Duration::from_secs(wait), "{gap:?} < {wait}s");
    }
}
