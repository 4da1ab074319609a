//! The service's CPU time and peak memory, read from `/proc/PID`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// CPU seconds a process has used (`/proc/PROC/stat`: utime + stime, and
/// with `children` also cutime + cstime of its waited-for children). `proc`
/// is a pid or `self`.
pub(crate) fn cpu_seconds(proc: &str, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{proc}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not. After
    // the name, state is field 3, so utime (field 14) is index 11.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let last = if children { 15 } else { 13 };
    let mut ticks = 0u64;
    for i in 11..last {
        ticks += fields.get(i)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK`, asked once (100 on Linux almost everywhere).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A process's resident set now, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Watches a process while a scenario runs: CPU seconds used during it, and
/// the highest resident set sampled every 50 ms.
#[derive(Debug)]
pub(crate) struct Watch {
    pid: u32,
    cpu_start: f64,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// What the watch saw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceUsage {
    pub(crate) pid: u32,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_mib: f64,
    /// The process's all-time peak (`VmHWM`), set-up included.
    pub(crate) lifetime_peak_rss_mib: f64,
}

impl Watch {
    pub(crate) fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_kib(pid, "VmRSS") {
                        peak_kib.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        Self {
            pid,
            cpu_start: cpu_seconds(&pid.to_string(), false).unwrap_or(0.0),
            peak_kib,
            stop,
        }
    }

    pub(crate) fn finish(self) -> ServiceUsage {
        self.stop.store(true, Ordering::Relaxed);
        let mib = |kib: u64| kib as f64 / 1024.0;
        ServiceUsage {
            pid: self.pid,
            cpu_seconds: cpu_seconds(&self.pid.to_string(), false).unwrap_or(0.0) - self.cpu_start,
            peak_rss_mib: mib(self.peak_kib.load(Ordering::Relaxed)),
            lifetime_peak_rss_mib: mib(status_kib(self.pid, "VmHWM").unwrap_or(0)),
        }
    }
}
