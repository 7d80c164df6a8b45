//! End-to-end: the status page at `GET /` rendered by a real browser. `forgewatch
//! run` serves workspace `mixed` (a GitHub repository and a GitLab project in a
//! subgroup) with a GitHub PR that depends on a GitLab MR; headless Chromium (the
//! Debian package `chromium`, which `.ci/run` installs) loads the page, and the
//! rendered DOM shows the workspace, the PR's build key and its dependency. A
//! screenshot of the page is taken too. A forge answering hostile names and URLs
//! (a repository path with `'`, a PR title with markup, a `javascript:` PR URL)
//! injects nothing into the DOM: the names show as text, and only http(s) URLs are
//! links. Driven over the DevTools pipe ([`Browser`]), the page shows a failed
//! build in its failure colour with its CI link, a PR's two dependencies as a
//! graph, and a result posted after it connected to the event stream changes the
//! build's row and node without a reload; `GET /builds/{key}` shows a history.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use forgewatch_tests::browser::Browser;
use forgewatch_tests::fake_github::NewPr;
use forgewatch_tests::fake_gitlab::NewMr;
use forgewatch_tests::wait::eventually;
use html5gum::{Token, Tokenizer};
use serde_json::json;
use support::{DEADLINE, Env, Ws, post_result};

const MAIN: &str = "main";
const LIDAR: &str = "acme/robots/lidar";
const LIDAR_URL: &str = "https://gitlab.example.org/acme/robots/lidar";
const PR_KEY: &str = "mixed/pr/github.com/acme/app/1";
const DEPENDENCY: &str = "gitlab.example.org/acme/robots/lidar#1";

/// `chromium` on `PATH`; a missing browser fails the test (`.ci/run` installs it).
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`chromium` is not on PATH: this test needs headless Chromium; \
                 install the Debian package (`apt-get install chromium`), as `.ci/run` does"
            )
        })
}

/// Runs headless Chromium with a fresh profile in `profile` and `args` (as root it
/// needs `--no-sandbox`; the background-networking flags keep it off the closed
/// network), to completion within [`DEADLINE`]; returns its stdout.
async fn run_chromium(profile: &Path, args: &[String]) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium {args:?} did not finish before the deadline"))
        .unwrap();
    assert!(
        output.status.success(),
        "chromium {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Daemon {
    child: tokio::process::Child,
    base: String,
}

impl Daemon {
    async fn start(env: &Env) -> Daemon {
        let child = env.command(&["run"]).spawn().unwrap();
        let address = env.listen_address().await;
        Daemon {
            child,
            base: format!("http://{address}"),
        }
    }

    /// Waits for `/readyz`: the first cycle finished and its snapshot, which the
    /// page shows, is written.
    async fn ready(&self) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("{}/readyz", self.base);
        eventually(DEADLINE, || async {
            (http.get(&url).send().await.unwrap().status() == 200).then_some(())
        })
        .await
        .expect("never ready");
    }

    async fn stop(self) {
        support::stop(self.child).await;
    }
}

/// Workspace `mixed` (`app` on GitHub, `lidar` on GitLab) with MR `lidar!1` and PR
/// `app#1`, whose body depends on the MR (URL form); polled every 10 minutes, so
/// the first cycle is the only one.
fn configure(env: &Env) {
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project(LIDAR, MAIN);
    assert_eq!(env.gitlab.open_mr(LIDAR, NewMr::new("fix-scan", MAIN)), 1);
    let mut pr = NewPr::new(MAIN, "use-scan");
    pr.body = Some(format!(
        "Needs the driver fix.\r\n\r\nDepends on:\r\n\r\n- [ ] {LIDAR_URL}/-/merge_requests/1\r\n"
    ));
    assert_eq!(env.github.open_pr("acme/app", pr), 1);
    env.configure(&[Ws {
        name: "mixed",
        ci: "bb",
        packages: &[
            ("app", "acme/app", MAIN),
            ("drivers/lidar", LIDAR_URL, MAIN),
        ],
        pull_requests: true,
    }]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("poll_interval: 1s", "poll_interval: 10m");
    std::fs::write(env.config_path(), config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_workspaces_and_a_pr_dependency_on_the_status_page() {
    let browser = chromium();
    let env = Env::new().await;
    configure(&env);
    let daemon = Daemon::start(&env).await;
    // Mainline, the PR and the MR.
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    daemon.ready().await;
    let url = format!("{}/", daemon.base);

    let profile = tempfile::tempdir().unwrap();
    let dom = run_chromium(profile.path(), &["--dump-dom".to_owned(), url.clone()]).await;
    assert!(
        dom.contains("<h2>mixed</h2>"),
        "{browser:?} rendered: {dom}"
    );
    assert!(dom.contains(PR_KEY), "{dom}");
    assert!(dom.contains(DEPENDENCY), "{dom}");

    let shots = tempfile::tempdir().unwrap();
    let png = shots.path().join("page.png");
    let profile = tempfile::tempdir().unwrap();
    run_chromium(
        profile.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,900".to_owned(),
            url,
        ],
    )
    .await;
    let size = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
        .len();
    assert!(size > 0, "the screenshot {} is empty", png.display());
    // To look at the page: FW_E2E_KEEP_SCREENSHOT=/some/file.png cargo test --test page
    if let Some(keep) = std::env::var_os("FW_E2E_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }

    daemon.stop().await;
}

/// A repository path that closes a `'`-quoted attribute and opens an event handler.
const HOSTILE_REPO: &str = "acme/x'onmouseover='alert(1)'";
const HOSTILE_TITLE: &str = r#"<b>"bold"</b> & 'quoted' <script>alert(2)</script>"#;
const SCRIPT_URL: &str = "javascript:alert(1)";

/// The attributes the page writes; anything else in the DOM was injected.
const PAGE_ATTRIBUTES: &[&str] = &[
    "lang",
    "charset",
    "name",
    "content",
    "class",
    "id",
    "href",
    "colspan",
    // The body's marks for the script, the filter form, the build rows.
    "data-last-event",
    "data-filtered",
    "method",
    "action",
    "value",
    "selected",
    "type",
    "placeholder",
    "data-key",
    "data-state",
    "title",
    // The one script, the page's own, and what it sets (whether it is live).
    "src",
    "defer",
    "data-live",
];

/// A rendered DOM, tokenised: each element's attributes and all the text.
struct Dom {
    /// `(element, attribute, value)`, in document order.
    attributes: Vec<(String, String, String)>,
    text: String,
}

impl Dom {
    fn of(html: &str) -> Dom {
        let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut dom = Dom {
            attributes: Vec::new(),
            text: String::new(),
        };
        for token in Tokenizer::new(html) {
            match token.unwrap() {
                Token::StartTag(tag) => {
                    for (name, value) in &tag.attributes {
                        dom.attributes
                            .push((lossy(&tag.name), lossy(name), lossy(&value.value)));
                    }
                }
                Token::String(text) => dom.text.push_str(&lossy(&text.value)),
                _ => {}
            }
        }
        dom
    }

    fn links(&self) -> Vec<&str> {
        self.attributes
            .iter()
            .filter(|(element, attribute, _)| element == "a" && attribute == "href")
            .map(|(_, _, value)| value.as_str())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_a_javascript_url_inject_nothing_into_the_status_page() {
    let env = Env::new().await;
    env.github.create_repo(HOSTILE_REPO, MAIN);
    env.github.create_repo("acme/tool", MAIN);
    let mut pr = NewPr::new(MAIN, "markup");
    pr.title = HOSTILE_TITLE.to_owned();
    assert_eq!(env.github.open_pr(HOSTILE_REPO, pr), 1);
    let mut pr = NewPr::new(MAIN, "script");
    pr.html_url = Some(SCRIPT_URL.to_owned());
    assert_eq!(env.github.open_pr("acme/tool", pr), 1);
    env.configure(&[Ws {
        name: "hostile",
        ci: "bb",
        packages: &[("app", HOSTILE_REPO, MAIN), ("tool", "acme/tool", MAIN)],
        pull_requests: true,
    }]);
    let daemon = Daemon::start(&env).await;
    // The mainline and the two PRs.
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    daemon.ready().await;

    let profile = tempfile::tempdir().unwrap();
    let html = run_chromium(
        profile.path(),
        &["--dump-dom".to_owned(), format!("{}/", daemon.base)],
    )
    .await;
    let dom = Dom::of(&html);
    let injected: Vec<_> = dom
        .attributes
        .iter()
        .filter(|(_, attribute, _)| !PAGE_ATTRIBUTES.contains(&attribute.as_str()))
        .collect();
    assert!(
        injected.is_empty(),
        "injected attributes {injected:?} in {html}"
    );
    // The one script element is the page's own (the title's is text).
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(
        html.contains(r#"<script src="/page.js" defer=""></script>"#),
        "{html}"
    );
    // The one link off the page is the hostile repository's PR, to exactly the URL
    // the forge answered (its `'` harmless inside the attribute); the `javascript:`
    // PR is text. The page's own links are build histories, their keys
    // percent-encoded.
    let hostile_url = format!("https://github.com/{HOSTILE_REPO}/pull/1");
    let (own, off): (Vec<&str>, Vec<&str>) =
        dom.links().into_iter().partition(|l| l.starts_with('/'));
    assert_eq!(off, [hostile_url.as_str()], "{html}");
    assert_eq!(
        own,
        [
            "/builds/hostile%2Fpr%2Fgithub.com%2Facme%2Fx%27onmouseover%3D%27alert%281%29%27%2F1",
            "/builds/hostile%2Fpr%2Fgithub.com%2Facme%2Ftool%2F1",
            "/builds/hostile%2Fmainline",
        ],
        "{html}"
    );
    assert!(dom.text.contains(HOSTILE_TITLE), "{}", dom.text);
    assert!(
        dom.text
            .contains(&format!("hostile/pr/github.com/{HOSTILE_REPO}/1")),
        "{}",
        dom.text
    );
    assert!(
        dom.text.contains("hostile/pr/github.com/acme/tool/1"),
        "{}",
        dom.text
    );
    daemon.stop().await;
}

const SECRET: &str = "results-secret-for-the-page";
const APP: &str = "deps/pr/github.com/acme/app/1";
const LIB: &str = "deps/pr/github.com/acme/lib/1";
const BASE: &str = "deps/pr/github.com/acme/base/1";

/// The delivery id the CI accepted for `key`.
fn delivery_of(env: &Env, key: &str) -> String {
    env.ci
        .accepted()
        .iter()
        .map(|d| d.properties())
        .find(|p| p["build_key"] == key)
        .and_then(|p| p["delivery_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{key} was not delivered"))
}

/// What the page shows of the build `key`: its row's state (text, class, colour)
/// and CI link, and the class of its nodes in the graphs.
fn shown(key: &str) -> String {
    format!(
        r#"(() => {{
  const key = {key};
  const row = [...document.querySelectorAll("tr[data-key]")].find(r => r.getAttribute("data-key") === key);
  const cell = row && row.querySelector("td.state");
  const ci = row && row.querySelector("td:nth-child(3) a");
  const nodes = [...document.querySelectorAll("g[data-node]")].filter(g => g.getAttribute("data-node") === key);
  return {{
    state: cell && cell.textContent,
    class: cell && cell.className,
    color: cell && getComputedStyle(cell).color,
    ci: ci && ci.getAttribute("href"),
    nodes: nodes.map(g => g.getAttribute("class")),
  }};
}})()"#,
        key = json!(key)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_results_a_dependency_graph_and_a_state_change_without_reloading() {
    let browser = chromium();
    let env = Env::new().await;
    for repo in ["acme/app", "acme/lib", "acme/base"] {
        env.github.create_repo(repo, MAIN);
    }
    assert_eq!(
        env.github
            .open_pr("acme/base", NewPr::new(MAIN, "base-fix")),
        1
    );
    assert_eq!(
        env.github.open_pr("acme/lib", NewPr::new(MAIN, "lib-fix")),
        1
    );
    let mut app = NewPr::new(MAIN, "feature");
    app.body = Some(
        "Depends on:\r\n\r\n- [ ] https://github.com/acme/lib/pull/1\r\n- [ ] https://github.com/acme/base/pull/1\r\n"
            .to_owned(),
    );
    assert_eq!(env.github.open_pr("acme/app", app), 1);
    env.configure(&[Ws {
        name: "deps",
        ci: "bb",
        packages: &[
            ("app", "acme/app", MAIN),
            ("lib", "acme/lib", MAIN),
            ("base", "acme/base", MAIN),
        ],
        pull_requests: true,
    }]);
    env.set_results_secret(SECRET);
    let daemon = Daemon::start(&env).await;
    // The mainline and the three PRs.
    assert!(env.ci.wait_for_accepted(4, DEADLINE).await);
    daemon.ready().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let failed = json!({
        "delivery_id": delivery_of(&env, LIB),
        "state": "failure",
        "url": "https://ci.example/builds/7",
        "summary": "2 tests failed",
    });
    let (status, answer) = post_result(&http, &daemon.base, SECRET, &failed).await;
    assert_eq!(status, 200, "{answer}");

    let page = Browser::open(&browser, &format!("{}/", daemon.base), DEADLINE)
        .await
        .unwrap();
    eventually(DEADLINE, || async {
        let live = page.evaluate("document.body && document.body.getAttribute('data-live')");
        (live.await.unwrap() == "open").then_some(())
    })
    .await
    .expect("the page never connected to the event stream");

    // The failed build, in its failure colour, with its CI link.
    assert_eq!(
        page.evaluate(&shown(LIB)).await.unwrap(),
        json!({
            "state": "failure",
            "class": "state st-failure",
            "color": "rgb(204, 0, 0)",
            "ci": "https://ci.example/builds/7",
            "nodes": ["node st-failure"],
        })
    );
    // The PR with two dependencies: three nodes, an edge to each dependency.
    let graph = page
        .evaluate(&format!(
            r#"(() => {{
  const row = [...document.querySelectorAll("g[data-node]")].find(g => g.getAttribute("data-node") === {APP});
  const svg = row.closest("svg");
  return {{
    nodes: [...svg.querySelectorAll("g[data-node]")].map(g => [g.getAttribute("data-node"), g.getAttribute("class"), g.querySelector("text").textContent]),
    edges: svg.querySelectorAll("line.edge").length,
    links: [...svg.querySelectorAll("a")].map(a => a.getAttribute("href")),
  }};
}})()"#,
            APP = json!(APP)
        ))
        .await
        .unwrap();
    assert_eq!(
        graph,
        json!({
            "nodes": [
                [APP, "node st-none", "github.com/acme/app#1"],
                [BASE, "node st-none", "github.com/acme/base#1"],
                [LIB, "node st-failure", "github.com/acme/lib#1"],
            ],
            "edges": 2,
            "links": [
                "/builds/deps%2Fpr%2Fgithub.com%2Facme%2Fapp%2F1",
                "/builds/deps%2Fpr%2Fgithub.com%2Facme%2Fbase%2F1",
                "/builds/deps%2Fpr%2Fgithub.com%2Facme%2Flib%2F1",
            ],
        })
    );

    // A result posted now reaches the page through the stream: no reload (the mark
    // set on this document is still there).
    page.evaluate("window.forgewatchMark = 'same document'; true")
        .await
        .unwrap();
    let succeeded = json!({
        "delivery_id": delivery_of(&env, BASE),
        "state": "success",
        "url": "https://ci.example/builds/8",
    });
    let (status, answer) = post_result(&http, &daemon.base, SECRET, &succeeded).await;
    assert_eq!(status, 200, "{answer}");
    let expected = json!({
        "state": "success",
        "class": "state st-success",
        "color": "rgb(0, 119, 0)",
        "ci": "https://ci.example/builds/8",
        "nodes": ["node st-success"],
    });
    let arrived = eventually(DEADLINE, || async {
        (page.evaluate(&shown(BASE)).await.unwrap() == expected).then_some(())
    })
    .await;
    if arrived.is_none() {
        let now = page.evaluate(&shown(BASE)).await.unwrap();
        panic!("the page never showed the result: {now}");
    }
    assert_eq!(
        page.evaluate("window.forgewatchMark").await.unwrap(),
        "same document"
    );
    assert_eq!(
        page.evaluate("document.getElementById('events-body').rows[0].cells[1].textContent")
            .await
            .unwrap(),
        "result"
    );
    page.close().await;

    // The failed build's history: its delivery, why, and the result with its link.
    let history = http
        .get(format!(
            "{}/builds/deps%2Fpr%2Fgithub.com%2Facme%2Flib%2F1",
            daemon.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200);
    assert!(
        history.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let dom = Dom::of(&history.text().await.unwrap());
    assert!(dom.text.contains(LIB), "{}", dom.text);
    assert!(dom.text.contains("failure"), "{}", dom.text);
    assert!(dom.text.contains("2 tests failed"), "{}", dom.text);
    assert!(dom.text.contains("from api"), "{}", dom.text);
    assert!(
        dom.links().contains(&"https://ci.example/builds/7"),
        "{:?}",
        dom.links()
    );

    // The filter form's query, answered by the server: each build's last outcome.
    for (query, keys) in [
        ("?state=failure", vec![LIB]),
        ("?workspace=deps&state=success&q=", vec![BASE]),
        ("?q=ACME%2FAPP", vec![APP]),
        ("?state=none", vec![APP, "deps/mainline"]),
        ("?workspace=other", vec![]),
    ] {
        let html = http
            .get(format!("{}/{query}", daemon.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let rows: Vec<String> = Dom::of(&html)
            .attributes
            .into_iter()
            .filter(|(element, attribute, _)| element == "tr" && attribute == "data-key")
            .map(|(_, _, key)| key)
            .collect();
        assert_eq!(rows, keys, "{query}");
    }
    let refused = http
        .get(format!("{}/?state=broken", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    daemon.stop().await;
}
