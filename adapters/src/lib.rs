//! Forge clients and CI targets behind traits.
//!
//! This crate talks to the outside world and knows nothing of forgewatch's
//! configuration file, its state database or its scheduling: the daemon hands it
//! plain values (URLs, secrets, a validator store) and gets plain values back.
//!
//! - [`repo_id`]: repository identity normalisation.
//! - [`secret`]: a string type that never prints its value.
//! - [`governor`]: rate-limit pauses, backoff and a requests-per-minute cap per forge.
//! - [`http`]: conditional GETs (ETag / Last-Modified), `Link` pagination, rate-limit headers.
//! - [`decode`]: forge answers decoded, lists item by item.
//! - [`forge`]: the [`forge::Forge`] trait and the forge-neutral data it returns.
//! - [`github`]: the GitHub REST client.
//! - [`gitlab`]: the GitLab REST v4 client.
//! - [`references`]: the [`references::ReferenceSyntax`] trait: how a forge's pull
//!   requests are referred to in descriptions (`github::references`, …).
//! - [`hooks`]: the [`hooks::WebhookReceiver`] trait: how a forge's webhooks are
//!   verified and read (`github::hooks`, …).
//! - [`ci`]: the [`ci::CiTarget`] trait: Buildbot change hook, signed webhook, GitLab pipeline.
//! - [`results`]: build results and commit statuses, neutral of CI and forge.

pub mod ci;
pub mod decode;
pub mod forge;
pub mod github;
pub mod gitlab;
pub mod governor;
pub mod hooks;
pub mod http;
pub mod references;
pub mod repo_id;
pub mod results;
pub mod secret;

pub use repo_id::RepoId;
pub use secret::Secret;

/// A boxed, sendable future: the traits here are used as trait objects.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
