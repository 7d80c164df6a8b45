//! The HTTP side (SPEC §10): [`api`], the axum router (read-only endpoints,
//! admin-token POSTs, signed webhooks), and [`page`], the status page and the
//! Prometheus text. Handlers read snapshots and send requests to the loop; they
//! never mutate the engine.

pub mod api;
pub mod page;
