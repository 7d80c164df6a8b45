//! Tests of the fake GitLab itself: forgewatch's GitLab tests are only as trustworthy as the
//! fake they run against, so its GitLab v4 quirks (`forge-apis.md` §2) are pinned here.

use std::time::Duration;

use forgewatch_tests::fake_gitlab::{Failure, FakeGitLab, NewMr};
use reqwest::{Response, StatusCode};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const LIDAR: &str = "sensors/drivers/lidar-x";
const LIDAR_ENC: &str = "sensors%2Fdrivers%2Flidar-x";

/// Fault injection (rate limits, hangs, echoed secrets): in a file of its own for length.
#[path = "fakes_gitlab/faults.rs"]
mod faults;

#[path = "fake_http/mod.rs"]
mod fake_http;
use fake_http::{client, get, header, json};

fn mrs_url(gl: &FakeGitLab, query: &str) -> String {
    format!(
        "{}/projects/{LIDAR_ENC}/merge_requests?{query}",
        gl.api_url()
    )
}

/// The `rel="..."` URL of a `Link` header.
fn link(resp: &Response, rel: &str) -> Option<String> {
    let value = header(resp, "link");
    value.split(", ").find_map(|part| {
        let (url, r) = part.split_once("; ")?;
        (r == format!("rel=\"{rel}\"")).then(|| url.trim_matches(['<', '>']).to_owned())
    })
}

#[tokio::test]
async fn weak_etag_revalidates_in_every_form_and_304_costs_budget() {
    let gl = FakeGitLab::start().await;
    let sha = gl.create_project(LIDAR, "main");
    let url = format!(
        "{}/projects/{LIDAR_ENC}/repository/branches/main",
        gl.api_url()
    );

    let first = get(&url, &[]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = header(&first, "etag");
    assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");
    assert_eq!(
        header(&first, "cache-control"),
        "max-age=0, private, must-revalidate"
    );
    assert_eq!(header(&first, "content-type"), "application/json");
    assert_eq!(header(&first, "vary"), "Origin");
    assert_eq!(header(&first, "ratelimit-observed"), "1");
    let body = json(first).await;
    assert_eq!(body["name"], "main");
    assert_eq!(body["commit"]["id"], sha.as_str());
    assert_eq!(body["commit"]["short_id"], &sha[..8]);
    assert_eq!(body["default"], true);
    assert_eq!(body["merged"], false);

    let again = get(&url, &[]).await;
    assert_eq!(header(&again, "etag"), etag, "weak ETags stay weak");

    let strong = etag.trim_start_matches("W/").to_owned();
    let list = format!("\"nope\", {etag}");
    for (n, validator) in [etag.as_str(), strong.as_str(), list.as_str(), "*"]
        .into_iter()
        .enumerate()
    {
        let resp = get(&url, &[("if-none-match", validator)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{validator}");
        assert_eq!(header(&resp, "etag"), etag);
        assert_eq!(
            header(&resp, "cache-control"),
            "max-age=0, private, must-revalidate"
        );
        // The endpoint ran: the 304 is counted like a 200.
        assert_eq!(header(&resp, "ratelimit-observed"), (n + 3).to_string());
        assert_eq!(header(&resp, "ratelimit-remaining"), (1997 - n).to_string());
        assert!(resp.text().await.expect("body").is_empty());
    }

    gl.push(LIDAR, "main");
    let changed = get(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(header(&changed, "etag"), etag);
    let records = gl.requests();
    assert_eq!(records.len(), 7);
    assert!(records[2].conditional && !records[1].conditional);
    assert_eq!(gl.count_status(304), 4);
}

#[tokio::test]
async fn projects_by_encoded_path_numeric_id_and_any_case() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "develop");
    gl.set_public_host("git.acme.test");
    let by_path = json(get(&format!("{}/projects/{LIDAR_ENC}", gl.api_url()), &[]).await).await;
    let id = by_path["id"].as_u64().expect("numeric id");
    assert_eq!(by_path["path"], "lidar-x");
    assert_eq!(by_path["path_with_namespace"], LIDAR);
    assert_eq!(by_path["default_branch"], "develop");
    assert_eq!(by_path["web_url"], format!("https://git.acme.test/{LIDAR}"));
    assert_eq!(
        by_path["http_url_to_repo"],
        format!("https://git.acme.test/{LIDAR}.git")
    );
    assert!(by_path.get("forked_from_project").is_none());

    let by_id = json(get(&format!("{}/projects/{id}", gl.api_url()), &[]).await).await;
    assert_eq!(by_id, by_path);
    let upper = "SENSORS%2fDrivers%2FLIDAR-X";
    let by_case = json(get(&format!("{}/projects/{upper}", gl.api_url()), &[]).await).await;
    assert_eq!(by_case, by_path);

    let missing = get(&format!("{}/projects/sensors%2Fnope", gl.api_url()), &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(missing).await["message"], "404 Project Not Found");
    // Unencoded slashes are another route, which does not exist.
    let raw = get(&format!("{}/projects/{LIDAR}", gl.api_url()), &[]).await;
    assert_eq!(raw.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(raw).await["error"], "404 Not Found");
    let unknown = get(&format!("{}/nothing/here", gl.api_url()), &[]).await;
    assert_eq!(json(unknown).await["error"], "404 Not Found");

    let fork_id = gl.fork_project(LIDAR, "bob/lidar-x");
    let fork = json(get(&format!("{}/projects/{fork_id}", gl.api_url()), &[]).await).await;
    assert_eq!(fork["path_with_namespace"], "bob/lidar-x");
    assert_eq!(fork["forked_from_project"]["id"], id);
    gl.delete_project(LIDAR);
    let gone = get(&format!("{}/projects/{id}", gl.api_url()), &[]).await;
    assert_eq!(json(gone).await["message"], "404 Project Not Found");
    assert_eq!(
        gl.count_path_prefix(&format!("/api/v4/projects/{LIDAR_ENC}")),
        1,
        "raw paths: other spellings do not count"
    );
}

#[tokio::test]
async fn branch_names_with_slashes_are_one_encoded_segment() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let sha = gl.push(LIDAR, "feature/fast-scan");
    let base = format!("{}/projects/{LIDAR_ENC}/repository/branches", gl.api_url());

    let resp = get(&format!("{base}/feature%2Ffast-scan"), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json(resp).await;
    assert_eq!(body["name"], "feature/fast-scan");
    assert_eq!(body["commit"]["id"], sha.as_str());
    assert_eq!(body["default"], false);
    assert_eq!(body["protected"], false);

    let raw = get(&format!("{base}/feature/fast-scan"), &[]).await;
    assert_eq!(json(raw).await["error"], "404 Not Found");
    let missing = get(&format!("{base}/nope"), &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(missing).await["message"], "404 Branch Not Found");

    let list = get(&base, &[]).await;
    assert_eq!(header(&list, "x-total"), "2");
    let names: Vec<Value> = json(list).await.as_array().expect("array").to_vec();
    assert_eq!(names[0]["name"], "feature/fast-scan");
    assert_eq!(names[1]["name"], "main");
}

#[tokio::test]
async fn merge_requests_paginate_with_x_headers_and_link() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    gl.push(LIDAR, "release");
    for n in 0..45 {
        gl.open_mr(LIDAR, NewMr::new(&format!("topic-{n}"), "main"));
    }
    gl.open_mr(LIDAR, NewMr::new("other", "release"));
    let closed = gl.open_mr(LIDAR, NewMr::new("dropped", "main"));
    gl.close_mr(LIDAR, closed);

    let mut url = mrs_url(&gl, "state=opened&target_branch=main&per_page=20");
    let mut iids = Vec::new();
    for page in 1..=3 {
        let resp = get(&url, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "x-page"), page.to_string());
        assert_eq!(header(&resp, "x-per-page"), "20");
        assert_eq!(header(&resp, "x-total"), "45");
        assert_eq!(header(&resp, "x-total-pages"), "3");
        let prev = if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        };
        assert_eq!(header(&resp, "x-prev-page"), prev);
        let next = header(&resp, "x-next-page");
        let next_link = link(&resp, "next");
        assert_eq!(link(&resp, "prev").is_some(), page > 1);
        let first = link(&resp, "first").expect("rel=first");
        assert!(first.contains("page=1&per_page=20"), "{first}");
        let last = link(&resp, "last").expect("rel=last");
        assert!(last.starts_with(&gl.api_url()), "absolute: {last}");
        assert!(last.contains("state=opened") && last.contains("target_branch=main"));
        assert!(last.contains("page=3"), "{last}");
        let items = json(resp).await;
        let items = items.as_array().expect("array");
        assert_eq!(items.len(), if page < 3 { 20 } else { 5 });
        iids.extend(items.iter().filter_map(|mr| mr["iid"].as_u64()));
        match next_link {
            Some(next_url) => {
                assert_eq!(next, (page + 1).to_string());
                assert!(next_url.contains(&format!("page={next}")));
                url = next_url;
            }
            None => assert!(page == 3 && next.is_empty()),
        }
    }
    let newest_first: Vec<u64> = (1..=45).rev().collect();
    assert_eq!(iids, newest_first, "created_at desc, all 45 once");

    let one = get(
        &mrs_url(&gl, "state=opened&target_branch=main&per_page=100"),
        &[],
    )
    .await;
    assert_eq!(header(&one, "x-total-pages"), "1");
    assert_eq!(header(&one, "x-next-page"), "");
    assert!(link(&one, "next").is_none() && link(&one, "last").is_some());
    assert_eq!(json(one).await.as_array().map(Vec::len), Some(45));

    let default = get(&mrs_url(&gl, "state=opened&target_branch=main"), &[]).await;
    assert_eq!(header(&default, "x-per-page"), "20");
    let all = get(&mrs_url(&gl, "per_page=100"), &[]).await;
    assert_eq!(header(&all, "x-total"), "47", "state defaults to all");

    gl.set_max_per_page(20);
    let capped = get(
        &mrs_url(&gl, "state=opened&target_branch=main&per_page=100"),
        &[],
    )
    .await;
    assert_eq!(header(&capped, "x-per-page"), "20");
    assert_eq!(header(&capped, "x-total-pages"), "3");
    assert_eq!(header(&capped, "x-next-page"), "2");
    assert!(link(&capped, "next").is_some_and(|u| u.contains("per_page=20")));

    let bad = get(&mrs_url(&gl, "state=open"), &[]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fork_merge_requests_and_fields() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let fork_id = gl.fork_project(LIDAR, "bob/lidar-x");
    let mut mr = NewMr::new("fix/scan", "main");
    mr.source_project = Some("bob/lidar-x".to_owned());
    mr.author = "bob".to_owned();
    mr.labels = vec!["bug".to_owned(), "sensors".to_owned()];
    mr.description = Some("Depends-On: x".to_owned());
    let iid = gl.open_mr(LIDAR, mr);
    assert_eq!(iid, 1);

    let url = format!("{}/projects/{LIDAR_ENC}/merge_requests/{iid}", gl.api_url());
    let body = json(get(&url, &[]).await).await;
    let target_id = body["project_id"].as_u64().expect("project_id");
    assert_eq!(body["iid"], 1);
    assert_ne!(body["id"], 1, "global id differs from iid");
    assert_eq!(body["target_project_id"], target_id);
    assert_eq!(body["source_project_id"], fork_id);
    assert_eq!(body["author"]["username"], "bob");
    assert_eq!(body["labels"], serde_json::json!(["bug", "sensors"]));
    assert_eq!(body["description"], "Depends-On: x");
    assert_eq!(body["state"], "opened");
    assert_eq!(body["draft"], false);
    assert_eq!(body["work_in_progress"], false);
    assert_eq!(body["detailed_merge_status"], "mergeable");
    assert_eq!(body["merge_status"], "can_be_merged");
    assert_eq!(body["merge_commit_sha"], Value::Null);
    assert_eq!(body["references"]["full"], format!("{LIDAR}!1"));
    assert_eq!(
        body["web_url"],
        format!("https://gitlab.example.org/{LIDAR}/-/merge_requests/1")
    );
    let created = body["created_at"].as_str().expect("created_at");
    assert!(
        created.len() == 24 && created.ends_with(".000Z"),
        "{created}"
    );

    let head = gl.push_mr(LIDAR, iid);
    gl.set_draft(LIDAR, iid, true);
    let body = json(get(&url, &[]).await).await;
    assert_eq!(body["sha"], head.as_str());
    assert_eq!(body["draft"], true);
    assert_eq!(body["title"], "Draft: Update fix/scan");
    assert_eq!(body["detailed_merge_status"], "draft_status");
    assert_ne!(body["updated_at"], body["created_at"]);

    gl.delete_project("bob/lidar-x");
    let after = gl.push_mr(LIDAR, iid);
    let body = json(get(&url, &[]).await).await;
    assert_eq!(body["source_project_id"], fork_id);
    assert_eq!(body["sha"], after.as_str());
    let missing = get(&format!("{url}9"), &[]).await;
    assert_eq!(json(missing).await["message"], "404 Not found");

    gl.merge_mr(LIDAR, iid);
    let body = json(get(&url, &[]).await).await;
    assert_eq!(body["state"], "merged");
    assert!(body["merge_commit_sha"].is_string());
}

#[tokio::test]
async fn legacy_servers_have_work_in_progress_and_merge_status_only() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let iid = gl.open_mr(LIDAR, NewMr::new("topic", "main"));
    gl.set_legacy(true);
    let url = format!("{}/projects/{LIDAR_ENC}/merge_requests/{iid}", gl.api_url());
    let expected = [
        ("mergeable", "can_be_merged"),
        ("conflict", "cannot_be_merged"),
        ("checking", "unchecked"),
    ];
    for (detailed, legacy) in expected {
        gl.set_merge_status(LIDAR, iid, detailed);
        let body = json(get(&url, &[]).await).await;
        assert!(body.get("draft").is_none());
        assert!(body.get("detailed_merge_status").is_none());
        assert_eq!(body["work_in_progress"], false);
        assert_eq!(body["merge_status"], legacy, "{detailed}");
    }
    gl.set_mr_title(LIDAR, iid, "WIP: not yet");
    let list = json(get(&mrs_url(&gl, "state=opened"), &[]).await).await;
    assert_eq!(list[0]["work_in_progress"], true);

    gl.set_legacy(false);
    gl.set_merge_status(LIDAR, iid, "conflict");
    let body = json(get(&url, &[]).await).await;
    assert_eq!(body["draft"], true);
    assert_eq!(body["detailed_merge_status"], "conflict");
    assert_eq!(body["merge_status"], "cannot_be_merged");
}

#[tokio::test]
async fn pipeline_trigger_accepts_forms_only_with_a_known_token_and_ref() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    gl.require_token(Some("pat"));
    gl.add_trigger_token(LIDAR, "glptt-1", &["main"]);
    let url = format!("{}/projects/{LIDAR_ENC}/trigger/pipeline", gl.api_url());
    let post = |form: Vec<(&'static str, &'static str)>| {
        let req = client().post(&url).form(&form);
        async move { req.send().await.expect("POST to the fake") }
    };

    let ok = post(vec![
        ("token", "glptt-1"),
        ("ref", "main"),
        ("variables[FW_SHA]", "abc"),
        ("variables[FW_BRANCH]", "main"),
    ])
    .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    let body = json(ok).await;
    assert_eq!(body["status"], "created");
    assert_eq!(body["ref"], "main");
    assert!(body["id"].is_u64());
    assert!(
        body["web_url"]
            .as_str()
            .is_some_and(|u| u.contains("/-/pipelines/"))
    );

    let bad_ref = post(vec![("token", "glptt-1"), ("ref", "nope")]).await;
    assert_eq!(bad_ref.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json(bad_ref).await,
        serde_json::json!({"message": {"base": ["Reference not found"]}})
    );
    let bad_token = post(vec![("token", "pat"), ("ref", "main")]).await;
    assert_eq!(bad_token.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(bad_token).await["message"], "404 Not Found");
    let as_json = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"token":"glptt-1","ref":"main"}"#)
        .send()
        .await
        .expect("POST to the fake");
    assert_eq!(as_json.status(), StatusCode::BAD_REQUEST);

    let pipelines = gl.pipelines();
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0].project, LIDAR);
    assert_eq!(pipelines[0].token, "glptt-1");
    assert_eq!(pipelines[0].git_ref, "main");
    let vars = [("FW_SHA", "abc"), ("FW_BRANCH", "main")].map(|(k, v)| (k.into(), v.into()));
    assert_eq!(pipelines[0].variables, vars.to_vec());
}

#[tokio::test]
async fn injected_failures_answer_the_next_requests_then_stop() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let url = format!("{}/projects/{LIDAR_ENC}", gl.api_url());

    gl.fail_next(
        1,
        Failure::Status429 {
            retry_after: Some(7),
        },
    );
    let limited = get(&url, &[]).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "7");
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    assert_eq!(
        header(&limited, "ratelimit-name"),
        "throttle_unauthenticated_api"
    );
    assert!(header(&limited, "ratelimit-resettime").ends_with(" GMT"));
    assert_eq!(limited.text().await.expect("body"), "Retry later\n");

    gl.fail_next(2, Failure::Status429 { retry_after: None });
    for _ in 0..2 {
        let bare = get(&url, &[]).await;
        assert_eq!(bare.status(), StatusCode::TOO_MANY_REQUESTS);
        let signals = bare
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("ratelimit") || k.as_str() == "retry-after");
        assert_eq!(signals.count(), 0);
    }

    gl.fail_next(1, Failure::Status403Plain);
    let forbidden = get(&url, &[]).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert!(header(&forbidden, "ratelimit-remaining").is_empty());
    assert_eq!(json(forbidden).await["message"], "403 Forbidden");

    gl.fail_next(1, Failure::Html502);
    let html = get(&url, &[]).await;
    assert_eq!(html.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&html, "content-type"), "text/html");
    assert!(html.text().await.expect("body").contains("nginx"));

    gl.fail_next(1, Failure::NonJsonProxyError);
    let proxy = get(&url, &[]).await;
    assert_eq!(proxy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&proxy, "content-type"), "text/plain");
    assert!(
        proxy
            .text()
            .await
            .expect("body")
            .starts_with("upstream connect error")
    );

    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);
    assert_eq!(gl.count_status(429), 3);

    gl.set_rate_limit(1);
    gl.reset_rate_limit();
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);
    let over = get(&url, &[]).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&over, "ratelimit-observed"), "2");
    assert!(
        header(&over, "retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1)
    );
}

#[tokio::test]
async fn tokens_are_required_recorded_and_user_exists() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let url = format!("{}/projects/{LIDAR_ENC}", gl.api_url());
    let user = format!("{}/user", gl.api_url());
    assert_eq!(get(&user, &[]).await.status(), StatusCode::UNAUTHORIZED);

    gl.require_token(Some("glpat-secret"));
    let denied = get(&url, &[]).await;
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(denied).await["message"], "401 Unauthorized");
    let wrong = get(&url, &[("private-token", "glpat-other")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let private = get(&url, &[("private-token", "glpat-secret")]).await;
    assert_eq!(private.status(), StatusCode::OK);
    assert_eq!(
        header(&private, "ratelimit-name"),
        "throttle_authenticated_api"
    );
    let bearer = get(&url, &[("authorization", "Bearer glpat-secret")]).await;
    assert_eq!(bearer.status(), StatusCode::OK);
    let me = get(&user, &[("private-token", "glpat-secret")]).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me = json(me).await;
    assert!(me["id"].is_u64() && me["username"].is_string());

    assert!(gl.wait_for_requests(6, WAIT).await);
    let auth: Vec<Option<String>> = gl.requests().into_iter().map(|r| r.authorization).collect();
    assert_eq!(
        auth[1..],
        [
            None,
            Some("glpat-other".to_owned()),
            Some("glpat-secret".to_owned()),
            Some("Bearer glpat-secret".to_owned()),
            Some("glpat-secret".to_owned()),
        ]
    );
    assert_eq!(gl.count_path_prefix("/api/v4/user"), 2);
    gl.clear_requests();
    assert!(gl.requests().is_empty());
    assert!(!gl.wait_for_requests(1, Duration::from_millis(50)).await);
}
