//! End-to-end: `forgewatch reload`, the unit's `ExecReload=` (issue 16). Against a
//! running daemon it exits 0 when the new file is taken, and 1 with the reason when
//! it is refused (with the file's located errors), so `systemctl reload` fails
//! visibly. With an admin token it asks
//! `POST /api/v1/reload`; without one it sends SIGHUP and reads the verdict from the
//! event history.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use support::{Env, Ws};

fn workspaces() -> [Ws<'static>; 1] {
    [Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main")],
        pull_requests: false,
    }]
}

async fn reload(env: &Env) -> (Option<i32>, String) {
    let output = env.command(&["reload"]).output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

async fn reloads_report_their_verdict(with_token: bool) {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.configure(&workspaces());
    let strip = |text: String| {
        if with_token {
            text
        } else {
            text.replace("  admin_token_env: FW_E2E_ADMIN\n", "")
        }
    };
    let good = strip(std::fs::read_to_string(env.config_path()).unwrap());
    std::fs::write(env.config_path(), &good).unwrap();
    let daemon = env.command(&["run"]).spawn().unwrap();
    env.listen_address().await;

    let (code, text) = reload(&env).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("configuration reloaded"), "{text}");

    // An invalid file: refused with its located errors.
    std::fs::write(
        env.config_path(),
        good.replace("poll_interval: 1s", "poll_interval: soon"),
    )
    .unwrap();
    let (code, text) = reload(&env).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("config.yml:2:16"), "{text}");
    assert!(
        text.contains("the configuration was not reloaded"),
        "{text}"
    );

    std::fs::write(
        env.config_path(),
        good.replace("poll_interval: 1s", "poll_interval: 2s"),
    )
    .unwrap();
    let (code, text) = reload(&env).await;
    assert_eq!(code, Some(0), "{text}");
    // The daemon saw both accepted reloads, and nothing of the refused file.
    let base = format!("http://{}", env.listen_address().await);
    let events = reqwest::get(format!("{base}/api/v1/events")).await.unwrap();
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&events.text().await.unwrap()).unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| k.starts_with("reload"))
        .collect();
    assert_eq!(kinds, ["reloaded", "reloaded"]);
    support::stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_the_admin_token_reports_the_verdict() {
    reloads_report_their_verdict(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_sighup_without_a_token_reports_the_verdict() {
    reloads_report_their_verdict(false).await;
}
