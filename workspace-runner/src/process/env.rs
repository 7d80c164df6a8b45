//! The environment an update subprocess sees, computed as a pure function of the
//! daemon's environment and the job so that the sanitising rules (SPEC §12) can be
//! unit-tested without touching the test process's own environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use super::Job;

/// Variables the daemon's service manager hands to forgewatch that must not leak into
/// update subprocesses: a child that saw `NOTIFY_SOCKET` could report readiness or
/// status for forgewatch itself, and a child that saw `LISTEN_FDS` could think it was
/// socket-activated. Every variable whose name starts with [`WATCHDOG_PREFIX`] is
/// removed as well.
pub const SANITISED_ENV_REMOVED: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Prefix of the systemd watchdog variables; all of them are removed.
pub const WATCHDOG_PREFIX: &str = "WATCHDOG_";

/// Set in every child so that a `git` that would ask for credentials fails at once
/// instead of waiting for a terminal forever.
const GIT_NO_PROMPT: (&str, &str) = ("GIT_TERMINAL_PROMPT", "0");

/// The complete environment of a job's child: `parent` (normally
/// `std::env::vars_os()`) minus [`SANITISED_ENV_REMOVED`], minus every `WATCHDOG_*`
/// variable, minus `job.env_remove`, plus `GIT_TERMINAL_PROMPT=0`, plus `job.env_set`
/// (which wins over everything before it). Sorted by name.
///
/// Names and values are `OsString`s so that a variable that is not valid UTF-8 in the
/// daemon's environment is passed through unchanged rather than dropped.
pub fn child_env<I, K, V>(parent: I, job: &Job) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    let removed = |name: &OsString| {
        let bytes = name.as_bytes();
        bytes.starts_with(WATCHDOG_PREFIX.as_bytes())
            || SANITISED_ENV_REMOVED.iter().any(|r| r.as_bytes() == bytes)
            || job.env_remove.iter().any(|r| r.as_bytes() == bytes)
    };
    let mut env: BTreeMap<OsString, OsString> = parent
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .filter(|(k, _)| !removed(k))
        .collect();
    env.insert(GIT_NO_PROMPT.0.into(), GIT_NO_PROMPT.1.into());
    for (k, v) in &job.env_set {
        env.insert(k.into(), v.into());
    }
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn job(env_set: &[(&str, &str)], env_remove: &[&str]) -> Job {
        Job {
            argv: vec!["true".into()],
            dir: PathBuf::from("/"),
            env_set: env_set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            env_remove: env_remove.iter().map(|s| (*s).to_owned()).collect(),
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            stdin: None,
            max_log_lines: 10,
            max_line_bytes: 100,
        }
    }

    fn lookup<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a str> {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    const PARENT: &[(&str, &str)] = &[
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/home/fw"),
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("WATCHDOG_USEC", "1"),
        ("WATCHDOG_PID", "42"),
        ("WATCHDOG_SOMETHING_NEW", "x"),
        ("LISTEN_FDS", "2"),
        ("LISTEN_PID", "42"),
        ("LISTEN_FDNAMES", "a:b"),
        ("FW_SECRET", "hunter2"),
        ("GIT_TERMINAL_PROMPT", "1"),
        ("MY_WATCHDOG_USEC", "kept: only the prefix counts"),
    ];

    #[test]
    fn removes_service_manager_and_secret_variables() {
        let env = child_env(PARENT.iter().copied(), &job(&[], &["FW_SECRET"]));
        for gone in SANITISED_ENV_REMOVED
            .iter()
            .chain(&["WATCHDOG_SOMETHING_NEW", "FW_SECRET"])
        {
            assert_eq!(lookup(&env, gone), None, "{gone} should be removed");
        }
        assert_eq!(lookup(&env, "PATH"), Some("/usr/bin:/bin"));
        assert_eq!(lookup(&env, "HOME"), Some("/home/fw"));
        assert_eq!(
            lookup(&env, "MY_WATCHDOG_USEC"),
            Some("kept: only the prefix counts")
        );
        assert_eq!(lookup(&env, "GIT_TERMINAL_PROMPT"), Some("0"));
    }

    #[test]
    fn env_set_wins_over_everything() {
        let env = child_env(
            PARENT.iter().copied(),
            &job(
                &[("HOME", "/w"), ("GIT_TERMINAL_PROMPT", "1"), ("NEW", "v")],
                &["HOME"],
            ),
        );
        assert_eq!(lookup(&env, "HOME"), Some("/w"));
        assert_eq!(lookup(&env, "GIT_TERMINAL_PROMPT"), Some("1"));
        assert_eq!(lookup(&env, "NEW"), Some("v"));
    }

    #[test]
    fn each_name_appears_once() {
        let env = child_env(
            PARENT.iter().copied().chain([("PATH", "/other")]),
            &job(&[("PATH", "/set")], &[]),
        );
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert_eq!(lookup(&env, "PATH"), Some("/set"));
    }

    #[test]
    fn non_utf8_variables_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'a', 0xff]);
        let env = child_env([(OsString::from("ODD"), odd.clone())], &job(&[], &[]));
        assert!(env.contains(&(OsString::from("ODD"), odd)));
    }
}
