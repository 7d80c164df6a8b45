//! Results from GitLab: the `Pipeline Hook` event a project's webhook posts at each
//! change of a pipeline's status, read back into a [`ReportedResult`] through the
//! `FORGEWATCH_DELIVERY_ID` / `FORGEWATCH_BUILD_KEY` / `FORGEWATCH_FINGERPRINT`
//! variables the `gitlab_pipeline` target set on the pipeline. GitLab's statuses
//! map to ours: `created`, `waiting_for_resource`, `preparing`, `pending`,
//! `scheduled` and `manual` are pending, `running` running, `success` success,
//! `failed` failure, `canceled` and `skipped` cancelled. Its times are written
//! `YYYY-MM-DD HH:MM:SS UTC`.

use serde_json::Value;

use crate::http::{one_line, unix_seconds};
use crate::results::{BuildResult, BuildState, ReportError, ReportedResult, ResultRef};

const EXPECTED: &str = "GitLab pipeline event";

/// Reads one pipeline event.
pub fn parse_pipeline_event(body: &[u8]) -> Result<ReportedResult, ReportError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ReportError::NotJson(one_line(&e.to_string(), 200)))?;
    let unexpected = |reason: &str| ReportError::Unexpected {
        expected: EXPECTED,
        reason: reason.to_owned(),
    };
    if json.get("object_kind").and_then(Value::as_str) != Some("pipeline") {
        return Err(unexpected("`object_kind` is not \"pipeline\""));
    }
    let pipeline = json
        .get("object_attributes")
        .and_then(Value::as_object)
        .ok_or_else(|| unexpected("no `object_attributes` object"))?;
    let status = pipeline
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| unexpected("no `object_attributes.status`"))?;
    let state = state_of(status).ok_or_else(|| {
        unexpected(&format!(
            "unknown pipeline status {:?}",
            one_line(status, 40)
        ))
    })?;
    let variable = |name: &str| {
        pipeline
            .get("variables")
            .and_then(Value::as_array)?
            .iter()
            .find(|v| v.get("key").and_then(Value::as_str) == Some(name))
            .and_then(|v| v.get("value").and_then(Value::as_str))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let reference = ResultRef {
        delivery_id: variable("FORGEWATCH_DELIVERY_ID"),
        build_key: variable("FORGEWATCH_BUILD_KEY"),
        fingerprint: variable("FORGEWATCH_FINGERPRINT"),
    };
    if !reference.names_a_delivery() {
        return Err(ReportError::NoReference);
    }
    let url = pipeline
        .get("url")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            let project = json.get("project")?.get("web_url")?.as_str()?;
            let id = pipeline.get("id")?.as_u64()?;
            Some(format!(
                "{}/-/pipelines/{id}",
                project.trim_end_matches('/')
            ))
        })
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let detailed = pipeline
        .get("detailed_status")
        .and_then(Value::as_str)
        .filter(|d| *d != status);
    let summary = Some(match detailed {
        Some(detailed) => format!("pipeline {status} ({detailed})"),
        None => format!("pipeline {status}"),
    })
    .map(|s| one_line(&s, 200));
    let time = |name: &str| pipeline.get(name).and_then(Value::as_str).and_then(seconds);
    Ok(ReportedResult {
        reference,
        result: BuildResult {
            state,
            url,
            summary,
            started_at: time("created_at"),
            finished_at: time("finished_at"),
        },
    })
}

fn state_of(status: &str) -> Option<BuildState> {
    Some(match status {
        "created" | "waiting_for_resource" | "preparing" | "pending" | "scheduled" | "manual" => {
            BuildState::Pending
        }
        "running" => BuildState::Running,
        "success" => BuildState::Success,
        "failed" => BuildState::Failure,
        "canceled" | "canceling" | "skipped" => BuildState::Cancelled,
        _ => return None,
    })
}

/// `2016-08-12 15:23:28 UTC` (or RFC 3339) as unix seconds.
fn seconds(text: &str) -> Option<i64> {
    let text = text.strip_suffix(" UTC").unwrap_or(text);
    humantime::parse_rfc3339_weak(text).ok().map(unix_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(status: &str, variables: Value) -> Vec<u8> {
        json!({
            "object_kind": "pipeline",
            "object_attributes": {
                "id": 31, "ref": "main", "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
                "status": status, "detailed_status": if status == "success" { "passed" } else { status },
                "created_at": "2016-08-12 15:23:28 UTC", "finished_at": "2016-08-12 15:26:29 UTC",
                "variables": variables,
            },
            "project": {"id": 1, "web_url": "https://gitlab.example.org/infra/ci", "path_with_namespace": "infra/ci"},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_pipeline_event_answers_the_delivery_its_variables_name() {
        let variables = json!([
            {"key": "FORGEWATCH_BUILD_KEY", "value": "w/mainline"},
            {"key": "FORGEWATCH_DELIVERY_ID", "value": "d-1"},
            {"key": "OTHER", "value": "x"},
        ]);
        let reported = parse_pipeline_event(&event("success", variables.clone())).unwrap();
        assert_eq!(reported.reference.delivery_id.as_deref(), Some("d-1"));
        assert_eq!(reported.reference.build_key.as_deref(), Some("w/mainline"));
        assert_eq!(
            reported.result,
            BuildResult {
                state: BuildState::Success,
                url: Some("https://gitlab.example.org/infra/ci/-/pipelines/31".into()),
                summary: Some("pipeline success (passed)".into()),
                started_at: Some(1_471_015_408),
                finished_at: Some(1_471_015_589),
            }
        );
        let states: Vec<BuildState> = ["created", "running", "failed", "canceled", "skipped"]
            .into_iter()
            .map(|s| {
                parse_pipeline_event(&event(s, variables.clone()))
                    .unwrap()
                    .result
                    .state
            })
            .collect();
        assert_eq!(
            states,
            [
                BuildState::Pending,
                BuildState::Running,
                BuildState::Failure,
                BuildState::Cancelled,
                BuildState::Cancelled
            ]
        );
    }

    #[test]
    fn other_events_and_pipelines_of_others_are_refused() {
        let none = parse_pipeline_event(&event("success", json!([])));
        assert_eq!(none.unwrap_err(), ReportError::NoReference);
        let push = br#"{"object_kind": "push"}"#;
        assert!(matches!(
            parse_pipeline_event(push),
            Err(ReportError::Unexpected { .. })
        ));
        let odd = event(
            "exploded",
            json!([{"key": "FORGEWATCH_DELIVERY_ID", "value": "d"}]),
        );
        assert!(
            parse_pipeline_event(&odd)
                .unwrap_err()
                .to_string()
                .contains("exploded")
        );
        assert!(matches!(
            parse_pipeline_event(b"<html>"),
            Err(ReportError::NotJson(_))
        ));
    }
}
