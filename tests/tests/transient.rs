//! End-to-end: new packages introduced by an open config PR (SPEC §13). A
//! package-set PR adds package `new/pkg` from repository `acme/newpkg`, which has an
//! open PR of its own: a discovery script (a real shell script, given the overrides
//! of the config PR) reports the package, it is watched while the config PR is open,
//! and both PRs are built together (each with the other's ref), re-delivered once
//! each when either moves; merged, the package becomes permanent with one mainline
//! delivery; closed, it is no longer polled. A hanging discovery is killed and the
//! config PR goes out without transient packages, flagged `discovery: "failed"`;
//! so is a process it left outside its process group.
//! In `run`, the status API lists each config PR with its discovery, transient
//! packages and builds, and two config PRs defining `new/pkg` differently.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::path::PathBuf;

use forgewatch::plan::ids::BuildKey;
use forgewatch::state::State;
use forgewatch::state::jobs::JobStatus;
use forgewatch_tests::fake_ci::Delivery;
use forgewatch_tests::fake_github::NewPr;
use forgewatch_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use support::{DEADLINE, Env, Marker};

const MAIN: &str = "main";
const PKG_SET: &str = "pkg_set:github:/acme/pkgset.git";
const SET_PR: &str = "auto/pr/github.com/acme/pkgset/1";
const NEW_PR: &str = "auto/pr/github.com/acme/newpkg/2";

fn manifest(packages: &[(&str, &str)]) -> String {
    support::autoproj_manifest(packages, None)
}

/// The discovery: records its pid, environment and overrides, hangs while
/// `hang-discovery` exists, then writes the manifest of the configuration it was
/// pointed at: with `new/pkg` from acme/newpkg when the overrides point the package
/// set at a PR ref, with `new/pkg` from acme/otherpkg for a buildconf PR, else the
/// mainline one.
const DISCOVER_SH: &str = r#"echo $$ > discover.pid
env | grep '^FORGEWATCH_' | sort > "discover-$FORGEWATCH_CONFIG_KIND.env"
cp "$FORGEWATCH_OVERRIDES" "discover-$FORGEWATCH_CONFIG_KIND.overrides"
while [ -f hang-discovery ]; do sleep 1; done
if grep -q '^- "pkg_set:github:/acme/pkgset.git":$' "$FORGEWATCH_OVERRIDES" &&
   grep -q 'remote_branch: "refs/pull/' "$FORGEWATCH_OVERRIDES"; then
  cp manifest-newpkg "$FORGEWATCH_MANIFEST_OUT"
elif [ "$FORGEWATCH_CONFIG_KIND" = buildconf ]; then
  cp manifest-otherpkg "$FORGEWATCH_MANIFEST_OUT"
else
  cp manifest "$FORGEWATCH_MANIFEST_OUT"
fi
"#;

/// The update installs `next-manifest`.
const UPDATE_SH: &str = "cp next-manifest manifest\n";

struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// `ws/` with both scripts and the manifests: the mainline has `base/a`.
    fn new(env: &Env) -> Workspace {
        let dir = env.dir.path().join("ws");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("discover.sh"), DISCOVER_SH).unwrap();
        std::fs::write(dir.join("update.sh"), UPDATE_SH).unwrap();
        let mainline = manifest(&[("base/a", "acme/a")]);
        std::fs::write(dir.join("manifest"), &mainline).unwrap();
        std::fs::write(dir.join("next-manifest"), &mainline).unwrap();
        let with = |repo| manifest(&[("base/a", "acme/a"), ("new/pkg", repo)]);
        std::fs::write(dir.join("manifest-newpkg"), with("acme/newpkg")).unwrap();
        std::fs::write(dir.join("manifest-otherpkg"), with("acme/otherpkg")).unwrap();
        Workspace { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap()
    }
}

/// Workspace `auto`: the autoproj manifest, an update on `config_change`, the
/// discovery (`timeout`), the buildconf; PRs built at their merge ref.
fn configure(env: &Env, update: bool, timeout: &str) {
    let update = if update {
        "\n    update: { argv: [sh, update.sh], dir: ws, when: [config_change] }"
    } else {
        ""
    };
    env.configure_yaml(&format!(
        "  - name: auto
    ci: bb
    manifest: {{ format: autoproj, path: ws/manifest }}{update}
    discover: {{ argv: [sh, discover.sh], dir: ws, timeout: {timeout}, kill_grace: 1s }}
    buildconf: {{ repo: 'https://github.com/acme/buildconf', branch: main }}
    pull_requests: {{ pr_ref: merge }}
"
    ));
}

/// The repositories, the package-set PR #1 adding `new/pkg`, and acme/newpkg's
/// first implementation as PR #2 (#1 was closed, so the two refs differ).
fn forge(env: &Env) {
    for repo in [
        "acme/pkgset",
        "acme/buildconf",
        "acme/a",
        "acme/newpkg",
        "acme/otherpkg",
    ] {
        env.github.create_repo(repo, MAIN);
    }
    env.github
        .open_pr("acme/pkgset", NewPr::new(MAIN, "add-new-pkg"));
    env.github
        .open_pr("acme/newpkg", NewPr::new(MAIN, "abandoned"));
    env.github.close_pr("acme/newpkg", 1);
    env.github
        .open_pr("acme/newpkg", NewPr::new(MAIN, "first-impl"));
}

fn state(env: &Env) -> State {
    State::open_read_only(&env.state_dir()).unwrap()
}

fn discover_jobs(env: &Env) -> Vec<forgewatch::state::jobs::JobRecord> {
    let mut jobs = state(env).jobs_of("auto", 100).unwrap();
    jobs.retain(|j| j.kind == "discover");
    jobs
}

/// The last accepted delivery of `key`.
fn last(env: &Env, key: &str) -> Delivery {
    env.ci
        .accepted()
        .into_iter()
        .rev()
        .find(|d| d.properties()["build_key"] == key)
        .unwrap_or_else(|| panic!("{key} was never delivered"))
}

fn overrides(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(name, reference)| {
                json!({ *name: {
                    "remote_branch": reference,
                    "single_branch": false,
                    "shallow": false,
                }})
            })
            .collect(),
    )
}

fn newpkg_polls(env: &Env) -> usize {
    env.github.count_path_prefix("/repos/acme/newpkg/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_pr_and_the_new_packages_pr_are_built_together() {
    let env = Env::new().await;
    forge(&env);
    let ws = Workspace::new(&env);
    configure(&env, true, "30s");

    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "auto/mainline delivered".to_owned(),
            format!("{NEW_PR} delivered"),
            format!("{SET_PR} delivered"),
        ],
        "{run:#?}"
    );
    // The discovery ran once, given the package set at the PR's merge ref.
    let jobs = discover_jobs(&env);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    let script_env = ws.read("discover-package_set.env");
    for line in [
        "FORGEWATCH_CONFIG_PR=github.com/acme/pkgset#1",
        "FORGEWATCH_CONFIG_REF=refs/pull/1/merge",
        "FORGEWATCH_CONFIG_REPOSITORY=https://github.com/acme/pkgset",
    ] {
        assert!(script_env.lines().any(|l| l == line), "{script_env}");
    }
    assert_eq!(
        ws.read("discover-package_set.overrides"),
        format!(
            "- \"{PKG_SET}\":\n    remote_branch: \"refs/pull/1/merge\"\n    single_branch: false\n    shallow: false\n"
        )
    );
    // Both builds carry both refs; each depends on the other.
    let set = last(&env, SET_PR).properties();
    assert_eq!(
        set["overrides"],
        overrides(&[
            (PKG_SET, "refs/pull/1/merge"),
            ("new/pkg", "refs/pull/2/merge")
        ])
    );
    assert_eq!(set["discovery"], "succeeded");
    assert_eq!(set["dependencies"][0]["path"], "acme/newpkg");
    let new = last(&env, NEW_PR).properties();
    assert_eq!(
        new["overrides"],
        overrides(&[
            ("new/pkg", "refs/pull/2/merge"),
            (PKG_SET, "refs/pull/1/merge")
        ])
    );
    assert_eq!(new["package_names"], json!(["new/pkg"]));
    assert_eq!(new["dependencies"][0]["path"], "acme/pkgset");
    assert!(new.get("discovery").is_none(), "{new}");
    // The mainline does not have the transient package.
    let mainline = last(&env, "auto/mainline").properties();
    assert!(
        !mainline["package_names"]
            .as_array()
            .unwrap()
            .contains(&json!("new/pkg")),
        "{mainline}"
    );

    // Nothing moved: nothing delivered, no discovery.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(discover_jobs(&env).len(), 1);

    // A push to the new package's PR re-triggers both, once; no discovery.
    env.github.push_pr("acme/newpkg", 2);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{NEW_PR} delivered"), format!("{SET_PR} delivered")],
        "{run:#?}"
    );
    assert_eq!(discover_jobs(&env).len(), 1);

    // A push to the config PR: its discovery runs again first, then both, once.
    env.github.push_pr("acme/pkgset", 1);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{NEW_PR} delivered"), format!("{SET_PR} delivered")],
        "{run:#?}"
    );
    assert_eq!(discover_jobs(&env).len(), 2);

    // Merged: the package set moves, its update lists new/pkg. One mainline
    // delivery with the package added; the package's PR is rebuilt once without
    // the config PR (no longer in its closure); nothing transient is left.
    std::fs::write(ws.file("next-manifest"), ws.read("manifest-newpkg")).unwrap();
    env.github.push("acme/pkgset", MAIN);
    env.github.close_pr("acme/pkgset", 1);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "auto/mainline delivered".to_owned(),
            format!("{NEW_PR} delivered")
        ],
        "{run:#?}"
    );
    assert!(run.lines()[0].2.contains("new/pkg added"), "{run:#?}");
    assert_eq!(
        last(&env, NEW_PR).properties()["overrides"],
        overrides(&[("new/pkg", "refs/pull/2/merge")])
    );
    assert_eq!(state(&env).discoveries_of("auto").unwrap(), vec![]);
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(discover_jobs(&env).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_config_pr_drops_its_transient_packages() {
    let env = Env::new().await;
    forge(&env);
    Workspace::new(&env);
    configure(&env, false, "30s");
    assert_eq!(env.once().await.keys_and_statuses().len(), 3);
    assert!(newpkg_polls(&env) > 0);

    // Closed unmerged: the config PR's build and its package's builds are forgotten.
    env.github.close_pr("acme/pkgset", 1);
    assert_eq!(env.once().await.stdout, "");
    let st = state(&env);
    for key in [SET_PR, NEW_PR].map(|k| BuildKey::from_stored(k.to_owned())) {
        assert_eq!(st.delivered(&key).unwrap(), None, "{key}");
    }
    assert!(st.delivered(&BuildKey::mainline("auto")).unwrap().is_some());
    assert_eq!(st.discoveries_of("auto").unwrap(), vec![]);

    // The next cycle no longer polls the package's repository.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(newpkg_polls(&env), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_discovery_is_killed_and_the_config_pr_goes_out_flagged() {
    let env = Env::new().await;
    forge(&env);
    let ws = Workspace::new(&env);
    std::fs::write(ws.file("hang-discovery"), "").unwrap();
    configure(&env, false, "2s");

    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "auto/mainline delivered".to_owned(),
            format!("{SET_PR} delivered")
        ],
        "{run:#?}"
    );
    let set = last(&env, SET_PR).properties();
    assert_eq!(set["discovery"], "failed");
    assert_eq!(
        set["overrides"],
        overrides(&[(PKG_SET, "refs/pull/1/merge")])
    );
    assert_eq!(set["dependencies"], json!([]));
    assert_eq!(newpkg_polls(&env), 0, "no transient package is watched");
    let jobs = discover_jobs(&env);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::TimedOut);
    assert!(support::group_is_gone(&ws.file("discover.pid")));
    let events = state(&env)
        .events(&forgewatch::state::events::EventQuery {
            since: None,
            workspace: Some("auto".into()),
            limit: Some(100),
            after: None,
        })
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "discovery_failed" && e.message.contains("timed out after 2s")),
        "{events:#?}"
    );
    // Not run again for the same head.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(discover_jobs(&env).len(), 1);
}

/// A discovery that leaves a process ignoring SIGTERM in a session of its own (a
/// double fork and `setsid`), writes `escaped` once it has left, and hangs.
const ESCAPING_DISCOVER_SH: &str = r#"mkfifo left
sh -c 'setsid sh -c "trap \"\" TERM; echo > left; exec sleep 1000" &'
read -r _ < left
touch escaped
while :; do sleep 1; done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_left_a_hanging_discovery_s_group_is_killed_with_it() {
    let env = Env::new().await;
    forge(&env);
    let ws = Workspace::new(&env);
    std::fs::write(ws.file("discover.sh"), ESCAPING_DISCOVER_SH).unwrap();
    configure(&env, false, "3s");
    let marker = Marker::new(&env);
    let run = env.finish(marker.mark(env.command(&["once"]))).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(ws.file("escaped").exists(), "the discovery never escaped");
    let jobs = discover_jobs(&env);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::TimedOut);
    assert_eq!(
        marker.alive(),
        Vec::<i32>::new(),
        "a process of the discovery survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_api_lists_config_prs_and_conflicting_definitions() {
    let env = Env::new().await;
    forge(&env);
    Workspace::new(&env);
    // A buildconf PR that defines new/pkg from another repository.
    env.github
        .open_pr("acme/buildconf", NewPr::new(MAIN, "other-new-pkg"));
    configure(&env, false, "30s");
    let mut child = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let conf_pr = "auto/pr/github.com/acme/buildconf/1";
    let status = eventually(DEADLINE, || async {
        let body = http
            .get(format!("{base}/api/v1/workspaces/auto"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let status: Value = serde_json::from_str(&body).ok()?;
        let builds = status["builds"].as_array()?;
        let done = builds.len() == 4
            && builds
                .iter()
                .all(|b| b["pending"].is_null() && b["delivered_fingerprint"] == b["fingerprint"]);
        done.then_some(status)
    })
    .await
    .expect("every build delivered");
    let mut keys = env.delivered_keys(0);
    keys.sort();
    assert_eq!(keys, ["auto/mainline", conf_pr, NEW_PR, SET_PR]);
    assert_eq!(
        last(&env, conf_pr).properties()["overrides"],
        overrides(&[("new/pkg", MAIN)]),
        "no PR on acme/otherpkg: its tracked branch"
    );
    assert_eq!(
        last(&env, SET_PR).properties()["overrides"],
        overrides(&[
            (PKG_SET, "refs/pull/1/merge"),
            ("new/pkg", "refs/pull/2/merge")
        ])
    );

    let config_prs = status["config_prs"].as_array().unwrap();
    let summary: Vec<Value> = config_prs
        .iter()
        .map(|c| {
            json!([
                c["pull_request"],
                c["discovery"]["state"],
                c["transient_packages"][0]["repository"],
                c["builds"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        [
            json!([
                "github.com/acme/buildconf#1",
                "succeeded",
                "github.com/acme/otherpkg",
                [conf_pr]
            ]),
            json!([
                "github.com/acme/pkgset#1",
                "succeeded",
                "github.com/acme/newpkg",
                [NEW_PR, SET_PR]
            ]),
        ]
    );
    assert!(config_prs.iter().all(|c| c["discovery"]["job_id"].is_i64()));
    assert_eq!(
        status["transient_conflicts"],
        json!([{"package": "new/pkg", "definitions": [
            {"config_pr": "github.com/acme/buildconf#1", "repository": "github.com/acme/otherpkg"},
            {"config_pr": "github.com/acme/pkgset#1", "repository": "github.com/acme/newpkg"},
        ]}])
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("forgewatch_discoveries_total{outcome=\"succeeded\"} 2\n"),
        "{metrics}"
    );
    let page = http.get(&base).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("new/pkg is introduced with different repositories"),
        "{page}"
    );

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap();
    assert_eq!(exit.unwrap().code(), Some(0));
}
