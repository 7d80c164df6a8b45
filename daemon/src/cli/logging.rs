//! How log lines look on stderr, decided once at start from what stderr is: ANSI
//! colours only on a terminal (never with `NO_COLOR` set non-empty or `TERM=dumb`),
//! and when stderr is the journal (`JOURNAL_STREAM` names its device and inode, as
//! systemd documents) every line starts with its syslog priority (`<3>` error, `<4>`
//! warning, `<6>` info, `<7>` debug and trace; sd-daemon(3)), which journald reads
//! and strips, so `journalctl -p warning` finds the warnings. The JSON format gets
//! the prefix too: journald stores the JSON line itself, with its priority.

use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The two line formats of `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// What stderr is, for the lines written there without the subscriber.
#[derive(Clone, Copy, Debug)]
pub struct Stderr {
    journal: bool,
}

impl Stderr {
    /// Writes `text` (an error ending the command) to stderr, under journald each
    /// line at priority `<3>` (error).
    pub fn error(self, text: &str) {
        let prefix = if self.journal { "<3>" } else { "" };
        for line in text.lines() {
            eprintln!("{prefix}{line}");
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` (default `info`) to stderr.
pub fn init(format: LogFormat) -> Stderr {
    let env = |key: &str| std::env::var(key).ok();
    let ansi = colours(std::io::stderr().is_terminal(), env);
    let journal = is_journal(env("JOURNAL_STREAM").as_deref(), stderr_identity());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match (format, journal) {
        (LogFormat::Human, false) => builder.init(),
        (LogFormat::Human, true) => builder.map_event_format(Prioritized).init(),
        (LogFormat::Json, false) => builder.json().init(),
        (LogFormat::Json, true) => builder.json().map_event_format(Prioritized).init(),
    }
    Stderr { journal }
}

/// Whether lines get ANSI colours: only on a terminal, and neither `NO_COLOR` (any
/// non-empty value, no-color.org) nor `TERM=dumb` says otherwise.
fn colours(terminal: bool, env: impl Fn(&str) -> Option<String>) -> bool {
    terminal
        && env("NO_COLOR").is_none_or(|v| v.is_empty())
        && env("TERM").as_deref() != Some("dumb")
}

/// Whether stderr is the journal: `JOURNAL_STREAM` (`DEVICE:INODE`, decimal) names
/// the very file stderr is. Set but naming another file, it was inherited by a
/// process whose stderr was redirected since (systemd.exec(5)).
fn is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let named = journal_stream.and_then(|v| {
        let (dev, ino) = v.trim().split_once(':')?;
        Some((dev.parse().ok()?, ino.parse().ok()?))
    });
    named.is_some() && named == stderr
}

/// The device and inode of stderr (`fstat` on a duplicate of the descriptor).
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The syslog priority of a level (sd-daemon(3) `SD_ERR` … `SD_DEBUG`).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An event format that writes the line's `<priority>` and then the line as `F`
/// (the human or the JSON format) writes it.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color_or_a_dumb_term() {
        assert!(colours(true, env(&[("TERM", "xterm-256color")])));
        assert!(colours(true, env(&[])));
        assert!(colours(true, env(&[("NO_COLOR", "")])), "empty: not set");
        assert!(!colours(true, env(&[("NO_COLOR", "1")])));
        assert!(!colours(true, env(&[("TERM", "dumb")])));
        assert!(!colours(false, env(&[("TERM", "xterm-256color")])));
    }

    #[test]
    fn the_journal_is_stderr_only_when_journal_stream_names_it() {
        assert!(is_journal(Some("8:1234"), Some((8, 1234))));
        assert!(!is_journal(Some("8:1234"), Some((8, 999))), "redirected");
        assert!(!is_journal(None, Some((8, 1234))));
        assert!(!is_journal(Some("8:1234"), None));
        assert!(!is_journal(Some("garbage"), Some((8, 1234))));
        assert!(!is_journal(Some(""), Some((0, 0))));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        let priorities = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .map(priority);
        assert_eq!(priorities, [3, 4, 6, 7, 7]);
    }
}
