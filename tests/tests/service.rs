//! End-to-end: `forgewatch run` as a service (cycles, SIGTERM, restart on the same
//! state), the `state_dir` lock, configuration errors and secrecy of tokens.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";

fn one_workspace(env: &Env) {
    env.github.create_repo("acme/app", MAIN);
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN)],
        pull_requests: true,
    }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_each_change_stops_on_sigterm_and_a_restart_costs_only_304s() {
    let env = Env::new().await;
    one_workspace(&env);
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    assert!(
        env.ci.wait_for_accepted(1, DEADLINE).await,
        "first delivery never came"
    );

    // A push between cycles is delivered by a later cycle of the same process.
    let head = env.github.push("acme/app", MAIN);
    assert!(
        env.ci.wait_for_accepted(2, DEADLINE).await,
        "push never delivered"
    );
    assert_eq!(env.ci.accepted()[1].field("revision"), Some(head.as_str()));

    // Let at least one more cycle pass with no change, then stop.
    let seen = env.github.requests().len();
    assert!(env.github.wait_for_requests(seen + 2, DEADLINE).await);
    kill(Pid::from_raw(daemon.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.ci.accepted().len(), 2);

    // A new process on the same state_dir: no delivery, no request that is not a 304.
    let run = env.once().await;
    assert_eq!(run.stdout, "");
    assert_eq!(env.statuses(), (0, 2, 0));
    assert_eq!(env.ci.accepted().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_refuses_a_locked_state_dir_and_names_the_holder() {
    let env = Env::new().await;
    one_workspace(&env);
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    let pid = daemon.id().unwrap();

    let run = env.forgewatch(&["once"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains(&format!("locked by another forgewatch (pid {pid})")),
        "{}",
        run.stderr
    );
    // A dry run does not need the lock.
    let dry = env.forgewatch(&["once", "--dry-run"]).await;
    assert_eq!(dry.code, Some(0), "{dry:#?}");

    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(DEADLINE, daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_with_located_messages() {
    let env = Env::new().await;
    one_workspace(&env);
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    let bad = good.replace("poll_interval: 1s", "poll_interval: 1 minute");
    std::fs::write(env.config_path(), bad).unwrap();
    for args in [&["check"][..], &["once"], &["run"]] {
        let run = env.forgewatch(args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
        let expected = format!("{}:2:16:", env.config_path().display());
        assert!(run.stderr.contains(&expected), "{args:?}: {}", run.stderr);
    }
    std::fs::write(env.config_path(), good).unwrap();
    let run = env.forgewatch(&["check"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("watch targets: 1"), "{}", run.stdout);
    assert!(
        run.stdout.contains("github.com/acme/app@main"),
        "{}",
        run.stdout
    );
    assert_eq!(env.github.requests().len(), 0, "check polls nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_output_even_at_trace_level() {
    let env = Env::new().await;
    one_workspace(&env);
    // A wrong token makes the fake answer 401: errors are logged, the token is not.
    env.github.require_token(Some("some-other-token"));
    let mut cmd = env.command(&["once"]);
    cmd.env("RUST_LOG", "trace");
    let output = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0));
    assert!(stderr.contains("401"), "the failure is reported: {stderr}");
    for secret in [support::TOKEN, support::HOOK_SECRET] {
        assert!(!stderr.contains(secret), "secret in stderr");
        assert!(!stdout.contains(secret), "secret in stdout");
    }
    assert_eq!(env.ci.accepted().len(), 0);
}
