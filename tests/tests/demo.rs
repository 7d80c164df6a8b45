//! End-to-end: the README's first command, `demo`, run as the real binary. A short
//! run prints each scripted change and exactly the triggers it causes (build key,
//! why, delivery id), a result for each trigger, and stops by itself; Ctrl-C stops
//! it at once. Either way it exits 0, its temporary directory is gone and no process
//! it started is left.

#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A deadline for a whole demo run (its steps wait at most 30 s each).
const DEADLINE: Duration = Duration::from_secs(120);

/// The environment variable marking the demo's processes, and whatever they start.
const MARKER: &str = "FW_E2E_DEMO_MARKER";

fn demo(args: &[&str], marker: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"));
    cmd.args(args)
        .env(MARKER, marker)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A marker unique to this test and this run.
fn marker(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// The live processes carrying `marker` in their environment.
fn marked(marker: &str) -> Vec<i32> {
    let wanted = std::ffi::OsString::from(marker);
    procfs::process::all_processes()
        .unwrap()
        .flatten()
        .filter(|p| p.stat().is_ok_and(|s| s.state != 'Z'))
        .filter(|p| {
            p.environ()
                .is_ok_and(|env| env.get(std::ffi::OsStr::new(MARKER)) == Some(&wanted))
        })
        .map(|p| p.pid())
        .collect()
}

/// The temporary directory the header names (`configuration: DIR/config.yml`).
fn temporary_dir(stdout: &str) -> std::path::PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  configuration: "))
        .unwrap_or_else(|| panic!("no configuration line:\n{stdout}"));
    let config = line.split(' ').next().unwrap();
    std::path::Path::new(config).parent().unwrap().to_owned()
}

/// A timed line (`MM:SS  KIND       TEXT`) without its time.
fn untimed(line: &str) -> Option<&str> {
    let (time, rest) = line.split_at_checked(7)?;
    let digits = time.as_bytes();
    let timed = digits[..2]
        .iter()
        .chain(&digits[3..5])
        .all(u8::is_ascii_digit)
        && &time[2..3] == ":"
        && &time[5..] == "  ";
    timed.then_some(rest)
}

/// `(requests, answered 304)` of the demo's last line, `daemon     {start}N requests
/// to GitHub, M of them answered 304 Not Modified; temporary directory removed`.
fn counts(line: &str, start: &str) -> (usize, usize) {
    let parsed = line
        .strip_prefix("daemon     ")
        .and_then(|l| l.strip_prefix(start))
        .and_then(|l| {
            l.strip_suffix(" of them answered 304 Not Modified; temporary directory removed")
        })
        .and_then(|l| l.split_once(" requests to GitHub, "));
    let (requests, not_modified) = parsed.unwrap_or_else(|| panic!("not the last line: {line:?}"));
    (requests.parse().unwrap(), not_modified.parse().unwrap())
}

/// The timed lines other than results, each run of `delivered` lines sorted (the
/// builds one change triggers arrive in any order).
fn story(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut group: Vec<String> = Vec::new();
    for line in stdout.lines().filter_map(untimed) {
        if line.starts_with("result ") {
            continue;
        }
        if line.starts_with("delivered ") {
            group.push(line.to_owned());
            continue;
        }
        group.sort();
        lines.append(&mut group);
        lines.push(line.to_owned());
    }
    group.sort();
    lines.append(&mut group);
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_prints_each_change_and_the_triggers_it_causes_then_leaves_nothing() {
    let marker = marker("short");
    let run = tokio::time::timeout(DEADLINE, demo(&["--duration", "6s"], &marker).output())
        .await
        .expect("the demo did not stop by itself")
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stderr, "");

    // The header names the fakes and the status page, all on loopback.
    let header: Vec<&str> = stdout.lines().take(6).collect();
    assert!(
        header[0].starts_with("forgewatch demo: the daemon, a fake GitHub and a Buildbot-style receiver on 127.0.0.1, for 6s"),
        "{stdout}"
    );
    let prefixes = [
        "  fake GitHub:   http://127.0.0.1:",
        "  receiver:      http://127.0.0.1:",
        "  status page:   http://127.0.0.1:",
        "  configuration: ",
    ];
    for (line, prefix) in header[1..5].iter().zip(prefixes) {
        assert!(line.starts_with(prefix), "{line:?} is not {prefix:?}…");
    }
    assert!(
        header[3].ends_with("/   (open it in a browser)"),
        "{}",
        header[3]
    );
    assert_eq!(header[5], "");

    let expected = [
        "daemon     running: first poll of every watched branch and PR list",
        "delivered  demo/mainline  (first delivery; delivery a1c63c60…)",
        "delivered  demo/pr/github.com/acme/app/1  (new PR; delivery 368058ff…)",
        "delivered  demo/pr/github.com/acme/lib/1  (new PR; delivery 8440b420…)",
        "github     push to acme/lib main: 9c145c1",
        "delivered  demo/mainline  (lib 050baf9→9c145c1; delivery 100fe370…)",
        "github     push to PR acme/lib#1: aa66d8c",
        "delivered  demo/pr/github.com/acme/app/1  (dependency github.com/acme/lib#1 moved; delivery 5be90151…)",
        "delivered  demo/pr/github.com/acme/lib/1  (head 4f589f3→aa66d8c; delivery d20788c6…)",
        "github     new PR acme/app#2 \"Add a command line\"",
        "delivered  demo/pr/github.com/acme/app/2  (new PR; delivery 26564f6b…)",
        "github     title of PR acme/app#2 edited (not an input of any build)",
        "polled     acme/app twice since: no build changed, nothing sent",
    ];
    let mut story = story(&stdout);
    let last = story.pop().unwrap();
    assert_eq!(story, expected, "{stdout}");
    // The last line counts the requests: the polls after nothing changed cost a 304.
    let (requests, not_modified) = counts(&last, "stopped: 7 deliveries; ");
    assert!(0 < not_modified && not_modified < requests, "{last}");

    // Each trigger's result went back to the daemon: the app's new PR failed.
    let mut results: Vec<&str> = stdout
        .lines()
        .filter_map(untimed)
        .filter(|l| l.starts_with("result "))
        .collect();
    results.sort();
    let ok = |key: &str| format!("result     {key}  success: all tests passed");
    let mut expected_results = vec![
        ok("demo/mainline"),
        ok("demo/mainline"),
        ok("demo/pr/github.com/acme/app/1"),
        ok("demo/pr/github.com/acme/app/1"),
        "result     demo/pr/github.com/acme/app/2  failure: 2 tests failed".to_owned(),
        ok("demo/pr/github.com/acme/lib/1"),
        ok("demo/pr/github.com/acme/lib/1"),
    ];
    expected_results.sort();
    assert_eq!(results, expected_results, "{stdout}");

    assert!(
        !temporary_dir(&stdout).exists(),
        "the temporary directory is left"
    );
    assert_eq!(marked(&marker), Vec::<i32>::new(), "processes are left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_demo_at_once_and_it_removes_its_directory() {
    let marker = marker("interrupted");
    let mut child = demo(&[], &marker).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    // Interrupted once the first trigger arrived, long before its minute is up.
    let first = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if untimed(&line).is_some_and(|l| l.starts_with("delivered ")) {
                return;
            }
        }
        panic!("the demo ended before a delivery:\n{seen}");
    })
    .await;
    assert!(first.is_ok(), "no delivery before the deadline:\n{seen}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the demo did not stop on SIGINT")
        .unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{seen}");
    let last = seen.lines().last().and_then(untimed).unwrap_or_default();
    let deliveries = last
        .strip_prefix("daemon     interrupted, stopped: ")
        .and_then(|l| l.split_once(" deliveries; "))
        .map(|(n, _)| n.parse::<usize>().unwrap());
    assert!(deliveries.is_some_and(|n| (1..=3).contains(&n)), "{seen}");
    counts(
        last,
        &format!("interrupted, stopped: {} deliveries; ", deliveries.unwrap()),
    );
    assert!(
        !temporary_dir(&seen).exists(),
        "the temporary directory is left"
    );
    assert_eq!(marked(&marker), Vec::<i32>::new(), "processes are left");
}
