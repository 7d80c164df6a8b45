//! End-to-end: forgewatch never has more than a forge's `max_concurrency` requests in
//! flight to it. The fake GitHub holds every response and lets them go one at a time,
//! so the cap is checked at each step of a cycle rather than hoped for.

mod support;

use std::process::Output;

use support::{DEADLINE, Env, Ws};
use tokio::process::Child;

const MAIN: &str = "main";
const REPOS: usize = 6;
/// The cap written into the configuration (the generated one says 4).
const CAP: usize = 2;
/// One branch head and one open-PR list per repository, all one page.
const REQUESTS: usize = 2 * REPOS;

/// Six repositories, each watched by a workspace of its own with pull requests enabled,
/// and `max_concurrency: CAP` for the forge.
async fn six_workspaces() -> Env {
    let env = Env::new().await;
    let repos: Vec<String> = (1..=REPOS).map(|i| format!("acme/repo{i}")).collect();
    let names: Vec<String> = (1..=REPOS).map(|i| format!("ws{i}")).collect();
    for repo in &repos {
        env.github.create_repo(repo, MAIN);
    }
    let packages: Vec<[(&str, &str, &str); 1]> = repos
        .iter()
        .map(|repo| [("pkg", repo.as_str(), MAIN)])
        .collect();
    let workspaces: Vec<Ws<'_>> = names
        .iter()
        .zip(&packages)
        .map(|(name, packages)| Ws {
            name,
            ci: "bb",
            packages,
            pull_requests: true,
        })
        .collect();
    env.configure(&workspaces);

    let config = std::fs::read_to_string(env.config_path()).expect("read config");
    // The GitHub forge comes first in the generated file.
    let github = config.find("kind: github").expect("a github forge");
    assert!(
        config[github..].starts_with("kind: github\n    host: github.com"),
        "{config}"
    );
    let config = config.replacen(
        "max_concurrency: 4\n",
        &format!("max_concurrency: {CAP}\n"),
        1,
    );
    std::fs::write(env.config_path(), config).expect("write config");
    env
}

/// Lets the held requests go one at a time, checking the number in flight at each step.
///
/// forgewatch spawns all its requests of a cycle at once, so whenever at least `CAP` of
/// them are unanswered, exactly `CAP` are in flight and the rest wait for a permit inside
/// forgewatch: the test waits for that state before each release instead of assuming
/// the next request has already arrived.
async fn release_one_by_one(env: &Env) -> Result<(), String> {
    let gh = &env.github;
    for served in 1..=REQUESTS {
        let unanswered = REQUESTS - (served - 1);
        let expected = CAP.min(unanswered);
        if !gh.wait_for_in_flight(expected, DEADLINE).await {
            return Err(format!(
                "{} requests in flight, not {expected}, with {unanswered} unanswered",
                gh.in_flight()
            ));
        }
        check_cap(gh.in_flight(), served - 1)?;
        // The permit goes to one held request; any other stays held.
        gh.release(1);
        // A request leaves `in_flight` before it counts as served, and forgewatch frees
        // its permit only once it has read the answer, so after this wait the next one
        // may or may not have arrived: the count is at most `CAP` either way.
        if !gh.wait_for_requests(served, DEADLINE).await {
            return Err(format!(
                "request {served} of {REQUESTS} was not answered (answered: {}, in flight: {})",
                gh.requests().len(),
                gh.in_flight()
            ));
        }
        check_cap(gh.in_flight(), served)?;
    }
    Ok(())
}

fn check_cap(in_flight: usize, served: usize) -> Result<(), String> {
    if in_flight > CAP {
        return Err(format!(
            "{in_flight} requests in flight after {served} answered (cap {CAP})"
        ));
    }
    Ok(())
}

async fn finish(child: Child) -> Output {
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("forgewatch did not finish before the deadline")
        .expect("wait for forgewatch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_concurrency_requests_in_flight_to_a_forge() {
    let env = six_workspaces().await;
    env.github.hold_responses();
    let mut child = env.command(&["once"]).spawn().expect("spawn forgewatch");

    let stepped = release_one_by_one(&env).await;
    // Nothing more is expected; should forgewatch ask anything else, it is answered
    // (and counted below) rather than left hanging.
    env.github.release_all();
    if let Err(message) = stepped {
        let _ = child.start_kill();
        let output = finish(child).await;
        panic!(
            "{message}\nforgewatch stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let output = finish(child).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "once failed:\n{stderr}");
    assert_eq!(env.github.requests().len(), REQUESTS, "{stderr}");
    assert_eq!(env.github.max_in_flight(), CAP);
    assert_eq!(env.ci.accepted().len(), REPOS);
    let mut keys = env.delivered_keys(0);
    keys.sort();
    let expected: Vec<String> = (1..=REPOS).map(|i| format!("ws{i}/mainline")).collect();
    assert_eq!(keys, expected);
}
