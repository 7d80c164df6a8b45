//! End-to-end: results coming back to `forgewatch run` (SPEC §14) through the
//! generic `POST /api/v1/results`, and the history they land in: an unsigned or
//! wrongly signed result is refused and stores nothing; the same result twice is
//! one row; a result for a delivery a newer one replaced is flagged; the history
//! lists, filters and details builds, and serves the overrides of a build's last
//! delivery.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_adapters::Secret;
use forgewatch_adapters::ci::webhook::signature_256;
use forgewatch_tests::fake_github::NewPr;
use forgewatch_tests::wait::eventually;
use serde_json::{Value, json};
use support::{DEADLINE, Env, HOOK_SECRET, Ws};

const RESULTS_SECRET: &str = "results-secret-for-bb";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn post_result(&self, headers: &[(&str, String)], body: &Value) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/api/v1/results", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.text().await.unwrap()).unwrap(),
        )
    }
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// The delivery ids the CI accepted for `key`, in order.
fn delivery_ids(env: &Env, key: &str) -> Vec<String> {
    env.ci
        .accepted()
        .iter()
        .map(|d| d.properties())
        .filter(|p| p["build_key"] == key)
        .map(|p| p["delivery_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_results_are_authenticated_idempotent_flagged_and_kept_in_the_history() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    let pr = env
        .github
        .open_pr("acme/app", NewPr::new("main", "feature"));
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main")],
        pull_requests: true,
    }]);
    env.give_bb_results_secret(RESULTS_SECRET);

    let daemon = env.command(&["run"]).spawn().unwrap();
    let api = Api {
        base: format!("http://{}", env.listen_address().await),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let pr_key = format!("app/pr/github.com/acme/app/{pr}");
    let first = eventually(DEADLINE, || async {
        delivery_ids(&env, &pr_key).first().cloned()
    })
    .await
    .expect("the PR was never delivered");
    eventually(DEADLINE, || async {
        (!delivery_ids(&env, "app/mainline").is_empty()).then_some(())
    })
    .await
    .expect("the mainline was never delivered");

    let running = json!({"delivery_id": first, "state": "running", "url": "http://ci/builds/1"});
    // Unsigned, a wrong bearer token, a wrong signature: refused, nothing stored.
    let wrong_signature = vec![(
        "x-forgewatch-signature-256",
        signature_256(
            &Secret::new("not-the-secret"),
            running.to_string().as_bytes(),
        ),
    )];
    for headers in [vec![], bearer("nope"), wrong_signature] {
        let (status, body) = api.post_result(&headers, &running).await;
        assert_eq!(status, 401, "{body}");
    }
    let builds = api.json("/api/v1/builds?workspace=app").await;
    assert_eq!(builds.as_array().unwrap().len(), 2, "{builds}");
    assert!(
        builds
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"].is_null())
    );

    // The right token, twice: one row.
    let (status, answer) = api.post_result(&bearer(RESULTS_SECRET), &running).await;
    assert_eq!(
        (status, &answer["recorded"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert_eq!(answer["build_key"], json!(pr_key));
    let (_, again) = api.post_result(&bearer(RESULTS_SECRET), &running).await;
    assert_eq!(again["recorded"], json!(false), "{again}");

    // Signed like our webhook with the `hook` target's secret.
    let failed = json!({
        "delivery_id": first, "state": "failure", "url": "http://ci/builds/1",
        "summary": "failed 'make test'", "started_at": 1_900_000_000,
        "finished_at": "2030-03-17T17:46:40Z"
    });
    let signed = vec![(
        "x-forgewatch-signature-256",
        signature_256(&Secret::new(HOOK_SECRET), failed.to_string().as_bytes()),
    )];
    let (status, answer) = api.post_result(&signed, &failed).await;
    assert_eq!(status, 200, "{answer}");

    let failures = api.json("/api/v1/builds?state=failure&workspace=app").await;
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["build_key"], json!(pr_key));
    assert_eq!(failures[0]["url"], json!("http://ci/builds/1"));
    assert_eq!(failures[0]["summary"], json!("failed 'make test'"));
    let encoded = pr_key.replace('/', "%2F");
    let history = api.json(&format!("/api/v1/builds/{encoded}")).await;
    let results = history["deliveries"][0]["results"].as_array().unwrap();
    let states: Vec<&Value> = results.iter().map(|r| &r["state"]).collect();
    assert_eq!(states, [&json!("running"), &json!("failure")], "{history}");
    assert_eq!(results[1]["finished_at"], json!("2030-03-17T17:46:40.000Z"));
    // The raw form with slashes names the same build.
    assert_eq!(api.json(&format!("/api/v1/builds/{pr_key}")).await, history);
    assert_eq!(api.get("/api/v1/builds/app%2Fnothing").await.0, 404);

    // The overrides of the last delivery, YAML and JSON.
    let (status, yaml) = api
        .get(&format!("/api/v1/builds/{encoded}/overrides"))
        .await;
    assert_eq!(status, 200, "{yaml}");
    assert_eq!(
        yaml,
        format!(
            "- \"app\":\n    remote_branch: \"refs/pull/{pr}/merge\"\n    single_branch: false\n    shallow: false\n"
        )
    );
    let as_json = api
        .json(&format!("/api/v1/builds/{pr_key}/overrides?format=json"))
        .await;
    let sent = &env
        .ci
        .accepted()
        .iter()
        .find(|d| d.properties()["build_key"] == json!(pr_key))
        .unwrap()
        .properties()["overrides"];
    assert_eq!(&as_json, sent);

    // A push makes a new delivery: a late result of the first one is flagged.
    env.github.push_pr("acme/app", pr);
    eventually(DEADLINE, || async {
        (delivery_ids(&env, &pr_key).len() == 2).then_some(())
    })
    .await
    .expect("the pushed PR was never delivered again");
    // The new delivery is recorded a moment after the CI accepted it.
    let (flagged, flagged_url) = eventually(DEADLINE, || async {
        let url = format!("http://ci/{}", rand_suffix());
        let late = json!({"delivery_id": first, "state": "cancelled", "url": url});
        let (_, answer) = api.post_result(&bearer(RESULTS_SECRET), &late).await;
        (answer["flag"] == json!("superseded")).then_some((answer, url))
    })
    .await
    .expect("a result of a replaced delivery is flagged");
    assert_eq!(flagged["recorded"], json!(true));
    let latest = api.json("/api/v1/builds?workspace=app&latest=true").await;
    let latest: Vec<&Value> = latest.as_array().unwrap().iter().collect();
    assert_eq!(latest.len(), 2, "{latest:?}");
    assert_eq!(
        latest[0]["delivery_id"],
        json!(delivery_ids(&env, &pr_key)[1])
    );
    let (_, unknown) = api
        .post_result(
            &bearer(RESULTS_SECRET),
            &json!({"delivery_id": "00000000-0000-0000-0000-000000000000", "state": "success"}),
        )
        .await;
    assert_eq!(unknown["flag"], json!("unknown"));
    // Bad input is refused with what is expected.
    let (status, bad) = api
        .post_result(
            &bearer(RESULTS_SECRET),
            &json!({"delivery_id": first, "state": "green"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("`state` must be one of"),
        "{bad}"
    );

    let metrics = api.get("/metrics").await.1;
    assert!(
        metrics.contains("forgewatch_results_total{ci=\"bb\",state=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("forgewatch_results_total{ci=\"unknown\",state=\"success\"} 1"));

    // `forgewatch builds`: the cancelled builds of `app` (the first delivery's last
    // result), as a table, and the newest as JSON.
    let run = |args: &'static [&'static str]| {
        let mut command = env.command(args);
        async move { command.output().await.unwrap() }
    };
    let table = run(&["builds", "--workspace", "app", "--state", "cancelled"]).await;
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("DELIVERED"), "{table}");
    assert!(lines[1].contains(&pr_key), "{table}");
    assert!(
        lines[1].contains(&format!("cancelled  {}", flagged_url)),
        "{table}"
    );
    let listed = run(&["builds", "--workspace", "app", "--json", "--limit", "1"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["build_key"], json!(pr_key));
    assert_eq!(
        listed[0]["state"],
        Value::Null,
        "the new delivery has no result"
    );
    let refused = run(&["builds", "--state", "green"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTTP 400"),
        "{refused:?}"
    );
    support::stop(daemon).await;
}

/// A fresh suffix, so each attempt of a retried post is a new result.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
