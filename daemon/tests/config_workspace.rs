//! Configuration of workspaces whose packages come from a manifest refreshed by an
//! update command, their buildconf, `max_parallel_updates` and the `command` CI
//! target: defaults, resolution of relative paths, and located errors.

use std::time::Duration;

use forgewatch::config::{
    BUILDCONF_PACKAGE, CiConfig, Config, ConfigError, ManifestFormat, PackageKind, load,
};

fn load_text(text: &str) -> (tempfile::TempDir, Result<Config, Vec<ConfigError>>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).expect("config file");
    let result = load(&path).map_err(|e| e.0);
    (dir, result)
}

const HEAD: &str = "state_dir: s
forges:
  github: { kind: github, host: github.com }
ci:
  script:
    kind: command
    argv: [./start-build, --fast]
workspaces:
  - name: rock
    ci: script
";

const FULL: &str = "    manifest:
      path: ws/.autoproj/installation-manifest
    update:
      argv: [autoproj, update, -k]
      dir: ws
      env: { AUTOPROJ_NONINTERACTIVE: '1' }
      every: 24h
    buildconf: { repo: 'git@github.com:rock-core/buildconf.git', branch: master }
";

fn refused(text: &str) -> ConfigError {
    let (_dir, result) = load_text(text);
    let errors = result.expect_err("the configuration should be refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().expect("one error")
}

#[test]
fn defaults_of_a_managed_workspace() {
    let (dir, result) = load_text(&format!("{HEAD}{FULL}"));
    let config = result.unwrap();
    assert_eq!(config.max_parallel_updates, 2);
    let ws = &config.workspaces[0];
    let manifest = ws.manifest.as_ref().unwrap();
    assert_eq!(manifest.format, ManifestFormat::Autoproj);
    let root = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        manifest.path,
        root.join("ws/.autoproj/installation-manifest")
    );
    let update = ws.update.as_ref().unwrap();
    assert_eq!(update.argv, ["autoproj", "update", "-k"]);
    assert_eq!(update.dir, root.join("ws"));
    assert_eq!(update.timeout, Duration::from_secs(30 * 60));
    assert_eq!(update.kill_grace, Duration::from_secs(30));
    assert_eq!(
        update.env,
        [("AUTOPROJ_NONINTERACTIVE".to_owned(), "1".to_owned())]
    );
    assert!(update.on_startup && update.on_config_change);
    assert_eq!(update.every, Some(Duration::from_secs(24 * 3600)));
    let buildconf = ws.buildconf.as_ref().unwrap();
    assert_eq!(buildconf.name, BUILDCONF_PACKAGE);
    assert_eq!(buildconf.kind, PackageKind::Buildconf);
    assert_eq!(buildconf.repo.to_string(), "github.com/rock-core/buildconf");
    assert_eq!(buildconf.forge, "github");
    match &config.ci["script"] {
        CiConfig::Command { argv, timeout } => {
            assert_eq!(argv, &["./start-build", "--fast"]);
            assert_eq!(*timeout, Duration::from_secs(120));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn update_triggers_and_limits() {
    let text = format!(
        "state_dir: s\nmax_parallel_updates: 5\n{}{}",
        &HEAD["state_dir: s\n".len()..],
        FULL.replace(
            "      every: 24h\n",
            "      when: [config_change]\n      timeout: 5m\n      kill_grace: 2s\n"
        )
    );
    let (_dir, result) = load_text(&text);
    let config = result.unwrap();
    assert_eq!(config.max_parallel_updates, 5);
    let update = config.workspaces[0].update.as_ref().unwrap();
    assert!(!update.on_startup && update.on_config_change);
    assert_eq!(
        (update.timeout, update.kill_grace, update.every),
        (Duration::from_secs(300), Duration::from_secs(2), None)
    );
}

#[test]
fn located_errors_of_managed_workspaces() {
    let e = refused(&format!(
        "{HEAD}{}",
        FULL.replace(
            "      path: ws/.autoproj/installation-manifest\n",
            "      format: cmake\n      path: x\n"
        )
    ));
    assert_eq!((e.line, e.column), (12, 15), "{e}");
    assert!(e.message.contains("unknown manifest format `cmake`"), "{e}");

    let e = refused(&format!(
        "{HEAD}{}",
        FULL.replace(
            "    manifest:\n      path: ws/.autoproj/installation-manifest\n",
            ""
        )
    ));
    assert_eq!((e.line, e.column), (12, 7), "{e}");
    assert!(
        e.message.contains("has an `update` but no `manifest`"),
        "{e}"
    );

    let e = refused(&format!(
        "{HEAD}{}",
        FULL.replace("      every: 24h\n", "      when: [startup, nightly]\n")
    ));
    assert_eq!((e.line, e.column), (17, 23), "{e}");
    assert!(
        e.message.contains("unknown update trigger `nightly`"),
        "{e}"
    );

    let e = refused(&format!("{HEAD}{}", FULL.replace("      dir: ws\n", "")));
    assert!(e.message.contains("needs `dir`"), "{e}");

    let e = refused(&format!(
        "{HEAD}{}",
        FULL.replace("argv: [autoproj, update, -k]", "argv: []")
    ));
    assert_eq!((e.line, e.column), (14, 13), "{e}");

    let e = refused(&format!(
        "{HEAD}{}",
        FULL.replace("      every: 24h\n", "      timeout: 0s\n")
    ));
    assert!(e.message.contains("more than 0s"), "{e}");

    let e = refused(&format!(
        "{HEAD}{}",
        FULL.replace(
            "git@github.com:rock-core/buildconf.git",
            "https://gitlab.com/x/y"
        )
    ));
    assert!(
        e.message
            .contains("no forge is configured for host `gitlab.com`"),
        "{e}"
    );

    let e = refused(
        &format!("{HEAD}{}", FULL)
            .replace("state_dir: s\n", "state_dir: s\nmax_parallel_updates: 0\n"),
    );
    assert!(
        e.message
            .contains("`max_parallel_updates` must be from 1 to 256, not 0"),
        "{e}"
    );

    let e = refused(&HEAD.replace(
        "    argv: [./start-build, --fast]\n",
        "    argv: [./start-build, --fast]\n    url: http://x/\n",
    ));
    assert!(
        e.message
            .contains("`url` does not apply to a `command` target"),
        "{e}"
    );
}

#[test]
fn secret_variables_are_collected_for_removal_from_children() {
    let text = HEAD.replace(
        "  github: { kind: github, host: github.com }",
        "  github: { kind: github, host: github.com, token_env: PATH }",
    );
    let (_dir, result) = load_text(&text);
    assert_eq!(result.unwrap().secret_env_vars, ["PATH"]);
}
