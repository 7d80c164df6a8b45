//! Benchmark harness (issue 8): starts the fakes in-process, writes a configuration,
//! runs the real `forgewatch` binary (`once`, one fresh process per cycle) and
//! measures each phase.
//!
//! Phases: `first` (empty state), `idle` (nothing changed on the forge, second
//! process), `restart` (nothing changed, a third process). Because every cycle is a
//! fresh `once` process, `idle` is also a cycle after a restart; a cycle inside one
//! long-running `run` process is not measured here.
//!
//! CPU time is `cutime + cstime` of this process (`/proc/self/stat`, in clock ticks of
//! 10 ms) before and after waiting for the child, so it is exact only while no other
//! child of this process is reaped meanwhile (true for the `bench` binary, not for
//! `cargo test`). Peak RSS is the child's `VmHWM` (`/proc/PID/status`), sampled every
//! 2 ms while it runs: the high-water mark of the last sample before it exits.
//! (`getrusage(RUSAGE_CHILDREN)` would need nix's `resource` feature, not enabled.)

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::fake_ci::FakeCi;
use crate::fake_github::{FakeGitHub, NewPr};
use crate::forge::{FakeForge, Request};

const TOKEN: &str = "ghp_benchToken0123456789";
const BRANCH: &str = "main";
/// A `once` process that takes longer than this is a failure.
const DEADLINE: Duration = Duration::from_secs(300);

/// The `shared` scenario: `workspaces` workspaces, each watching the same
/// `repos` GitHub repositories (one branch each), each with `prs` open PRs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Shared {
    pub workspaces: usize,
    pub repos: usize,
    pub prs: usize,
}

impl Shared {
    /// The size named in issue 8.
    pub const FULL: Shared = Shared {
        workspaces: 10,
        repos: 100,
        prs: 5,
    };
}

/// Figures of one cycle (one `forgewatch once` process).
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    /// GitHub requests by HTTP status.
    pub requests_by_status: BTreeMap<u16, usize>,
    pub requests: usize,
    /// Requests answered with anything but 304.
    pub non_304: usize,
    /// Polling requests (branches and PR lists, not single PRs).
    pub polling_requests: usize,
    /// Single-PR requests (mergeability).
    pub single_pr_requests: usize,
    pub distinct_request_urls: usize,
    /// `requests / distinct watch targets`.
    pub requests_per_target: f64,
    pub wall_ms: f64,
    /// user+sys of the daemon process, `None` when `/proc` could not be read.
    pub cpu_ms: Option<f64>,
    /// `VmHWM` of the daemon process (sampled), KiB.
    pub peak_rss_kib: Option<u64>,
    /// stdout lines (one per build).
    pub builds: usize,
    /// CI deliveries accepted during the cycle.
    pub deliveries: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub parameters: Shared,
    /// Distinct watch targets (repository, branch).
    pub distinct_targets: usize,
    /// Distinct PR lists (repositories with `pull_requests` enabled).
    pub distinct_pr_lists: usize,
    pub phases: Vec<Phase>,
    /// Figures of issue 8 this harness does not measure.
    pub not_measured: Vec<String>,
}

impl Report {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// A readable table of the phases.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {} ({} workspaces, {} repos, {} PRs each): {} distinct targets, {} PR lists\n",
            self.scenario,
            self.parameters.workspaces,
            self.parameters.repos,
            self.parameters.prs,
            self.distinct_targets,
            self.distinct_pr_lists
        );
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>22} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>10} {:>7} {:>10}",
            "phase",
            "requests",
            "by status",
            "non-304",
            "polling",
            "single-PR",
            "req/tgt",
            "wall ms",
            "cpu ms",
            "peak RSS",
            "builds",
            "deliveries"
        );
        for p in &self.phases {
            let statuses = p
                .requests_by_status
                .iter()
                .map(|(s, n)| format!("{s}:{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                out,
                "{:<8} {:>8} {:>22} {:>8} {:>8} {:>9} {:>8.2} {:>9.1} {:>9} {:>10} {:>7} {:>10}",
                p.name,
                p.requests,
                statuses,
                p.non_304,
                p.polling_requests,
                p.single_pr_requests,
                p.requests_per_target,
                p.wall_ms,
                p.cpu_ms.map_or("n/a".to_owned(), |c| format!("{c:.0}")),
                p.peak_rss_kib.map_or("n/a".to_owned(), |k| format!(
                    "{:.1} MiB",
                    k as f64 / 1024.0
                )),
                p.builds,
                p.deliveries,
            );
        }
        out
    }
}

fn repo_name(i: usize) -> String {
    format!("acme/repo{i:04}")
}

/// Runs the `shared` scenario against the `forgewatch` binary at `binary`.
pub async fn run_shared(binary: &Path, params: Shared) -> anyhow::Result<Report> {
    let github = FakeGitHub::start().await;
    github.require_token(Some(TOKEN));
    let ci = FakeCi::start().await;
    for i in 0..params.repos {
        let name = repo_name(i);
        github.create_repo(&name, BRANCH);
        for p in 0..params.prs {
            github.open_pr(&name, NewPr::new(BRANCH, &format!("feature-{p}")));
        }
    }
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = dir.path().join("config.yml");
    std::fs::write(&config, config_yaml(&github, &ci, params)).context("write config")?;

    let distinct_targets = params.repos;
    let mut phases = Vec::new();
    for name in ["first", "idle", "restart"] {
        github.clear_requests();
        let before = ci.accepted().len();
        let run = run_once(binary, &config).await?;
        let requests: Vec<Request> = FakeForge::requests(&github);
        phases.push(phase(
            name,
            &github,
            &requests,
            distinct_targets,
            run,
            before,
            &ci,
        ));
    }
    Ok(Report {
        scenario: "shared".to_owned(),
        parameters: params,
        distinct_targets,
        distinct_pr_lists: params.repos,
        phases,
        not_measured: [
            "scenario large",
            "scenario latency (push->delivery and webhook->delivery p50/p99/max)",
            "GitLab (scenario shared is GitHub only)",
            "fingerprint computation time for the whole state",
            "idle cycle inside one long-running `run` process (every cycle here is a fresh `once`)",
        ]
        .map(str::to_owned)
        .to_vec(),
    })
}

fn phase(
    name: &str,
    github: &FakeGitHub,
    requests: &[Request],
    targets: usize,
    run: OnceRun,
    deliveries_before: usize,
    ci: &FakeCi,
) -> Phase {
    let mut by_status = BTreeMap::new();
    for r in requests {
        *by_status.entry(r.status).or_insert(0) += 1;
    }
    let single = requests
        .iter()
        .filter(|r| github.is_single_pr(&r.path))
        .count();
    let distinct: HashSet<(&str, &str)> = requests
        .iter()
        .map(|r| (r.path.as_str(), r.query.as_str()))
        .collect();
    Phase {
        name: name.to_owned(),
        requests: requests.len(),
        non_304: requests.iter().filter(|r| r.status != 304).count(),
        polling_requests: requests.len() - single,
        single_pr_requests: single,
        distinct_request_urls: distinct.len(),
        requests_per_target: requests.len() as f64 / targets.max(1) as f64,
        requests_by_status: by_status,
        wall_ms: run.wall.as_secs_f64() * 1000.0,
        cpu_ms: run.cpu_ms,
        peak_rss_kib: run.peak_rss_kib,
        builds: run.stdout.lines().count(),
        deliveries: ci.accepted().len().saturating_sub(deliveries_before),
    }
}

fn config_yaml(github: &FakeGitHub, ci: &FakeCi, params: Shared) -> String {
    let mut yaml = format!(
        "state_dir: ./state\npoll_interval: 24h\nforges:\n  github:\n    kind: github\n    host: github.com\n    api_url: {api}\n    token_env: FW_BENCH_TOKEN\n    max_concurrency: 8\nci:\n  bb:\n    kind: buildbot\n    url: {bb}\nworkspaces:\n",
        api = github.api_url(),
        bb = ci.buildbot_url(),
    );
    for w in 0..params.workspaces {
        let _ = write!(yaml, "  - name: ws{w}\n    ci: bb\n    packages:\n");
        for i in 0..params.repos {
            let _ = writeln!(
                yaml,
                "      - {{ name: pkg{i:04}, repo: \"https://github.com/{}\", branch: {BRANCH} }}",
                repo_name(i)
            );
        }
        yaml.push_str("    pull_requests:\n      enabled: true\n");
    }
    yaml
}

struct OnceRun {
    wall: Duration,
    cpu_ms: Option<f64>,
    peak_rss_kib: Option<u64>,
    stdout: String,
}

/// `cutime + cstime` of this process, in milliseconds.
fn children_cpu_ms(ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 (1-based), i.e. 13 and 14 here.
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some((cutime + cstime) as f64 * 1000.0 / ticks)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run_once(binary: &Path, config: &Path) -> anyhow::Result<OnceRun> {
    let ticks = clock_ticks();
    let cpu_before = children_cpu_ms(ticks);
    let start = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .arg("once")
        .arg("--config")
        .arg(config)
        .env("FW_BENCH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let pid = child.id().context("child pid")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut s).await;
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let mut peak: Option<u64> = None;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = Some(peak.map_or(kib, |p| p.max(kib)));
        }
        tokio::select! {
            status = child.wait() => break status.context("wait for forgewatch")?,
            () = tokio::time::sleep(Duration::from_millis(2)) => {
                if start.elapsed() > DEADLINE {
                    bail!("forgewatch once did not finish within {DEADLINE:?}");
                }
            }
        }
    };
    let wall = start.elapsed();
    let cpu_after = children_cpu_ms(ticks);
    let stdout = out_task.await.unwrap_or_default();
    let stderr = err_task.await.unwrap_or_default();
    if !status.success() {
        bail!("forgewatch once failed ({status}):\n{stdout}\n{stderr}");
    }
    Ok(OnceRun {
        wall,
        cpu_ms: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
        peak_rss_kib: peak,
        stdout,
    })
}

/// The binary `forgewatch-under-test` next to the running executable (the `bench`
/// binary's own directory).
pub fn binary_next_to_self() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe.parent().context("exe dir")?;
    let path = dir.join("forgewatch-under-test");
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p forgewatch-tests --bins`",
            path.display()
        );
    }
    Ok(path)
}
