//! `cargo run -p xtask -- package-files DIR`: writes what the Debian package ships
//! beside the binary (`.ci/package` builds the package from it): the man pages
//! `forgewatch.1` and one per command (`forgewatch-run.1`, …) with `clap_mangen`,
//! the bash, zsh and fish completions with `clap_complete` — generated from the
//! CLI's own clap definitions (`forgewatch::cli::args`), so they never drift from
//! `--help`, and never written by hand —, and the packaged forms of files kept
//! elsewhere in the repository: the unit (the binary at `/usr/bin`), the relaxed
//! drop-in, the example configuration (state in `/var/lib/forgewatch`), and the
//! `sysusers.d` and `tmpfiles.d` entries that create the user and directories.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::CommandFactory;
use clap_complete::Shell;
use forgewatch::cli::args::Cli;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, dir] if task == "package-files" => package_files(Path::new(dir)),
        _ => bail!("usage: cargo run -p xtask -- package-files DIR"),
    }
}

/// The repository's root (xtask's parent directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The system user and its state directory (`systemd-sysusers`).
const SYSUSERS: &str = "# forgewatch's service user; its home is the state directory.
u forgewatch - \"forgewatch daemon\" /var/lib/forgewatch /usr/sbin/nologin
";

/// The directories the package's files need (`systemd-tmpfiles --create`).
const TMPFILES: &str =
    "# The state directory (also StateDirectory= of the unit) and the configuration
# directory, readable by the service user only.
d /var/lib/forgewatch 0750 forgewatch forgewatch -
d /etc/forgewatch 0750 root forgewatch -
";

/// Everything `[package.metadata.deb]` of `daemon/Cargo.toml` takes from `dir`.
fn package_files(dir: &Path) -> anyhow::Result<()> {
    assets(dir)?;
    let root = root();
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))
    };
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))
    };
    let unit = read("systemd/forgewatch.service")?;
    if !unit.contains("/usr/local/bin/forgewatch ") {
        bail!("systemd/forgewatch.service no longer names /usr/local/bin/forgewatch");
    }
    write(
        "forgewatch.service",
        &unit.replace("/usr/local/bin/forgewatch ", "/usr/bin/forgewatch "),
    )?;
    write("relaxed.conf", &read("systemd/forgewatch-relaxed.conf")?)?;
    let config = read("config.example.yml")?;
    if !config.contains("\nstate_dir: ./state\n") {
        bail!("config.example.yml no longer says `state_dir: ./state`");
    }
    write(
        "config.yml",
        &config.replace(
            "\nstate_dir: ./state\n",
            "\nstate_dir: /var/lib/forgewatch\n",
        ),
    )?;
    write("sysusers.conf", SYSUSERS)?;
    write("tmpfiles.conf", TMPFILES)?;
    println!("{}", dir.display());
    Ok(())
}

/// Writes `DIR/man/*.1` and `DIR/completions/{forgewatch.bash,_forgewatch,forgewatch.fish}`.
fn assets(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("cannot write the man pages in {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "forgewatch", &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    Ok(())
}
