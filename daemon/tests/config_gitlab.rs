//! Configuration of GitLab forges and `gitlab_pipeline` CI targets: defaults,
//! resolution of the pipeline's forge, and located errors.

use forgewatch::config::{CiConfig, Config, ConfigError, ForgeKind, load};

/// Writes `text` as `config.yml` beside a `trigger-token` file and loads it.
fn load_text(text: &str) -> Result<Config, Vec<ConfigError>> {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("trigger-token"), "glptt-abc\n").expect("token file");
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).expect("config file");
    load(&path).map_err(|e| e.0)
}

const FORGES: &str = "state_dir: s
forges:
  lab:
    kind: gitlab
    host: GitLab.Example.org
    token_file: trigger-token
  github:
    kind: github
    host: github.com
";

const PIPELINE: &str = "ci:
  pipeline:
    kind: gitlab_pipeline
    forge: lab
    project: infra/ci
    ref: main
    token_file: trigger-token
workspaces:
  - name: mixed
    ci: pipeline
    packages:
      - { name: drivers/lidar_x, repo: 'git@gitlab.example.org:Sensors/Drivers/lidar-x.git', branch: develop }
      - { name: base/types, repo: https://github.com/rock-core/base-types, branch: master }
";

fn refused(text: &str) -> ConfigError {
    let errors = load_text(text).expect_err("the configuration should be refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.into_iter().next().expect("one error")
}

#[test]
fn a_mixed_workspace_with_a_pipeline_target() {
    let config = load_text(&format!("{FORGES}{PIPELINE}")).unwrap();
    let lab = &config.forges["lab"];
    assert_eq!(lab.kind, ForgeKind::GitLab);
    assert_eq!(lab.host, "gitlab.example.org");
    assert_eq!(lab.api_url, "https://gitlab.example.org/api/v4");
    assert_eq!(lab.token.as_ref().unwrap().expose(), "glptt-abc");
    let ws = &config.workspaces[0];
    assert_eq!(ws.packages[0].forge, "lab");
    assert_eq!(ws.packages[0].repo.path(), "sensors/drivers/lidar-x");
    assert_eq!(ws.packages[1].forge, "github");
    match &config.ci["pipeline"] {
        CiConfig::GitLabPipeline {
            api_url,
            project,
            git_ref,
            token,
        } => {
            assert_eq!(api_url, "https://gitlab.example.org/api/v4");
            assert_eq!(project, "infra/ci");
            assert_eq!(git_ref, "main");
            assert_eq!(token.expose(), "glptt-abc");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_pipeline_forge_must_be_a_configured_gitlab_forge() {
    let e = refused(&format!(
        "{FORGES}{}",
        PIPELINE.replace("forge: lab", "forge: github")
    ));
    assert_eq!((e.line, e.column), (13, 12), "{e}");
    assert!(
        e.message.contains("forge `github` is not of kind `gitlab`"),
        "{e}"
    );

    let e = refused(&format!(
        "{FORGES}{}",
        PIPELINE.replace("forge: lab", "forge: lob")
    ));
    assert_eq!((e.line, e.column), (13, 12), "{e}");
    assert!(
        e.message
            .contains("no forge named `lob` (configured: `lab`, `github`)"),
        "{e}"
    );
}

#[test]
fn pipeline_keys_are_required_and_belong_to_their_kind() {
    let e = refused(&format!(
        "{FORGES}{}",
        PIPELINE.replace("    project: infra/ci\n", "")
    ));
    assert_eq!((e.line, e.column), (11, 3), "{e}");
    assert!(e.message.contains("needs `project`"), "{e}");

    let e = refused(&format!(
        "{FORGES}{}",
        PIPELINE.replace("    token_file: trigger-token\n", "")
    ));
    assert!(
        e.message.contains(
            "needs `token_env`, `token_file` or `token_credential` (a pipeline trigger token)"
        ),
        "{e}"
    );

    let e = refused(&format!(
        "{FORGES}{}",
        PIPELINE.replace("    ref: main\n", "    ref: main\n    url: http://x/\n")
    ));
    assert_eq!((e.line, e.column), (16, 10), "{e}");
    assert!(
        e.message
            .contains("`url` does not apply to a `gitlab_pipeline` target"),
        "{e}"
    );

    let e = refused(&format!(
        "{FORGES}{}",
        PIPELINE.replace("    token_file: trigger-token\n", "    token: glptt-zzz\n")
    ));
    assert!(
        e.message.contains("`token` must not be written inline"),
        "{e}"
    );
    assert!(!e.message.contains("glptt-zzz"), "{e}");
}

#[test]
fn a_self_hosted_gitlab_api_url_can_be_given() {
    let text = FORGES.replace(
        "    token_file: trigger-token\n",
        "    api_url: https://code.example.org/gitlab/api/v4/\n",
    );
    let config = load_text(&format!("{text}{PIPELINE}")).unwrap();
    assert_eq!(
        config.forges["lab"].api_url,
        "https://code.example.org/gitlab/api/v4"
    );
    assert!(config.forges["lab"].token.is_none());
}
