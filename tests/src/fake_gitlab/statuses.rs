//! Commit statuses and pipeline events on the fake GitLab (`forge-apis.md` §7.2):
//! `POST /projects/:id/statuses/:sha` (JSON or form) validated like GitLab (`state`
//! one of `pending|running|success|failed|canceled|skipped`, else 400; the state a
//! status already has again is 400 "Cannot transition status via :run from
//! :running"; `name` defaults to `default`), answered 201 and recorded in the same
//! [`StatusPost`] as the fake GitHub's. [`FakeGitLab::pipeline_event`] writes the
//! body GitLab posts to a project's webhook (`X-Gitlab-Event: Pipeline Hook`) for a
//! pipeline the trigger route created.

use serde_json::{Value, json};
use url::form_urlencoded;

use super::http::{Reply, Req, error_message, json_reply};
use super::{FakeGitLab, GlState};
use crate::fake_github::StatusPost;

const STATES: [&str; 6] = [
    "pending", "running", "success", "failed", "canceled", "skipped",
];

impl FakeGitLab {
    /// Every status post accepted so far, in order.
    pub fn statuses(&self) -> Vec<StatusPost> {
        self.lock().statuses.clone()
    }

    /// The `Pipeline Hook` body for the `index`-th triggered pipeline, now in
    /// `status` (GitLab's names: `running`, `success`, `failed`, `canceled`, …), as
    /// GitLab posts it: the pipeline's id, ref, sha, status, times (`YYYY-MM-DD
    /// HH:MM:SS UTC`), URL and variables, and its project.
    pub fn pipeline_event(&self, index: usize, status: &str) -> Value {
        let state = self.lock();
        let pipeline = &state.pipelines[index];
        let project = state
            .projects
            .values()
            .find(|p| p.path == pipeline.project || p.id.to_string() == pipeline.project)
            .expect("the pipeline's project");
        let web_url = format!("https://{}/{}", state.public_host, project.path);
        let time = |secs: u64| {
            crate::format::rfc3339(secs)
                .replace('T', " ")
                .replace('Z', " UTC")
        };
        let finished = matches!(status, "success" | "failed" | "canceled" | "skipped");
        json!({
            "object_kind": "pipeline",
            "object_attributes": {
                "id": pipeline.id,
                "iid": index + 1,
                "name": null,
                "ref": pipeline.git_ref,
                "tag": false,
                "sha": pipeline.sha,
                "before_sha": "0000000000000000000000000000000000000000",
                "source": "trigger",
                "status": status,
                "detailed_status": status,
                "stages": ["build", "test"],
                "created_at": time(pipeline.created),
                "finished_at": if finished { Value::from(time(state.clock)) } else { Value::Null },
                "duration": if finished { Value::from(state.clock.saturating_sub(pipeline.created)) } else { Value::Null },
                "queued_duration": 1,
                "variables": pipeline.variables.iter()
                    .map(|(key, value)| json!({"key": key, "value": value}))
                    .collect::<Vec<_>>(),
                "url": format!("{web_url}/-/pipelines/{}", pipeline.id),
            },
            "merge_request": null,
            "user": {"id": 1, "name": "Forgewatch Bot", "username": "forgewatch-bot"},
            "project": {
                "id": project.id,
                "name": project.path.rsplit('/').next(),
                "web_url": web_url,
                "path_with_namespace": project.path,
                "default_branch": project.default_branch,
            },
            "commit": {"id": pipeline.sha, "message": "Update", "timestamp": time(pipeline.created)},
            "builds": [],
        })
    }
}

impl GlState {
    /// `POST /projects/:id/statuses/:sha`.
    pub(super) fn post_status(&mut self, pid: u64, sha: &str, req: &Req<'_>) -> Reply {
        let json = req
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        let params: Vec<(String, String)> = if json {
            match serde_json::from_slice::<Value>(req.body) {
                Ok(Value::Object(map)) => map
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                    .collect(),
                _ => return error_message(400, json!("400 Bad request - body is not JSON")),
            }
        } else {
            form_urlencoded::parse(req.body).into_owned().collect()
        };
        let get = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let Some(state) = get("state").filter(|s| STATES.contains(&s.as_str())) else {
            return json_reply(400, &json!({"error": "state does not have a valid value"}));
        };
        let name = get("name")
            .or_else(|| get("context"))
            .unwrap_or_else(|| "default".to_owned());
        let project = &self.projects[&pid];
        let path = project.path.clone();
        let current = self
            .statuses
            .iter()
            .rev()
            .find(|s| s.repo == path && s.sha == sha && s.context == name);
        if current.is_some_and(|s| s.state == state) {
            let message = format!("Cannot transition status via :{0} from :{0}", verb(&state));
            return error_message(400, json!(message));
        }
        self.next_status_id += 1;
        let post = StatusPost {
            repo: path,
            sha: sha.to_owned(),
            state: state.clone(),
            target_url: get("target_url"),
            description: get("description"),
            context: name.clone(),
            received: std::time::SystemTime::now(),
        };
        self.statuses.push(post);
        json_reply(
            201,
            &json!({
                "id": self.next_status_id,
                "sha": sha,
                "ref": null,
                "status": state,
                "name": name,
                "target_url": get("target_url"),
                "description": get("description"),
                "created_at": crate::format::iso_millis(self.clock),
                "allow_failure": false,
            }),
        )
    }
}

/// The state machine event GitLab names in its refusal.
fn verb(state: &str) -> &str {
    match state {
        "pending" => "enqueue",
        "running" => "run",
        "success" => "succeed",
        "failed" => "drop",
        "canceled" => "cancel",
        _ => "skip",
    }
}
