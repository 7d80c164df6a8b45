//! The fake GitHub's commit statuses, driven by the real GitHub client
//! (`Forge::post_status`) and by raw requests for what the client never sends.

use std::sync::Arc;

use forgewatch_adapters::forge::{Forge, ForgeError};
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::http::{ClientOptions, MemoryStore};
use forgewatch_adapters::results::{BuildState, CommitStatus};
use forgewatch_adapters::{RepoId, Secret};
use forgewatch_tests::fake_github::FakeGitHub;
use serde_json::{Value, json};

use super::fake_http::{client, json as json_of};

fn github(gh: &FakeGitHub, token: &str) -> GitHubClient {
    let options = GitHubOptions {
        host: "github.com".into(),
        api_url: gh.api_url(),
        token: Some(Secret::new(token.to_owned())),
        client: ClientOptions::default(),
    };
    GitHubClient::new(options, Arc::new(MemoryStore::default())).expect("a client")
}

fn status(state: BuildState, description: &str) -> CommitStatus {
    CommitStatus {
        state,
        target_url: Some("https://ci.example.org/b/7".to_owned()),
        description: description.to_owned(),
        context: "forgewatch/mainline".to_owned(),
    }
}

#[tokio::test]
async fn status_posts_are_validated_recorded_and_refused_like_github() {
    let gh = FakeGitHub::start().await;
    let sha = gh.create_repo("acme/app", "main");
    gh.create_repo("acme/locked", "main");
    gh.require_token(Some("good"));
    let app = RepoId::parse("https://github.com/acme/app").unwrap();
    let locked = RepoId::parse("https://github.com/acme/locked").unwrap();
    let forge = github(&gh, "good");

    forge
        .post_status(&app, &sha, &status(BuildState::Running, "started"))
        .await
        .unwrap();
    let long = "x".repeat(300);
    forge
        .post_status(&app, &sha, &status(BuildState::Failure, &long))
        .await
        .unwrap();
    let posts = gh.statuses();
    let seen: Vec<(&str, &str, &str, Option<&str>, usize)> = posts
        .iter()
        .map(|p| {
            let description = p.description.as_deref().map_or(0, str::len);
            (
                p.repo.as_str(),
                p.sha.as_str(),
                p.state.as_str(),
                p.target_url.as_deref(),
                description,
            )
        })
        .collect();
    let url = Some("https://ci.example.org/b/7");
    assert_eq!(
        seen,
        [
            ("acme/app", sha.as_str(), "pending", url, 7),
            ("acme/app", sha.as_str(), "failure", url, 140)
        ]
    );
    assert!(posts.iter().all(|p| p.context == "forgewatch/mainline"));

    // Faults: two 502s, then a repository refused 403; a bad token is a 401.
    gh.fail_status_posts(2);
    gh.refuse_status_posts("acme/locked");
    let post = status(BuildState::Success, "ok");
    for _ in 0..2 {
        let error = forge.post_status(&app, &sha, &post).await.unwrap_err();
        assert!(
            matches!(error, ForgeError::Http { status: 502, .. }),
            "{error:?}"
        );
    }
    let error = forge.post_status(&locked, &sha, &post).await.unwrap_err();
    assert!(
        matches!(error, ForgeError::NoPermission { status: 403, ref message, .. }
            if message == "Resource not accessible by integration"),
        "{error:?}"
    );
    let error = github(&gh, "bad")
        .post_status(&app, &sha, &post)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ForgeError::NoPermission { status: 401, .. }),
        "{error:?}"
    );
    forge.post_status(&app, &sha, &post).await.unwrap();
    assert_eq!(gh.statuses().len(), 3);

    // What the client never sends: GitHub's 422s, and `context` defaulting.
    let url = format!("{}/repos/acme/app/statuses/{sha}", gh.api_url());
    let send = |body: Value| {
        let request = client()
            .post(url.clone())
            .bearer_auth("good")
            .header("content-type", "application/json")
            .body(body.to_string());
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), json_of(response).await)
        }
    };
    let (code, body) = send(json!({"state": "running", "context": "c"})).await;
    assert_eq!(
        (code, body["errors"][0]["field"].clone()),
        (422, json!("state"))
    );
    let (code, body) = send(json!({"state": "success", "description": long, "context": "c"})).await;
    assert_eq!(
        (code, body["errors"][0]["message"].clone()),
        (
            422,
            json!("description is too long (maximum is 140 characters)")
        )
    );
    let (code, body) = send(json!({"state": "success"})).await;
    assert_eq!(
        (code, body["context"].clone(), body["state"].clone()),
        (201, json!("default"), json!("success"))
    );
    assert_eq!(gh.statuses().len(), 4);
    // Every post is in the request log.
    let posts = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 10);
}
