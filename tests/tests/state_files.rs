//! End-to-end: the state in `state_dir` is never accepted silently (issue 14, item
//! 5). A state database that is not forgewatch's (0 bytes, someone else's SQLite
//! file) or whose schema is damaged is refused by `run`, `once` and dry runs, with
//! exit 1 and a message saying what to do, before anything is polled or delivered;
//! the lock cannot be bypassed by deleting `state_dir/lock`; and what forgewatch
//! writes under `state_dir` is private to its user whatever the umask.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use forgewatch::state::tamper::execute_batch;
use support::{DEADLINE, Env, Run, Ws};

const MAIN: &str = "main";

fn one_workspace(env: &Env) {
    env.github.create_repo("acme/app", MAIN);
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN)],
        pull_requests: true,
    }]);
}

fn database(env: &Env) -> std::path::PathBuf {
    env.state_dir().join("state.sqlite3")
}

/// `run`, `once` and `once --dry-run` each exit 1 saying `expected`, having asked
/// the forge nothing and delivered nothing.
async fn every_command_refuses(env: &Env, expected: &[&str]) {
    for args in [&["run"][..], &["once"], &["once", "--dry-run"]] {
        let run: Run = env.forgewatch(args).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:#?}");
        for part in expected {
            assert!(run.stderr.contains(part), "{args:?}: {}", run.stderr);
        }
        assert_eq!(run.stdout, "", "{args:?}");
    }
    assert_eq!(env.requests().len(), 0);
    assert_eq!(env.ci.accepted().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_byte_database_is_refused_and_nothing_is_delivered() {
    let env = Env::new().await;
    one_workspace(&env);
    std::fs::create_dir(env.state_dir()).unwrap();
    std::fs::write(database(&env), b"").unwrap();
    every_command_refuses(
        &env,
        &[
            "state.sqlite3 exists but is not a forgewatch state database (0 bytes)",
            "move it away to start from an empty state, or restore it from a backup",
        ],
    )
    .await;
    assert_eq!(std::fs::metadata(database(&env)).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_sqlite_database_is_refused() {
    let env = Env::new().await;
    one_workspace(&env);
    std::fs::create_dir(env.state_dir()).unwrap();
    execute_batch(
        &database(&env),
        "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);",
    )
    .unwrap();
    every_command_refuses(
        &env,
        &[
            "state.sqlite3 exists but is not a forgewatch state database",
            "photos",
            "move it away",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_dropped_table_is_refused_at_start_naming_it() {
    let env = Env::new().await;
    one_workspace(&env);
    let first = env.once().await;
    assert_eq!(first.keys_and_statuses(), ["app/mainline delivered"]);
    execute_batch(&database(&env), "DROP TABLE outbox;").unwrap();
    env.clear_requests();
    env.github.push("acme/app", MAIN);
    for args in [&["run"][..], &["once"], &["once", "--dry-run"]] {
        let run = env.forgewatch(args).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:#?}");
        assert!(
            run.stderr
                .contains("the state database is damaged: table outbox is missing"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(env.requests().len(), 0);
    assert_eq!(env.ci.accepted().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_lock_file_does_not_let_a_second_daemon_start() {
    let env = Env::new().await;
    one_workspace(&env);
    let daemon = env.command(&["run"]).spawn().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    std::fs::remove_file(env.state_dir().join("lock")).unwrap();
    for args in [&["run"][..], &["once"]] {
        let second = env.forgewatch(args).await;
        assert_eq!(second.code, Some(1), "{args:?}: {second:#?}");
        assert!(
            second
                .stderr
                .contains("is locked by another forgewatch (pid unknown)"),
            "{args:?}: {}",
            second.stderr
        );
    }
    assert_eq!(env.ci.accepted().len(), 1);
    support::stop(daemon).await;
    // With the holder gone, the next one takes the lock.
    assert_eq!(env.once().await.stdout, "");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_private_whatever_the_umask() {
    let env = Env::new().await;
    one_workspace(&env);
    let state = env.state_dir();
    let daemon = env.command_with_umask("022", &["run"]).spawn().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    env.listen_address().await;
    // The WAL and its index exist while the daemon holds the database open.
    let files = [
        "state.sqlite3",
        "lock",
        "state.sqlite3-wal",
        "state.sqlite3-shm",
        "listen-address",
    ];
    let modes = |files: &[&str]| -> Vec<(String, u32)> {
        files
            .iter()
            .map(|f| ((*f).to_owned(), mode(&state.join(f))))
            .collect()
    };
    let private: Vec<(String, u32)> = files.iter().map(|f| ((*f).to_owned(), 0o600)).collect();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(modes(&files), private);
    support::stop(daemon).await;

    // Files an older forgewatch left readable are made private again by the next
    // process that opens them; the directory's mode is its operator's, warned about.
    let owned = ["state.sqlite3", "lock"];
    for file in [".", "state.sqlite3", "lock"] {
        let mode = if file == "." { 0o755 } else { 0o644 };
        std::fs::set_permissions(state.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let once = env
        .command_with_umask("022", &["once"])
        .output()
        .await
        .unwrap();
    assert_eq!(once.status.code(), Some(0), "{once:#?}");
    assert_eq!(modes(&owned), private[..2]);
    assert_eq!(mode(&state), 0o755);
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert!(
        stderr.contains("any user may enter state_dir") && stderr.contains("\"0755\""),
        "{stderr}"
    );
}
