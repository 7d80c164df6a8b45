//! Test support for forgewatch's end-to-end tests: fakes of the services the daemon talks to
//! (GitHub's and GitLab's REST APIs and CI receivers), served over real HTTP on 127.0.0.1,
//! [`forge::FakeForge`], one interface over both forges, and [`buildbot::RealBuildbot`], a real
//! Buildbot master (not a fake) that runs what forgewatch triggers and reports back, and
//! [`browser::Browser`], headless Chromium driven over its DevTools pipe; and [`demo`], all of
//! it put together as the README's first command.

pub mod bench;
pub mod browser;
pub mod buildbot;
pub mod demo;
pub mod fake_ci;
pub mod fake_github;
pub mod fake_gitlab;
pub mod forge;
pub mod format;
pub mod gzip;
pub mod rng;
pub mod wait;
