//! Unit tests of what the integration tests cannot reach: secrets from environment
//! variables, through [`load_with_env`] (the process environment is not modified:
//! `set_var` is unsafe and the workspace forbids unsafe code).

use super::*;
use crate::config::CiConfig;

const HEAD: &str = "state_dir: /tmp/forgewatch-test\n";

fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    load_with_env(text, Path::new("/etc/fw/config.yml"), &env_of(vars))
}

fn single_error(text: &str, vars: &[(&str, &str)]) -> (u32, u32, String) {
    let errors = load(text, vars)
        .expect_err("the configuration should be refused")
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    (e.line, e.column, e.message.clone())
}

const FORGE_ENV: &str =
    "forges:\n  gh:\n    kind: github\n    host: github.com\n    token_env: FW_TEST_TOKEN\n";

#[test]
fn token_from_env_loses_one_trailing_newline() {
    for (value, expected) in [
        ("ghp_abc", "ghp_abc"),
        ("ghp_abc\n", "ghp_abc"),
        ("ghp_abc\r\n", "ghp_abc"),
        ("ghp_abc\n\n", "ghp_abc\n"),
    ] {
        let config = load(&format!("{HEAD}{FORGE_ENV}"), &[("FW_TEST_TOKEN", value)])
            .expect("valid configuration");
        let token = config.forges["gh"].token.as_ref().expect("a token");
        assert_eq!(token.expose(), expected, "{value:?}");
    }
}

#[test]
fn missing_or_empty_env_secret_is_located() {
    let text = format!("{HEAD}{FORGE_ENV}");
    let (line, column, message) = single_error(&text, &[]);
    assert_eq!((line, column), (6, 16));
    assert_eq!(message, "environment variable `FW_TEST_TOKEN` is not set");
    for empty in ["", "\n", "\r\n"] {
        let (line, column, message) = single_error(&text, &[("FW_TEST_TOKEN", empty)]);
        assert_eq!((line, column), (6, 16));
        assert_eq!(message, "environment variable `FW_TEST_TOKEN` is empty");
    }
}

#[test]
fn a_pasted_secret_in_an_env_key_is_not_echoed() {
    let text = format!("{HEAD}{}", FORGE_ENV.replace("FW_TEST_TOKEN", "ghp_s3cr3t"));
    let (line, column, message) = single_error(&text, &[]);
    assert_eq!((line, column), (6, 16));
    assert!(!message.contains("s3cr3t"), "{message}");
    assert!(
        message.contains("named by `token_env` is not set"),
        "{message}"
    );
}

#[test]
fn webhook_and_basic_auth_secrets_from_env() {
    let text = format!(
        "{HEAD}ci:\n  hook:\n    kind: webhook\n    url: https://ci.example.org/fw\n    secret_env: FW_HOOK\n  bb:\n    kind: buildbot\n    url: http://127.0.0.1:8010/change_hook/base\n    basic_auth: {{ user: fw, password_env: FW_BB }}\n"
    );
    let config = load(&text, &[("FW_HOOK", "hook-key\n"), ("FW_BB", "pw")]).expect("valid");
    match &config.ci["hook"] {
        CiConfig::Webhook { url, secret } => {
            assert_eq!(url, "https://ci.example.org/fw");
            assert_eq!(secret.expose(), "hook-key");
        }
        other => panic!("expected a webhook target, got {other:?}"),
    }
    match &config.ci["bb"] {
        CiConfig::Buildbot {
            basic_auth: Some(auth),
            ..
        } => {
            assert_eq!(auth.user, "fw");
            assert_eq!(auth.password.expose(), "pw");
        }
        other => panic!("expected a buildbot target with basic auth, got {other:?}"),
    }
    let errors = load(&text, &[]).expect_err("variables unset").0;
    let located: Vec<_> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(located, [(6, 17), (10, 43)], "{errors:?}");
}
