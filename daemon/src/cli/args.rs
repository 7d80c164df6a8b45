//! The command line's grammar (SPEC §6), as clap definitions: every command and
//! argument with its help text. Kept apart from what the commands do so that the
//! man page and the shell completions can be generated from exactly these
//! definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cli::logging::LogFormat;

pub const DEFAULT_CONFIG: &str = "/etc/forgewatch/config.yml";

#[derive(Parser, Debug)]
#[command(
    name = "forgewatch",
    version = env!("FORGEWATCH_LONG_VERSION"),
    about = "Watches forges for many build workspaces and triggers CI when a build changes"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The configuration file a command reads.
#[derive(Args, Debug)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Where a running daemon's API is.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The configuration file, read for the daemon's address (`http.listen`, or
    /// the port it recorded in `state_dir` when it listens on port 0) and its
    /// admin token.
    #[arg(long, default_value = DEFAULT_CONFIG, conflicts_with = "url")]
    pub config: PathBuf,
    /// The daemon's API instead, e.g. `http://127.0.0.1:8471` (no configuration
    /// is read: the admin token then comes from `FORGEWATCH_ADMIN_TOKEN`).
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: one cycle every poll_interval until SIGTERM or SIGINT.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the configuration and print a summary.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Read the `*_credential` secrets from this directory rather than from
        /// systemd's `$CREDENTIALS_DIRECTORY` (which exists only inside the unit):
        /// e.g. the directory holding the files of the unit's `LoadCredential=` lines.
        #[arg(long, value_name = "DIR")]
        credentials_dir: Option<PathBuf>,
    },
    /// Run one full cycle in the foreground, then exit.
    Once {
        #[command(flatten)]
        config: ConfigArg,
        /// Send nothing, record nothing: print what would be delivered.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON array instead of tab-separated lines.
        #[arg(long)]
        json: bool,
    },
    /// Show what a running daemon reports.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running daemon to deliver a build now, under a new delivery id.
    Trigger {
        /// The workspace whose build is delivered.
        workspace: String,
        /// A pull request, `HOST/PATH#N`; without it, the mainline.
        #[arg(long)]
        pr: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the builds a running daemon delivered, newest first, each with its
    /// last result (the history, SPEC §14).
    Builds {
        /// Only the builds of this workspace.
        #[arg(long)]
        workspace: Option<String>,
        /// Only builds whose last result is in this state (`failure`, `success`, …).
        #[arg(long)]
        state: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Print the API's JSON instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ask a running daemon to read its configuration again; exits 1 with the
    /// reason when the new file is refused (the unit's `ExecReload=`).
    Reload {
        #[command(flatten)]
        config: ConfigArg,
        /// Without an admin token: the daemon to send SIGHUP to (the unit passes
        /// `$MAINPID`); by default the pid in `state_dir/lock`.
        #[arg(long)]
        pid: Option<i32>,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if command.get_about().is_none() {
            missing.push(path.to_owned());
        }
        for arg in command.get_arguments() {
            if arg.get_help().is_none() && !matches!(arg.get_id().as_str(), "help" | "version") {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_command_and_argument_says_what_it_is() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        undocumented(&cli, "forgewatch", &mut missing);
        assert_eq!(missing, Vec::<String>::new());
        assert!(
            cli.get_version()
                .is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION")))
        );
    }
}
