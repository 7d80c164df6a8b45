//! End-to-end: workspaces whose packages come from an autoproj manifest refreshed
//! by an update command. New packages are watched, one package-set push gives one
//! mainline trigger, a hanging or failing update keeps the last good list and
//! delays no other workspace, no process of an update survives (not even one that
//! left its process group), and update runs are recorded as jobs. Also the `command`
//! CI target.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::path::PathBuf;

use forgewatch::state::State;
use forgewatch::state::jobs::JobStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env, Marker};

const MAIN: &str = "main";
const PKG_SET: &str = "pkg_set:github:/acme/pkgset.git";

fn manifest(packages: &[(&str, &str)]) -> String {
    support::autoproj_manifest(packages, Some(MAIN))
}

/// The update script: records its pid and environment, hangs while `hang` exists,
/// fails if `fail` exists, then installs `next-manifest` as the manifest.
const UPDATE_SH: &str = "echo $$ > update.pid
env > update.env
echo \"updating in $(pwd)\"
while [ -f hang ]; do sleep 1; done
if [ -f fail ]; then echo 'remote hung up' >&2; exit 7; fi
cp next-manifest manifest
";

/// An update script that leaves two processes that ignore SIGTERM outside its process
/// group, as `git` credential helpers, `ssh` control masters and daemonising build
/// tools do: one by a double fork and `setsid`, one by `setpgid`. Once both have left
/// (fifos), it writes `escaped`, then hangs while `hang` exists.
const ESCAPING_UPDATE_SH: &str = r#"echo $$ > update.pid
rm -f left-setsid left-setpgid
mkfifo left-setsid left-setpgid
sh -c 'setsid sh -c "trap \"\" TERM; echo > left-setsid; exec sleep 1000" &'
perl -e '$SIG{TERM} = "IGNORE"; setpgrp(0, 0) or die "setpgrp: $!";
    open(my $f, ">", "left-setpgid") or die "fifo: $!"; print $f "\n"; close $f;
    exec "sleep", "1000" or die "sleep: $!"' &
read -r _ < left-setsid
read -r _ < left-setpgid
touch escaped
while [ -f hang ]; do sleep 1; done
cp next-manifest manifest
"#;

struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    fn new(env: &Env) -> Workspace {
        let dir = env.dir.path().join("ws");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("update.sh"), UPDATE_SH).unwrap();
        Workspace { dir }
    }

    fn next_manifest(&self, packages: &[(&str, &str)]) {
        std::fs::write(self.dir.join("next-manifest"), manifest(packages)).unwrap();
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The update escapes its group (see [`ESCAPING_UPDATE_SH`]) and hangs.
    fn escaping_update(&self) {
        std::fs::write(self.file("update.sh"), ESCAPING_UPDATE_SH).unwrap();
        std::fs::write(self.file("hang"), "").unwrap();
        std::fs::write(self.file("manifest"), manifest(&[("base/a", "acme/a")])).unwrap();
        self.next_manifest(&[("base/a", "acme/a")]);
    }

    /// Waits until the update's processes have left its group.
    async fn escaped(&self) {
        let escaped = self.file("escaped");
        let done = forgewatch_tests::wait::eventually(DEADLINE, || async {
            escaped.exists().then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "the update's processes never left its group"
        );
    }
}

/// `auto` (manifest + update + buildconf) and `plain` (one static package).
fn configure(env: &Env, when: &str, timeout: &str) {
    env.configure_yaml(&format!(
        "  - name: auto
    ci: bb
    manifest: {{ format: autoproj, path: ws/manifest }}
    update: {{ argv: [sh, update.sh], dir: ws, timeout: {timeout}, kill_grace: 1s, when: {when} }}
    buildconf: {{ repo: 'https://github.com/acme/buildconf', branch: main }}
    pull_requests: {{ enabled: false }}
  - name: plain
    ci: bb
    packages: [ {{ name: p, repo: 'https://github.com/acme/p', branch: main }} ]
    pull_requests: {{ enabled: false }}
"
    ));
}

fn repos(env: &Env) {
    for repo in [
        "acme/pkgset",
        "acme/a",
        "acme/b",
        "acme/buildconf",
        "acme/p",
    ] {
        env.github.create_repo(repo, MAIN);
    }
}

fn jobs(env: &Env) -> Vec<forgewatch::state::jobs::JobRecord> {
    State::open_read_only(&env.state_dir())
        .unwrap()
        .jobs_of("auto", 100)
        .unwrap()
}

fn branch_polls(env: &Env, repo: &str) -> usize {
    env.github
        .count_path_prefix(&format!("/repos/{repo}/branches/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_set_push_updates_the_list_and_triggers_the_mainline_once() {
    let env = Env::new().await;
    repos(&env);
    let ws = Workspace::new(&env);
    ws.next_manifest(&[("base/a", "acme/a")]);
    configure(&env, "[config_change]", "30s");

    // Never updated: the first run updates, then builds with the new list.
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["auto/mainline delivered", "plain/mainline delivered"]
    );
    let auto = env
        .ci
        .accepted()
        .into_iter()
        .find(|d| d.properties()["build_key"] == "auto/mainline")
        .unwrap();
    assert_eq!(
        auto.properties()["package_names"],
        serde_json::json!(["base/a", "main configuration", PKG_SET])
    );
    assert_eq!(branch_polls(&env, "acme/b"), 0);
    assert_eq!(jobs(&env).len(), 1);

    // Nothing moved: no update, nothing delivered.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(jobs(&env).len(), 1);

    // The package set moves and the update adds a package: one mainline delivery.
    ws.next_manifest(&[("base/a", "acme/a"), ("base/b", "acme/b")]);
    env.github.push("acme/pkgset", MAIN);
    let run = env.once().await;
    assert_eq!(run.lines().len(), 1, "{run:#?}");
    let (key, status, reason) = &run.lines()[0];
    assert_eq!(
        (key.as_str(), status.as_str()),
        ("auto/mainline", "delivered")
    );
    assert!(
        reason.contains("base/b added") && reason.contains(&format!("{PKG_SET} ")),
        "{reason}"
    );
    assert_eq!(
        branch_polls(&env, "acme/b"),
        1,
        "the new package is watched"
    );
    assert_eq!(jobs(&env).len(), 2);
    assert_eq!(env.once().await.stdout, "");

    // A buildconf push runs the update too; the list is unchanged, the mainline
    // changes once (its buildconf head moved).
    env.github.push("acme/buildconf", MAIN);
    env.clear_requests();
    let mut cmd = env.command(&["once"]);
    cmd.env("NOTIFY_SOCKET", "/run/forgewatch-e2e-notify");
    let output = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let run = support::Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_eq!(run.keys_and_statuses(), ["auto/mainline delivered"]);
    assert!(
        run.lines()[0].2.starts_with("main configuration "),
        "{:?}",
        run.lines()
    );
    let jobs = jobs(&env);
    assert_eq!(jobs.len(), 3);
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Succeeded),
        "{jobs:#?}"
    );
    let log = State::open_read_only(&env.state_dir())
        .unwrap()
        .job_lines(jobs[0].id, 0)
        .unwrap();
    assert_eq!(log.len(), 1);
    assert!(log[0].text.starts_with("updating in ") && log[0].stream == "stdout");

    // The update ran with a sanitised environment.
    let child_env = std::fs::read_to_string(ws.file("update.env")).unwrap();
    assert!(child_env.lines().any(|l| l == "GIT_TERMINAL_PROMPT=0"));
    for secret in [
        "FW_E2E_TOKEN",
        "FW_E2E_HOOK_SECRET",
        "FW_E2E_TRIGGER_TOKEN",
        "NOTIFY_SOCKET",
    ] {
        assert!(
            !child_env.contains(secret),
            "{secret} leaked into the update"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_update_and_a_broken_manifest_keep_the_last_good_list() {
    let env = Env::new().await;
    repos(&env);
    let ws = Workspace::new(&env);
    ws.next_manifest(&[("base/a", "acme/a")]);
    configure(&env, "[startup]", "1s");
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["auto/mainline delivered", "plain/mainline delivered"]
    );

    // The update now hangs past its timeout, and the manifest is garbage.
    std::fs::write(ws.file("hang"), "").unwrap();
    std::fs::write(ws.file("manifest"), "- name: [unclosed\n").unwrap();
    env.github.push("acme/p", MAIN);
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["plain/mainline delivered"]);
    assert!(
        run.stderr.contains("keeping the last good package list"),
        "{}",
        run.stderr
    );
    let jobs = jobs(&env);
    assert_eq!(jobs[0].status, JobStatus::TimedOut, "{jobs:#?}");
    assert!(
        support::group_is_gone(&ws.file("update.pid")),
        "a process of the update survived"
    );
    // The last good list is still watched: its packages are polled.
    assert_eq!(branch_polls(&env, "acme/a"), 1);

    // Now it crashes instead: recorded as failed, the list is kept all the same.
    std::fs::remove_file(ws.file("hang")).unwrap();
    std::fs::write(ws.file("fail"), "").unwrap();
    ws.next_manifest(&[("base/b", "acme/b")]);
    let run = env.once().await;
    assert_eq!(run.stdout, "");
    let jobs = self::jobs(&env);
    assert_eq!(jobs[0].status, JobStatus::Failed, "{jobs:#?}");
    assert_eq!(jobs[0].detail.as_deref(), Some("exited with status 7"));
    let log = State::open_read_only(&env.state_dir())
        .unwrap()
        .job_lines(jobs[0].id, 0)
        .unwrap();
    // Order holds within a stream; the two pipes are read side by side.
    let lines = |stream: &str| -> Vec<String> {
        log.iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.clone())
            .collect()
    };
    assert_eq!(lines("stderr"), ["remote hung up"]);
    assert_eq!(lines("stdout").len(), 1);
    assert!(lines("stdout")[0].starts_with("updating in "));
    assert_eq!(branch_polls(&env, "acme/a"), 1);
    assert_eq!(branch_polls(&env, "acme/b"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_update_delays_no_other_workspace_and_dies_with_the_daemon() {
    let env = Env::new().await;
    repos(&env);
    let ws = Workspace::new(&env);
    std::fs::write(ws.file("manifest"), manifest(&[("base/a", "acme/a")])).unwrap();
    ws.next_manifest(&[("base/a", "acme/a")]);
    std::fs::write(ws.file("hang"), "").unwrap();
    configure(&env, "[startup]", "1h");
    let daemon = env.command(&["run"]).spawn().unwrap();

    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    let head = env.github.push("acme/p", MAIN);
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    // Only `plain` was delivered; `auto`'s mainline waits for its update.
    let keys = env.delivered_keys(0);
    assert_eq!(keys, ["plain/mainline", "plain/mainline"]);
    assert_eq!(env.ci.accepted()[1].field("revision"), Some(head.as_str()));
    assert!(ws.file("update.pid").exists(), "the update is running");

    support::stop(daemon).await;
    assert!(
        support::group_is_gone(&ws.file("update.pid")),
        "a process of the update survived"
    );
    let jobs = jobs(&env);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Failed);
    assert_eq!(
        jobs[0].detail.as_deref(),
        Some("cancelled: forgewatch is stopping")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lets_a_running_update_finish_and_its_mainline_follow() {
    let env = Env::new().await;
    repos(&env);
    let ws = Workspace::new(&env);
    std::fs::write(ws.file("manifest"), manifest(&[("base/a", "acme/a")])).unwrap();
    ws.next_manifest(&[("base/a", "acme/a"), ("base/b", "acme/b")]);
    std::fs::write(ws.file("hang"), "").unwrap();
    configure(&env, "[startup]", "1h");
    let daemon = env.command(&["run"]).spawn().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    assert_eq!(env.delivered_keys(0), ["plain/mainline"]);
    let pid_file = ws.file("update.pid");
    let started =
        forgewatch_tests::wait::eventually(DEADLINE, || async { pid_file.exists().then_some(()) })
            .await;
    assert!(started.is_some(), "the update never started");

    // A reload (same file) while the update runs.
    kill(Pid::from_raw(daemon.id().unwrap() as i32), Signal::SIGHUP).unwrap();
    let reloaded = forgewatch_tests::wait::eventually(DEADLINE, || async {
        let events = State::open_read_only(&env.state_dir())
            .ok()?
            .events(&Default::default())
            .ok()?;
        events.iter().any(|e| e.kind == "reloaded").then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "the reload never happened");

    // The update was not cancelled by the reload: it ends, and the mainline goes
    // out once, with the list it installed.
    std::fs::remove_file(ws.file("hang")).unwrap();
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    assert_eq!(env.delivered_keys(1), ["auto/mainline"]);
    assert_eq!(
        env.ci.accepted()[1].properties()["package_names"],
        serde_json::json!(["base/a", "base/b", "main configuration", PKG_SET])
    );
    let jobs = jobs(&env);
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].status, JobStatus::Succeeded);

    support::stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_target_gets_the_payload_on_stdin_and_exit_0_accepts() {
    let env = Env::new().await;
    env.github.create_repo("acme/p", MAIN);
    env.configure_yaml(
        "  - name: scripted
    ci: script
    packages: [ { name: p, repo: 'https://github.com/acme/p', branch: main } ]
    pull_requests: { enabled: false }
",
    );
    let script = env.dir.path().join("ci-script.sh");
    std::fs::write(
        &script,
        "cat > payload.json\necho \"$FORGEWATCH_DELIVERY_ID\" > delivery-id\n",
    )
    .unwrap();
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["scripted/mainline delivered"]);
    let payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.path().join("payload.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(payload["build_key"], "scripted/mainline");
    assert_eq!(payload["event"], "build");
    let id = std::fs::read_to_string(env.dir.path().join("delivery-id")).unwrap();
    assert_eq!(payload["delivery_id"], id.trim());

    std::fs::write(&script, "echo 'queue full' >&2\nexit 3\n").unwrap();
    env.github.push("acme/p", MAIN);
    let run = env.once().await;
    assert_eq!(
        run.lines(),
        [(
            "scripted/mainline".into(),
            "failed".into(),
            "exited with status 3: queue full".into()
        )]
    );

    // A command that ran the build prints its result: the history has it.
    std::fs::write(
        &script,
        "cat > /dev/null\necho building\necho '{\"state\": \"failure\", \"url\": \"https://ci.example.org/b/9\", \"summary\": \"2 tests failed\"}'\necho done\n",
    )
    .unwrap();
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["scripted/mainline delivered"]);
    let state = State::open_read_only(&env.state_dir()).unwrap();
    let builds = state
        .builds(&forgewatch::state::history::BuildsQuery::default())
        .unwrap();
    let last = &builds[0];
    assert_eq!(
        (
            last.build_key.as_str(),
            last.state,
            last.url.as_deref(),
            last.summary.as_deref()
        ),
        (
            "scripted/mainline",
            Some(forgewatch_adapters::results::BuildState::Failure),
            Some("https://ci.example.org/b/9"),
            Some("2 tests failed")
        )
    );
    let results = state.results_of(&last.delivery_id).unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0].source.as_str(), results[0].flag.as_deref()),
        ("command", None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_that_left_a_timed_out_update_s_group_are_killed_with_it() {
    let env = Env::new().await;
    repos(&env);
    let ws = Workspace::new(&env);
    ws.escaping_update();
    configure(&env, "[startup]", "5s");
    let marker = Marker::new(&env);
    let daemon = marker.mark(env.command(&["run"])).spawn().unwrap();
    ws.escaped().await;

    // The job is recorded once the runner found none of its processes left.
    let timed_out = forgewatch_tests::wait::eventually(DEADLINE, || async {
        let jobs = State::open_read_only(&env.state_dir())
            .ok()?
            .jobs_of("auto", 10)
            .ok()?;
        jobs.first()
            .is_some_and(|j| j.status == JobStatus::TimedOut)
            .then_some(())
    })
    .await;
    assert!(timed_out.is_some(), "the update never timed out");
    assert_eq!(
        marker.alive_except(daemon.id()),
        Vec::<i32>::new(),
        "processes of the timed-out update survived"
    );

    support::stop(daemon).await;
    assert_eq!(marker.alive(), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_that_left_a_running_update_s_group_die_with_the_daemon() {
    let env = Env::new().await;
    repos(&env);
    let ws = Workspace::new(&env);
    ws.escaping_update();
    configure(&env, "[startup]", "1h");
    let marker = Marker::new(&env);
    let daemon = marker.mark(env.command(&["run"])).spawn().unwrap();
    ws.escaped().await;

    support::stop(daemon).await;
    assert_eq!(
        marker.alive(),
        Vec::<i32>::new(),
        "processes of the update survived the daemon"
    );
    let jobs = jobs(&env);
    assert_eq!(
        jobs[0].detail.as_deref(),
        Some("cancelled: forgewatch is stopping")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_left_by_a_command_target_is_killed_when_it_exits() {
    let env = Env::new().await;
    env.github.create_repo("acme/p", MAIN);
    env.configure_yaml(
        "  - name: scripted
    ci: script
    packages: [ { name: p, repo: 'https://github.com/acme/p', branch: main } ]
    pull_requests: { enabled: false }
",
    );
    // Accepts the build, leaving a process in a session of its own that ignores SIGTERM.
    std::fs::write(
        env.dir.path().join("ci-script.sh"),
        r#"cat > /dev/null
mkfifo left
setsid sh -c 'trap "" TERM; echo > left; exec sleep 1000' &
read -r _ < left
"#,
    )
    .unwrap();
    let marker = Marker::new(&env);
    let run = env.finish(marker.mark(env.command(&["once"]))).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.keys_and_statuses(), ["scripted/mainline delivered"]);
    assert_eq!(
        marker.alive(),
        Vec::<i32>::new(),
        "the command target's daemon survived"
    );
}
