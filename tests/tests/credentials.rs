//! End-to-end: systemd credentials (`*_credential` keys, issue 16). A key names a
//! file of `$CREDENTIALS_DIRECTORY` (what `LoadCredential=` fills inside the unit);
//! `forgewatch check --credentials-dir DIR` validates the production file outside
//! it. Without a credentials directory, or with a credential missing from it, the
//! key is a located error (exit 2) that names the credential and never a secret.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use std::process::Command;

const CONFIG: &str = "state_dir: ./state
http:
  admin_token_credential: admin-token
forges:
  github:
    kind: github
    host: github.com
    token_credential: github-token
ci:
  bb:
    kind: buildbot
    url: http://127.0.0.1:8010/change_hook/base
    results_secret_credential: bb-results
workspaces:
  - name: app
    ci: bb
    packages: [ { name: app, repo: 'https://github.com/acme/app', branch: main } ]
";

fn check(
    config: &std::path::Path,
    extra: &[&str],
    credentials_env: Option<&str>,
) -> (i32, String, String) {
    let mut command = Command::new(support::binary());
    command
        .arg("check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(dir) = credentials_env {
        command.env("CREDENTIALS_DIRECTORY", dir);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn credentials_are_read_from_the_unit_s_directory_or_the_one_check_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    for (name, value) in [
        ("admin-token", "an-admin-token\n"),
        ("github-token", "ghp_s3cr3tValue"),
        ("bb-results", "bb-s3cr3t"),
    ] {
        std::fs::write(credentials.join(name), value).unwrap();
    }
    let dir_arg = credentials.display().to_string();

    // Outside the unit: no credentials directory, every credential key is refused
    // where it is written.
    let (code, _, stderr) = check(&config, &[], None);
    assert_eq!(code, 2, "{stderr}");
    let located = |line: usize, column: usize, key: &str, name: &str| {
        format!(
            "{}:{line}:{column}: `{key}: {name}` needs systemd's credentials directory",
            config.display()
        )
    };
    for expected in [
        located(3, 27, "admin_token_credential", "admin-token"),
        located(8, 23, "token_credential", "github-token"),
        located(13, 32, "results_secret_credential", "bb-results"),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }

    // `--credentials-dir`, or `$CREDENTIALS_DIRECTORY` as systemd sets it: valid.
    let (code, stdout, stderr) = check(&config, &["--credentials-dir", &dir_arg], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("app"), "{stdout}");
    let (code, _, stderr) = check(&config, &[], Some(&dir_arg));
    assert_eq!(code, 0, "{stderr}");

    // A credential missing from the directory: located, named, nothing leaked.
    std::fs::remove_file(credentials.join("github-token")).unwrap();
    let (code, _, stderr) = check(&config, &["--credentials-dir", &dir_arg], None);
    assert_eq!(code, 2, "{stderr}");
    let missing = format!(
        "{}:8:23: cannot read credential `github-token` (`{}`)",
        config.display(),
        credentials.join("github-token").display()
    );
    assert!(stderr.contains(&missing), "{missing}\n{stderr}");
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("an-admin-token"),
        "{stderr}"
    );

    // A path is not a credential name.
    std::fs::write(
        &config,
        CONFIG.replace(
            "token_credential: github-token",
            "token_credential: ../github-token",
        ),
    )
    .unwrap();
    let (code, _, stderr) = check(&config, &["--credentials-dir", &dir_arg], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`token_credential` must be the name of a credential"),
        "{stderr}"
    );
}
