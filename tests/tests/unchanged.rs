//! A 304 for an answer the caller already holds is "unchanged" without reading or
//! decoding the stored body (the idle cycle's main cost, BENCHMARKS.md), and the
//! answers stay exact: a list whose second page changed comes back whole, a caller
//! that holds nothing (after a restart) gets the stored answer decoded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use forgewatch_adapters::forge::{Forge, WatchTarget};
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::http::{CachedResponse, ClientOptions, MemoryStore, ValidatorStore};
use forgewatch_adapters::{BoxFuture, RepoId, Secret};
use forgewatch_tests::fake_github::{FakeGitHub, NewPr};

const TOKEN: &str = "ghp_unchangedToken0123456789";

/// A memory store that counts the reads that include a body.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    body_reads: AtomicUsize,
}

impl ValidatorStore for CountingStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>> {
        self.body_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key)
    }
    fn load_validators<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>> {
        self.inner.load_validators(key)
    }
    fn save<'a>(&'a self, key: &'a str, response: &'a CachedResponse) -> BoxFuture<'a, ()> {
        self.inner.save(key, response)
    }
}

#[tokio::test]
async fn held_answers_are_unchanged_on_304_without_reading_the_body() {
    let github = FakeGitHub::start().await;
    github.require_token(Some(TOKEN));
    github.create_repo("acme/app", "main");
    // 101 open PRs: two pages of 100.
    for i in 0..101 {
        github.open_pr("acme/app", NewPr::new("main", &format!("f{i}")));
    }
    let store = Arc::new(CountingStore::default());
    let client = GitHubClient::new(
        GitHubOptions {
            host: "github.com".into(),
            api_url: github.api_url(),
            token: Some(Secret::new(TOKEN)),
            client: ClientOptions::default(),
        },
        store.clone(),
    )
    .unwrap();
    let target = WatchTarget {
        repo: RepoId::parse("https://github.com/acme/app").unwrap(),
        branch: "main".to_owned(),
    };
    let reads = || store.body_reads.load(Ordering::SeqCst);

    // First answers: fresh.
    let pulls = client
        .open_pull_requests_if_changed(&target, false)
        .await
        .unwrap();
    assert_eq!(pulls.map(|p| p.len()), Some(101));
    let head = client.branch_head_if_changed(&target, false).await.unwrap();
    assert!(head.is_some());
    // Held and not modified: unchanged (3 requests, all 304). The first 304s carry
    // GitHub's strong ETag for the weak one stored, which is stored once; after
    // that, no body is read at all.
    github.clear_requests();
    for round in 0..2 {
        let before = reads();
        let pulls = client.open_pull_requests_if_changed(&target, true).await;
        assert_eq!(pulls.unwrap(), None);
        let head_now = client.branch_head_if_changed(&target, true).await;
        assert_eq!(head_now.unwrap(), None);
        if round == 1 {
            assert_eq!(reads(), before, "a body was read for a held answer");
        }
    }
    assert_eq!(github.count_status(304), 6);
    let before = reads();
    // Not held (a restart): the stored answers, decoded, from 304s.
    let pulls = client
        .open_pull_requests_if_changed(&target, false)
        .await
        .unwrap();
    assert_eq!(pulls.map(|p| p.len()), Some(101));
    assert_eq!(
        client.branch_head_if_changed(&target, false).await.unwrap(),
        head
    );
    assert!(reads() > before);
    assert_eq!(github.count_status(304), 9);

    // One more PR: a page changed, the list comes back whole; a push: the new head.
    github.open_pr("acme/app", NewPr::new("main", "f101"));
    let pulls = client
        .open_pull_requests_if_changed(&target, true)
        .await
        .unwrap();
    assert_eq!(pulls.map(|p| p.len()), Some(102));
    let pushed = github.push("acme/app", "main");
    assert_eq!(
        client.branch_head_if_changed(&target, true).await.unwrap(),
        Some(pushed)
    );
    // The plain calls still answer in full when nothing changed.
    assert_eq!(client.open_pull_requests(&target).await.unwrap().len(), 102);
}
