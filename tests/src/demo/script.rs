//! The demo's script: what happens on the fake GitHub while the daemon runs, one
//! step at a time, and what each step must make the daemon deliver. A step waits
//! for its deliveries (so the output reads as cause, then effect) and the next one
//! starts at its slot of the demo's duration, never before.

use std::time::Duration;

use anyhow::bail;
use tokio::sync::watch;
use tokio::time::Instant;

use super::report::{Printer, describe};
use super::world::{APP, LIB, MAIN, WORKSPACE, World};
use crate::fake_github::NewPr;

/// How long a step may wait for what it expects before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The build key of the workspace's PR `number` of `repo`.
fn pr_key(repo: &str, number: u64) -> String {
    format!("{WORKSPACE}/pr/github.com/{repo}/{number}")
}

fn mainline_key() -> String {
    format!("{WORKSPACE}/mainline")
}

/// What a step makes the daemon do.
enum Expect {
    /// Deliver these builds (in any order).
    Deliveries(Vec<String>),
    /// Poll `repo`'s PR list twice after the change and deliver nothing.
    Nothing { repo: &'static str },
}

/// One change on the fake GitHub, described as printed.
type Act = fn(&World) -> String;

fn sha7(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The scripted steps after the start, in order.
fn steps() -> Vec<(Act, Expect)> {
    vec![
        (
            |w| {
                let sha = w.github.push(LIB, MAIN);
                format!("push to {LIB} {MAIN}: {}", sha7(&sha))
            },
            Expect::Deliveries(vec![mainline_key()]),
        ),
        (
            |w| {
                let sha = w.github.push_pr(LIB, 1);
                format!("push to PR {LIB}#1: {}", sha7(&sha))
            },
            Expect::Deliveries(vec![pr_key(LIB, 1), pr_key(APP, 1)]),
        ),
        (
            |w| {
                let mut pr = NewPr::new(MAIN, "command-line");
                pr.title = "Add a command line".to_owned();
                let number = w.github.open_pr(APP, pr);
                format!("new PR {APP}#{number} \"Add a command line\"")
            },
            Expect::Deliveries(vec![pr_key(APP, 2)]),
        ),
        (
            |w| {
                w.github
                    .set_pr_title(APP, 2, "Add a command line (with --help)");
                format!("title of PR {APP}#2 edited (not an input of any build)")
            },
            Expect::Nothing { repo: APP },
        ),
    ]
}

/// The builds the script makes fail (their result is reported as a failure).
pub fn failing() -> Vec<String> {
    vec![pr_key(APP, 2)]
}

/// How many steps follow the start.
pub fn step_count() -> u32 {
    u32::try_from(steps().len()).unwrap_or(u32::MAX)
}

/// Runs the script: waits for the first deliveries, then step `k` at `start + k *
/// pace` (or once step `k - 1` is complete, if later). `printed` counts the
/// deliveries printed so far: a step is complete once its triggers are printed.
pub async fn run(
    world: &World,
    printed: watch::Receiver<usize>,
    printer: Printer,
    start: Instant,
    pace: Duration,
) -> anyhow::Result<()> {
    let mut step = Step {
        world,
        printed,
        printer,
    };
    let first = vec![mainline_key(), pr_key(LIB, 1), pr_key(APP, 1)];
    step.expect(0, &Expect::Deliveries(first)).await?;
    for (k, (act, expected)) in (1u32..).zip(steps()) {
        tokio::time::sleep_until(start + pace * k).await;
        let requests = world.github.requests().len();
        printer.line("github", &act(world));
        step.expect(requests, &expected).await?;
    }
    Ok(())
}

/// What the steps share: the world, the count of deliveries printed, the printer.
struct Step<'a> {
    world: &'a World,
    printed: watch::Receiver<usize>,
    printer: Printer,
}

impl Step<'_> {
    /// Waits for what a step expects; `requests` is how many requests the fake GitHub
    /// had served when the step's change was made.
    async fn expect(&mut self, requests: usize, expected: &Expect) -> anyhow::Result<()> {
        let (world, printer) = (self.world, self.printer);
        let deadline = Instant::now() + STEP_TIMEOUT;
        let from = *self.printed.borrow_and_update();
        match expected {
            Expect::Deliveries(keys) => loop {
                let mut missing = keys.clone();
                let printed = *self.printed.borrow_and_update();
                for delivery in world.ci.accepted().iter().take(printed).skip(from) {
                    let (key, _, _) = describe(delivery);
                    missing.retain(|k| *k != key);
                }
                if missing.is_empty() {
                    return Ok(());
                }
                if tokio::time::timeout_at(deadline, self.printed.changed())
                    .await
                    .is_err()
                {
                    bail!(
                        "not delivered within {}s: {}",
                        STEP_TIMEOUT.as_secs(),
                        missing.join(", ")
                    );
                }
            },
            Expect::Nothing { repo } => {
                let list = format!("/repos/{repo}/pulls");
                let polled =
                    crate::wait::eventually_every(Duration::from_millis(100), STEP_TIMEOUT, || {
                        let seen = world.github.requests();
                        let polls = seen
                            .iter()
                            .skip(requests)
                            .filter(|r| r.path == list)
                            .count();
                        std::future::ready((polls >= 2).then_some(()))
                    })
                    .await;
                if polled.is_none() {
                    bail!("{repo} was not polled within {}s", STEP_TIMEOUT.as_secs());
                }
                let sent = world.ci.accepted().len().saturating_sub(from);
                if sent > 0 {
                    bail!("{sent} builds were delivered for a change that is not an input of any");
                }
                printer.line(
                    "polled",
                    &format!("{repo} twice since: no build changed, nothing sent"),
                );
                Ok(())
            }
        }
    }
}
