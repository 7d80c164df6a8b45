//! The daemon under measurement: a real `forgewatch run` process, its `/metrics`
//! (cycles, cycle wall time, fingerprint time, builds), the cycles its log names
//! (when each began, when builds were computed: the harness delimits phases by
//! them) and its kernel figures (CPU time `utime + stime` and peak RSS `VmHWM`
//! from `/proc/PID`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use crate::wait::{eventually, eventually_every};

/// How long any one wait of the harness may take before the run is a failure.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// How often the harness asks the daemon for its metrics: rarely, so that serving
/// them is not part of what is measured.
pub const PROBE: Duration = Duration::from_millis(250);

/// A running `forgewatch run` process; killed when dropped.
pub struct Daemon {
    child: tokio::process::Child,
    pid: u32,
    address: String,
    http: reqwest::Client,
    /// Its log (JSON lines).
    log: PathBuf,
}

/// What the daemon's log says of its cycles.
#[derive(Clone, Debug, Default)]
pub struct CycleLog {
    /// The cycles started by the interval's timer (the full first one, then one
    /// per slice), in order: when each began.
    pub ticks: Vec<SystemTime>,
    /// When builds were computed (a computation that found nothing changed is not
    /// logged).
    pub computations: Vec<SystemTime>,
    /// A forge's round outlasted its slice: cycles overlap, phases cannot be told
    /// apart by time.
    pub overlapping: bool,
}

impl CycleLog {
    fn parse(text: &str) -> CycleLog {
        let mut log = CycleLog::default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let fields = &v["fields"];
            let at = fields["at_us"]
                .as_u64()
                .map(|us| SystemTime::UNIX_EPOCH + Duration::from_micros(us));
            match (fields["message"].as_str(), at) {
                (Some("cycle started"), Some(at)) if fields["slice"] != "extra" => {
                    log.ticks.push(at);
                }
                (Some("builds computed"), Some(at)) => log.computations.push(at),
                (Some(m), _) if m.starts_with("still waiting for its last round") => {
                    log.overlapping = true;
                }
                _ => {}
            }
        }
        log
    }
}

/// The `/metrics` figures the harness reads.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    values: HashMap<String, f64>,
}

impl Metrics {
    /// A sample by its full name, labels included (`forgewatch_builds`).
    pub fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }

    pub fn cycles(&self) -> u64 {
        self.get("forgewatch_cycles_total") as u64
    }

    pub fn computations(&self) -> u64 {
        self.get("forgewatch_build_computations_total") as u64
    }

    fn parse(text: &str) -> Metrics {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Metrics { values }
    }
}

impl Daemon {
    /// Starts `binary run --config config` with `env`; its output goes to
    /// `log_name` next to the configuration (JSON lines, warnings and the cycle
    /// lines). Returns once the API answers.
    pub async fn start(
        binary: &Path,
        config: &Path,
        state_dir: &Path,
        env: &[(&str, &str)],
        log_name: &str,
    ) -> anyhow::Result<Daemon> {
        let dir = config.parent().context("config dir")?;
        let address_file = state_dir.join("listen-address");
        let _ = std::fs::remove_file(&address_file);
        let log_path = dir.join(log_name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| log_path.display().to_string())?;
        let child = tokio::process::Command::new(binary)
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn,forgewatch::engine::event_loop=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("daemon.log")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let pid = child.id().context("child pid")?;
        let address = eventually(DEADLINE, || async {
            let text = std::fs::read_to_string(&address_file).ok()?;
            text.ends_with('\n').then(|| text.trim().to_owned())
        })
        .await
        .with_context(|| format!("{} never written", address_file.display()))?;
        Ok(Daemon {
            child,
            pid,
            address,
            http: reqwest::Client::new(),
            log: log_path,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("GET /metrics")?
            .text()
            .await
            .context("GET /metrics body")?;
        Ok(Metrics::parse(&text))
    }

    /// Waits until at least `n` cycles are done and returns the metrics then.
    pub async fn wait_cycles(&mut self, n: u64) -> anyhow::Result<Metrics> {
        let found = eventually_every(PROBE, DEADLINE, || async {
            let m = self.metrics().await.ok()?;
            (m.cycles() >= n).then_some(m)
        })
        .await;
        match found {
            Some(m) => Ok(m),
            None => match self.child.try_wait() {
                Ok(Some(status)) => bail!("forgewatch run exited ({status}); see daemon.log"),
                _ => bail!("forgewatch run did not finish {n} cycles within {DEADLINE:?}"),
            },
        }
    }

    /// What its log says of its cycles so far.
    pub fn cycle_log(&self) -> anyhow::Result<CycleLog> {
        let text =
            std::fs::read_to_string(&self.log).with_context(|| self.log.display().to_string())?;
        Ok(CycleLog::parse(&text))
    }

    /// Waits until the interval's timer has started `n` cycles (log lines, read
    /// as often as the metrics would be).
    pub async fn wait_ticks(&mut self, n: usize) -> anyhow::Result<CycleLog> {
        let found = eventually_every(PROBE, DEADLINE, || async {
            let log = self.cycle_log().ok()?;
            (log.ticks.len() >= n).then_some(log)
        })
        .await;
        match found {
            Some(log) => Ok(log),
            None => match self.child.try_wait() {
                Ok(Some(status)) => bail!("forgewatch run exited ({status}); see its log"),
                _ => bail!("forgewatch run did not start {n} cycles within {DEADLINE:?}"),
            },
        }
    }

    /// User + system CPU time of the daemon so far, in milliseconds.
    pub fn cpu_ms(&self) -> anyhow::Result<f64> {
        process_cpu_ms(self.pid)
    }

    /// Peak resident set size so far (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| path.clone())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no VmHWM in {path}"))
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("SIGTERM")?;
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .context("forgewatch run did not stop")??;
        if !status.success() {
            bail!("forgewatch run stopped with {status}; see daemon.log");
        }
        Ok(())
    }
}

/// `utime + stime` of a live process (`/proc/PID/stat`), in milliseconds.
fn process_cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    // The command (field 2) may hold spaces: count from the closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based); `fields[0]` is field 3.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("field {} of {path}", i + 3))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 * 1000.0 / clock_ticks())
}

/// `getconf CLK_TCK` (nix's `sysconf` needs a feature the workspace does not enable).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
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
