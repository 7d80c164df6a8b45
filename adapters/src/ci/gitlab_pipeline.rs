//! GitLab's pipeline trigger API: `POST /projects/:id/trigger/pipeline` with a
//! trigger token, the ref to run on, and the build as `FORGEWATCH_*` variables.
//! GitLab answers 201; a 400 (unknown ref, rejected by `workflow:rules`) or a 404
//! (unknown project or token) is a failed delivery carrying GitLab's message.

pub mod events;

use std::time::Duration;

use super::{Accepted, BuildTrigger, CiTarget, DeliveryError, http_client, send};
use crate::{BoxFuture, Secret};

pub struct GitLabPipeline {
    url: String,
    git_ref: String,
    token: Secret,
    http: reqwest::Client,
}

impl GitLabPipeline {
    /// `project` is a full path (`infra/ci`, sent URL-encoded as one segment) or a
    /// numeric id.
    pub fn new(
        api_url: &str,
        project: &str,
        git_ref: String,
        token: Secret,
        timeout: Duration,
    ) -> Result<GitLabPipeline, DeliveryError> {
        let mut url = url::Url::parse(api_url.trim_end_matches('/'))
            .map_err(|e| DeliveryError::Transport(format!("invalid API URL `{api_url}`: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| DeliveryError::Transport(format!("invalid API URL `{api_url}`")))?
            .pop_if_empty()
            .push("projects")
            .push(project)
            .push("trigger")
            .push("pipeline");
        Ok(GitLabPipeline {
            url: url.to_string(),
            git_ref,
            token,
            http: http_client(timeout)?,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The form fields, token first.
    fn form(&self, trigger: &BuildTrigger) -> Vec<(&'static str, String)> {
        let property = |name: &str| {
            trigger
                .properties
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        vec![
            ("token", self.token.expose().to_owned()),
            ("ref", self.git_ref.clone()),
            ("variables[FORGEWATCH_WORKSPACE]", property("workspace")),
            ("variables[FORGEWATCH_BUILD_KEY]", property("build_key")),
            ("variables[FORGEWATCH_FINGERPRINT]", property("fingerprint")),
            (
                "variables[FORGEWATCH_DELIVERY_ID]",
                trigger.delivery_id.clone(),
            ),
            (
                "variables[FORGEWATCH_PAYLOAD]",
                trigger.webhook_json().to_string(),
            ),
        ]
    }
}

impl CiTarget for GitLabPipeline {
    fn deliver<'a>(
        &'a self,
        trigger: &'a BuildTrigger,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>> {
        Box::pin(async move { send(self.http.post(&self.url).form(&self.form(trigger))).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_are_one_encoded_segment() {
        let t = |project: &str| {
            GitLabPipeline::new(
                "https://gitlab.example.org/api/v4/",
                project,
                "main".into(),
                Secret::new("t"),
                Duration::from_secs(1),
            )
            .unwrap()
        };
        assert_eq!(
            t("infra/ci").url(),
            "https://gitlab.example.org/api/v4/projects/infra%2Fci/trigger/pipeline"
        );
        assert_eq!(
            t("42").url(),
            "https://gitlab.example.org/api/v4/projects/42/trigger/pipeline"
        );
    }
}
