//! Validation of the `forges` entries: kind, host (one forge per host), API root,
//! token, and the limits of the requests sent to it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::super::raw::{RawForge, line_col, q};
use super::super::{ForgeConfig, ForgeKind};
use super::{Checked, Checker, ForgeHost, Reported, env_or_file};

const DEFAULT_MAX_CONCURRENCY: usize = 8;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SECONDARY_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_RESERVE: f64 = 0.10;
/// A thousand requests a second: any cap meant as one is below it.
const MAX_REQUESTS_PER_MINUTE: u32 = 60_000;
/// GitHub's limits on content-creating requests (`forge-apis.md` §7.2).
const DEFAULT_STATUS_WRITES_PER_MINUTE: u32 = 80;
const DEFAULT_STATUS_WRITES_PER_HOUR: u32 = 500;
const MAX_STATUS_WRITES_PER_HOUR: u32 = 1_000_000;
const FORGE_KINDS: &str = "github, gitlab";

impl Checker<'_> {
    pub(super) fn forge(
        &mut self,
        name: &Spanned<String>,
        entry: &Spanned<RawForge>,
        hosts: &mut BTreeMap<String, ForgeHost>,
    ) -> Checked<ForgeConfig> {
        let raw = &entry.value;
        let inline = self.refuse_inline(raw.inline_secrets(), &env_or_file("token"));
        let forge = q(&name.value);
        let kind = match &raw.kind {
            None => Err(self.error(
                name.referenced,
                format!("forge {forge} needs `kind` (this version supports: {FORGE_KINDS})"),
            )),
            Some(k) if k.value == "github" => Ok(ForgeKind::GitHub),
            Some(k) if k.value == "gitlab" => Ok(ForgeKind::GitLab),
            Some(k) => Err(self.error(
                k.referenced,
                format!(
                    "unknown forge kind {}; this version supports: {FORGE_KINDS}",
                    q(&k.value)
                ),
            )),
        };
        let host = match &raw.host {
            None => Err(self.error(
                name.referenced,
                format!("forge {forge} needs `host` (e.g. `github.com`)"),
            )),
            Some(h) => self.host(h).and_then(|host| match hosts.get(&host) {
                Some(first) => {
                    let msg = format!(
                        "forge {forge} has the same host {} as forge {} (line {}): \
                         a host belongs to one forge",
                        q(&host),
                        q(&first.forge),
                        first.line
                    );
                    Err(self.error(h.referenced, msg))
                }
                None => {
                    let line = line_col(h.referenced).0;
                    hosts.insert(
                        host.clone(),
                        ForgeHost {
                            forge: name.value.clone(),
                            line,
                        },
                    );
                    Ok(host)
                }
            }),
        };
        let api_url = match (&raw.api_url, &host) {
            (Some(url), _) => self
                .url(url, "api_url", &env_or_file("token"))
                .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            (None, Ok(host)) => match kind {
                Ok(ForgeKind::GitLab) => Ok(format!("https://{host}/api/v4")),
                _ if host == "github.com" => Ok("https://api.github.com".to_owned()),
                _ => Ok(format!("https://{host}/api/v3")),
            },
            (None, Err(Reported)) => Err(Reported),
        };
        let token = self.secret(
            "token",
            raw.token_env.as_ref(),
            raw.token_file.as_ref(),
            raw.token_credential.as_ref(),
        );
        let max_concurrency = self.count(
            "max_concurrency",
            raw.max_concurrency.as_ref(),
            DEFAULT_MAX_CONCURRENCY,
        );
        let connect_timeout =
            self.positive_duration(raw.connect_timeout.as_ref(), DEFAULT_CONNECT_TIMEOUT);
        let request_timeout =
            self.positive_duration(raw.request_timeout.as_ref(), DEFAULT_REQUEST_TIMEOUT);
        let secondary_limit_wait =
            self.positive_duration(raw.secondary_limit_wait.as_ref(), DEFAULT_SECONDARY_WAIT);
        let rate_limit_reserve = match &raw.rate_limit_reserve {
            None => Ok(DEFAULT_RESERVE),
            Some(p) => self.percent(p),
        };
        let requests_per_minute = match &raw.requests_per_minute {
            None => Ok(None),
            Some(n) => self
                .one_to("requests_per_minute", n, MAX_REQUESTS_PER_MINUTE)
                .map(Some),
        };
        let status_writes_per_minute = match &raw.status_writes_per_minute {
            None => Ok(DEFAULT_STATUS_WRITES_PER_MINUTE),
            Some(n) => self.one_to("status_writes_per_minute", n, MAX_REQUESTS_PER_MINUTE),
        };
        let status_writes_per_hour = match &raw.status_writes_per_hour {
            None => Ok(DEFAULT_STATUS_WRITES_PER_HOUR),
            Some(n) => self.one_to("status_writes_per_hour", n, MAX_STATUS_WRITES_PER_HOUR),
        };
        let webhook_secret = self.secret(
            "webhook_secret",
            raw.webhook_secret_env.as_ref(),
            raw.webhook_secret_file.as_ref(),
            raw.webhook_secret_credential.as_ref(),
        );
        inline?;
        Ok(ForgeConfig {
            name: name.value.clone(),
            kind: kind?,
            host: host?,
            api_url: api_url?,
            token: token?,
            max_concurrency: max_concurrency?,
            connect_timeout: connect_timeout?,
            request_timeout: request_timeout?,
            rate_limit_reserve: rate_limit_reserve?,
            secondary_limit_wait: secondary_limit_wait?,
            requests_per_minute: requests_per_minute?,
            status_writes_per_minute: status_writes_per_minute?,
            status_writes_per_hour: status_writes_per_hour?,
            webhook_secret: webhook_secret?,
        })
    }
}
