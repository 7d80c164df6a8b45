//! The `latency` scenario: how long a push takes to reach the CI, noticed by
//! polling alone and announced by a signed webhook.
//!
//! One workspace watches the targets of [`Size::LATENCY`]. Pushes land at random
//! times (a seeded generator, so every run replays the same schedule) on random
//! targets; a push is delivered by the first mainline delivery whose
//! `changed_packages` shows that push's head or a later one of the same package.
//! Latency is from the push on the fake forge to the delivery's arrival at the fake
//! CI (both timestamps taken in this process).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::daemon::{DEADLINE, Daemon};
use super::world::{HOOK_SECRET, Size, World};
use crate::fake_ci::Delivery;
use crate::rng::Rng;
use crate::wait::eventually;

/// Parameters of the scenario.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Params {
    pub size: Size,
    pub poll_interval_ms: u64,
    /// Pushes of each half (polling, then webhooks).
    pub pushes: usize,
    /// The pushes of each half land within this window.
    pub window_ms: u64,
    pub seed: u64,
}

impl Params {
    /// Issue 8: 50 targets, `poll_interval: 5s`, 100 pushes at random times.
    pub const FULL: Params = Params {
        size: Size::LATENCY,
        poll_interval_ms: 5000,
        pushes: 100,
        window_ms: 60_000,
        seed: 8,
    };
}

/// Push-to-delivery latencies of one half.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub pushes: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Every push's latency, in push order.
    pub samples_ms: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub params: Params,
    /// Pushes noticed by polling only.
    pub polling: Latency,
    /// Each push followed at once by a signed GitHub `push` webhook.
    pub webhook: Latency,
    /// Deliveries in all, after the first one (each carries one or more pushes).
    pub deliveries: usize,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario latency: {} targets, poll_interval {} ms, {} pushes per half within {} ms (seed {}), {} deliveries\n{:<8} {:>7} {:>9} {:>9} {:>9}\n",
            self.params.size.targets,
            self.params.poll_interval_ms,
            self.params.pushes,
            self.params.window_ms,
            self.params.seed,
            self.deliveries,
            "half",
            "pushes",
            "p50 ms",
            "p99 ms",
            "max ms"
        );
        for (name, l) in [("polling", &self.polling), ("webhook", &self.webhook)] {
            out.push_str(&format!(
                "{name:<8} {:>7} {:>9.1} {:>9.1} {:>9.1}\n",
                l.pushes, l.p50_ms, l.p99_ms, l.max_ms
            ));
        }
        out
    }
}

struct Push {
    target: usize,
    sha: String,
    at: Instant,
}

/// Runs the scenario against `binary`.
pub async fn run(binary: &Path, params: Params) -> anyhow::Result<Report> {
    let world = World::start(params.size).await;
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = dir.path().join("config.yml");
    let interval = Duration::from_millis(params.poll_interval_ms);
    std::fs::write(&config, world.config_yaml(interval)).context("write config")?;
    let mut daemon = Daemon::start(
        binary,
        &config,
        &dir.path().join("state"),
        &World::env(),
        "daemon.log",
    )
    .await?;
    daemon.wait_cycles(1).await?;
    let first = world.ci.accepted().len();
    let mut rng = Rng::new(params.seed);
    let polling = half(&world, &daemon, params, &mut rng, false).await?;
    let webhook = half(&world, &daemon, params, &mut rng, true).await?;
    let deliveries = world.ci.accepted().len() - first;
    daemon.stop().await?;
    Ok(Report {
        scenario: "latency".to_owned(),
        params,
        polling,
        webhook,
        deliveries,
    })
}

/// One half: `params.pushes` pushes at random times, each announced by a webhook
/// when `hooks`; waits until every push is delivered.
async fn half(
    world: &World,
    daemon: &Daemon,
    params: Params,
    rng: &mut Rng,
    hooks: bool,
) -> anyhow::Result<Latency> {
    let mut schedule: Vec<(u64, usize)> = (0..params.pushes)
        .map(|_| {
            let at = rng.below(params.window_ms);
            let target = rng.below(params.size.targets as u64) as usize;
            (at, target)
        })
        .collect();
    schedule.sort_unstable();
    let begin = tokio::time::Instant::now();
    let mut pushes = Vec::with_capacity(schedule.len());
    for (at, target) in schedule {
        // The workload's own clock: the push is due at this offset.
        tokio::time::sleep_until(begin + Duration::from_millis(at)).await;
        let sha = world.push(target);
        pushes.push(Push {
            target,
            sha,
            at: Instant::now(),
        });
        if hooks {
            // GitHub names each delivery; a new push is a new delivery.
            let delivery = format!("push-{}", pushes.len());
            announce(world, daemon, target, &delivery).await?;
        }
    }
    let latencies = eventually(DEADLINE, || async {
        let accepted = world.ci.accepted();
        pushes
            .iter()
            .enumerate()
            .map(|(i, p)| delivered_at(p, &pushes[i + 1..], &accepted).map(|t| t - p.at))
            .collect::<Option<Vec<Duration>>>()
    })
    .await
    .context("some pushes were never delivered")?;
    Ok(summary(&latencies))
}

/// A signed GitHub `push` webhook naming the target's repository, delivery
/// `delivery` (its `X-GitHub-Delivery`).
async fn announce(
    world: &World,
    daemon: &Daemon,
    target: usize,
    delivery: &str,
) -> anyhow::Result<()> {
    use hmac::{Hmac, Mac};
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"full_name": world.path(target)},
    })
    .to_string();
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(HOOK_SECRET.as_bytes()).context("hmac key")?;
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let response = daemon
        .http()
        .post(daemon.url("/hooks/github"))
        .header("x-hub-signature-256", signature)
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("POST /hooks/github")?;
    anyhow::ensure!(
        response.status().as_u16() == 202,
        "webhook answered {}",
        response.status()
    );
    Ok(())
}

/// When `push` reached the CI: the first delivery after it whose changed packages
/// show its head or the head of a later push to the same target.
fn delivered_at(push: &Push, later: &[Push], accepted: &[Delivery]) -> Option<Instant> {
    let package = format!("pkg{:04}", push.target);
    let heads: Vec<&str> = std::iter::once(push.sha.as_str())
        .chain(
            later
                .iter()
                .filter(|p| p.target == push.target)
                .map(|p| p.sha.as_str()),
        )
        .collect();
    accepted
        .iter()
        .filter(|d| d.received_at >= push.at)
        .find(|d| {
            d.properties()["changed_packages"]
                .as_array()
                .is_some_and(|changed| {
                    changed.iter().any(|c| {
                        c["name"] == package.as_str()
                            && c["new"].as_str().is_some_and(|new| heads.contains(&new))
                    })
                })
        })
        .map(|d| d.received_at)
}

fn summary(latencies: &[Duration]) -> Latency {
    let samples_ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let mut sorted = samples_ms.clone();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest sample with at least p% of the samples at or below it.
    let rank = |p: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[i - 1]
    };
    Latency {
        pushes: latencies.len(),
        p50_ms: rank(50.0),
        p99_ms: rank(99.0),
        max_ms: sorted.last().copied().unwrap_or(0.0),
        samples_ms,
    }
}
