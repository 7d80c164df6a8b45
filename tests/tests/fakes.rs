//! Tests of the fakes themselves: the end-to-end suite is only as trustworthy as the fake
//! GitHub and fake CI it runs against, so their GitHub/Buildbot quirks are pinned here.

use std::time::Duration;

use forgewatch_tests::fake_ci::{Delivery, Endpoint, FakeCi};
use forgewatch_tests::fake_github::{FakeGitHub, NewPr};
use hmac::{Hmac, Mac};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(10);

/// Fault injection (rate limits, hangs, echoed secrets): in a file of its own for length.
#[path = "fakes/faults.rs"]
mod faults;

/// GitHub App JWTs and installation tokens through the adapters' client.
#[path = "fakes/app.rs"]
mod app;

/// Commit statuses through the real GitHub client.
#[path = "fakes/statuses.rs"]
mod statuses;

#[path = "fake_http/mod.rs"]
mod fake_http;
use fake_http::{client, get, header, json};

#[tokio::test]
async fn etag_is_weak_first_then_strong_and_revalidates_weakly() {
    let gh = FakeGitHub::start().await;
    let sha = gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget/branches/main", gh.api_url());

    let first = get(&url, &[]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let weak = header(&first, "etag");
    assert!(weak.starts_with("W/\""), "first ETag is weak: {weak}");
    assert_eq!(
        header(&first, "cache-control"),
        "private, max-age=60, s-maxage=60"
    );
    assert_eq!(header(&first, "vary"), "Accept, Authorization");
    assert_eq!(
        header(&first, "content-type"),
        "application/json; charset=utf-8"
    );
    let last_modified = header(&first, "last-modified");
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    let body = json(first).await;
    assert_eq!(body["name"], "main");
    assert_eq!(body["commit"]["sha"], sha.as_str());
    assert_eq!(body["protected"], false);

    let second = get(&url, &[]).await;
    let strong = header(&second, "etag");
    assert_eq!(format!("W/{strong}"), weak, "later ETags are strong");

    for validator in [weak.as_str(), strong.as_str(), &format!("\"nope\", {weak}")] {
        let resp = get(&url, &[("if-none-match", validator)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{validator}");
        assert_eq!(header(&resp, "etag"), strong);
        assert!(!header(&resp, "x-ratelimit-remaining").is_empty());
        assert!(resp.text().await.expect("body").is_empty());
    }
    let ims = get(&url, &[("if-modified-since", &last_modified)]).await;
    assert_eq!(ims.status(), StatusCode::NOT_MODIFIED);

    let moved = gh.push("acme/widget", "main");
    assert_ne!(moved, sha);
    let changed = get(&url, &[("if-none-match", &strong)]).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(header(&changed, "etag"), strong);
    let changed = get(&url, &[("if-modified-since", &last_modified)]).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(json(changed).await["commit"]["sha"], moved.as_str());

    let records = gh.requests();
    assert_eq!(records.len(), 8);
    assert_eq!(records.iter().filter(|r| r.conditional).count(), 6);
    assert_eq!(gh.count_status(304), 3 + 1);
    assert_eq!(records[0].path, "/repos/acme/widget/branches/main");
}

#[tokio::test]
async fn pagination_links_and_per_page_etags() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/big", "main");
    gh.create_repo("acme/small", "main");
    for i in 0..150 {
        gh.open_pr("acme/big", NewPr::new("main", &format!("topic-{i}")));
    }
    gh.push("acme/big", "release");
    gh.open_pr("acme/big", NewPr::new("release", "x")); // #151, filtered out by base=main
    let query = "state=open&base=main&per_page=100";
    let url = format!("{}/repos/acme/big/pulls?{query}", gh.api_url());

    let page1 = get(&url, &[]).await;
    let link = header(&page1, "link");
    let api = gh.api_url();
    let page2_url = format!("{api}/repos/acme/big/pulls?{query}&page=2");
    assert_eq!(
        link,
        format!("<{page2_url}>; rel=\"next\", <{page2_url}>; rel=\"last\"")
    );
    let etag1 = header(&page1, "etag");
    let items = json(page1).await;
    let numbers: Vec<u64> = items
        .as_array()
        .expect("array")
        .iter()
        .map(|pr| pr["number"].as_u64().expect("number"))
        .collect();
    assert_eq!(numbers.len(), 100);
    assert_eq!((numbers[0], numbers[99]), (150, 51), "created desc");
    assert!(items[0].get("mergeable").is_none());
    assert_eq!(items[0]["head"]["ref"], "topic-149");
    assert_eq!(items[0]["base"]["ref"], "main");
    assert_eq!(items[0]["author_association"], "MEMBER");
    assert_eq!(items[0]["html_url"], "https://github.com/acme/big/pull/150");
    assert_eq!(items[0]["user"]["login"], "alice");

    let page2 = get(&page2_url, &[]).await;
    let page1_url = format!("{api}/repos/acme/big/pulls?{query}&page=1");
    assert_eq!(
        header(&page2, "link"),
        format!("<{page1_url}>; rel=\"prev\", <{page1_url}>; rel=\"first\"")
    );
    assert_ne!(header(&page2, "etag"), etag1, "each page has its own ETag");
    let items = json(page2).await;
    assert_eq!(items.as_array().map(Vec::len), Some(50));
    assert_eq!(items[49]["number"], 1);

    let default = get(&format!("{api}/repos/acme/big/pulls"), &[]).await;
    assert!(header(&default, "link").contains("page=6>; rel=\"last\""));
    assert_eq!(json(default).await.as_array().map(Vec::len), Some(30));

    let small = get(&format!("{api}/repos/acme/small/pulls?per_page=100"), &[]).await;
    assert!(
        small.headers().get("link").is_none(),
        "no Link for one page"
    );
    assert_eq!(json(small).await, Value::Array(Vec::new()));
}

#[tokio::test]
async fn deleted_fork_has_null_head_repo() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let mut pr = NewPr::new("main", "feature/x");
    pr.head_repo = Some("mallory/widget".to_owned());
    pr.author = "mallory".to_owned();
    pr.author_association = "FIRST_TIME_CONTRIBUTOR".to_owned();
    let n = gh.open_pr("acme/widget", pr);
    let list_url = format!("{}/repos/acme/widget/pulls?state=open", gh.api_url());
    let before = json(get(&list_url, &[]).await).await;
    assert_eq!(before[0]["head"]["repo"]["full_name"], "mallory/widget");
    assert_eq!(before[0]["head"]["label"], "mallory:feature/x");

    gh.delete_head_repo("acme/widget", n);
    let after = json(get(&list_url, &[]).await).await;
    assert!(after[0]["head"]["repo"].is_null());
    assert_eq!(after[0]["head"]["sha"], before[0]["head"]["sha"]);
    assert_eq!(after[0]["updated_at"], before[0]["updated_at"]);
    let single = json(
        get(
            &format!("{}/repos/ACME/Widget/pulls/{n}", gh.api_url()),
            &[],
        )
        .await,
    )
    .await;
    assert!(single["head"]["repo"].is_null());
    assert_eq!(single["mergeable"], true);
    assert_eq!(single["mergeable_state"], "clean");
    assert_eq!(single["base"]["repo"]["full_name"], "acme/widget");
}

#[tokio::test]
async fn lazy_mergeability_is_null_once_after_the_base_or_head_moved() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let n = gh.open_pr("acme/widget", NewPr::new("main", "topic"));
    gh.compute_mergeability_lazily();
    let url = format!("{}/repos/acme/widget/pulls/{n}", gh.api_url());
    let read = || async { json(get(&url, &[]).await).await["mergeable"].clone() };
    assert_eq!(read().await, true, "computed when opened");
    gh.push("acme/widget", "main");
    assert_eq!(
        read().await,
        Value::Null,
        "the first read after the base moved"
    );
    assert_eq!(read().await, true);
    gh.push_pr("acme/widget", n);
    gh.set_mergeable("acme/widget", n, Some(false));
    assert_eq!(
        read().await,
        Value::Null,
        "the first read after the head moved"
    );
    assert_eq!(read().await, false);
    assert_eq!(read().await, false);
}

#[tokio::test]
async fn pr_changes_alter_the_list() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let n = gh.open_pr("acme/widget", NewPr::new("main", "topic"));
    let url = format!(
        "{}/repos/acme/widget/pulls?state=open&base=main",
        gh.api_url()
    );
    let etag_of = |resp: &Response| header(resp, "etag").trim_start_matches("W/").to_owned();
    let original = get(&url, &[]).await;
    let etag = etag_of(&original);
    let before = json(original).await;

    gh.set_pr_title("acme/widget", n, "Better title");
    let titled = get(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(titled.status(), StatusCode::OK);
    let etag = etag_of(&titled);
    let after = json(titled).await;
    assert_eq!(after[0]["title"], "Better title");
    assert_ne!(after[0]["updated_at"], before[0]["updated_at"]);

    let head = gh.push_pr("acme/widget", n);
    let pushed = get(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(json(pushed).await[0]["head"]["sha"], head.as_str());
    let branch = json(
        get(
            &format!("{}/repos/acme/widget/branches/topic", gh.api_url()),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        branch["commit"]["sha"],
        head.as_str(),
        "same-repo head branch moved"
    );

    gh.close_pr("acme/widget", n);
    assert_eq!(json(get(&url, &[]).await).await, Value::Array(Vec::new()));
}

#[tokio::test]
async fn branch_names_with_slashes_and_not_found_shapes() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let sha = gh.push("acme/widget", "release/1.x");
    let api = gh.api_url();
    for path in ["release/1.x", "release%2F1.x", "release%2f1.x"] {
        let resp = get(&format!("{api}/repos/Acme/WIDGET/branches/{path}"), &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(json(resp).await["commit"]["sha"], sha.as_str());
    }
    let missing = get(&format!("{api}/repos/acme/widget/branches/nope"), &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(missing).await["message"], "Branch not found");
    for path in ["/repos/acme/nothing", "/repos/acme/widget/issues", "/user"] {
        let resp = get(&format!("{api}{path}"), &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body = json(resp).await;
        assert_eq!(body["message"], "Not Found");
        assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
    }
    let repo = json(get(&format!("{api}/repos/acme/widget"), &[]).await).await;
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["html_url"], "https://github.com/acme/widget");
    assert_eq!(repo["private"], false);
    assert!(repo["id"].is_u64());
    assert_eq!(gh.count_path_prefix("/repos/acme/widget/branches/"), 1);
    assert_eq!(gh.count_status(404), 4);
}

#[tokio::test]
async fn rate_limit_headers_and_free_authenticated_304() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());
    let auth = ("authorization", "Bearer t0k3n");
    let resp = get(&url, &[auth]).await;
    assert_eq!(header(&resp, "x-ratelimit-limit"), "5000");
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "4999");
    assert_eq!(header(&resp, "x-ratelimit-used"), "1");
    assert_eq!(header(&resp, "x-ratelimit-resource"), "core");
    let reset: u64 = header(&resp, "x-ratelimit-reset")
        .parse()
        .expect("epoch seconds");
    assert!(reset > 1_700_000_000);
    let etag = header(&resp, "etag");

    let revalidated = get(&url, &[auth, ("if-none-match", &etag)]).await;
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        header(&revalidated, "x-ratelimit-used"),
        "1",
        "authenticated 304 is free"
    );
    assert_eq!(header(&revalidated, "x-ratelimit-remaining"), "4999");

    let other_token = get(
        &url,
        &[("authorization", "token other"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(other_token.status(), StatusCode::OK, "ETags are per token");

    let anon = get(&url, &[]).await;
    assert_eq!(header(&anon, "x-ratelimit-limit"), "60");
    assert_eq!(header(&anon, "x-ratelimit-used"), "1");
    let anon_etag = header(&anon, "etag");
    let anon_304 = get(&url, &[("if-none-match", &anon_etag)]).await;
    assert_eq!(anon_304.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        header(&anon_304, "x-ratelimit-used"),
        "2",
        "unauthenticated 304 costs"
    );
    assert_eq!(header(&anon_304, "x-ratelimit-remaining"), "58");
}

#[tokio::test]
async fn require_token_answers_401_and_records_everything() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    gh.require_token(Some("s3cret"));
    let url = format!("{}/repos/acme/widget", gh.api_url());
    for headers in [vec![], vec![("authorization", "Bearer wrong")]] {
        let resp = get(&url, &headers).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&resp, "x-ratelimit-limit"), "60");
        assert_eq!(json(resp).await["message"], "Bad credentials");
    }
    for scheme in ["Bearer s3cret", "token s3cret"] {
        let resp = get(&url, &[("authorization", scheme)]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
    assert!(gh.wait_for_requests(4, WAIT).await);
    let records = gh.requests();
    assert_eq!(
        records.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 401, 200, 200]
    );
    assert_eq!(records[3].authorization.as_deref(), Some("token s3cret"));
    assert!(!gh.wait_for_requests(5, Duration::from_millis(50)).await);
    gh.clear_requests();
    assert!(gh.requests().is_empty());
}

#[tokio::test]
async fn held_responses_wait_for_release_and_in_flight_is_tracked() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/widget", "main");
    let url = format!("{}/repos/acme/widget", gh.api_url());

    // Not holding by default; a request is in flight only while its handler runs.
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);
    assert_eq!((gh.in_flight(), gh.max_in_flight()), (0, 1));

    gh.hold_responses();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let url = url.clone();
        tasks.spawn(async move { get(&url, &[]).await.status() });
    }
    assert!(gh.wait_for_in_flight(3, WAIT).await);
    assert_eq!(
        gh.requests().len(),
        1,
        "held requests are neither answered nor recorded"
    );
    assert!(!gh.wait_for_in_flight(4, Duration::from_millis(50)).await);

    gh.release(1);
    let first = tokio::time::timeout(WAIT, tasks.join_next())
        .await
        .expect("a released request is answered")
        .expect("a task")
        .expect("task did not panic");
    assert_eq!(first, StatusCode::OK);
    assert_eq!(gh.in_flight(), 2, "the other two are still held");
    assert_eq!(gh.requests().len(), 2);

    gh.release_all();
    while let Some(status) = tokio::time::timeout(WAIT, tasks.join_next())
        .await
        .expect("release_all lets every held request go")
    {
        assert_eq!(status.expect("task did not panic"), StatusCode::OK);
    }
    assert_eq!((gh.in_flight(), gh.max_in_flight()), (0, 3));
    assert_eq!(gh.requests().len(), 4);

    // clear_requests restarts the maximum; a permit given early is taken by a later
    // request, and only by one.
    gh.clear_requests();
    assert_eq!(gh.max_in_flight(), 0);
    gh.hold_responses();
    gh.release(1);
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);
    let held = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await }
    });
    assert!(gh.wait_for_in_flight(1, WAIT).await);
    assert_eq!(gh.requests().len(), 1, "the second request is held");
    gh.release_all();
    let resp = tokio::time::timeout(WAIT, held)
        .await
        .expect("answered after release_all")
        .expect("task did not panic");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!((gh.in_flight(), gh.max_in_flight()), (0, 1));
}

fn buildbot_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("revision", "0123456789abcdef0123456789abcdef01234567"),
        ("branch", "main"),
        ("repository", "https://github.com/acme/widget"),
        ("project", "widget"),
        ("category", "push"),
        ("comments", ""),
        ("properties", r#"{"forgewatch_reason":"push","pr":null}"#),
    ]
}

#[tokio::test]
async fn buildbot_hook_accepts_forms_and_rejects_json() {
    let ci = FakeCi::start().await;
    let http = client();
    let resp = http
        .post(ci.buildbot_url())
        .form(&buildbot_form())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::OK, "Buildbot 4.3 answers 200");
    ci.set_buildbot_status(202);
    let resp = http
        .post(ci.buildbot_url())
        .form(&buildbot_form())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(ci.wait_for_accepted(2, WAIT).await);
    let change = &ci.accepted()[0];
    assert_eq!(change.endpoint, Endpoint::Buildbot);
    assert_eq!(change.field("branch"), Some("main"));
    assert_eq!(change.properties()["forgewatch_reason"], "push");

    let json_body = http
        .post(ci.buildbot_url())
        .header("content-type", "application/json")
        .body(r#"{"revision":"abc"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST);
    let mut bad_props = buildbot_form();
    bad_props[6].1 = "[1, 2]";
    let mut missing = buildbot_form();
    missing.retain(|(k, _)| *k != "comments");
    for form in [bad_props, missing] {
        let resp = http
            .post(ci.buildbot_url())
            .form(&form)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(ci.rejected_count(), 3);
    assert_eq!(ci.accepted().len(), 2);
}

#[tokio::test]
async fn fail_next_and_basic_auth() {
    let ci = FakeCi::start().await;
    let http = client();
    ci.fail_next(2, 503);
    for _ in 0..2 {
        let resp = http
            .post(ci.buildbot_url())
            .form(&buildbot_form())
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    ci.require_basic_auth("forgewatch", "pa:ss");
    let anonymous = http
        .post(ci.buildbot_url())
        .form(&buildbot_form())
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, "www-authenticate").starts_with("Basic"));
    let authed = http
        .post(ci.buildbot_url())
        .basic_auth("forgewatch", Some("pa:ss"))
        .form(&buildbot_form())
        .send()
        .await
        .expect("post");
    assert_eq!(authed.status(), StatusCode::OK);
    assert_eq!(ci.rejected_count(), 3);
    assert!(ci.wait_for_accepted(1, WAIT).await);
    assert!(!ci.wait_for_accepted(2, Duration::from_millis(50)).await);
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn signature_matches_the_github_test_vector() {
    let secret = b"It's a Secret to Everybody";
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(secret, b"Hello, World!"), expected);
    let delivery = Delivery {
        endpoint: Endpoint::Webhook,
        headers: vec![("x-forgewatch-signature-256".to_owned(), expected.to_owned())],
        body: b"Hello, World!".to_vec(),
        form: Vec::new(),
        json: None,
        received_at: std::time::Instant::now(),
    };
    assert!(delivery.verify_signature(secret));
    assert!(!delivery.verify_signature(b"another secret"));
    let tampered = Delivery {
        body: b"Hello, World?".to_vec(),
        ..delivery
    };
    assert!(!tampered.verify_signature(secret));
}

#[tokio::test]
async fn webhook_requires_headers_and_checks_signatures() {
    let ci = FakeCi::start().await;
    ci.require_webhook_secret(Some(b"s3cret"));
    let http = client();
    let body = r#"{"event":"push","branch":"main"}"#;
    let post = |signature: String| {
        http.post(ci.webhook_url())
            .header("content-type", "application/json")
            .header(
                "x-forgewatch-delivery",
                "6f1c1a52-8a4e-4c1e-9a8e-2b9f3c0d7e11",
            )
            .header("x-forgewatch-event", "push")
            .header("x-forgewatch-signature-256", signature)
            .body(body)
            .send()
    };
    let forged = post(sign(b"wrong", body.as_bytes())).await.expect("post");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let good = post(sign(b"s3cret", body.as_bytes())).await.expect("post");
    assert_eq!(good.status(), StatusCode::OK);
    let unsigned = http
        .post(ci.webhook_url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    assert!(ci.wait_for_accepted(1, WAIT).await);
    let delivery = &ci.accepted()[0];
    assert!(delivery.verify_signature(b"s3cret"));
    assert_eq!(delivery.properties()["branch"], "main");
    assert_eq!(delivery.header("X-Forgewatch-Event"), Some("push"));
    assert_eq!(ci.rejected_count(), 2);
}
