//! The HTTP side (SPEC §10): [`api`], the axum router (read-only endpoints,
//! admin-token POSTs, signed webhooks), [`page`], the status page and the
//! Prometheus text, and [`server`], which serves the router within bounds on what
//! one client can hold. Around the router: [`errors`] (every error as JSON), [`host`]
//! (the `Host` check), [`limits`] (URI and body sizes); [`replays`] remembers the
//! webhook deliveries seen. [`results`]: results coming back from the CIs;
//! [`builds`]: the build history; [`stream`]: the events as Server-Sent Events. Handlers read snapshots and send requests to the loop;
//! they never mutate the engine.

pub mod api;
pub mod builds;
pub mod errors;
pub mod host;
pub mod limits;
pub mod page;
pub mod replays;
pub mod results;
pub mod server;
pub mod stream;
