//! Names the build: `FORGEWATCH_COMMIT` (the git commit when built from a
//! checkout, with `-dirty` when the tree had changes; empty otherwise, e.g. from a
//! source tarball) and `FORGEWATCH_LONG_VERSION` (`0.1.0 (commit 0123abcd4567)`) for
//! `--version`, the metrics' build info and the package. Only git is asked, and
//! nothing fails when it is missing.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    // Rebuilt when HEAD moves (a commit, a checkout) or the index changes.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        for file in ["HEAD", "index", "packed-refs"] {
            println!("cargo:rerun-if-changed={}", dir.join(file).display());
        }
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", dir.join(reference).display());
        }
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .map(|commit| {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        })
        .unwrap_or_default();
    let long = if commit.is_empty() {
        version
    } else {
        format!("{version} (commit {commit})")
    };
    println!("cargo:rustc-env=FORGEWATCH_COMMIT={commit}");
    println!("cargo:rustc-env=FORGEWATCH_LONG_VERSION={long}");
}
