//! Results from Buildbot: the JSON its `HttpStatusPush` reporter posts at every
//! build's start and end (the build dictionary, `forge-apis.md` §7.1), read back
//! into a [`ReportedResult`] through the change properties forgewatch set
//! (`delivery_id`, `build_key`, `fingerprint`), which Buildbot returns as
//! `name: [value, source]` pairs. Result codes map as SPEC §14 says.

use serde_json::{Map, Value};

use crate::http::one_line;
use crate::results::{BuildResult, BuildState, ReportError, ReportedResult, ResultRef};

/// Reads one `HttpStatusPush` post.
pub fn parse_status_push(body: &[u8]) -> Result<ReportedResult, ReportError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ReportError::NotJson(one_line(&e.to_string(), 200)))?;
    let not_a_build = |reason: &str| ReportError::Unexpected {
        expected: "Buildbot build",
        reason: reason.to_owned(),
    };
    let build = json
        .as_object()
        .ok_or_else(|| not_a_build("the body is not a JSON object"))?;
    if !build.get("buildid").is_some_and(Value::is_u64) {
        return Err(not_a_build("no numeric `buildid`"));
    }
    let complete = build
        .get("complete")
        .and_then(Value::as_bool)
        .ok_or_else(|| not_a_build("no boolean `complete`"))?;
    let properties = match build.get("properties") {
        Some(Value::Object(properties)) => properties,
        Some(_) => return Err(not_a_build("`properties` is not an object")),
        None => &Map::new(),
    };
    let reference = ResultRef {
        delivery_id: property(properties, "delivery_id"),
        build_key: property(properties, "build_key"),
        fingerprint: property(properties, "fingerprint"),
    };
    if !reference.names_a_delivery() {
        return Err(ReportError::NoReference);
    }
    let started_at = seconds(build.get("started_at"));
    let state = if complete {
        build
            .get("results")
            .and_then(Value::as_i64)
            .map_or(BuildState::Error, state_of_code)
    } else if started_at.is_some() {
        BuildState::Running
    } else {
        BuildState::Pending
    };
    let text = |name: &str| {
        build
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| one_line(s, 200))
    };
    Ok(ReportedResult {
        reference,
        result: BuildResult {
            state,
            url: text("url"),
            summary: text("state_string"),
            started_at,
            finished_at: seconds(build.get("complete_at")),
        },
    })
}

/// Buildbot's result codes (`buildbot.process.results`); an unknown one is an error.
fn state_of_code(code: i64) -> BuildState {
    match code {
        0 | 1 | 3 => BuildState::Success, // success, warnings, skipped
        2 => BuildState::Failure,
        5 => BuildState::Pending, // retry: the build runs again
        6 => BuildState::Cancelled,
        _ => BuildState::Error, // 4 exception, and anything newer
    }
}

/// The value of a string property (`name: [value, source]`); absent when empty or
/// not of that shape.
fn property(properties: &Map<String, Value>, name: &str) -> Option<String> {
    let value = properties.get(name)?.as_array()?.first()?.as_str()?;
    (!value.is_empty()).then(|| value.to_owned())
}

/// Unix seconds; Buildbot sends integers, a fraction is dropped.
fn seconds(value: Option<&Value>) -> Option<i64> {
    let value = value?;
    #[allow(clippy::cast_possible_truncation)]
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &[u8] = include_bytes!("../../../tests/fixtures/buildbot/start.json");
    const SUCCESS: &[u8] = include_bytes!("../../../tests/fixtures/buildbot/end-success.json");
    const FAILURE: &[u8] = include_bytes!("../../../tests/fixtures/buildbot/end-failure.json");

    fn reference(n: u32) -> ResultRef {
        ResultRef {
            delivery_id: Some(format!("d-{n}")),
            build_key: Some(format!("ws/pr/github.com/acme/app/{n}")),
            fingerprint: Some(format!("fp{n}")),
        }
    }

    #[test]
    fn a_real_start_post_is_running() {
        let got = parse_status_push(START).unwrap();
        assert_eq!(got.reference, reference(7));
        assert_eq!(
            got.result,
            BuildResult {
                state: BuildState::Running,
                url: Some("http://127.0.0.1:18556/#/builders/1/builds/1".into()),
                summary: Some("starting".into()),
                started_at: Some(1_796_426_336),
                finished_at: None,
            }
        );
    }

    #[test]
    fn real_end_posts_are_success_and_failure() {
        let got = parse_status_push(SUCCESS).unwrap();
        assert_eq!(got.reference, reference(7));
        assert_eq!(
            got.result,
            BuildResult {
                state: BuildState::Success,
                url: Some("http://127.0.0.1:18556/#/builders/1/builds/1".into()),
                summary: Some("build successful".into()),
                started_at: Some(1_796_426_336),
                finished_at: Some(1_796_426_338),
            }
        );
        let got = parse_status_push(FAILURE).unwrap();
        assert_eq!(got.reference, reference(8));
        assert_eq!(got.result.state, BuildState::Failure);
        assert_eq!(
            got.result.summary.as_deref(),
            Some("failed 'sh -c ...' (failure)")
        );
        assert_eq!(
            got.result.url.as_deref(),
            Some("http://127.0.0.1:18556/#/builders/1/builds/2")
        );
        assert_eq!(got.result.finished_at, Some(1_796_426_339));
    }

    /// The success post with `edit` applied to its JSON.
    fn edited(edit: impl FnOnce(&mut Value)) -> Result<ReportedResult, ReportError> {
        let mut json: Value = serde_json::from_slice(SUCCESS).unwrap();
        edit(&mut json);
        parse_status_push(json.to_string().as_bytes())
    }

    #[test]
    fn every_result_code_maps_as_the_spec_says() {
        let expected = [
            (0, BuildState::Success),
            (1, BuildState::Success),
            (2, BuildState::Failure),
            (3, BuildState::Success),
            (4, BuildState::Error),
            (5, BuildState::Pending),
            (6, BuildState::Cancelled),
            (7, BuildState::Error),
            (-1, BuildState::Error),
        ];
        for (code, state) in expected {
            let got = edited(|j| j["results"] = code.into()).unwrap();
            assert_eq!(got.result.state, state, "code {code}");
        }
        let got = edited(|j| j["results"] = Value::Null).unwrap();
        assert_eq!(got.result.state, BuildState::Error);
    }

    #[test]
    fn an_incomplete_build_not_yet_started_is_pending() {
        let got = edited(|j| {
            j["complete"] = false.into();
            j["started_at"] = Value::Null;
            j["complete_at"] = Value::Null;
        })
        .unwrap();
        assert_eq!(got.result.state, BuildState::Pending);
        assert_eq!(got.result.started_at, None);
    }

    #[test]
    fn either_the_delivery_id_or_key_and_fingerprint_is_enough() {
        let got = edited(|j| {
            let p = j["properties"].as_object_mut().unwrap();
            p.remove("build_key");
            p.remove("fingerprint");
        })
        .unwrap();
        assert_eq!(got.reference.delivery_id.as_deref(), Some("d-7"));
        assert_eq!(got.reference.build_key, None);
        let got = edited(|j| {
            j["properties"]
                .as_object_mut()
                .unwrap()
                .remove("delivery_id");
        })
        .unwrap();
        assert_eq!(got.reference.delivery_id, None);
        assert_eq!(got.reference.fingerprint.as_deref(), Some("fp7"));
    }

    #[test]
    fn a_build_of_someone_else_names_no_delivery() {
        let got = edited(|j| {
            let p = j["properties"].as_object_mut().unwrap();
            p.remove("delivery_id");
            p.remove("fingerprint");
        });
        assert_eq!(got, Err(ReportError::NoReference));
        let got = edited(|j| {
            j.as_object_mut().unwrap().remove("properties");
        });
        assert_eq!(got, Err(ReportError::NoReference));
        // A property that is not a `[value, source]` pair, or empty, names nothing.
        let got = edited(|j| {
            let p = j["properties"].as_object_mut().unwrap();
            p.insert("delivery_id".into(), "d-7".into());
            p.insert("fingerprint".into(), serde_json::json!(["", "Change"]));
        });
        assert_eq!(got, Err(ReportError::NoReference));
    }

    #[test]
    fn garbage_is_refused_on_one_short_line() {
        let long_garbage = format!("{{\"buildid\": {}", "9".repeat(5000));
        for body in [&b"not json at all"[..], b"", long_garbage.as_bytes()] {
            let err = parse_status_push(body).unwrap_err();
            assert!(matches!(err, ReportError::NotJson(_)), "{err}");
            let message = err.to_string();
            assert!(message.len() < 300 && !message.contains('\n'), "{message}");
        }
        for (body, reason) in [
            ("[1, 2]", "not a JSON object"),
            (r#"{"complete": true}"#, "no numeric `buildid`"),
            (r#"{"buildid": 3}"#, "no boolean `complete`"),
            (
                r#"{"buildid": 3, "complete": true, "properties": []}"#,
                "`properties` is not an object",
            ),
        ] {
            let err = parse_status_push(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ReportError::Unexpected { reason: r, .. } if r.contains(reason)),
                "{body}: {err}"
            );
        }
    }
}
