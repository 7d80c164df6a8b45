//! Everything a cycle computes its builds from, kept from one cycle to the next so
//! that a slice whose answers changed nothing skips the computation.
//!
//! In `run` each interval is cut into slices; every slice used to recompute every
//! build of every workspace from the latest answers, which made an idle interval
//! cost as many full computations as it has slices. Builds are a pure function of
//! these inputs and of the time (staleness), so a slice with the same inputs as
//! the last computed one would compute the same builds: it only sends what the
//! outbox has due. The first slice of each interval always computes, so the time's
//! effect is seen once per interval.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use forgewatch_adapters::forge::PullRequest;

use crate::config::PackageConfig;
use crate::plan::dependencies::graph::DependencyGraph;
use crate::plan::transient::Transients;

/// The packages a workspace watches this cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspacePackages {
    pub packages: Vec<PackageConfig>,
    /// Why the mainline cannot be computed this cycle (no package list yet, a
    /// default branch not known yet), if so.
    pub incomplete: Option<String>,
}

/// The packages of every workspace, by workspace name: shared by the loop, the
/// computation and the inputs kept (a list of 10,000 packages is not copied).
pub type AllPackages = std::sync::Arc<HashMap<String, WorkspacePackages>>;

/// The inputs of one computation of every build: borrowed from the cycle to be
/// compared (no copy on a slice that skips), owned once kept.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanInputs<'a> {
    /// Compared by pointer first (`Arc`'s equality does so for `Eq` types).
    pub packages: AllPackages,
    /// The forges paused by their rate limit. The poll answers are not kept here
    /// (they are the bulk of the memory): the cycle learns from merging them
    /// whether any changed.
    pub paused: Cow<'a, BTreeMap<String, (usize, std::time::SystemTime)>>,
    pub graph: Cow<'a, DependencyGraph>,
    pub open_config_prs: Cow<'a, BTreeMap<String, Vec<(PullRequest, String)>>>,
    /// Per workspace, in configuration order.
    pub transients: Vec<Cow<'a, Transients>>,
    /// Per workspace, in configuration order: an update is running.
    pub updates_running: Vec<bool>,
}

impl PlanInputs<'_> {
    /// A copy to keep, made only when the builds are computed.
    pub fn into_owned(self) -> PlanInputs<'static> {
        PlanInputs {
            packages: self.packages,
            paused: Cow::Owned(self.paused.into_owned()),
            graph: Cow::Owned(self.graph.into_owned()),
            open_config_prs: Cow::Owned(self.open_config_prs.into_owned()),
            transients: self
                .transients
                .into_iter()
                .map(|t| Cow::Owned(t.into_owned()))
                .collect(),
            updates_running: self.updates_running,
        }
    }
}

/// The inputs of the last completed computation, and whether a poll answer
/// changed since (answers are merged into the supervisor's known ones every slice,
/// computed or not).
#[derive(Debug, Default)]
pub struct LastInputs(std::sync::Mutex<Last>);

#[derive(Debug, Default)]
struct Last {
    inputs: Option<PlanInputs<'static>>,
    answers_changed: bool,
}

impl LastInputs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Last> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A merged poll answer differs from the one known before.
    pub fn answers_changed(&self) {
        self.lock().answers_changed = true;
    }

    /// Whether the builds computed last still hold: no answer changed since, and
    /// the other inputs are the same.
    pub fn still_hold(&self, inputs: &PlanInputs<'_>) -> bool {
        let last = self.lock();
        !last.answers_changed && last.inputs.as_ref() == Some(inputs)
    }

    /// Every build was computed from `inputs` and the answers known now.
    pub fn computed(&self, inputs: PlanInputs<'static>) {
        let mut last = self.lock();
        last.inputs = Some(inputs);
        last.answers_changed = false;
    }
}
