//! Checks of single values (paths, durations, host and workspace names, URLs,
//! secrets and their `basic_auth` holder), apart from the structure walk of the parent
//! module so that each file stays readable.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use forgewatch_adapters::{RepoId, Secret};
use serde_saphyr::Spanned;

use super::super::file::{MAX_SECRET_BYTES, read_capped};
use super::super::raw::{InlineSecrets, RawBasicAuth, line_col, q};
use super::super::{BasicAuth, HttpLimits, parse_duration};
use super::{
    Checked, Checker, ForgeHost, MAX_CONNECTIONS, MAX_COUNT, Reported, env_or_file,
    inline_secret_message,
};

impl Checker<'_> {
    /// A path of the file, resolved against the file's directory, without `.` parts.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        };
        joined
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    }

    pub(super) fn duration(&mut self, s: &Spanned<String>) -> Checked<Duration> {
        parse_duration(&s.value).map_err(|reason| {
            let msg = format!("invalid duration {}: {reason}", q(&s.value));
            self.error(s.referenced, msg)
        })
    }

    /// Records one error per inline secret key present.
    pub(super) fn refuse_inline(
        &mut self,
        keys: InlineSecrets<'_>,
        use_instead: &str,
    ) -> Checked<()> {
        let mut result = Ok(());
        for (key, value) in keys {
            if let Some(value) = value {
                result = Err(self.error(value.referenced, inline_secret_message(key, use_instead)));
            }
        }
        result
    }

    /// A forge's `host`, normalised like the host of a [`RepoId`](forgewatch_adapters::RepoId).
    pub(super) fn host(&mut self, h: &Spanned<String>) -> Checked<String> {
        let lower = h.value.to_ascii_lowercase();
        let host = lower.strip_prefix("www.").unwrap_or(&lower);
        if h.value.contains("://") {
            let msg = format!(
                "`host` is a host name such as `github.com`, not a URL like {}",
                q(&h.value)
            );
            return Err(self.error(h.referenced, msg));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty()
            || !host.chars().all(valid)
            || host.starts_with('.')
            || host.ends_with('.')
        {
            let msg = format!(
                "{} is not a host name (expected e.g. `github.com`)",
                q(&h.value)
            );
            return Err(self.error(h.referenced, msg));
        }
        Ok(host.to_owned())
    }

    /// An http(s) URL; one with an embedded password is refused without echoing it.
    pub(super) fn url(
        &mut self,
        s: &Spanned<String>,
        key: &str,
        use_instead: &str,
    ) -> Checked<url::Url> {
        let message = match url::Url::parse(&s.value) {
            Ok(url) if url.password().is_some() => format!(
                "`{key}` must not contain a password (secrets are never written inline): use {use_instead}"
            ),
            Ok(url) if matches!(url.scheme(), "http" | "https") => return Ok(url),
            Ok(url) => format!(
                "`{key}` must be an http:// or https:// URL, not a {} URL",
                q(url.scheme())
            ),
            Err(e) => format!("`{key}`: {} is not a valid URL ({e})", q(&s.value)),
        };
        Err(self.error(s.referenced, message))
    }

    /// The secret named by `{what}_env`, `{what}_file` or `{what}_credential`, if
    /// one is given. A credential is the file `NAME` of systemd's credentials
    /// directory (`$CREDENTIALS_DIRECTORY`, set for a unit with `LoadCredential=`).
    pub(super) fn secret(
        &mut self,
        what: &str,
        env: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
        credential: Option<&Spanned<String>>,
    ) -> Checked<Option<Secret>> {
        let given: Vec<&Spanned<String>> = [env, file, credential].into_iter().flatten().collect();
        if let [_, second, ..] = given[..] {
            let msg = format!(
                "give one of `{what}_env`, `{what}_file` and `{what}_credential`, not more"
            );
            return Err(self.error(second.referenced, msg));
        }
        let (value, at, source) = if let Some(var) = env {
            let name = &var.value;
            if name.is_empty() || name.contains(['=', '\0']) {
                let msg = format!("`{what}_env` must be the name of an environment variable");
                return Err(self.error(var.referenced, msg));
            }
            // A value that does not look like a variable name may be a pasted secret.
            let conventional = name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            let source = if conventional {
                format!("environment variable {}", q(name))
            } else {
                format!("the environment variable named by `{what}_env`")
            };
            let Some(value) = (self.env)(name) else {
                return Err(self.error(var.referenced, format!("{source} is not set")));
            };
            if !self.secret_env_vars.contains(name) {
                self.secret_env_vars.push(name.clone());
            }
            (value, var.referenced, source)
        } else if let Some(name) = credential {
            let (path, source) = self.credential_path(what, name)?;
            (
                self.read_secret(&path, &source, name)?,
                name.referenced,
                source,
            )
        } else if let Some(file) = file {
            let path = self.resolve(&file.value);
            // A value without a slash may be a pasted secret rather than a path.
            let source = if file.value.contains('/') {
                format!("{what} file {}", q(&path.display().to_string()))
            } else {
                format!("the file named by `{what}_file`")
            };
            (
                self.read_secret(&path, &source, file)?,
                file.referenced,
                source,
            )
        } else {
            return Ok(None);
        };
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(&value);
        if value.is_empty() {
            return Err(self.error(at, format!("{source} is empty")));
        }
        Ok(Some(Secret::new(value)))
    }

    /// The file of systemd credential `name` (`{what}_credential`), and how
    /// messages name it.
    fn credential_path(
        &mut self,
        what: &str,
        name: &Spanned<String>,
    ) -> Checked<(std::path::PathBuf, String)> {
        let n = &name.value;
        if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\0']) {
            let msg = format!(
                "`{what}_credential` must be the name of a credential (`LoadCredential=NAME:…`), not a path"
            );
            return Err(self.error(name.referenced, msg));
        }
        let Some(dir) = (self.env)("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
            let msg = format!(
                "`{what}_credential: {n}` needs systemd's credentials directory: run under a unit with `LoadCredential={n}:…` ($CREDENTIALS_DIRECTORY), or check with `forgewatch check --credentials-dir DIR`"
            );
            return Err(self.error(name.referenced, msg));
        };
        let path = std::path::Path::new(&dir).join(n);
        let source = format!("credential {} ({})", q(n), q(&path.display().to_string()));
        Ok((path, source))
    }

    /// The UTF-8 text of the secret file at `path` (`source` in messages, errors
    /// located at `key`).
    fn read_secret(
        &mut self,
        path: &std::path::Path,
        source: &str,
        key: &Spanned<String>,
    ) -> Checked<String> {
        let bytes = match read_capped(path, MAX_SECRET_BYTES) {
            Ok(bytes) => bytes,
            Err(e) => {
                let msg = format!("cannot read {source}: {e}");
                return Err(self.error(key.referenced, msg));
            }
        };
        String::from_utf8(bytes).map_err(|_| {
            let msg = format!("{source} is not valid UTF-8");
            self.error(key.referenced, msg)
        })
    }

    pub(super) fn basic_auth(&mut self, auth: &Spanned<RawBasicAuth>) -> Checked<BasicAuth> {
        let raw = &auth.value;
        let inline = self.refuse_inline(raw.inline_secrets(), &env_or_file("password"));
        let user = match &raw.user {
            None => Err(self.error(auth.referenced, "`basic_auth` needs `user`")),
            Some(u) if u.value.is_empty() => Err(self.error(u.referenced, "`user` is empty")),
            Some(u) => Ok(u.value.clone()),
        };
        let password = match self.secret(
            "password",
            raw.password_env.as_ref(),
            raw.password_file.as_ref(),
            raw.password_credential.as_ref(),
        ) {
            Ok(Some(password)) => Ok(password),
            Ok(None) if inline.is_err() => Err(Reported),
            Ok(None) => Err(self.error(
                auth.referenced,
                "`basic_auth` needs `password_env`, `password_file` or `password_credential`",
            )),
            Err(Reported) => Err(Reported),
        };
        inline?;
        Ok(BasicAuth {
            user: user?,
            password: password?,
        })
    }

    /// A workspace name: usable in build keys (`NAME/mainline`) and unique.
    pub(super) fn workspace_name(
        &mut self,
        n: &Spanned<String>,
        names: &mut BTreeMap<String, u32>,
    ) -> Checked<String> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if n.value.is_empty() || !n.value.chars().all(valid) {
            let msg = format!(
                "workspace name {} may only contain letters, digits, `_`, `-` and `.` (it is part of build keys)",
                q(&n.value)
            );
            return Err(self.error(n.referenced, msg));
        }
        if let Some(first) = names.get(&n.value) {
            let msg = format!(
                "workspace {} is defined twice (first at line {first})",
                q(&n.value)
            );
            return Err(self.error(n.referenced, msg));
        }
        names.insert(n.value.clone(), line_col(n.referenced).0);
        Ok(n.value.clone())
    }

    /// A repository URL and the name of the forge that owns its host.
    pub(super) fn repo_on_forge(
        &mut self,
        r: &Spanned<String>,
        hosts: &BTreeMap<String, ForgeHost>,
    ) -> Checked<(RepoId, String)> {
        match RepoId::parse(&r.value) {
            Err(e) => Err(self.error(r.referenced, e.to_string())),
            Ok(repo) => match hosts.get(repo.host()) {
                Some(forge) => Ok((repo, forge.forge.clone())),
                None => {
                    let configured: Vec<&str> = hosts.keys().map(String::as_str).collect();
                    let configured = if configured.is_empty() {
                        "none".to_owned()
                    } else {
                        configured.join(", ")
                    };
                    let msg = format!(
                        "no forge is configured for host {} (configured: {configured})",
                        q(repo.host())
                    );
                    Err(self.error(r.referenced, msg))
                }
            },
        }
    }

    /// An optional duration that must be more than zero, or `default`.
    pub(super) fn positive_duration(
        &mut self,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Checked<Duration> {
        match value {
            None => Ok(default),
            Some(v) => self.duration(v).and_then(|d| {
                if d.is_zero() {
                    Err(self.error(v.referenced, "the duration must be more than 0s"))
                } else {
                    Ok(d)
                }
            }),
        }
    }

    /// A count of things at once (`max_concurrency`, `max_parallel_updates`): from 1 to
    /// [`MAX_COUNT`], so what `check` accepts `run` and a reload can build (a
    /// semaphore holds at most 2^61 − 1 permits).
    pub(super) fn count(
        &mut self,
        key: &str,
        value: Option<&Spanned<usize>>,
        default: usize,
    ) -> Checked<usize> {
        self.count_up_to(key, value, default, MAX_COUNT)
    }

    /// A count from 1 to `max`.
    pub(super) fn count_up_to(
        &mut self,
        key: &str,
        value: Option<&Spanned<usize>>,
        default: usize,
        max: usize,
    ) -> Checked<usize> {
        match value {
            None => Ok(default),
            Some(n) => self.one_to(key, n, max),
        }
    }

    /// `n` if it is from 1 to `max`.
    pub(super) fn one_to<T>(&mut self, key: &str, n: &Spanned<T>, max: T) -> Checked<T>
    where
        T: Copy + PartialOrd + From<u8> + std::fmt::Display,
    {
        if (T::from(1)..=max).contains(&n.value) {
            Ok(n.value)
        } else {
            let msg = format!("`{key}` must be from 1 to {max}, not {}", n.value);
            Err(self.error(n.referenced, msg))
        }
    }

    /// `10%` as 0.1; from 0% to 100%.
    pub(super) fn percent(&mut self, p: &Spanned<String>) -> Checked<f64> {
        let value = p
            .value
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|n| (0.0..=100.0).contains(n));
        match value {
            Some(n) => Ok(n / 100.0),
            None => Err(self.error(
                p.referenced,
                format!("expected a percentage from 0% to 100%, not {}", q(&p.value)),
            )),
        }
    }

    /// The `http` block; the listener defaults to 127.0.0.1:8471.
    pub(super) fn http(
        &mut self,
        raw: Option<&Spanned<super::super::raw::RawHttp>>,
    ) -> Checked<crate::config::HttpConfig> {
        let Some(raw) = raw else {
            return Ok(crate::config::HttpConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8471)),
                public_url: None,
                admin_token: None,
                limits: HttpLimits::default(),
            });
        };
        let h = &raw.value;
        let inline = match &h.admin_token {
            Some(t) => Err(self.error(
                t.referenced,
                inline_secret_message("admin_token", &env_or_file("admin_token")),
            )),
            None => Ok(()),
        };
        let listen = match &h.listen {
            None => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 8471))),
            Some(l) => l.value.parse::<std::net::SocketAddr>().map_err(|_| {
                self.error(
                    l.referenced,
                    format!(
                        "`listen` must be an address and port such as `127.0.0.1:8471`, not {}",
                        q(&l.value)
                    ),
                )
            }),
        };
        let public_url = h
            .public_url
            .as_ref()
            .map(|u| self.url(u, "public_url", "a URL without credentials"))
            .transpose();
        let admin_token = self.secret(
            "admin_token",
            h.admin_token_env.as_ref(),
            h.admin_token_file.as_ref(),
            h.admin_token_credential.as_ref(),
        );
        let defaults = HttpLimits::default();
        let header_timeout =
            self.positive_duration(h.header_timeout.as_ref(), defaults.header_timeout);
        let body_timeout = self.positive_duration(h.body_timeout.as_ref(), defaults.body_timeout);
        let max_connections = self.count_up_to(
            "max_connections",
            h.max_connections.as_ref(),
            defaults.max_connections,
            MAX_CONNECTIONS,
        );
        inline?;
        Ok(crate::config::HttpConfig {
            listen: listen?,
            public_url: public_url?,
            admin_token: admin_token?,
            limits: HttpLimits {
                header_timeout: header_timeout?,
                body_timeout: body_timeout?,
                max_connections: max_connections?,
            },
        })
    }
}
