//! The generic form of a result (SPEC §14), ours to define: the JSON object
//! `POST /api/v1/results` takes — the delivery it answers (`delivery_id`, or
//! `build_key` and `fingerprint`), `state`, `url`, `summary`, `started_at`,
//! `finished_at` (unix seconds or RFC 3339) — and the result line a `command`
//! target may print on stdout (the same object; its delivery is implied).

use serde::Deserialize;

use super::{BuildResult, BuildState, ReportError, ReportedResult, ResultRef};
use crate::http::{one_line, unix_seconds};

const EXPECTED: &str = "result";

/// Reads a posted result; it must name its delivery.
pub fn parse_generic(body: &[u8]) -> Result<ReportedResult, ReportError> {
    let given: GenericResult = serde_json::from_slice(body).map_err(|e| {
        unexpected(format!(
            "expected {{\"delivery_id\" (or \"build_key\" and \"fingerprint\"), \"state\" ({}), \"url\", \"summary\", \"started_at\", \"finished_at\"}}: {}",
            states(),
            one_line(&e.to_string(), 200)
        ))
    })?;
    let reported = given.into_reported()?;
    if !reported.reference.names_a_delivery() {
        return Err(ReportError::NoReference);
    }
    Ok(reported)
}

/// The result line among a `command` target's stdout `lines`, if it printed one:
/// the last line that is a JSON object with a `state`, for `delivery_id`.
pub fn result_line<'a>(
    lines: impl DoubleEndedIterator<Item = &'a str>,
    delivery_id: &str,
) -> Option<Result<ReportedResult, ReportError>> {
    let line = lines.rev().map(str::trim).find(|line| {
        line.starts_with('{')
            && serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v.get("state").is_some())
    })?;
    let mut given: GenericResult = match serde_json::from_str(line) {
        Ok(given) => given,
        Err(e) => return Some(Err(unexpected(one_line(&e.to_string(), 200)))),
    };
    given.delivery_id = Some(delivery_id.to_owned());
    given.build_key = None;
    given.fingerprint = None;
    Some(given.into_reported())
}

fn unexpected(reason: String) -> ReportError {
    ReportError::Unexpected {
        expected: EXPECTED,
        reason,
    }
}

fn states() -> String {
    BuildState::ALL.map(BuildState::as_str).join(", ")
}

/// A time as RFC 3339 or unix seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Seconds(i64),
    Text(String),
}

impl Time {
    fn seconds(self, name: &str) -> Result<i64, ReportError> {
        match self {
            Time::Seconds(s) => Ok(s),
            Time::Text(text) => humantime::parse_rfc3339_weak(&text)
                .map(unix_seconds)
                .map_err(|e| {
                    unexpected(format!(
                        "`{name}` is neither unix seconds nor an RFC 3339 time: {e}"
                    ))
                }),
        }
    }
}

/// The generic result, as posted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericResult {
    delivery_id: Option<String>,
    build_key: Option<String>,
    fingerprint: Option<String>,
    state: String,
    url: Option<String>,
    summary: Option<String>,
    started_at: Option<Time>,
    finished_at: Option<Time>,
}

impl GenericResult {
    fn into_reported(self) -> Result<ReportedResult, ReportError> {
        let Some(state) = BuildState::parse(&self.state) else {
            return Err(unexpected(format!(
                "`state` must be one of {}, not {:?}",
                states(),
                one_line(&self.state, 40)
            )));
        };
        if let Some(url) = &self.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(unexpected(
                "`url` must be an http:// or https:// URL".to_owned(),
            ));
        }
        Ok(ReportedResult {
            reference: ResultRef {
                delivery_id: self.delivery_id,
                build_key: self.build_key,
                fingerprint: self.fingerprint,
            },
            result: BuildResult {
                state,
                url: self.url,
                summary: self.summary,
                started_at: self
                    .started_at
                    .map(|t| t.seconds("started_at"))
                    .transpose()?,
                finished_at: self
                    .finished_at
                    .map(|t| t.seconds("finished_at"))
                    .transpose()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_result_names_its_delivery_and_its_times_are_read_both_ways() {
        let body = br#"{"build_key": "w/mainline", "fingerprint": "sha256:1", "state": "failure",
            "started_at": 1900000000, "finished_at": "2030-03-17T17:46:40Z"}"#;
        let reported = parse_generic(body).unwrap();
        assert_eq!(reported.reference.build_key.as_deref(), Some("w/mainline"));
        assert_eq!(reported.result.state, BuildState::Failure);
        assert_eq!(
            (reported.result.started_at, reported.result.finished_at),
            (Some(1_900_000_000), Some(1_900_000_000))
        );
        let unnamed = parse_generic(br#"{"state": "success"}"#).unwrap_err();
        assert_eq!(unnamed, ReportError::NoReference);
        let green = parse_generic(br#"{"delivery_id": "d", "state": "green"}"#).unwrap_err();
        assert!(
            green.to_string().contains("`state` must be one of"),
            "{green}"
        );
        let link =
            parse_generic(br#"{"delivery_id": "d", "state": "error", "url": "javascript:x"}"#);
        assert!(
            link.unwrap_err()
                .to_string()
                .contains("http:// or https://")
        );
        let extra = parse_generic(br#"{"delivery_id": "d", "state": "error", "colour": 1}"#);
        assert!(extra.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn the_last_result_line_of_a_command_answers_its_delivery() {
        let lines = [
            "building…",
            r#"{"state": "running"}"#,
            r#"{"state": "success", "url": "https://ci/1", "delivery_id": "other"}"#,
            "{not json",
            "done",
        ];
        let reported = result_line(lines.into_iter(), "d1").unwrap().unwrap();
        assert_eq!(reported.reference.delivery_id.as_deref(), Some("d1"));
        assert_eq!(reported.result.state, BuildState::Success);
        assert_eq!(reported.result.url.as_deref(), Some("https://ci/1"));
        assert!(result_line(["plain output"].into_iter(), "d1").is_none());
        let bad = result_line([r#"{"state": "green"}"#].into_iter(), "d1").unwrap();
        assert!(bad.is_err());
    }
}
