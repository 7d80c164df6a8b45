//! The daemon's own process figures for `/metrics`: CPU time, resident and
//! virtual memory, open and allowed file descriptors. prometheus-client has no
//! process collector, and the `procfs` crate would be a dependency for three
//! lines of `/proc/self`: CPU time comes from `getrusage`, the file-descriptor
//! limit from `getrlimit` (through `nix`), memory from `/proc/self/status`, open
//! descriptors from listing `/proc/self/fd`. What cannot be read (no `/proc`) is
//! left out, never reported as zero.

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};

/// The process at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    /// User and system CPU time.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
}

impl Process {
    pub fn now() -> Process {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Process {
            cpu_seconds: getrusage(UsageWho::RUSAGE_SELF).ok().map(|u| {
                let seconds = |t: nix::sys::time::TimeVal| {
                    t.tv_sec() as f64 + t.tv_usec() as f64 / 1_000_000.0
                };
                seconds(u.user_time()) + seconds(u.system_time())
            }),
            resident_bytes: status_kib(&status, "VmRSS:").map(|k| k * 1024),
            virtual_bytes: status_kib(&status, "VmSize:").map(|k| k * 1024),
            // The listing's own descriptor is among them.
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: getrlimit(Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft),
        }
    }
}

/// The value of a `NAME:   123 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(name))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tforgewatch\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kib(status, "VmSize:"), Some(123_456));
        assert_eq!(status_kib(status, "VmHWM:"), None);
    }

    #[test]
    fn this_process_has_memory_descriptors_and_cpu_time() {
        let p = Process::now();
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.virtual_bytes.unwrap() >= p.resident_bytes.unwrap());
        assert!(p.open_fds.unwrap() >= 3, "{p:?}");
        assert!(p.max_fds.unwrap() >= p.open_fds.unwrap());
        assert!(p.cpu_seconds.unwrap() >= 0.0);
    }
}
