//! Trigger payloads (SPEC §7): the Buildbot change fields and the `properties`
//! object of one delivery, built from a planned build and what was delivered before.

use forgewatch_adapters::ci::{BuildTrigger, TriggerFields};
use serde_json::{Map, Value, json};

use crate::plan::builds::{PlannedBuild, Subject};
use crate::plan::fingerprint::{BuildInputs, PackageHead};
use crate::plan::ids::DeliveryId;

/// Everything a payload needs besides the build itself.
pub struct PayloadContext<'a> {
    pub workspace: &'a str,
    pub delivery_id: &'a DeliveryId,
    /// The inputs last delivered for this key, if any.
    pub previous: Option<&'a BuildInputs>,
    /// Human-readable change description, sent as `comments`.
    pub reason: &'a str,
    /// Unix seconds; `when_timestamp` of mainline builds.
    pub detected_at: i64,
}

pub fn build_trigger(build: &PlannedBuild, cx: &PayloadContext<'_>) -> BuildTrigger {
    let mut properties = Map::new();
    properties.insert("workspace".into(), json!(cx.workspace));
    properties.insert("build_key".into(), json!(build.key.as_str()));
    properties.insert(
        "fingerprint".into(),
        json!(build.inputs.fingerprint().as_str()),
    );
    properties.insert("delivery_id".into(), json!(cx.delivery_id.to_string()));
    let fields = match &build.subject {
        Subject::Mainline(heads) => mainline(heads, cx, &mut properties),
        Subject::PullRequest {
            pr,
            test_ref,
            packages,
            dependencies,
            unresolved,
            overrides,
            cycle: _,
            discovery,
        } => {
            let ref_name = pr.test_ref(*test_ref);
            let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
            let overrides: Vec<Value> = overrides
                .iter()
                .map(|(package, remote_branch)| {
                    json!({ package.clone(): {
                        "remote_branch": remote_branch,
                        "single_branch": false,
                        "shallow": false,
                    }})
                })
                .collect();
            let dependencies: Vec<Value> = dependencies
                .iter()
                .map(|d| {
                    json!({
                        "host": d.base_repo.host(),
                        "path": d.base_repo.path(),
                        "number": d.number,
                        "head_sha": d.head_sha,
                        "draft": d.draft,
                    })
                })
                .collect();
            let unresolved: Vec<Value> = unresolved
                .iter()
                .map(|u| json!({"reference": u.reference, "reason": u.reason}))
                .collect();
            properties.insert("kind".into(), json!("pull_request"));
            properties.insert("package_names".into(), json!(names));
            properties.insert("source_branch".into(), json!(pr.head_ref));
            properties.insert("source_project_id".into(), json!(pr.head_repo_numeric_id));
            properties.insert(
                "pull_request".into(),
                json!({
                    "host": pr.base_repo.host(),
                    "path": pr.base_repo.path(),
                    "number": pr.number,
                    "url": pr.web_url,
                    "head_sha": pr.head_sha,
                    "base_branch": pr.base_branch,
                    "draft": pr.draft,
                    "ref": ref_name,
                }),
            );
            properties.insert("overrides".into(), Value::Array(overrides));
            properties.insert("dependencies".into(), Value::Array(dependencies));
            properties.insert("unresolved_dependencies".into(), Value::Array(unresolved));
            if let Some(discovery) = discovery {
                properties.insert("discovery".into(), json!(discovery));
            }
            TriggerFields {
                author: pr.author.clone(),
                committer: pr.author.clone(),
                branch: ref_name,
                category: "pull_request".into(),
                codebase: String::new(),
                comments: cx.reason.to_owned(),
                project: cx.workspace.to_owned(),
                repository: pr.base_repo.web_url(),
                revision: pr.head_sha.clone(),
                revlink: pr.web_url.clone(),
                when_timestamp: pr.updated_at.unwrap_or(cx.detected_at),
            }
        }
    };
    BuildTrigger {
        delivery_id: cx.delivery_id.to_string(),
        fields,
        properties,
    }
}

fn mainline(
    heads: &[(crate::config::PackageConfig, String)],
    cx: &PayloadContext<'_>,
    properties: &mut Map<String, Value>,
) -> TriggerFields {
    let previous: &[PackageHead] = match cx.previous {
        Some(BuildInputs::Mainline { packages }) => packages,
        _ => &[],
    };
    // Changed: new packages, and packages whose repository, branch or head moved.
    let changed: Vec<(&crate::config::PackageConfig, &String, Option<&PackageHead>)> = heads
        .iter()
        .filter_map(|(pkg, sha)| {
            let old = previous.iter().find(|o| o.name == pkg.name);
            let same = old.is_some_and(|o| {
                o.head == *sha && o.branch == pkg.branch && o.repository == pkg.repo.to_string()
            });
            (!same).then_some((pkg, sha, old))
        })
        .collect();
    let changed_json: Vec<Value> = changed
        .iter()
        .map(|(pkg, sha, old)| {
            json!({
                "name": pkg.name,
                "repository": pkg.repo.web_url(),
                "branch": pkg.branch,
                "old": old.map(|o| o.head.clone()),
                "new": sha,
            })
        })
        .collect();
    // A removal alone changes no head: the first package then stands for the build.
    let (first_pkg, first_sha) = match changed.first() {
        Some((pkg, sha, _)) => (*pkg, *sha),
        None => match heads.first() {
            Some((pkg, sha)) => (pkg, sha),
            None => unreachable!("a mainline build has at least one package"),
        },
    };
    let names: Vec<&str> = changed.iter().map(|(p, _, _)| p.name.as_str()).collect();
    properties.insert("kind".into(), json!("mainline"));
    properties.insert("package_names".into(), json!(names));
    properties.insert("source_branch".into(), json!(first_pkg.branch));
    properties.insert("changed_packages".into(), Value::Array(changed_json));
    TriggerFields {
        author: "forgewatch".into(),
        committer: "forgewatch".into(),
        branch: first_pkg.branch.clone(),
        category: "push".into(),
        codebase: String::new(),
        comments: cx.reason.to_owned(),
        project: cx.workspace.to_owned(),
        repository: first_pkg.repo.web_url(),
        revision: first_sha.clone(),
        revlink: first_pkg.repo.web_url(),
        when_timestamp: cx.detected_at,
    }
}
