//! End-to-end: what the configuration names as files is read with a size cap, and
//! only if it is a regular file (issue 14, item 4). `token_file: /dev/zero` once grew
//! the process by gigabytes a second until the kernel killed it; now `check` and
//! `run` refuse it at once with `file:line:col`, in bounded memory.
//!
//! One test in this binary, so that the peak RSS of the children it waits for is the
//! peak of the commands below.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use std::process::Command;

use nix::sys::resource::{UsageWho, getrusage};

/// A configuration whose GitHub token is read from `token_file`.
fn config(token_file: &str) -> String {
    format!(
        "state_dir: ./state\nforges:\n  github:\n    kind: github\n    host: github.com\n    token_file: {token_file}\nci:\n  bb:\n    kind: buildbot\n    url: http://127.0.0.1:9/change_hook/base\nworkspaces:\n  - name: app\n    ci: bb\n    packages:\n      - {{ name: app, repo: https://github.com/acme/app, branch: main }}\n"
    )
}

/// `forgewatch ARGS` under a 2 GiB address-space limit (so a regression fails
/// this test instead of exhausting the machine): exit code and stderr.
fn forgewatch(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new("sh")
        .args(["-c", "ulimit -v 2097152; exec \"$0\" \"$@\""])
        .arg(support::binary())
        .args(args)
        .output()
        .unwrap();
    assert!(output.stdout.is_empty() || output.status.code() == Some(0));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn special_and_oversized_files_are_refused_at_once_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let fifo = path("fifo");
    nix::unistd::mkfifo(fifo.as_str(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let huge_token = path("huge-token");
    std::fs::write(&huge_token, vec![b'x'; 65 * 1024]).unwrap();
    for (token_file, reason) in [
        ("/dev/zero", "it is not a regular file"),
        (fifo.as_str(), "it is not a regular file"),
        (huge_token.as_str(), "it is larger than 64 KiB"),
    ] {
        std::fs::write(path("config.yml"), config(token_file)).unwrap();
        for command in ["check", "run"] {
            let (code, stderr) = forgewatch(&[command, "--config", &path("config.yml")]);
            assert_eq!(code, Some(2), "{command} with {token_file}: {stderr}");
            let expected = "config.yml:6:17: cannot read token file";
            assert!(
                stderr.contains(expected) && stderr.contains(reason),
                "{command} with {token_file}: {stderr}"
            );
        }
    }
    // The configuration itself.
    let mut huge = config(&huge_token);
    huge.push_str(&format!("# {}\n", "x".repeat(16 * 1024 * 1024)));
    std::fs::write(path("huge.yml"), huge).unwrap();
    for (file, reason) in [
        ("/dev/zero".to_owned(), "it is not a regular file"),
        (path("huge.yml"), "it is larger than 16384 KiB"),
    ] {
        let (code, stderr) = forgewatch(&["check", "--config", &file]);
        assert_eq!(code, Some(2), "{file}: {stderr}");
        assert!(
            stderr.contains("cannot read the configuration file") && stderr.contains(reason),
            "{file}: {stderr}"
        );
    }
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak_kib < 100 * 1024, "peak RSS {peak_kib} KiB");
}
