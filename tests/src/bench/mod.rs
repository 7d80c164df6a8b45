//! Benchmark harness (issue 8): starts the fake forges and the fake CI in-process,
//! runs the real `forgewatch run` binary against them and measures it.
//!
//! Cycle scenarios (`shared`, `large`) measure four phases: `first` (the first,
//! full cycle of a daemon with an empty state), `idle-1` and `idle` (the next two
//! whole intervals of the same process when nothing changed on the forges: their
//! slices, which together poll every target once; `idle-1` still stores the
//! validators GitHub upgrades once) and `restart` (the first cycle of a new process
//! over the same state). The `latency` scenario is in [`latency`].
//!
//! Figures come from the fakes (requests by forge and status), the daemon's
//! `/metrics` (cycles, their wall time, fingerprint time, builds) and `/proc/PID`
//! (CPU `utime + stime`, peak RSS `VmHWM`).

pub mod daemon;
pub mod latency;
pub mod markdown;
pub mod world;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use daemon::{Daemon, Metrics};
pub use world::Size;
use world::World;

/// Slices of an interval in `forgewatch run` (each polls a quarter of the targets).
pub const SLICES: u64 = 4;

/// Figures of one phase.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    /// Cycles the phase spans (1, or the slices of one interval), and those of them
    /// that computed every build (the others found nothing changed).
    pub cycles: u64,
    pub computations: u64,
    /// Forge requests by forge, then HTTP status.
    pub requests_by_status: BTreeMap<String, BTreeMap<u16, usize>>,
    pub requests: usize,
    /// Requests answered with anything but 304, by forge.
    pub non_304: BTreeMap<String, usize>,
    /// Polling requests (branches and PR lists) and single-PR requests (mergeability).
    pub polling_requests: usize,
    pub single_pr_requests: usize,
    /// `requests / distinct watch targets`.
    pub requests_per_target: f64,
    /// Wall time of the phase's cycles (the daemon's own measure), summed.
    pub wall_ms: f64,
    /// user+sys CPU of the daemon during the phase (`first` and `restart` include
    /// the process's start: configuration, state, HTTP server).
    pub cpu_ms: f64,
    /// The daemon's peak RSS so far (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// Builds computed by the last cycle, and the time it took to fingerprint them all.
    pub builds: u64,
    pub fingerprint_ms: f64,
    /// Deliveries the CI accepted during the phase.
    pub deliveries: usize,
}

impl Phase {
    pub fn non_304_total(&self) -> usize {
        self.non_304.values().sum()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub size: Size,
    pub poll_interval_ms: u128,
    /// Distinct watch targets (repository, branch) and PR lists.
    pub distinct_targets: usize,
    pub distinct_pr_lists: usize,
    pub phases: Vec<Phase>,
}

impl Report {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// A readable table of the phases.
    pub fn table(&self) -> String {
        let s = &self.size;
        let mut out = format!(
            "scenario {}: {} workspaces, {} targets ({} on GitLab), {} packages each, {} PRs, {} dependency edges; {} distinct targets + {} PR lists; interval {} ms\n",
            self.scenario,
            s.workspaces,
            s.targets,
            s.gitlab_targets,
            s.packages_per_workspace,
            s.prs,
            s.dependency_edges,
            self.distinct_targets,
            self.distinct_pr_lists,
            self.poll_interval_ms,
        );
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>8} {:>34} {:>16} {:>8} {:>9} {:>7} {:>9} {:>8} {:>9} {:>6} {:>8} {:>10}",
            "phase",
            "cyc/comp",
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
            "fp ms",
            "deliveries"
        );
        for p in &self.phases {
            let statuses = p
                .requests_by_status
                .iter()
                .map(|(forge, by)| {
                    let by: Vec<String> = by.iter().map(|(s, n)| format!("{s}:{n}")).collect();
                    format!("{forge} {}", by.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ");
            let non_304 = p
                .non_304
                .iter()
                .map(|(f, n)| format!("{f}:{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                out,
                "{:<8} {:>8} {:>8} {:>34} {:>16} {:>8} {:>9} {:>7.2} {:>9.1} {:>8.0} {:>5.1} MiB {:>6} {:>8.2} {:>10}",
                p.name,
                format!("{}/{}", p.cycles, p.computations),
                p.requests,
                statuses,
                non_304,
                p.polling_requests,
                p.single_pr_requests,
                p.requests_per_target,
                p.wall_ms,
                p.cpu_ms,
                p.peak_rss_kib as f64 / 1024.0,
                p.builds,
                p.fingerprint_ms,
                p.deliveries,
            );
        }
        out
    }
}

/// The daemon's figures at a phase boundary (read once the boundary is known).
struct Mark {
    cycle_seconds: f64,
    cpu_ms: f64,
    deliveries: usize,
}

impl Mark {
    /// Once every delivery enqueued so far went out.
    async fn take(world: &World, daemon: &Daemon) -> anyhow::Result<(Mark, Metrics)> {
        let metrics = crate::wait::eventually_every(daemon::PROBE, daemon::DEADLINE, || async {
            let m = daemon.metrics().await.ok()?;
            (m.get("forgewatch_deliveries_pending") == 0.0).then_some(m)
        })
        .await
        .context("deliveries still pending")?;
        let mark = Mark {
            cycle_seconds: metrics.get("forgewatch_cycle_seconds_total"),
            cpu_ms: daemon.cpu_ms()?,
            deliveries: world.ci.accepted().len(),
        };
        Ok((mark, metrics))
    }

    /// A process that has not run yet.
    fn start(world: &World) -> Mark {
        Mark {
            cycle_seconds: 0.0,
            cpu_ms: 0.0,
            deliveries: world.ci.accepted().len(),
        }
    }
}

/// The phase of the cycles the interval's timer started from `log.ticks[from]` up
/// to (without) `log.ticks[to]`: the requests that arrived in that window (a cycle's
/// requests are sent after it began, and its rounds end before the next begins),
/// the computations logged in it.
fn phase(
    name: &str,
    world: &World,
    log: &daemon::CycleLog,
    (from, to): (usize, usize),
    (begin, end): (&Mark, &Mark),
    metrics: &Metrics,
    daemon: &Daemon,
) -> anyhow::Result<Phase> {
    if log.overlapping {
        bail!("a forge's round outlasted its slice: use a longer --interval");
    }
    let window = log.ticks[from]..log.ticks[to];
    let requests: Vec<_> = world
        .requests()
        .into_iter()
        .filter(|(_, r)| window.contains(&r.arrived))
        .collect();
    let mut by_status: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut non_304: BTreeMap<String, usize> = BTreeMap::new();
    let mut single = 0;
    for (forge, r) in &requests {
        *by_status
            .entry((*forge).to_owned())
            .or_default()
            .entry(r.status)
            .or_insert(0) += 1;
        let n = non_304.entry((*forge).to_owned()).or_insert(0);
        if r.status != 304 {
            *n += 1;
        }
        if world.is_single_pr(forge, &r.path) {
            single += 1;
        }
    }
    Ok(Phase {
        name: name.to_owned(),
        cycles: (to - from) as u64,
        computations: log
            .computations
            .iter()
            .filter(|t| window.contains(t))
            .count() as u64,
        requests: requests.len(),
        requests_by_status: by_status,
        non_304,
        polling_requests: requests.len() - single,
        single_pr_requests: single,
        requests_per_target: requests.len() as f64 / world.size.targets.max(1) as f64,
        wall_ms: (end.cycle_seconds - begin.cycle_seconds) * 1000.0,
        cpu_ms: end.cpu_ms - begin.cpu_ms,
        peak_rss_kib: daemon.peak_rss_kib()?,
        builds: metrics.get("forgewatch_builds") as u64,
        fingerprint_ms: metrics.get("forgewatch_fingerprint_duration_seconds") * 1000.0,
        deliveries: end.deliveries - begin.deliveries,
    })
}

/// Runs a cycle scenario (`first`, `idle-1`, `idle`, `restart`) against `binary`.
/// Phases are delimited by the cycles that made the requests, as the daemon's log
/// times them, not by when the harness noticed: exact on a loaded machine.
pub async fn run_cycles(
    binary: &Path,
    scenario: &str,
    size: Size,
    interval: Duration,
) -> anyhow::Result<Report> {
    let world = World::start(size).await;
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = dir.path().join("config.yml");
    std::fs::write(&config, world.config_yaml(interval)).context("write config")?;
    let state_dir = dir.path().join("state");
    let env = World::env();
    let mut phases = Vec::new();

    // `first` is the full first cycle; `idle-1` and `idle` are the next two whole
    // intervals (their slices); `idle-1` still stores the validators GitHub
    // upgrades once (a weak ETag answered by a strong one).
    let slices = SLICES as usize;
    let mut begin = Mark::start(&world);
    let mut daemon = Daemon::start(binary, &config, &state_dir, &env, "daemon.log").await?;
    for (name, from, to) in [
        ("first", 0, 1),
        ("idle-1", 1, 1 + slices),
        ("idle", 1 + slices, 1 + 2 * slices),
    ] {
        // The phase is over once the cycle after it began.
        daemon.wait_ticks(to + 1).await?;
        let (end, metrics) = Mark::take(&world, &daemon).await?;
        let log = daemon.cycle_log()?;
        phases.push(phase(
            name,
            &world,
            &log,
            (from, to),
            (&begin, &end),
            &metrics,
            &daemon,
        )?);
        begin = end;
    }
    daemon.stop().await?;

    let begin = Mark::start(&world);
    let mut daemon = Daemon::start(binary, &config, &state_dir, &env, "restart.log").await?;
    daemon.wait_ticks(2).await?;
    let (end, metrics) = Mark::take(&world, &daemon).await?;
    let log = daemon.cycle_log()?;
    phases.push(phase(
        "restart",
        &world,
        &log,
        (0, 1),
        (&begin, &end),
        &metrics,
        &daemon,
    )?);
    daemon.stop().await?;

    Ok(Report {
        scenario: scenario.to_owned(),
        size,
        poll_interval_ms: interval.as_millis(),
        distinct_targets: size.targets,
        distinct_pr_lists: world.pr_lists(),
        phases,
    })
}
