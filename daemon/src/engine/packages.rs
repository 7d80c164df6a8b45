//! A workspace's package list: the static packages of the configuration, its
//! buildconf, and the packages of its manifest. The manifest is re-read when its
//! file changes (an update command rewrote it); a missing, empty or broken manifest
//! keeps the last good list, which is persisted so a restart keeps it too. A
//! workspace whose manifest never produced a list builds nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use forgewatch_adapters::RepoId;
use forgewatch_workspace_runner::manifest::{self, Format};

use crate::config::{Config, ManifestFormat, PackageConfig, PackageKind, WorkspaceConfig};
use crate::plan::inputs::WorkspacePackages;
use crate::state::Store;
use crate::state::workspaces::StoredPackage;

#[derive(Default)]
struct ManifestSlot {
    /// Modification time of the file when it was last read.
    read_mtime: Option<SystemTime>,
    /// The last good list.
    list: Option<Vec<StoredPackage>>,
}

#[derive(Default)]
struct Inner {
    manifests: HashMap<String, ManifestSlot>,
    default_branches: HashMap<RepoId, String>,
    /// Problems already logged, so each is logged once.
    reported: BTreeSet<String>,
}

pub struct Packages {
    inner: Mutex<Inner>,
}

impl Packages {
    /// Starts from the lists persisted by earlier runs.
    pub async fn load(config: &Config, state: &Store) -> anyhow::Result<Packages> {
        let mut inner = Inner::default();
        for ws in config.workspaces.iter().filter(|w| w.manifest.is_some()) {
            let list = state.package_list(&ws.name).await?;
            inner.manifests.insert(
                ws.name.clone(),
                ManifestSlot {
                    read_mtime: None,
                    list,
                },
            );
        }
        Ok(Packages {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads every manifest whose file changed since it was last read. A new list
    /// is used at once; its write to the state is queued (see [`Store::queue`]).
    pub fn refresh(&self, config: &Config, state: &Store, now: i64) {
        for ws in &config.workspaces {
            let Some(m) = &ws.manifest else { continue };
            let mtime = std::fs::metadata(&m.path).and_then(|md| md.modified()).ok();
            {
                let inner = self.lock();
                let unchanged = inner
                    .manifests
                    .get(&ws.name)
                    .is_some_and(|slot| slot.read_mtime.is_some() && slot.read_mtime == mtime);
                if unchanged {
                    continue;
                }
            }
            let format = match m.format {
                ManifestFormat::Autoproj => Format::Autoproj,
                ManifestFormat::Forgewatch => Format::Forgewatch,
            };
            let read = manifest::read(&m.path, format);
            let mut inner = self.lock();
            let slot = inner.manifests.entry(ws.name.clone()).or_default();
            slot.read_mtime = mtime;
            match read {
                Ok(manifest) => {
                    let list: Vec<StoredPackage> = manifest
                        .entries
                        .into_iter()
                        .map(|e| StoredPackage {
                            name: e.name,
                            url: e.url,
                            branch: e.branch,
                            package_set: e.package_set,
                        })
                        .collect();
                    if slot.list.as_ref() != Some(&list) {
                        tracing::info!(workspace = %ws.name, packages = list.len(), "package list read from the manifest");
                        let (name, saved) = (ws.name.clone(), list.clone());
                        let what = format!("persist the package list of {name}");
                        state.queue(what, move |b| b.save_package_list(&name, &saved, now));
                        slot.list = Some(list);
                    }
                    for skipped in manifest.skipped {
                        let message = format!(
                            "{}: {}: not watched: {}",
                            ws.name, skipped.name, skipped.reason
                        );
                        report(&mut inner, message, false);
                    }
                }
                Err(e) => {
                    let kept = if slot.list.is_some() {
                        "keeping the last good package list"
                    } else {
                        "no package list yet"
                    };
                    report(&mut inner, format!("{}: {e}; {kept}", ws.name), true);
                }
            }
        }
    }

    /// Forgets when manifests were read, so the next [`Packages::refresh`] reads
    /// them again (after an update ran).
    pub fn invalidate(&self, workspace: &str) {
        if let Some(slot) = self.lock().manifests.get_mut(workspace) {
            slot.read_mtime = None;
        }
    }

    /// Repositories of manifest packages (and of `more` entries: discovered ones)
    /// that name no branch and whose default branch is not known yet, with the forge
    /// that owns them.
    pub fn unresolved_default_branches(
        &self,
        config: &Config,
        more: &[StoredPackage],
    ) -> Vec<(String, RepoId)> {
        let inner = self.lock();
        let mut wanted = BTreeSet::new();
        let lists = inner
            .manifests
            .values()
            .flat_map(|s| s.list.iter().flatten());
        for entry in lists.chain(more).filter(|e| e.branch.is_none()) {
            if let Ok(repo) = RepoId::parse(&entry.url)
                && let Some(forge) = forge_of(config, &repo)
                && !inner.default_branches.contains_key(&repo)
            {
                wanted.insert((forge, repo));
            }
        }
        wanted.into_iter().collect()
    }

    pub fn set_default_branch(&self, repo: RepoId, branch: String) {
        self.lock().default_branches.insert(repo, branch);
    }

    /// The workspace's packages this cycle.
    pub fn of(&self, ws: &WorkspaceConfig, config: &Config) -> WorkspacePackages {
        let mut packages = ws.packages.clone();
        packages.extend(ws.buildconf.clone());
        let Some(_) = &ws.manifest else {
            return WorkspacePackages {
                packages,
                incomplete: None,
            };
        };
        let Some(list) = self
            .lock()
            .manifests
            .get(&ws.name)
            .and_then(|s| s.list.clone())
        else {
            return WorkspacePackages {
                packages: Vec::new(),
                incomplete: Some("its manifest never gave a package list".to_owned()),
            };
        };
        let incomplete = self.resolve(&ws.name, list, &mut packages, config);
        WorkspacePackages {
            packages,
            incomplete,
        }
    }

    /// Appends the watchable `entries` (of a manifest of workspace `ws`) to
    /// `packages`, skipping names already there; returns why the list is incomplete
    /// (a default branch not known yet), if so.
    pub fn resolve(
        &self,
        ws: &str,
        entries: Vec<StoredPackage>,
        packages: &mut Vec<PackageConfig>,
        config: &Config,
    ) -> Option<String> {
        let mut inner = self.lock();
        let mut incomplete = None;
        for entry in entries {
            if packages.iter().any(|p| p.name == entry.name) {
                let message = format!(
                    "{ws}: {}: also listed in the configuration, which wins",
                    entry.name
                );
                report(&mut inner, message, false);
                continue;
            }
            let repo = match RepoId::parse(&entry.url) {
                Ok(repo) => repo,
                Err(e) => {
                    report(
                        &mut inner,
                        format!("{ws}: {}: not watched: {e}", entry.name),
                        true,
                    );
                    continue;
                }
            };
            let Some(forge) = forge_of(config, &repo) else {
                let message = format!(
                    "{ws}: {}: not watched: no forge is configured for host `{}`",
                    entry.name,
                    repo.host()
                );
                report(&mut inner, message, false);
                continue;
            };
            let branch = match entry
                .branch
                .or_else(|| inner.default_branches.get(&repo).cloned())
            {
                Some(branch) => branch,
                None => {
                    incomplete = Some(format!("the default branch of {repo} is not known yet"));
                    continue;
                }
            };
            packages.push(PackageConfig {
                name: entry.name,
                repo,
                forge,
                branch,
                kind: if entry.package_set.is_some() {
                    PackageKind::PackageSet
                } else {
                    PackageKind::Package
                },
            });
        }
        incomplete
    }
}

/// The configured forge whose host owns `repo`.
fn forge_of(config: &Config, repo: &RepoId) -> Option<String> {
    config
        .forges
        .iter()
        .find(|(_, f)| f.host == repo.host())
        .map(|(name, _)| name.clone())
}

fn report(inner: &mut Inner, message: String, warn: bool) {
    if inner.reported.insert(message.clone()) {
        if warn {
            tracing::warn!("{message}");
        } else {
            tracing::info!("{message}");
        }
    }
}
