//! Pull-request dependencies (SPEC §3): what a PR/MR description declares
//! ([`parse`]), the recursive closure of those declarations over the known PRs,
//! cycles included ([`closure`]), and the graph a cycle's plan reads ([`graph`]).
//! All pure; looking PRs up is the engine's (`engine::lookups`).

pub mod closure;
pub mod graph;
pub mod parse;

pub use closure::{Closure, closure};
pub use parse::{Context, PrRef, Reference, parse_dependencies};
