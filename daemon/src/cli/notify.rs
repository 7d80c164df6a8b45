//! The systemd notification protocol (SPEC §11, `sd_notify(3)`), without libsystemd.
//!
//! Under `Type=notify`, systemd passes the path of a Unix datagram socket in
//! `NOTIFY_SOCKET` (a filesystem path, or `@name` for a Linux abstract-namespace
//! name) and, with `WatchdogSec=`, the watchdog period in `WATCHDOG_USEC` (and the pid
//! it is meant for in `WATCHDOG_PID`). [`Notifier`] reads them once and sends one
//! datagram per state change: `READY=1`, `STATUS=…`, `WATCHDOG=1`, `RELOADING=1`,
//! `STOPPING=1`.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so the daemon behaves the same in a
//! terminal and under systemd. A failed send is logged once at warn and otherwise
//! ignored: the daemon never fails because systemd went away. The process
//! environment is not modified; update subprocesses get a sanitised environment
//! without `NOTIFY_SOCKET` and `WATCHDOG_*` from the workspace runner (SPEC §12).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The systemd notification channel of this process; every call is a no-op without
/// `NOTIFY_SOCKET`.
pub struct Notifier {
    channel: Option<Channel>,
    /// The full `WATCHDOG_USEC` period, when a watchdog is configured for this pid.
    watchdog_period: Option<Duration>,
    /// Set after the first failed send has been logged.
    warned: AtomicBool,
}

/// An unbound datagram socket and systemd's address.
struct Channel {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for log lines.
    name: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("socket", &self.channel.as_ref().map(|c| c.name.as_str()))
            .field("watchdog_period", &self.watchdog_period)
            .finish()
    }
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (+ `WATCHDOG_PID`: only if it equals
    /// our pid or is absent) from the given environment lookup (so tests need not
    /// touch the process environment; the daemon passes `|k| std::env::var(k).ok()`).
    ///
    /// An empty `NOTIFY_SOCKET` means disabled. A value that is neither an absolute
    /// path nor `@name` (e.g. systemd's `vsock:` form), or a socket that cannot be
    /// created, is logged at warn and also gives a disabled notifier.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Notifier {
        let Some(name) = env("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
            return Notifier::disabled();
        };
        let channel = match open_channel(&name) {
            Ok(channel) => channel,
            Err(err) => {
                tracing::warn!(
                    notify_socket = %name,
                    "systemd notifications disabled: {err}"
                );
                return Notifier::disabled();
            }
        };
        Notifier {
            channel: Some(channel),
            watchdog_period: watchdog_period(&env, std::process::id()),
            warned: AtomicBool::new(false),
        }
    }

    pub fn disabled() -> Notifier {
        Notifier {
            channel: None,
            watchdog_period: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether notifications are sent (a usable `NOTIFY_SOCKET` was given).
    pub fn is_enabled(&self) -> bool {
        self.channel.is_some()
    }

    /// `READY=1`: start-up (or a reload) is complete.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STATUS=<line>`, shown by `systemctl status`; line breaks (`\n`, `\r`) become
    /// spaces so the status stays one line and cannot inject other assignments.
    pub fn status(&self, line: &str) {
        let line = line.replace(['\n', '\r'], " ");
        self.send(&format!("STATUS={line}"));
    }

    /// `WATCHDOG=1`: the supervisor loop is alive. Sent only when a watchdog is
    /// configured for this process (see [`Notifier::watchdog_interval`]).
    pub fn watchdog(&self) {
        if self.watchdog_period.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>`; follow it with
    /// [`Notifier::ready`] once the new configuration is applied (or rejected).
    ///
    /// `MONOTONIC_USEC` is added when the monotonic clock can be read (see
    /// [`monotonic_usec`]); `Type=notify` accepts `RELOADING=1` without it, only
    /// `Type=notify-reload` requires it.
    pub fn reloading(&self) {
        if !self.is_enabled() {
            return;
        }
        match monotonic_usec() {
            Some(usec) => self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}")),
            None => self.send("RELOADING=1"),
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Half of `WATCHDOG_USEC`: how often [`Notifier::watchdog`] should be sent; None
    /// when no watchdog is configured (no or zero `WATCHDOG_USEC`, `WATCHDOG_PID` of
    /// another process, or no `NOTIFY_SOCKET` to send it to).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_period.map(|period| period / 2)
    }

    fn send(&self, message: &str) {
        let Some(channel) = &self.channel else {
            return;
        };
        if let Err(err) = channel
            .socket
            .send_to_addr(message.as_bytes(), &channel.addr)
        {
            let kind = message.split('=').next().unwrap_or(message);
            if self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(notify_socket = %channel.name, "systemd notification {kind} not sent: {err}");
            } else {
                tracing::warn!(
                    notify_socket = %channel.name,
                    "systemd notification {kind} not sent: {err} (further failures are logged at debug)"
                );
            }
        }
    }
}

/// The address in `NOTIFY_SOCKET` and an unbound socket to send to it.
fn open_channel(name: &str) -> std::io::Result<Channel> {
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        SocketAddr::from_abstract_name(abstract_name.as_bytes())?
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        ));
    };
    let socket = UnixDatagram::unbound()?;
    // Never blocks the run loop: when systemd's receive queue is full the message is
    // dropped (logged); a watchdog ping is sent again at its next period.
    socket.set_nonblocking(true)?;
    Ok(Channel {
        socket,
        addr,
        name: name.to_owned(),
    })
}

/// `WATCHDOG_USEC` as a period, when it is a positive integer and `WATCHDOG_PID` is
/// absent or equal to `own_pid` (as `sd_watchdog_enabled(3)` decides).
fn watchdog_period(env: &impl Fn(&str) -> Option<String>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = env("WATCHDOG_USEC")?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = env("WATCHDOG_PID") {
        let pid: u32 = pid.trim().parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd compares `MONOTONIC_USEC` with it.
///
/// Reading it safely needs `nix::time::clock_gettime`, which is behind nix's `time`
/// feature, not enabled in this workspace (`fs`, `signal`, `process`); `unsafe` is
/// forbidden, `std::time::Instant` exposes no absolute value, and `/proc/uptime` is
/// `CLOCK_BOOTTIME`, not `CLOCK_MONOTONIC`. Until the feature is enabled this returns
/// None and [`Notifier::reloading`] sends `RELOADING=1` alone. With it, the body is:
///
/// ```text
/// let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
/// let secs = u64::try_from(now.tv_sec()).ok()?;
/// let micros = u64::try_from(now.tv_nsec()).ok()? / 1_000;
/// secs.checked_mul(1_000_000)?.checked_add(micros)
/// ```
fn monotonic_usec() -> Option<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let secs = u64::try_from(now.tv_sec()).ok()?;
    let micros = u64::try_from(now.tv_nsec()).ok()? / 1_000;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

impl crate::engine::lifecycle::Lifecycle for Notifier {
    fn ready(&self) {
        Notifier::ready(self)
    }
    fn status(&self, line: &str) {
        Notifier::status(self, line)
    }
    fn watchdog(&self) {
        Notifier::watchdog(self)
    }
    fn reloading(&self) {
        Notifier::reloading(self)
    }
    fn stopping(&self) {
        Notifier::stopping(self)
    }
    fn watchdog_interval(&self) -> Option<Duration> {
        Notifier::watchdog_interval(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn receiver(dir: &tempfile::TempDir) -> (UnixDatagram, String) {
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (socket, path.to_str().unwrap().to_owned())
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_each_state_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, path) = receiver(&dir);
        let notifier = Notifier::from_env(env_of(&[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "4000000"),
        ]));
        assert!(notifier.is_enabled());

        notifier.ready();
        notifier.status("cycle 3: 12 builds\n2 pending\r");
        notifier.watchdog();
        notifier.reloading();
        notifier.ready();
        notifier.stopping();

        assert_eq!(recv(&socket), "READY=1");
        assert_eq!(recv(&socket), "STATUS=cycle 3: 12 builds 2 pending ");
        assert_eq!(recv(&socket), "WATCHDOG=1");
        let reloading = recv(&socket);
        let mut lines = reloading.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        match monotonic_usec() {
            Some(_) => {
                let usec = lines
                    .next()
                    .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
                    .expect("MONOTONIC_USEC line");
                usec.parse::<u64>().expect("MONOTONIC_USEC is a u64");
            }
            None => assert_eq!(reloading, "RELOADING=1"),
        }
        assert_eq!(lines.next(), None);
        assert_eq!(recv(&socket), "READY=1");
        assert_eq!(recv(&socket), "STOPPING=1");
    }

    #[test]
    fn disabled_without_notify_socket() {
        let notifier = Notifier::from_env(env_of(&[("WATCHDOG_USEC", "4000000")]));
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        // No-ops, no panic.
        notifier.ready();
        notifier.status("x");
        notifier.watchdog();
        notifier.reloading();
        notifier.stopping();

        assert!(!Notifier::from_env(env_of(&[("NOTIFY_SOCKET", "")])).is_enabled());
        assert!(!Notifier::disabled().is_enabled());
    }

    #[test]
    fn unsupported_address_disables() {
        let notifier = Notifier::from_env(env_of(&[("NOTIFY_SOCKET", "vsock:2:1234")]));
        assert!(!notifier.is_enabled());
        notifier.ready();
    }

    #[test]
    fn watchdog_interval_is_half_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let (_socket, path) = receiver(&dir);
        let own = std::process::id().to_string();
        for env in [
            env_of(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "4000000")]),
            env_of(&[
                ("NOTIFY_SOCKET", &path),
                ("WATCHDOG_USEC", "4000000"),
                ("WATCHDOG_PID", &own),
            ]),
        ] {
            let notifier = Notifier::from_env(env);
            assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(2)));
        }
        for usec in ["0", "", "soon"] {
            let notifier =
                Notifier::from_env(env_of(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", usec)]));
            assert_eq!(notifier.watchdog_interval(), None, "WATCHDOG_USEC={usec:?}");
        }
        let notifier = Notifier::from_env(env_of(&[("NOTIFY_SOCKET", &path)]));
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn watchdog_of_another_pid_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, path) = receiver(&dir);
        let other = if std::process::id() == 1 { 2 } else { 1 }.to_string();
        let notifier = Notifier::from_env(env_of(&[
            ("NOTIFY_SOCKET", &path),
            ("WATCHDOG_USEC", "4000000"),
            ("WATCHDOG_PID", &other),
        ]));
        assert!(notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.watchdog();
        notifier.ready();
        // The watchdog ping was not sent: the first datagram is READY=1.
        assert_eq!(recv(&socket), "READY=1");
    }

    #[test]
    fn abstract_socket_name() {
        // RandomState is seeded randomly: a fresh name per run without a rand crate.
        let random = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::process::id(),
        );
        let name = format!("forgewatch-test-{random:016x}");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::from_env(env_of(&[("NOTIFY_SOCKET", &format!("@{name}"))]));
        assert!(notifier.is_enabled());
        notifier.ready();
        notifier.status("abstract");
        assert_eq!(recv(&socket), "READY=1");
        assert_eq!(recv(&socket), "STATUS=abstract");
    }

    #[test]
    fn send_failure_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let notifier = Notifier::from_env(env_of(&[("NOTIFY_SOCKET", path.to_str().unwrap())]));
        assert!(notifier.is_enabled());
        notifier.ready();
        notifier.stopping();
        assert!(notifier.warned.load(Ordering::Relaxed));
    }
}
