//! Resolution of pull-request dependencies for one cycle: every open PR of the
//! watched targets is known from the poll; each body is parsed; a reference to a PR
//! outside that set is looked up on its forge (conditional request, at most once
//! per interval, bounded) and its own dependencies followed; anything that cannot
//! be resolved (unknown host, not found, closed, merged, a failing forge) is
//! recorded as unresolved for the PRs that reference it. Never fatal.
//!
//! In `run` a lookup not answered yet is asked in the background: the computation
//! does not wait for it (a slow or hung forge holds up only the builds that need
//! it, recorded as pending in the graph), and its answer wakes the loop (the
//! [`Background`] it is handed) to compute again. `once` waits for every
//! lookup.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::{Forge, ForgeError, PrState, PullRequest};
use forgewatch_adapters::references::ReferenceSyntax;

use crate::engine::background::{Background, Question};
use crate::plan::dependencies::graph::{DependencyGraph, Unresolved, pr_ref};
use crate::plan::dependencies::parse::{Context, PrRef, Reference, parse_dependencies};

/// Lookups of PRs outside the watched targets, at most, per cycle.
pub const MAX_LOOKUPS: usize = 200;

/// The configured forges by host.
#[derive(Clone)]
pub struct Forges {
    pub by_host: BTreeMap<String, Arc<dyn Forge>>,
}

impl Forges {
    /// How references are written on the forge that owns `host`.
    pub fn syntax(&self, host: &str) -> Option<&dyn ReferenceSyntax> {
        self.by_host.get(host).map(|f| f.references())
    }
}

/// Answers of lookups, reused while younger than a poll interval, so a PR outside
/// the watched targets is asked for at most once per interval however many
/// cycles (slices) run.
#[derive(Default)]
pub struct LookupCache {
    entries: std::sync::Mutex<BTreeMap<PrRef, (tokio::time::Instant, Lookup)>>,
}

/// A looked-up PR, or why it could not be.
type Lookup = Result<PullRequest, String>;

impl LookupCache {
    /// The answer for `id`, and whether it is younger than `max_age`.
    fn get(&self, id: &PrRef, max_age: std::time::Duration) -> Option<(Lookup, bool)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(id)
            .map(|(at, r)| (r.clone(), at.elapsed() < max_age))
    }

    fn put(&self, id: PrRef, answer: Lookup) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(id, (tokio::time::Instant::now(), answer));
    }

    /// Asks `dep` in the background unless it is out already; its answer goes
    /// into the cache, then is counted in `background`.
    fn ask_in_background(
        self: &Arc<Self>,
        dep: &PrRef,
        forges: &Forges,
        background: &Arc<Background>,
    ) {
        let question = Question::Lookup(dep.clone());
        if !background.ask(&question) {
            return;
        }
        let (cache, dep, forges) = (self.clone(), dep.clone(), forges.clone());
        let background = background.clone();
        tokio::spawn(async move {
            let answer = lookup(&dep, &forges).await;
            cache.put(dep, answer);
            background.answered(&question);
        });
    }
}

/// Builds the graph from the polled open PRs; lookups younger than `max_age` are
/// taken from `cache`. The others are awaited, or with `background` asked in the
/// background (notifying it when answered) and recorded as pending.
pub async fn resolve(
    polled: Vec<PullRequest>,
    forges: &Forges,
    cache: &Arc<LookupCache>,
    max_age: std::time::Duration,
    background: Option<&Arc<Background>>,
) -> DependencyGraph {
    let mut graph = DependencyGraph::default();
    for pr in polled {
        graph.open.insert(pr_ref(&pr), pr);
    }
    // References found but not known yet, and those that failed for good.
    let mut failed: BTreeMap<PrRef, String> = BTreeMap::new();
    let mut pending: BTreeSet<PrRef> = BTreeSet::new();
    let mut to_parse: Vec<PrRef> = graph.open.keys().cloned().collect();
    let mut lookups = 0usize;
    while !to_parse.is_empty() {
        let mut wanted: BTreeSet<PrRef> = BTreeSet::new();
        for id in std::mem::take(&mut to_parse) {
            let Some(pr) = graph.open.get(&id) else {
                continue;
            };
            let Some(syntax) = forges.syntax(&id.host) else {
                continue;
            };
            let hosts = |host: &str| forges.syntax(host);
            let cx = Context {
                syntax,
                host: &id.host,
                path: &id.path,
                hosts: &hosts,
            };
            let mut edges = Vec::new();
            let mut unresolved = Vec::new();
            for reference in parse_dependencies(pr.body.as_deref(), &cx) {
                match reference {
                    Reference::Pr(dep) if dep == id => {}
                    Reference::Pr(dep) => {
                        if !graph.open.contains_key(&dep)
                            && !failed.contains_key(&dep)
                            && !pending.contains(&dep)
                        {
                            wanted.insert(dep.clone());
                        }
                        edges.push(dep);
                    }
                    Reference::Unresolved { reference, reason } => {
                        unresolved.push(Unresolved { reference, reason });
                    }
                }
            }
            graph.edges.insert(id.clone(), edges);
            graph.unresolved.insert(id, unresolved);
        }
        for dep in wanted {
            if lookups >= MAX_LOOKUPS {
                failed.insert(
                    dep,
                    format!("more than {MAX_LOOKUPS} dependencies to look up this cycle"),
                );
                continue;
            }
            let answer = match cache.get(&dep, max_age) {
                Some((answer, true)) => answer,
                // `run`: an older answer serves while the new one is asked; a
                // dependency never answered makes its PRs wait.
                Some((answer, false)) if let Some(background) = background => {
                    lookups += 1;
                    cache.ask_in_background(&dep, forges, background);
                    answer
                }
                None if let Some(background) = background => {
                    lookups += 1;
                    cache.ask_in_background(&dep, forges, background);
                    pending.insert(dep);
                    continue;
                }
                _ => {
                    lookups += 1;
                    let answer = lookup(&dep, forges).await;
                    cache.put(dep.clone(), answer.clone());
                    answer
                }
            };
            match answer {
                Ok(pr) if pr.state == PrState::Open => {
                    graph.open.insert(dep.clone(), pr);
                    to_parse.push(dep);
                }
                Ok(pr) => {
                    failed.insert(dep, pr.state.as_str().to_owned());
                }
                Err(reason) => {
                    failed.insert(dep, reason);
                }
            }
        }
    }
    // Edges to PRs that could not be resolved become unresolved references, and
    // those still being looked up pending ones.
    for (id, edges) in &mut graph.edges {
        let unresolved = graph.unresolved.entry(id.clone()).or_default();
        edges.retain(|dep| {
            if pending.contains(dep) {
                graph
                    .pending
                    .entry(id.clone())
                    .or_default()
                    .push(dep.clone());
                return false;
            }
            true
        });
        edges.retain(|dep| match failed.get(dep) {
            Some(reason) => {
                unresolved.push(Unresolved {
                    reference: dep.to_string(),
                    reason: reason.clone(),
                });
                false
            }
            None => true,
        });
    }
    graph
}

async fn lookup(dep: &PrRef, forges: &Forges) -> Result<PullRequest, String> {
    let Some(forge) = forges.by_host.get(&dep.host) else {
        return Err(format!("unknown host `{}`", dep.host));
    };
    let repo = RepoId::from_host_path(&dep.host, &dep.path).map_err(|e| e.to_string())?;
    match forge.pull_request(&repo, dep.number).await {
        Ok(pr) => Ok(pr),
        Err(ForgeError::NotFound { .. }) => Err("not found".to_owned()),
        Err(e) => {
            tracing::warn!("dependency {dep}: {e}");
            Err(format!("lookup failed: {e}"))
        }
    }
}
