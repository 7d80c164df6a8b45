//! Validation of the `ci` entries: one struct holding every kind's keys comes in
//! (serde cannot keep locations through tagged enums), one [`CiConfig`] variant goes
//! out, and a key that belongs to another kind is a located error.

use std::collections::BTreeMap;

use serde_saphyr::{Location, Spanned};

use super::super::raw::{RawCi, q};
use super::super::{CiConfig, ForgeConfig, ForgeKind};
use super::{Checked, Checker, Reported, env_or_file, inline_secret_message};

const CI_KINDS: &str = "buildbot, webhook, gitlab_pipeline, command";
const DEFAULT_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Buildbot,
    Webhook,
    GitLabPipeline,
    Command,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Buildbot => "buildbot",
            Kind::Webhook => "webhook",
            Kind::GitLabPipeline => "gitlab_pipeline",
            Kind::Command => "command",
        }
    }

    /// The optional keys of this kind (besides `kind`).
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Buildbot => &["url", "basic_auth"],
            Kind::Webhook => &["url", "secret_env", "secret_file", "secret_credential"],
            Kind::GitLabPipeline => &[
                "forge",
                "project",
                "ref",
                "token_env",
                "token_file",
                "token_credential",
            ],
            Kind::Command => &["argv", "timeout"],
        }
    }
}

fn at<T>(value: &Option<Spanned<T>>) -> Option<Location> {
    value.as_ref().map(|v| v.referenced)
}

impl Checker<'_> {
    /// `forges` holds the forges that validated; `forge_names` every forge named in
    /// the file (so that a broken forge is not reported twice).
    pub(super) fn ci(
        &mut self,
        name: &Spanned<String>,
        entry: &Spanned<RawCi>,
        forges: &BTreeMap<String, ForgeConfig>,
        forge_names: &[&str],
    ) -> Checked<CiConfig> {
        let raw = &entry.value;
        let target = q(&name.value);
        let kind = match &raw.kind {
            None => Err(self.error(
                name.referenced,
                format!("CI target {target} needs `kind` (this version supports: {CI_KINDS})"),
            )),
            Some(k) => match k.value.as_str() {
                "buildbot" => Ok(Kind::Buildbot),
                "webhook" => Ok(Kind::Webhook),
                "gitlab_pipeline" => Ok(Kind::GitLabPipeline),
                "command" => Ok(Kind::Command),
                _ => Err(self.error(
                    k.referenced,
                    format!(
                        "unknown CI target kind {}; this version supports: {CI_KINDS}",
                        q(&k.value)
                    ),
                )),
            },
        };
        let use_instead = match kind {
            Ok(Kind::Buildbot) => format!("`basic_auth` with {}", env_or_file("password")),
            Ok(Kind::GitLabPipeline) => env_or_file("token"),
            Ok(Kind::Webhook | Kind::Command) | Err(_) => env_or_file("secret"),
        };
        let inline = self.refuse_inline(raw.inline_secrets(), &use_instead);
        let results_inline = match &raw.results_secret {
            Some(value) => Err(self.error(
                value.referenced,
                inline_secret_message("results_secret", &env_or_file("results_secret")),
            )),
            None => Ok(()),
        };
        let inline = inline.and(results_inline);
        let kind = kind?;

        let mut foreign = Ok(());
        let present = [
            ("url", at(&raw.url)),
            ("basic_auth", at(&raw.basic_auth)),
            ("secret_env", at(&raw.secret_env)),
            ("secret_file", at(&raw.secret_file)),
            ("secret_credential", at(&raw.secret_credential)),
            ("forge", at(&raw.forge)),
            ("project", at(&raw.project)),
            ("ref", at(&raw.git_ref)),
            ("token_env", at(&raw.token_env)),
            ("token_file", at(&raw.token_file)),
            ("token_credential", at(&raw.token_credential)),
            ("argv", at(&raw.argv)),
            ("timeout", at(&raw.timeout)),
        ];
        for (key, location) in present {
            if let Some(location) = location
                && !kind.keys().contains(&key)
            {
                let msg = format!("`{key}` does not apply to a `{}` target", kind.name());
                foreign = Err(self.error(location, msg));
            }
        }

        let result = match kind {
            Kind::Buildbot => {
                let url = self.ci_url(name, raw, &use_instead);
                let basic_auth = match &raw.basic_auth {
                    None => Ok(None),
                    Some(auth) => self.basic_auth(auth).map(Some),
                };
                basic_auth.and_then(|basic_auth| {
                    Ok(CiConfig::Buildbot {
                        url: url?,
                        basic_auth,
                    })
                })
            }
            Kind::Webhook => {
                let url = self.ci_url(name, raw, &use_instead);
                let (env, file) = (raw.secret_env.as_ref(), raw.secret_file.as_ref());
                let credential = raw.secret_credential.as_ref();
                let secret = match self.secret("secret", env, file, credential) {
                    Ok(Some(secret)) => Ok(secret),
                    // An inline secret has been refused with a message saying what to write.
                    Ok(None) if inline.is_err() => Err(Reported),
                    Ok(None) => {
                        let msg = format!(
                            "CI target {target} of kind `webhook` needs `secret_env`, `secret_file` or \
                             `secret_credential` (the key its deliveries are signed with)"
                        );
                        Err(self.error(name.referenced, msg))
                    }
                    Err(Reported) => Err(Reported),
                };
                secret.and_then(|secret| Ok(CiConfig::Webhook { url: url?, secret }))
            }
            Kind::GitLabPipeline => self.gitlab_pipeline(name, raw, forges, forge_names, &inline),
            Kind::Command => {
                let argv = match &raw.argv {
                    None => Err(self.error(
                        name.referenced,
                        format!("CI target {target} of kind `command` needs `argv`"),
                    )),
                    Some(a) if a.value.first().is_none_or(|p| p.is_empty()) => {
                        Err(self.error(a.referenced, "`argv` needs at least the program"))
                    }
                    Some(a) => Ok(a.value.clone()),
                };
                let timeout = match &raw.timeout {
                    None => Ok(DEFAULT_COMMAND_TIMEOUT),
                    Some(t) => self.duration(t),
                };
                argv.and_then(|argv| {
                    Ok(CiConfig::Command {
                        argv,
                        timeout: timeout?,
                    })
                })
            }
        };
        inline.and(foreign).and(result)
    }

    /// The secret a CI target's results are authenticated with (`results_secret_env`
    /// or `results_secret_file`, any kind), if it has one.
    pub(super) fn results_secret(
        &mut self,
        raw: &RawCi,
    ) -> Checked<Option<forgewatch_adapters::Secret>> {
        self.secret(
            "results_secret",
            raw.results_secret_env.as_ref(),
            raw.results_secret_file.as_ref(),
            raw.results_secret_credential.as_ref(),
        )
    }

    fn ci_url(
        &mut self,
        name: &Spanned<String>,
        raw: &RawCi,
        use_instead: &str,
    ) -> Checked<String> {
        match &raw.url {
            None => Err(self.error(
                name.referenced,
                format!("CI target {} needs `url`", q(&name.value)),
            )),
            Some(url) => self.url(url, "url", use_instead).map(|_| url.value.clone()),
        }
    }

    fn gitlab_pipeline(
        &mut self,
        name: &Spanned<String>,
        raw: &RawCi,
        forges: &BTreeMap<String, ForgeConfig>,
        forge_names: &[&str],
        inline: &Checked<()>,
    ) -> Checked<CiConfig> {
        let target = q(&name.value);
        let api_url = match &raw.forge {
            None => Err(self.error(
                name.referenced,
                format!("CI target {target} of kind `gitlab_pipeline` needs `forge` (a forge of kind `gitlab`)"),
            )),
            Some(f) => match forges.get(&f.value) {
                Some(forge) if forge.kind == ForgeKind::GitLab => Ok(forge.api_url.clone()),
                Some(_) => Err(self.error(
                    f.referenced,
                    format!("forge {} is not of kind `gitlab`", q(&f.value)),
                )),
                // That forge is broken: its own errors are reported already.
                None if forge_names.contains(&f.value.as_str()) => Err(Reported),
                None => {
                    let known: Vec<String> = forge_names.iter().map(|n| q(n)).collect();
                    let msg = format!(
                        "no forge named {} (configured: {})",
                        q(&f.value),
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    );
                    Err(self.error(f.referenced, msg))
                }
            },
        };
        let mut required = |value: &Option<Spanned<String>>, key: &str, what: &str| match value {
            Some(v) if !v.value.trim().is_empty() => Ok(v.value.trim().to_owned()),
            Some(v) => Err(self.error(v.referenced, format!("`{key}` is empty"))),
            None => Err(self.error(
                name.referenced,
                format!("CI target {target} of kind `gitlab_pipeline` needs `{key}` ({what})"),
            )),
        };
        let project = required(&raw.project, "project", "the project's path or numeric id");
        let git_ref = required(
            &raw.git_ref,
            "ref",
            "the branch or tag the pipeline runs on",
        );
        let token = match self.secret(
            "token",
            raw.token_env.as_ref(),
            raw.token_file.as_ref(),
            raw.token_credential.as_ref(),
        ) {
            Ok(Some(token)) => Ok(token),
            Ok(None) if inline.is_err() => Err(Reported),
            Ok(None) => Err(self.error(
                name.referenced,
                format!(
                    "CI target {target} of kind `gitlab_pipeline` needs `token_env`, `token_file` or \
                     `token_credential` (a pipeline trigger token)"
                ),
            )),
            Err(Reported) => Err(Reported),
        };
        Ok(CiConfig::GitLabPipeline {
            api_url: api_url?,
            project: project?,
            git_ref: git_ref?,
            token: token?,
        })
    }
}
