//! The JSON Schema (draft 2020-12) of the configuration file, printed by
//! `forgewatch schema` (SPEC §6) for editors and linters.
//!
//! `schema.json` is written by hand to mirror [`raw`](super::raw) key for key: every
//! key with its type, default, allowed values and constraints; unknown keys and inline
//! secrets (`token`, `secret`, `password`) are refused, as by the loader. The
//! integration test `tests/schema.rs` keeps the two in step (it checks every key
//! against the loader) and validates the example configuration against it.

/// The schema as JSON text.
pub const SCHEMA: &str = include_str!("schema.json");

/// The schema as JSON text (what `forgewatch schema` prints).
pub fn schema() -> &'static str {
    SCHEMA
}
