//! Validation of a workspace's `manifest`, `update`, `discover`, `buildconf`,
//! `pull_requests` and `report` blocks: where its package list comes from, how it
//! is refreshed, how the packages of an open config PR are discovered, which PRs
//! are built and what is reported on the forges.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::super::raw::{
    Entries, RawBuildconf, RawDiscover, RawManifest, RawPullRequests, RawReport, RawUpdate, q,
};
use super::super::{
    BUILDCONF_PACKAGE, CommandConfig, ManifestConfig, ManifestFormat, PackageConfig, PackageKind,
    PrRefMode, PullRequestsConfig, ReportConfig, TrustConfig, UpdateConfig,
};
use super::{Checked, Checker, ForgeHost};

const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(120 * 24 * 3600);
const DEFAULT_APPROVE_LABEL: &str = "ok-to-test";
const DEFAULT_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];
/// GitHub's `author_association` values.
const ASSOCIATIONS: [&str; 8] = [
    "OWNER",
    "MEMBER",
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIME_CONTRIBUTOR",
    "FIRST_TIMER",
    "MANNEQUIN",
    "NONE",
];

impl Checker<'_> {
    pub(super) fn manifest(
        &mut self,
        m: &Spanned<RawManifest>,
        ws: &str,
    ) -> Checked<ManifestConfig> {
        let raw = &m.value;
        let format = match &raw.format {
            None => Ok(ManifestFormat::Autoproj),
            Some(f) => match f.value.as_str() {
                "autoproj" => Ok(ManifestFormat::Autoproj),
                "forgewatch" => Ok(ManifestFormat::Forgewatch),
                other => Err(self.error(
                    f.referenced,
                    format!(
                        "unknown manifest format {}: expected `autoproj` or `forgewatch`",
                        q(other)
                    ),
                )),
            },
        };
        let path = match &raw.path {
            None => Err(self.error(
                m.referenced,
                format!("the manifest of workspace {ws} needs `path`"),
            )),
            Some(p) if p.value.is_empty() => Err(self.error(p.referenced, "`path` is empty")),
            Some(p) => Ok(self.resolve(&p.value)),
        };
        Ok(ManifestConfig {
            format: format?,
            path: path?,
        })
    }

    /// The parts `update` and `discover` share: what runs, where, for how long.
    #[allow(clippy::too_many_arguments)]
    fn command(
        &mut self,
        what: &str,
        at: serde_saphyr::Location,
        argv: &Option<Spanned<Vec<String>>>,
        dir: &Option<Spanned<String>>,
        timeout: &Option<Spanned<String>>,
        kill_grace: &Option<Spanned<String>>,
        env: &Option<Entries<Spanned<String>>>,
    ) -> Checked<CommandConfig> {
        let argv = match argv {
            None => Err(self.error(
                at,
                format!("{what} needs `argv` (the command and its arguments)"),
            )),
            Some(a) if a.value.first().is_none_or(|p| p.is_empty()) => {
                Err(self.error(a.referenced, "`argv` needs at least the program"))
            }
            Some(a) => Ok(a.value.clone()),
        };
        let dir = match dir {
            None => Err(self.error(at, format!("{what} needs `dir` (where it runs)"))),
            Some(d) if d.value.is_empty() => Err(self.error(d.referenced, "`dir` is empty")),
            Some(d) => Ok(self.resolve(&d.value)),
        };
        let timeout = self.positive_duration(timeout.as_ref(), DEFAULT_UPDATE_TIMEOUT);
        let kill_grace = self.positive_duration(kill_grace.as_ref(), DEFAULT_KILL_GRACE);
        let env = env
            .iter()
            .flat_map(|e| &e.0)
            .map(|(k, v)| (k.value.clone(), v.value.clone()))
            .collect();
        Ok(CommandConfig {
            argv: argv?,
            dir: dir?,
            timeout: timeout?,
            kill_grace: kill_grace?,
            env,
        })
    }

    pub(super) fn update(&mut self, u: &Spanned<RawUpdate>, ws: &str) -> Checked<UpdateConfig> {
        let raw = &u.value;
        let command = self.command(
            &format!("the update of workspace {ws}"),
            u.referenced,
            &raw.argv,
            &raw.dir,
            &raw.timeout,
            &raw.kill_grace,
            &raw.env,
        );
        let every = raw
            .every
            .as_ref()
            .map(|e| self.positive_duration(Some(e), Duration::ZERO))
            .transpose();
        let (mut on_startup, mut on_config_change) = (true, true);
        let mut when = Ok(());
        if let Some(list) = &raw.when {
            (on_startup, on_config_change) = (false, false);
            for item in list {
                match item.value.as_str() {
                    "startup" => on_startup = true,
                    "config_change" => on_config_change = true,
                    other => {
                        let msg = format!(
                            "unknown update trigger {}: expected `startup` or `config_change`",
                            q(other)
                        );
                        when = Err(self.error(item.referenced, msg));
                    }
                }
            }
        }
        when?;
        let CommandConfig {
            argv,
            dir,
            timeout,
            kill_grace,
            env,
        } = command?;
        Ok(UpdateConfig {
            argv,
            dir,
            timeout,
            kill_grace,
            env,
            on_startup,
            on_config_change,
            every: every?,
        })
    }

    pub(super) fn discover(
        &mut self,
        d: &Spanned<RawDiscover>,
        ws: &str,
    ) -> Checked<CommandConfig> {
        let raw = &d.value;
        self.command(
            &format!("the discovery of workspace {ws}"),
            d.referenced,
            &raw.argv,
            &raw.dir,
            &raw.timeout,
            &raw.kill_grace,
            &raw.env,
        )
    }

    pub(super) fn buildconf(
        &mut self,
        b: &Spanned<RawBuildconf>,
        ws: &str,
        hosts: &BTreeMap<String, ForgeHost>,
    ) -> Checked<PackageConfig> {
        let raw = &b.value;
        let repo = match &raw.repo {
            None => Err(self.error(
                b.referenced,
                format!("the buildconf of workspace {ws} needs `repo`"),
            )),
            Some(r) => self.repo_on_forge(r, hosts),
        };
        let branch = match &raw.branch {
            None => Err(self.error(
                b.referenced,
                format!("the buildconf of workspace {ws} needs `branch`"),
            )),
            Some(br) if br.value.is_empty() => Err(self.error(br.referenced, "`branch` is empty")),
            Some(br) => Ok(br.value.clone()),
        };
        let (repo, forge) = repo?;
        Ok(PackageConfig {
            name: BUILDCONF_PACKAGE.to_owned(),
            repo,
            forge,
            branch: branch?,
            kind: PackageKind::Buildconf,
        })
    }

    /// A workspace's `report` (SPEC §14): statuses off unless asked for.
    pub(super) fn report(&mut self, raw: Option<&Spanned<RawReport>>) -> Checked<ReportConfig> {
        let mut report = ReportConfig::default();
        let Some(raw) = raw else {
            return Ok(report);
        };
        let raw = &raw.value;
        report.statuses = raw.statuses.as_ref().is_some_and(|s| s.value);
        // Only with `statuses`: the same statuses, on the dependencies too.
        report.dependencies = report.statuses && raw.dependencies.as_ref().is_some_and(|s| s.value);
        if let Some(context) = &raw.context {
            if context.value.trim().is_empty() {
                return Err(self.error(context.referenced, "`report.context` is empty"));
            }
            context.value.clone_into(&mut report.context);
        }
        Ok(report)
    }

    /// A workspace's `pull_requests`, with the safe defaults of SPEC §5.
    pub(super) fn pull_requests(
        &mut self,
        raw: Option<&RawPullRequests>,
    ) -> Checked<PullRequestsConfig> {
        let flag = |v: Option<&Spanned<bool>>, default: bool| v.map_or(default, |v| v.value);
        let pr_ref = match raw.and_then(|r| r.pr_ref.as_ref()) {
            None => Ok(PrRefMode::Auto),
            Some(v) => match v.value.as_str() {
                "auto" => Ok(PrRefMode::Auto),
                "merge" => Ok(PrRefMode::Merge),
                "head" => Ok(PrRefMode::Head),
                other => Err(self.error(
                    v.referenced,
                    format!(
                        "unknown `pr_ref` {}: expected `auto`, `merge` or `head`",
                        q(other)
                    ),
                )),
            },
        };
        let stale_after = match raw.and_then(|r| r.stale_after.as_ref()) {
            None => Ok(DEFAULT_STALE_AFTER),
            Some(v) => self.duration(v),
        };
        let trust = raw.and_then(|r| r.trust.as_ref()).map(|t| &t.value);
        let mut associations = Ok(DEFAULT_ASSOCIATIONS.map(str::to_owned).to_vec());
        if let Some(list) = trust.and_then(|t| t.author_associations.as_ref()) {
            let mut values = Vec::new();
            for a in list {
                if ASSOCIATIONS.contains(&a.value.as_str()) {
                    values.push(a.value.clone());
                } else {
                    let msg = format!(
                        "unknown author association {}: expected one of {}",
                        q(&a.value),
                        ASSOCIATIONS.join(", ")
                    );
                    associations = Err(self.error(a.referenced, msg));
                }
            }
            associations = associations.map(|_| values);
        }
        let approve_label = match trust.and_then(|t| t.approve_label.as_ref()) {
            None => Some(DEFAULT_APPROVE_LABEL.to_owned()),
            Some(l) if l.value.trim().is_empty() => None,
            Some(l) => Some(l.value.clone()),
        };
        Ok(PullRequestsConfig {
            enabled: flag(raw.and_then(|r| r.enabled.as_ref()), true),
            pr_ref: pr_ref?,
            include_drafts: flag(raw.and_then(|r| r.include_drafts.as_ref()), true),
            stale_after: stale_after?,
            skip_labels: raw.and_then(|r| r.skip_labels.clone()).unwrap_or_default(),
            rebuild_on_base_change: flag(
                raw.and_then(|r| r.rebuild_on_base_change.as_ref()),
                false,
            ),
            trust: TrustConfig {
                authors: trust.and_then(|t| t.authors.clone()).unwrap_or_default(),
                author_associations: associations?,
                same_repository: flag(trust.and_then(|t| t.same_repository.as_ref()), true),
                approve_label,
            },
        })
    }
}
