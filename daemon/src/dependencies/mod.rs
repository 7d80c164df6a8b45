//! Pull-request dependencies (SPEC §3): what a PR/MR description declares
//! ([`parse`]) and the recursive closure of those declarations over the known
//! PRs, cycles included ([`closure`]). Both are pure; looking PRs up is elsewhere.

pub mod closure;
pub mod parse;
pub mod resolve;

pub use closure::{Closure, closure};
pub use parse::{Context, Flavor, PrRef, Reference, parse_dependencies};
