//! Tests of the fake GitHub's fault injection: primary budget exhaustion and refill,
//! secondary limits, 429s, hanging requests and 401s echoing secrets back. The end-to-end
//! tests of the daemon's rate-limit handling, timeouts and secrecy rely on these shapes.

use std::time::Duration;

use forgewatch_tests::fake_github::FakeGitHub;
use forgewatch_tests::wait::eventually;
use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::fake_http::now_epoch;
use super::{WAIT, get, header, json};

const PRIMARY_BODY: &str = r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#;
const SECONDARY_MESSAGE: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

/// A client that gives up on a request after `timeout`.
fn impatient(timeout: Duration) -> Client {
    Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("reqwest client")
}

fn statuses(gh: &FakeGitHub) -> Vec<u16> {
    gh.requests().iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn exhausted_budget_answers_the_primary_limit_until_reset_then_refills() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());
    let auth = ("authorization", "Bearer t0k3n");

    let before = now_epoch();
    gh.set_budget(1, Duration::from_secs(2));
    let last = get(&url, &[]).await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(header(&last, "x-ratelimit-limit"), "60");
    assert_eq!(header(&last, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&last, "x-ratelimit-used"), "60");
    let reset: u64 = header(&last, "x-ratelimit-reset")
        .parse()
        .expect("epoch seconds");
    assert!(
        (before + 2..=now_epoch() + 3).contains(&reset),
        "now + 2 s rounded up: {reset}"
    );

    let limited = get(&url, &[]).await;
    assert_eq!(limited.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&limited, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&limited, "x-ratelimit-reset"), reset.to_string());
    assert!(limited.headers().get("retry-after").is_none());
    assert_eq!(
        header(&limited, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(limited.text().await.expect("body"), PRIMARY_BODY);

    // Every budget got the same allowance: a token has one request left too.
    assert_eq!(get(&url, &[auth]).await.status(), StatusCode::OK);
    let token_limited = get(&url, &[auth]).await;
    assert_eq!(token_limited.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&token_limited, "x-ratelimit-limit"), "5000");
    assert_eq!(header(&token_limited, "x-ratelimit-remaining"), "0");
    assert_eq!(statuses(&gh), [200, 403, 200, 403]);

    let refilled = eventually(WAIT, || async {
        let resp = get(&url, &[]).await;
        match resp.status() {
            StatusCode::OK => Some(resp),
            status => {
                assert_eq!(status, StatusCode::FORBIDDEN, "limited until the reset");
                None
            }
        }
    })
    .await
    .expect("the budget refills at its reset time");
    assert!(now_epoch() >= reset, "not refilled before {reset}");
    assert_eq!(header(&refilled, "x-ratelimit-remaining"), "59");
    assert_eq!(header(&refilled, "x-ratelimit-used"), "1");
    assert!(
        header(&refilled, "x-ratelimit-reset")
            .parse::<u64>()
            .expect("epoch")
            > reset
    );
    let token = get(&url, &[auth]).await;
    assert_eq!(token.status(), StatusCode::OK);
    assert_eq!(header(&token, "x-ratelimit-remaining"), "4999");
}

#[tokio::test]
async fn secondary_limits_with_and_without_retry_after_cost_no_budget() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());

    gh.secondary_limit_next(1, Some(30));
    gh.secondary_limit_next(1, None);
    let waited = get(&url, &[]).await;
    assert_eq!(waited.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&waited, "retry-after"), "30");
    assert_eq!(header(&waited, "x-ratelimit-remaining"), "60");
    assert_eq!(json(waited).await["message"], SECONDARY_MESSAGE);

    let bare = get(&url, &[]).await;
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    assert!(bare.headers().get("retry-after").is_none());
    assert_ne!(header(&bare, "x-ratelimit-remaining"), "0");
    assert!(!header(&bare, "x-ratelimit-reset").is_empty());
    assert_eq!(json(bare).await["message"], SECONDARY_MESSAGE);

    let ok = get(&url, &[]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "x-ratelimit-remaining"), "59");

    // Never remaining 0 (the primary limit's signal), even on an exhausted budget.
    gh.set_budget(0, Duration::from_secs(3600));
    gh.secondary_limit_next(1, None);
    let secondary = get(&url, &[]).await;
    assert_eq!(secondary.status(), StatusCode::FORBIDDEN);
    assert_ne!(header(&secondary, "x-ratelimit-remaining"), "0");
    assert_eq!(
        get(&url, &[]).await.text().await.expect("body"),
        PRIMARY_BODY
    );
    assert_eq!(statuses(&gh), [403, 403, 200, 403, 403]);
}

#[tokio::test]
async fn status_429_with_and_without_retry_after() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());

    gh.status_429_next(1, Some(5));
    gh.status_429_next(2, None);
    let waited = get(&url, &[]).await;
    assert_eq!(waited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&waited, "retry-after"), "5");
    assert!(json(waited).await["message"].is_string());
    for _ in 0..2 {
        let bare = get(&url, &[]).await;
        assert_eq!(bare.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(bare.headers().get("retry-after").is_none());
    }
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);
    assert_eq!(gh.count_status(429), 3);
    assert_eq!(statuses(&gh), [429, 429, 429, 200]);
}

#[tokio::test]
async fn hung_request_times_out_while_others_are_answered() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());

    gh.hang_next(1);
    let hung = tokio::spawn({
        let url = url.clone();
        async move { impatient(Duration::from_millis(500)).get(&url).send().await }
    });
    assert!(gh.wait_for_hung(1, WAIT).await);
    assert_eq!(gh.hung_count(), 1);
    assert_eq!(statuses(&gh), [0], "recorded with status 0 when taken");
    assert_eq!(gh.in_flight(), 1, "in flight until answered");
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);

    let outcome = tokio::time::timeout(WAIT, hung)
        .await
        .expect("the client gives up on its own")
        .expect("task did not panic");
    let error = outcome.expect_err("a hung request is never answered");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(statuses(&gh), [0, 200]);
    assert_eq!(gh.hung_count(), 1, "counted until released");
    gh.release_hung();
    assert_eq!(gh.hung_count(), 0);
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn hang_path_hangs_one_repository_until_release() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/stuck", "main");
    gh.create_repo("acme/fine", "main");
    let stuck = format!("{}/repos/acme/stuck/branches", gh.api_url());
    let fine = format!("{}/repos/acme/fine/branches", gh.api_url());

    gh.secondary_limit_next(1, None);
    gh.hang_path("/repos/acme/stuck");
    let mut hung = tokio::task::JoinSet::new();
    for n in 1..=2 {
        let stuck = stuck.clone();
        hung.spawn(async move { get(&stuck, &[]).await });
        assert!(gh.wait_for_hung(n, WAIT).await);
    }
    assert_eq!(
        get(&fine, &[]).await.status(),
        StatusCode::FORBIDDEN,
        "a hang leaves the queued faults to other requests"
    );
    assert_eq!(get(&fine, &[]).await.status(), StatusCode::OK);
    assert!(hung.try_join_next().is_none(), "still hung");
    assert_eq!(statuses(&gh), [0, 0, 403, 200]);
    assert_eq!(gh.count_path_prefix("/repos/acme/stuck"), 2);

    gh.release_hung();
    while let Some(resp) = tokio::time::timeout(WAIT, hung.join_next())
        .await
        .expect("released requests are answered")
    {
        let resp = resp.expect("task did not panic");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(json(resp).await["message"].is_string());
    }
    assert_eq!((gh.hung_count(), gh.in_flight()), (0, 0));
    assert_eq!(statuses(&gh), [0, 0, 403, 200], "hung ones stay at 0");
    assert_eq!(
        get(&stuck, &[]).await.status(),
        StatusCode::OK,
        "release_hung ends the rule"
    );
}

#[tokio::test]
async fn hangs_end_with_the_last_handle_and_queued_hangs_with_release() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());

    // release_hung drops the rest of hang_next's count.
    gh.hang_next(3);
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await.status() }
    });
    assert!(gh.wait_for_hung(1, WAIT).await);
    gh.release_hung();
    let first = tokio::time::timeout(WAIT, first).await.expect("released");
    assert_eq!(first.expect("task"), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);

    // Dropping every handle the test holds answers what still hangs.
    gh.hang_next(1);
    let clone = gh.clone();
    let hung = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await.status() }
    });
    assert!(gh.wait_for_hung(1, WAIT).await);
    drop(gh);
    assert_eq!(clone.hung_count(), 1, "a clone still holds the fake");
    drop(clone);
    let status = tokio::time::timeout(WAIT, hung).await.expect("answered");
    assert_eq!(status.expect("task"), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn echo_headers_on_401_sends_the_secrets_back() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    gh.require_token(Some("s3cret"));
    let url = format!("{}/repos/acme/widget", gh.api_url());
    let sent = [
        ("authorization", "Bearer wr0ng-t0k3n"),
        ("x-custom", "visible"),
    ];

    let quiet = json(get(&url, &sent).await).await;
    assert_eq!(quiet["message"], "Bad credentials");
    assert!(quiet.get("request_headers").is_none(), "off by default");

    gh.echo_headers_on_401(true);
    let resp = get(&url, &sent).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!header(&resp, "x-ratelimit-limit").is_empty());
    let body = json(resp).await;
    assert_eq!(body["message"], "Bad credentials");
    let echoed = &body["request_headers"];
    assert_eq!(echoed["authorization"], "Bearer wr0ng-t0k3n");
    assert_eq!(echoed["x-custom"], "visible");
    assert!(
        echoed["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:"))
    );
    let anonymous = json(get(&url, &[]).await).await;
    assert_eq!(anonymous["request_headers"]["authorization"], Value::Null);

    let ok = get(&url, &[("authorization", "token s3cret")]).await;
    assert_eq!(ok.status(), StatusCode::OK, "only 401s echo");
    assert!(json(ok).await.get("request_headers").is_none());
    gh.echo_headers_on_401(false);
    assert!(
        json(get(&url, &sent).await)
            .await
            .get("request_headers")
            .is_none()
    );
}
