//! Test support for forgewatch's end-to-end tests: fakes of the services the daemon talks to
//! (GitHub's REST API and CI receivers), served over real HTTP on 127.0.0.1.

pub mod fake_ci;
pub mod fake_github;
