//! End-to-end: `forgewatch run` as a service (cycles, SIGTERM, restart on the same
//! state), the `state_dir` lock, configuration errors and secrecy of tokens.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";

const LIDAR: &str = "acme/robots/lidar";

/// One workspace on both forges: `acme/app` on GitHub, a GitLab project in a subgroup.
fn one_workspace_on(env: &Env, ci: &str) {
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project(LIDAR, MAIN);
    env.configure(&[Ws {
        name: "app",
        ci,
        packages: &[
            ("app", "acme/app", MAIN),
            (
                "lidar",
                "https://gitlab.example.org/acme/robots/lidar",
                MAIN,
            ),
        ],
        pull_requests: true,
    }]);
}

fn one_workspace(env: &Env) {
    one_workspace_on(env, "bb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_each_change_stops_on_sigterm_and_a_restart_costs_only_304s() {
    let env = Env::new().await;
    one_workspace(&env);
    let daemon = env.command(&["run"]).spawn().unwrap();
    assert!(
        env.ci.wait_for_accepted(1, DEADLINE).await,
        "first delivery never came"
    );

    // Pushes between cycles are delivered by later cycles of the same process.
    let head = env.github.push("acme/app", MAIN);
    assert!(
        env.ci.wait_for_accepted(2, DEADLINE).await,
        "push never delivered"
    );
    assert_eq!(env.ci.accepted()[1].field("revision"), Some(head.as_str()));
    let head = env.gitlab.push(LIDAR, MAIN);
    assert!(
        env.ci.wait_for_accepted(3, DEADLINE).await,
        "GitLab push never delivered"
    );
    assert_eq!(env.ci.accepted()[2].field("revision"), Some(head.as_str()));

    // Let at least one more cycle pass with no change, then stop.
    let seen = env.github.requests().len();
    assert!(env.github.wait_for_requests(seen + 2, DEADLINE).await);
    support::stop(daemon).await;
    assert_eq!(env.ci.accepted().len(), 3);

    // A new process on the same state_dir: no delivery, no request that is not a 304.
    let run = env.once().await;
    assert_eq!(run.stdout, "");
    assert_eq!(env.statuses(), (0, 4, 0));
    assert_eq!(env.ci.accepted().len(), 3);
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
    assert!(run.stdout.contains("watch targets: 2"), "{}", run.stdout);
    assert!(
        run.stdout.contains("github.com/acme/app@main"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("gitlab.example.org/acme/robots/lidar@main"),
        "{}",
        run.stdout
    );
    assert_eq!(env.requests().len(), 0, "check polls nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_output_even_at_trace_level() {
    let env = Env::new().await;
    one_workspace_on(&env, "hook");
    let traced = |env: &Env| {
        let mut cmd = env.command(&["once"]);
        cmd.env("RUST_LOG", "trace");
        async move {
            let output = tokio::time::timeout(DEADLINE, cmd.output())
                .await
                .unwrap()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            for secret in [support::TOKEN, support::HOOK_SECRET] {
                assert!(!text.contains(secret), "a secret was printed");
            }
            (output.status.code(), text)
        }
    };
    // Success: the token went out in every request, the secret signed the delivery.
    let (code, text) = traced(&env).await;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(env.ci.accepted().len(), 1);
    assert!(env.ci.accepted()[0].verify_signature(support::HOOK_SECRET.as_bytes()));
    assert!(text.contains("TRACE"), "trace logging was on");

    // Failure: a wrong token makes every request a 401; reported, never echoed.
    env.github.require_token(Some("some-other-token"));
    env.gitlab.require_token(Some("some-other-token"));
    env.github.push("acme/app", MAIN);
    let (code, text) = traced(&env).await;
    assert_eq!(code, Some(1), "nothing could be polled: {text}");
    assert!(text.contains("HTTP 401: Bad credentials"), "{text}");
    assert!(text.contains("HTTP 401: 401 Unauthorized"), "{text}");
    assert!(text.contains("no watch target could be polled"), "{text}");
    assert_eq!(env.ci.accepted().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildbot_basic_auth_is_sent_from_a_password_variable() {
    let env = Env::new().await;
    one_workspace(&env);
    env.ci.require_basic_auth("forgewatch", "bb-pass word");
    let config = std::fs::read_to_string(env.config_path()).unwrap().replace(
        "    kind: buildbot\n",
        "    kind: buildbot\n    basic_auth: { user: forgewatch, password_env: FW_E2E_BB_PASSWORD }\n",
    );
    std::fs::write(env.config_path(), config).unwrap();
    let mut cmd = env.command(&["once"]);
    cmd.env("FW_E2E_BB_PASSWORD", "bb-pass word\n");
    let output = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "app/mainline\tdelivered\tfirst delivery\n"
    );
    assert_eq!(env.ci.rejected_count(), 0);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("bb-pass"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_without_token_runs_unauthenticated_with_a_warning() {
    let env = Env::new().await;
    one_workspace(&env);
    env.github.require_token(None);
    env.gitlab.require_token(None);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("    token_env: FW_E2E_TOKEN\n", "");
    std::fs::write(env.config_path(), config).unwrap();
    let run = env.once().await;
    assert_eq!(run.stdout, "app/mainline\tdelivered\tfirst delivery\n");
    assert!(
        run.stderr.contains("60 requests per hour"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("only public projects are visible"),
        "{}",
        run.stderr
    );
    assert!(env.requests().iter().all(|r| r.credential.is_none()));
    // Validators are kept per credential: unauthenticated ones work too.
    env.once().await;
    assert_eq!(env.statuses(), (0, 4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_configuration_checks() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.yml");
    let output = tokio::process::Command::new(support::binary())
        .args(["check", "--config"])
        .arg(&example)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("github.com/rock-core/base-types@master"),
        "{stdout}"
    );
    assert!(
        stdout.contains("github.com/rock-core/base-cmake@master"),
        "{stdout}"
    );
}
