//! The engine as the HTTP API sees it: a read-only view (the status snapshot, the
//! counters, the store's history and job logs) and what a request needs to be
//! authorised or a webhook to be verified. The loop publishes a new view with
//! every configuration; handlers never reach the engine's data.

use std::sync::Arc;

use axum::http::HeaderMap;
use forgewatch_adapters::RepoId;
use forgewatch_adapters::hooks::HookError;
use forgewatch_adapters::secret::Secret;

use crate::engine::clients::Clients;
use crate::engine::status::{ForgeStatus, Metrics, Shown, Snapshot};
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
    admin_token: Option<Secret>,
    hooks: Vec<HookForge>,
}

impl View {
    pub(crate) fn new(
        config: &crate::config::Config,
        shown: Shown,
        metrics: Arc<Metrics>,
        clients: Arc<Clients>,
        store: Store,
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
            admin_token: config.http.admin_token.clone(),
            hooks,
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

    /// The store, for the history and job logs the API serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
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
