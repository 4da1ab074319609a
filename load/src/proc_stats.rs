//! The service's CPU time and peak memory, read from `/proc/PID`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
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
            cpu_start: cpu_seconds(pid).unwrap_or(0.0),
            peak_kib,
            stop,
        }
    }

    pub(crate) fn finish(self) -> ServiceUsage {
        self.stop.store(true, Ordering::Relaxed);
        let mib = |kib: u64| kib as f64 / 1024.0;
        ServiceUsage {
            pid: self.pid,
            cpu_seconds: cpu_seconds(self.pid).unwrap_or(0.0) - self.cpu_start,
            peak_rss_mib: mib(self.peak_kib.load(Ordering::Relaxed)),
            lifetime_peak_rss_mib: mib(status_kib(self.pid, "VmHWM").unwrap_or(0)),
        }
    }
}
