//! CI targets: where a build trigger goes. The daemon builds one [`BuildTrigger`]
//! per delivery; each target puts it on the wire in its own dialect: Buildbot's
//! `base` change hook form ([`buildbot`]), a signed JSON webhook ([`webhook`]), a
//! GitLab pipeline trigger ([`gitlab_pipeline`]). Any 2xx is success.

pub mod buildbot;
pub mod gitlab_pipeline;
pub mod webhook;

pub use buildbot::Buildbot;
pub use gitlab_pipeline::GitLabPipeline;
pub use webhook::Webhook;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::BoxFuture;
use crate::http::{error_chain, one_line};

/// The Buildbot change fields (SPEC §7), also sent as top-level webhook keys.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TriggerFields {
    pub author: String,
    pub committer: String,
    pub branch: String,
    /// `pull_request` or `push`.
    pub category: String,
    pub codebase: String,
    pub comments: String,
    pub project: String,
    pub repository: String,
    pub revision: String,
    pub revlink: String,
    pub when_timestamp: i64,
}

impl TriggerFields {
    fn pairs(&self) -> [(&'static str, String); 11] {
        [
            ("author", self.author.clone()),
            ("committer", self.committer.clone()),
            ("branch", self.branch.clone()),
            ("category", self.category.clone()),
            ("codebase", self.codebase.clone()),
            ("comments", self.comments.clone()),
            ("project", self.project.clone()),
            ("repository", self.repository.clone()),
            ("revision", self.revision.clone()),
            ("revlink", self.revlink.clone()),
            ("when_timestamp", self.when_timestamp.to_string()),
        ]
    }
}

/// One delivery of one build.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildTrigger {
    /// Stable across retries of the same delivery.
    pub delivery_id: String,
    pub fields: TriggerFields,
    /// The `properties` object (SPEC §7).
    pub properties: Map<String, Value>,
}

impl BuildTrigger {
    /// The webhook body: the properties, `"event": "build"` and the change fields.
    pub fn webhook_json(&self) -> Value {
        let mut object = self.properties.clone();
        object.insert("event".into(), Value::from("build"));
        for (name, value) in self.fields.pairs() {
            let value = if name == "when_timestamp" {
                Value::from(self.fields.when_timestamp)
            } else {
                Value::from(value)
            };
            object.insert(name.into(), value);
        }
        Value::Object(object)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("rejected with HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("timed out")]
    Timeout,
    /// The target answered, but not with success (a command's non-zero exit).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Transport(String),
}

/// What a CI target answers a trigger it accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// How the build went, when the target says so in its answer (a `command`
    /// printing a result line); the others report later, if at all.
    pub result: Option<crate::results::BuildResult>,
}

/// A CI system that accepts build triggers.
pub trait CiTarget: Send + Sync {
    fn deliver<'a>(
        &'a self,
        trigger: &'a BuildTrigger,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>>;
}

pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, DeliveryError> {
    reqwest::Client::builder()
        .user_agent(concat!("forgewatch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .build()
        .map_err(|e| DeliveryError::Transport(format!("cannot build the HTTP client: {e}")))
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Accepted, DeliveryError> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            DeliveryError::Timeout
        } else {
            DeliveryError::Transport(error_chain(&e))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(Accepted::default());
    }
    let body = response.bytes().await.unwrap_or_default();
    Err(DeliveryError::Rejected {
        status: status.as_u16(),
        message: one_line(&String::from_utf8_lossy(&body), 300),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> BuildTrigger {
        let mut properties = Map::new();
        properties.insert("workspace".into(), Value::from("ws"));
        BuildTrigger {
            delivery_id: "d".into(),
            fields: TriggerFields {
                author: "forgewatch".into(),
                committer: "forgewatch".into(),
                branch: "main".into(),
                category: "push".into(),
                codebase: String::new(),
                comments: String::new(),
                project: "ws".into(),
                repository: "https://github.com/acme/a".into(),
                revision: "abc".into(),
                revlink: "https://github.com/acme/a".into(),
                when_timestamp: 17,
            },
            properties,
        }
    }

    #[test]
    fn buildbot_form_has_every_field_and_properties_as_an_object_string() {
        let form = buildbot::Buildbot::form(&trigger());
        let names: Vec<_> = form.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "author",
                "committer",
                "branch",
                "category",
                "codebase",
                "comments",
                "project",
                "repository",
                "revision",
                "revlink",
                "when_timestamp",
                "properties"
            ]
        );
        assert_eq!(form[10].1, "17");
        assert_eq!(form[11].1, r#"{"workspace":"ws"}"#);
    }

    #[test]
    fn webhook_body_merges_properties_event_and_fields() {
        let json = trigger().webhook_json();
        assert_eq!(json["event"], "build");
        assert_eq!(json["workspace"], "ws");
        assert_eq!(json["when_timestamp"], 17);
        assert_eq!(json["repository"], "https://github.com/acme/a");
    }
}
