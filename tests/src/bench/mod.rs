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

/// A phase in progress: what was true when it began.
struct Start {
    cycles: u64,
    computations: u64,
    cycle_seconds: f64,
    cpu_ms: f64,
    deliveries: usize,
}

impl Start {
    /// Clears the fakes' request logs and notes where the daemon is.
    fn now(world: &World, daemon: Option<(&Daemon, &Metrics)>) -> anyhow::Result<Start> {
        world.clear_requests();
        let (cycles, computations, cycle_seconds, cpu_ms) = match daemon {
            Some((d, m)) => (
                m.cycles(),
                m.computations(),
                m.get("forgewatch_cycle_seconds_total"),
                d.cpu_ms()?,
            ),
            None => (0, 0, 0.0, 0.0),
        };
        Ok(Start {
            cycles,
            computations,
            cycle_seconds,
            cpu_ms,
            deliveries: world.ci.accepted().len(),
        })
    }

    fn finish(
        self,
        name: &str,
        world: &World,
        daemon: &Daemon,
        end: &Metrics,
    ) -> anyhow::Result<Phase> {
        let requests = world.requests();
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
            cycles: end.cycles() - self.cycles,
            computations: end.computations() - self.computations,
            requests: requests.len(),
            requests_by_status: by_status,
            non_304,
            polling_requests: requests.len() - single,
            single_pr_requests: single,
            requests_per_target: requests.len() as f64 / world.size.targets.max(1) as f64,
            wall_ms: (end.get("forgewatch_cycle_seconds_total") - self.cycle_seconds) * 1000.0,
            cpu_ms: daemon.cpu_ms()? - self.cpu_ms,
            peak_rss_kib: daemon.peak_rss_kib()?,
            builds: end.get("forgewatch_builds") as u64,
            fingerprint_ms: end.get("forgewatch_fingerprint_duration_seconds") * 1000.0,
            deliveries: world.ci.accepted().len() - self.deliveries,
        })
    }
}

/// The last cycle must have ended well before the next slice was due, so the
/// harness saw the phase boundary before the next slice began.
fn check_gap(end: &Metrics, interval: Duration) -> anyhow::Result<()> {
    let last = end.get("forgewatch_cycle_duration_seconds");
    let slice = interval.as_secs_f64() / SLICES as f64;
    if last > slice - 2.0 * daemon::PROBE.as_secs_f64() {
        bail!(
            "a cycle took {last:.2} s, too close to the {slice:.2} s between slices to tell cycles apart: use a longer --interval"
        );
    }
    Ok(())
}

/// The phase just measured spans `n` cycles: the harness saw its boundaries.
fn expect_cycles(phases: &[Phase], n: u64) -> anyhow::Result<()> {
    match phases.last() {
        Some(p) if p.cycles != n => bail!("phase {} spans {} cycles, not {n}", p.name, p.cycles),
        _ => Ok(()),
    }
}

/// Runs a cycle scenario (`first`, `idle`, `restart`) against `binary`.
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

    let start = Start::now(&world, None)?;
    let mut daemon = Daemon::start(binary, &config, &state_dir, &env).await?;
    let end = daemon.wait_cycles(1).await?;
    check_gap(&end, interval)?;
    phases.push(start.finish("first", &world, &daemon, &end)?);
    expect_cycles(&phases, 1)?;

    // Slice 1 may follow the long first cycle at once: measure from its end. The
    // first interval after the first cycle (`idle-1`) also stores the validators
    // GitHub upgrades once (a weak ETag answered by a strong one); `idle` is the
    // next interval, the steady state.
    let mut begin = daemon.wait_cycles(2).await?;
    check_gap(&begin, interval)?;
    for name in ["idle-1", "idle"] {
        let start = Start::now(&world, Some((&daemon, &begin)))?;
        // Asking the daemon costs it CPU: wait on the fakes (in this process) until
        // the last slice has sent its requests, then for the slice to end.
        let expected = size.targets + world.pr_lists();
        crate::wait::eventually(daemon::DEADLINE, || async {
            (world.requests().len() >= expected).then_some(())
        })
        .await
        .with_context(|| format!("the idle interval never made {expected} requests"))?;
        let end = daemon.wait_cycles(begin.cycles() + SLICES).await?;
        check_gap(&end, interval)?;
        phases.push(start.finish(name, &world, &daemon, &end)?);
        expect_cycles(&phases, SLICES)?;
        begin = end;
    }
    daemon.stop().await?;

    let start = Start::now(&world, None)?;
    let mut daemon = Daemon::start(binary, &config, &state_dir, &env).await?;
    let end = daemon.wait_cycles(1).await?;
    check_gap(&end, interval)?;
    phases.push(start.finish("restart", &world, &daemon, &end)?);
    expect_cycles(&phases, 1)?;
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
