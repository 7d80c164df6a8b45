//! End-to-end: the watchdog (fed only while the loop makes progress, not stopped
//! by a paused forge), GitLab's webhook, and the commands that talk to a running
//! daemon (`status`, `trigger`) or describe the configuration (`schema`), and JSON
//! logs.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::time::Duration;

use support::{DEADLINE, Env};

const MAIN: &str = "main";

fn configure(env: &Env) {
    env.configure_app_and_lidar();
}

/// The next message on the notify socket, or `None` after `within`.
async fn next_message(socket: &tokio::net::UnixDatagram, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_loop_starves_the_watchdog_and_a_paused_forge_does_not() {
    for (stuck, expect_watchdog) in [(true, false), (false, true)] {
        let env = Env::new().await;
        configure(&env);
        if !stuck {
            env.github.set_budget(0, Duration::from_secs(600));
        }
        let path = env.dir.path().join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        let mut cmd = env.command(&["run"]);
        cmd.env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "400000");
        if stuck {
            cmd.env("FORGEWATCH_BLOCK_AT", "cycle");
        }
        let child = cmd.spawn().unwrap();
        assert_eq!(
            next_message(&socket, DEADLINE).await.as_deref(),
            Some("READY=1")
        );
        // 0.4 s of watchdog timeout: a fed watchdog sends every 0.2 s. Waiting
        // without an answer is the behaviour under test here.
        let mut watchdogs = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Some(m) = next_message(
            &socket,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await
        {
            if m == "WATCHDOG=1" {
                watchdogs += 1;
            }
        }
        if expect_watchdog {
            assert!(
                watchdogs >= 3,
                "a paused forge is no hang: {watchdogs} watchdog messages"
            );
            assert!(env.github.requests().len() <= 4, "GitHub stays paused");
            assert!(
                env.ci
                    .accepted()
                    .iter()
                    .any(|d| d.properties()["build_key"] == "lidar/mainline")
            );
            support::stop(child).await;
        } else {
            // At most the one sent before the first cycle began; none once stuck
            // (the window is five watchdog periods).
            assert!(
                watchdogs <= 1,
                "a stuck loop must not feed the watchdog: {watchdogs}"
            );
            // Stuck for good: systemd would kill it after its stop timeout.
            let mut child = child;
            child.kill().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_webhook_with_its_token_polls_its_project() {
    let env = Env::new().await;
    configure(&env);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("poll_interval: 1s", "poll_interval: 10m");
    std::fs::write(env.config_path(), config).unwrap();
    let child = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    env.gitlab.clear_requests();
    env.github.clear_requests();
    let head = env.gitlab.push("acme/robots/lidar", MAIN);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = r#"{"object_kind":"push","project":{"path_with_namespace":"acme/robots/lidar"}}"#;
    let wrong = http
        .post(format!("{base}/hooks/gitlab"))
        .header("x-gitlab-token", "nope")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = http
        .post(format!("{base}/hooks/gitlab"))
        .header("x-gitlab-token", support::GITLAB_HOOK_SECRET)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 202);
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    assert_eq!(env.ci.accepted()[2].field("revision"), Some(head.as_str()));
    assert_eq!(env.gitlab.requests().len(), 2, "one poll of that project");
    assert_eq!(env.github.requests().len(), 0, "and nothing else");
    support::stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_trigger_talk_to_the_running_daemon() {
    let env = Env::new().await;
    configure(&env);
    let child = env.command(&["run"]).spawn().unwrap();
    env.listen_address().await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);

    let run = env.forgewatch(&["status"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stdout.contains("app/mainline") && run.stdout.contains("delivered"),
        "{}",
        run.stdout
    );
    let run = env.forgewatch(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["ready"], true);

    let run = env.forgewatch(&["trigger", "app"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let fields: Vec<&str> = run.stdout.trim().split('\t').collect();
    assert_eq!(fields[..2], ["app/mainline", "triggered"]);
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    assert_eq!(env.ci.accepted()[2].properties()["delivery_id"], fields[2]);
    let run = env
        .forgewatch(&["trigger", "app", "--pr", "github.com/acme/app#9"])
        .await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("no build `app/pr/github.com/acme/app/9`"),
        "{}",
        run.stderr
    );
    support::stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_and_json_logs() {
    let output = tokio::process::Command::new(support::binary())
        .arg("schema")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(schema["$schema"].as_str().unwrap().contains("2020-12"));
    assert!(schema["properties"]["workspaces"].is_object());

    let env = Env::new().await;
    configure(&env);
    let run = env.forgewatch(&["--log-format", "json", "once"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
}
