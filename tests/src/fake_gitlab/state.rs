//! The fake GitLab's state transitions shared by the public API and the routes: the
//! virtual clock, deterministic shas, `:id` resolution (numeric or case-insensitive path),
//! pushes that move MR heads, and GitLab's title-prefix notion of a draft. Split from
//! `fake_gitlab.rs` to keep each file short.

use sha2::{Digest, Sha256};

use super::{Commit, GlState, Mr, MrState, Project};

/// `title` with GitLab's draft prefix added (`Draft: `) or stripped.
pub(super) fn with_draft(title: &str, draft: bool) -> String {
    match (draft, draft_prefix_len(title)) {
        (true, Some(_)) | (false, None) => title.to_owned(),
        (true, None) => format!("Draft: {title}"),
        (false, Some(n)) => title[n..].trim_start().to_owned(),
    }
}

/// Length of a draft prefix GitLab recognises (`Draft:`, `[Draft]`, `(Draft)`, and the
/// older `WIP:` / `[WIP]`), case-insensitively.
pub(super) fn draft_prefix_len(title: &str) -> Option<usize> {
    let lower = title.to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)", "wip:", "[wip]"]
        .into_iter()
        .find(|p| lower.starts_with(p))
        .map(str::len)
}

impl GlState {
    pub(super) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(super) fn fresh_sha(&mut self) -> String {
        self.sha_counter += 1;
        let digest = Sha256::digest(format!(
            "forgewatch-fake-gitlab-commit-{}",
            self.sha_counter
        ));
        hex::encode(digest)[..40].to_owned()
    }

    pub(super) fn fresh_project_id(&mut self) -> u64 {
        self.next_project_id += 1;
        self.next_project_id
    }

    /// Resolves `:id` as GitLab does: a numeric id, or a full path compared case-insensitively.
    pub(super) fn find(&self, id_or_path: &str) -> Option<u64> {
        if let Ok(id) = id_or_path.parse::<u64>() {
            return self.projects.contains_key(&id).then_some(id);
        }
        self.projects
            .values()
            .find(|p| p.path.eq_ignore_ascii_case(id_or_path))
            .map(|p| p.id)
    }

    pub(super) fn pid(&self, path: &str) -> u64 {
        self.find(path)
            .unwrap_or_else(|| panic!("fake GitLab: unknown project {path}"))
    }

    pub(super) fn project(&self, id: u64) -> &Project {
        self.projects
            .get(&id)
            .unwrap_or_else(|| panic!("fake GitLab: unknown project id {id}"))
    }

    pub(super) fn project_mut(&mut self, id: u64) -> &mut Project {
        self.projects
            .get_mut(&id)
            .unwrap_or_else(|| panic!("fake GitLab: unknown project id {id}"))
    }

    pub(super) fn mr(&self, target: u64, iid: u64) -> &Mr {
        let project = self.project(target);
        project
            .mrs
            .get(&iid)
            .unwrap_or_else(|| panic!("fake GitLab: no MR !{iid} in {}", project.path))
    }

    /// Applies `change` to an MR, advancing the clock and, if `bump`, `updated_at`.
    pub(super) fn update_mr(
        &mut self,
        target: u64,
        iid: u64,
        bump: bool,
        change: impl FnOnce(&mut Mr),
    ) {
        let now = self.tick();
        let project = self.project_mut(target);
        let path = project.path.clone();
        let mr = project
            .mrs
            .get_mut(&iid)
            .unwrap_or_else(|| panic!("fake GitLab: no MR !{iid} in {path}"));
        change(mr);
        if bump {
            mr.updated_at = now;
        }
    }

    /// Moves `branch` of project `id` to a fresh commit and the open MRs it is the source of.
    pub(super) fn push(&mut self, id: u64, branch: &str) -> String {
        let now = self.tick();
        let sha = self.fresh_sha();
        let commit = Commit {
            sha: sha.clone(),
            title: format!("Update {branch} ({})", &sha[..8]),
            at: now,
        };
        self.project_mut(id)
            .branches
            .insert(branch.to_owned(), commit);
        let mrs = self.projects.values_mut().flat_map(|p| p.mrs.values_mut());
        for mr in mrs.filter(|mr| {
            mr.state == MrState::Opened && mr.source_project_id == id && mr.source_branch == branch
        }) {
            mr.sha = sha.clone();
            mr.updated_at = now;
        }
        sha
    }
}
