//! The engine as the HTTP API sees it: a read-only view (the status snapshot, the
//! counters, the store's history and job logs) and what a request needs to be
//! authorised or a webhook to be verified. The loop publishes a new view with
//! every configuration; handlers never reach the engine's data.

use std::sync::Arc;

use axum::http::HeaderMap;
use forgewatch_adapters::RepoId;
use forgewatch_adapters::hooks::{HookError, WebhookReceiver};
use forgewatch_adapters::secret::Secret;

use crate::engine::clients::Clients;
use crate::engine::status::{ForgeStatus, Metrics, Shown, Snapshot};
use crate::engine::status_posts::StatusWake;
use crate::state::{StateError, Store};

/// A forge whose webhooks are accepted: its host and secret.
struct HookForge {
    name: String,
    host: String,
    secret: Secret,
}

pub struct View {
    shown: Shown,
    metrics: Arc<Metrics>,
    clients: Arc<Clients>,
    store: Store,
    status_wake: StatusWake,
    admin_token: Option<Secret>,
    poll_interval: std::time::Duration,
    hooks: Vec<HookForge>,
    /// Each CI target's results secret (bearer, basic-auth password or HMAC key).
    results_secrets: Vec<(String, Secret)>,
    /// Each webhook target's signing secret (an HMAC key of results too).
    webhook_secrets: Vec<(String, Secret)>,
}

/// How a request carrying a result may be authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ResultAuth {
    /// A bearer token, or the password of basic auth: what Buildbot's
    /// `HttpStatusPush` can send.
    Token,
    /// As [`ResultAuth::Token`], or `X-Forgewatch-Signature-256` over the body.
    TokenOrSignature,
}

impl View {
    pub(crate) fn new(
        config: &crate::config::Config,
        shown: Shown,
        metrics: Arc<Metrics>,
        clients: Arc<Clients>,
        store: Store,
        status_wake: StatusWake,
    ) -> View {
        let hooks = config
            .forges
            .iter()
            .filter_map(|(name, f)| {
                Some(HookForge {
                    name: name.clone(),
                    host: f.host.clone(),
                    secret: f.webhook_secret.clone()?,
                })
            })
            .collect();
        View {
            shown,
            metrics,
            clients,
            store,
            status_wake,
            admin_token: config.http.admin_token.clone(),
            poll_interval: config.poll_interval,
            hooks,
            results_secrets: config
                .results_secrets
                .iter()
                .map(|(name, secret)| (name.clone(), secret.clone()))
                .collect(),
            webhook_secrets: config
                .ci
                .iter()
                .filter_map(|(name, target)| match target {
                    crate::config::CiConfig::Webhook { secret, .. } => {
                        Some((name.clone(), secret.clone()))
                    }
                    _ => None,
                })
                .collect(),
        }
    }

    /// Reads the summary as it stands, under its lock (cheap however many builds):
    /// a [`Snapshot`] without its workspaces.
    pub fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        self.shown.read(f)
    }

    /// The whole snapshot, the workspaces rendered now, with each forge's pause as
    /// it stands now rather than at the end of the last cycle: a pause begins and
    /// ends between cycles, and the clients of a reload start from the pauses
    /// their predecessors saved.
    pub async fn snapshot(&self) -> Result<Snapshot, StateError> {
        let mut snapshot = self.shown.snapshot(&self.store).await?;
        snapshot.statuses = self.store.call(|b| b.status_summary()).await?;
        for (name, forge) in self.clients.forges() {
            let status = snapshot
                .forges
                .entry(name.clone())
                .or_insert_with(|| ForgeStatus {
                    host: forge.host().to_owned(),
                    ..ForgeStatus::default()
                });
            status.set_pause(forge.as_ref());
        }
        Ok(snapshot)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Each forge, and whether its rate limit pauses it now.
    pub fn forge_pauses(&self) -> Vec<(String, bool)> {
        let forges = self.clients.forges().iter();
        forges
            .map(|(name, f)| (name.clone(), f.pause().is_some()))
            .collect()
    }

    pub fn poll_interval(&self) -> std::time::Duration {
        self.poll_interval
    }

    /// The store, for the history and job logs the API serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// After a result made commit statuses due.
    pub fn wake_status_posts(&self) {
        self.status_wake.wake();
    }

    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// The CI target whose secret authenticates a result posted with `headers` and
    /// `body`, compared in constant time; `None`: refused.
    pub fn result_sender(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        auth: ResultAuth,
    ) -> Option<&str> {
        let token = presented_token(headers);
        let signature = headers
            .get("x-forgewatch-signature-256")
            .and_then(|v| v.to_str().ok());
        let same = |a: &str, b: &str| {
            use subtle::ConstantTimeEq;
            bool::from(a.as_bytes().ct_eq(b.as_bytes()))
        };
        let signed = |secret: &Secret| {
            auth == ResultAuth::TokenOrSignature
                && signature.is_some_and(|given| {
                    same(
                        &forgewatch_adapters::ci::webhook::signature_256(secret, body),
                        given,
                    )
                })
        };
        let by_results = self.results_secrets.iter().find(|(_, secret)| {
            token.as_deref().is_some_and(|t| same(t, secret.expose())) || signed(secret)
        });
        by_results
            .or_else(|| {
                self.webhook_secrets
                    .iter()
                    .find(|(_, secret)| signed(secret))
            })
            .map(|(name, _)| name.as_str())
    }

    /// Whether a forge's hook that carries a CI result is signed, as `receiver`
    /// signs, with a results secret or the webhook secret of a configured forge
    /// posting there.
    pub fn verifies_result_hook(
        &self,
        receiver: &dyn WebhookReceiver,
        headers: &HeaderMap,
        body: &[u8],
    ) -> bool {
        let forge_secrets = self.hooks.iter().filter_map(|hook| {
            let forge = self.clients.forge(&hook.name)?;
            (forge.webhooks().endpoint() == receiver.endpoint()).then_some(&hook.secret)
        });
        let results_secrets = self.results_secrets.iter().map(|(_, secret)| secret);
        let mut secrets = forge_secrets.chain(results_secrets);
        secrets.any(|secret| receiver.verify(headers, body, secret))
    }

    /// A webhook posted to `/hooks/{endpoint}`: tried with the secret of every
    /// configured forge whose hooks are posted there; the first that verifies it
    /// names the forge. `Err(Unsigned)` when none does; `Ok(None)` when the
    /// payload names no repository of that forge.
    pub fn receive_hook(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<RepoId>, HookError> {
        let received = self.hooks.iter().find_map(|hook| {
            let receiver = self.clients.forge(&hook.name)?.webhooks();
            if receiver.endpoint() != endpoint {
                return None;
            }
            match receiver.receive(headers, body, &hook.secret) {
                Err(HookError::Unsigned) => None,
                answer => Some((hook, answer)),
            }
        });
        let Some((hook, answer)) = received else {
            Metrics::add(&self.metrics.webhooks_refused, 1);
            return Err(HookError::Unsigned);
        };
        Metrics::add(&self.metrics.webhooks_accepted, 1);
        Ok(answer?.and_then(|path| RepoId::from_host_path(&hook.host, &path).ok()))
    }
}

/// The token of `Authorization: Bearer TOKEN`, or the password of `Authorization:
/// Basic base64(USER:PASSWORD)` (the user name is free).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    pair.split_once(':')
        .map(|(_, password)| password.to_owned())
}
