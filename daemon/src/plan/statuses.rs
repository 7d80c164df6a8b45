//! Where a build's commit statuses go (SPEC §14): with `report.statuses`, a PR
//! build's status is set on its head sha under the workspace's context; with
//! `report.dependencies`, also on the head of every PR of its closure, under
//! `CONTEXT (with HOST/PATH#N)` naming the dependent build, so the author of a
//! dependency sees which dependents it breaks. Mainline builds get none (there is
//! no PR to show them on). Read from the payload the CI was sent, so a status
//! always names exactly the shas that build was made of.

use forgewatch_adapters::results::BuildState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ReportConfig;

/// One commit status to keep up to date: a commit of a repository, and the
/// context that tells forgewatch's status apart there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatusTarget {
    /// The forge's host (`github.com`).
    pub host: String,
    /// The repository's path on it (`rock-core/base-types`).
    pub path: String,
    pub sha: String,
    pub context: String,
}

/// The status targets of a delivery of `workspace` with these payload
/// `properties`, as `report` asks.
pub fn status_targets(
    report: &ReportConfig,
    workspace: &str,
    properties: &Map<String, Value>,
) -> Vec<StatusTarget> {
    let Some(pr) = properties.get("pull_request").and_then(PrAt::read) else {
        return Vec::new();
    };
    if !report.statuses {
        return Vec::new();
    }
    let context = report.context.replace("{workspace}", workspace);
    let mut targets = vec![pr.target(context.clone())];
    if report.dependencies {
        let dependencies = properties.get("dependencies").and_then(Value::as_array);
        for dependency in dependencies.into_iter().flatten().filter_map(PrAt::read) {
            if (&dependency.host, &dependency.path) == (&pr.host, &pr.path) {
                continue;
            }
            let with = format!("{context} (with {}/{}#{})", pr.host, pr.path, pr.number);
            targets.push(dependency.target(with));
        }
    }
    targets.sort();
    targets.dedup();
    targets
}

/// The description of a status in `state` with the CI's one-line `summary`.
pub fn description(state: BuildState, summary: Option<&str>) -> String {
    if let Some(summary) = summary.map(str::trim).filter(|s| !s.is_empty()) {
        return summary.to_owned();
    }
    match state {
        BuildState::Pending => "the CI accepted the build",
        BuildState::Running => "the build is running",
        BuildState::Success => "the build succeeded",
        BuildState::Failure => "the build failed",
        BuildState::Error => "the build could not run",
        BuildState::Cancelled => "the build was cancelled",
    }
    .to_owned()
}

/// A PR as the payload names it.
struct PrAt {
    host: String,
    path: String,
    number: u64,
    head_sha: String,
}

impl PrAt {
    fn read(value: &Value) -> Option<PrAt> {
        let text = |name| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(PrAt {
            host: text("host")?,
            path: text("path")?,
            number: value.get("number").and_then(Value::as_u64)?,
            head_sha: text("head_sha").filter(|s| !s.is_empty())?,
        })
    }

    fn target(&self, context: String) -> StatusTarget {
        StatusTarget {
            host: self.host.clone(),
            path: self.path.clone(),
            sha: self.head_sha.clone(),
            context,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn properties(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn pr_payload() -> Map<String, Value> {
        properties(json!({
            "pull_request": {"host": "github.com", "path": "acme/app", "number": 7, "head_sha": "aaa"},
            "dependencies": [
                {"host": "github.com", "path": "acme/app", "number": 7, "head_sha": "aaa"},
                {"host": "gitlab.example.org", "path": "g/lidar", "number": 3, "head_sha": "bbb"},
                {"host": "github.com", "path": "acme/base", "number": 12, "head_sha": "ccc"}
            ]
        }))
    }

    fn report(statuses: bool, dependencies: bool) -> ReportConfig {
        ReportConfig {
            statuses,
            dependencies,
            ..ReportConfig::default()
        }
    }

    #[test]
    fn a_pr_build_gets_its_head_and_with_dependencies_its_closure() {
        let only = status_targets(&report(true, false), "ws", &pr_payload());
        assert_eq!(
            only,
            [StatusTarget {
                host: "github.com".into(),
                path: "acme/app".into(),
                sha: "aaa".into(),
                context: "forgewatch/ws".into(),
            }]
        );
        let all = status_targets(&report(true, true), "ws", &pr_payload());
        let shown: Vec<(&str, &str)> = all
            .iter()
            .map(|t| (t.sha.as_str(), t.context.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("aaa", "forgewatch/ws"),
                ("ccc", "forgewatch/ws (with github.com/acme/app#7)"),
                ("bbb", "forgewatch/ws (with github.com/acme/app#7)"),
            ]
        );
    }

    #[test]
    fn mainline_builds_and_workspaces_without_statuses_get_none() {
        let mainline = properties(json!({"kind": "mainline", "package_names": ["a"]}));
        assert!(status_targets(&report(true, true), "ws", &mainline).is_empty());
        assert!(status_targets(&report(false, false), "ws", &pr_payload()).is_empty());
    }

    #[test]
    fn descriptions_prefer_the_ci_summary() {
        assert_eq!(
            description(BuildState::Failure, Some(" failed 'make test' ")),
            "failed 'make test'"
        );
        assert_eq!(
            description(BuildState::Failure, Some("")),
            "the build failed"
        );
    }
}
