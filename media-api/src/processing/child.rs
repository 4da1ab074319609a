//! The child-process runner: each job's decoding runs in `media-render`
//! under resource limits set by `prlimit` (address space, CPU seconds, open
//! files, processes) and a wall-clock timeout, and how it ended becomes a
//! typed [`JobFailure`].
//!
//! The child is a sandbox. Its environment is empty but for `PATH` (no
//! database or Redis URL, no secret, no AWS key reaches it). With bubblewrap
//! (`bwrap`, Debian's `bubblewrap`) it also runs in new user, network, PID,
//! IPC and mount namespaces whose filesystem is `/usr` read-only, the render
//! program, and the job's own directory: the data directory and its secrets
//! do not exist there, and it has no network but its own loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use transcoder::render::{EXIT_MEDIA_REFUSED, RenderResult, RenderSpec};

use crate::config::{SandboxMode, Settings};

/// How a job failed, which decides whether it is tried again. Its
/// [`as_str`](FailureKind::as_str) is the `reason` label of
/// `job_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The decoder refused the media (undecodable, over a limit): it would
    /// fail the same way every time.
    Refused,
    /// The child ran past the wall-clock limit.
    Timeout,
    /// The child used up its CPU-time limit (`SIGXCPU`).
    CpuLimit,
    /// The child ran out of its address-space limit (an allocation failed
    /// and it aborted).
    MemoryLimit,
    /// The child exited with an error of its own.
    Processor,
    /// The child was killed by a signal (memory, CPU time, a decoder fault)
    /// or answered nonsense.
    Crash,
    /// Its workers kept dying mid-job until the attempts ran out.
    Attempts,
    /// Our side: a backend or the local disk.
    Backend,
}

impl FailureKind {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::CpuLimit => "cpu_limit",
            Self::MemoryLimit => "memory_limit",
            Self::Processor => "processor",
            Self::Crash => "crash",
            Self::Attempts => "attempts",
            Self::Backend => "backend",
        }
    }

    /// A refusal comes out the same every time, and so does a job that ran
    /// out of its time, CPU or memory: the same media would use them up
    /// again, and retrying would spend them again. A crash or a backend
    /// error may not recur.
    pub(crate) fn retryable(self) -> bool {
        !matches!(
            self,
            Self::Refused | Self::Attempts | Self::Timeout | Self::CpuLimit | Self::MemoryLimit
        )
    }
}

/// Why a job failed: its kind, and the reason shown to the media's owner.
#[derive(Debug)]
pub(crate) struct JobFailure {
    /// What kind of failure.
    pub(crate) kind: FailureKind,
    /// In full, for the log and the job's record.
    reason: String,
    /// For the media's readers: nothing of the service's internals.
    shown: String,
}

impl JobFailure {
    /// A failure of the media or its decoder.
    pub(crate) fn media(kind: FailureKind, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            kind,
            shown: reason.clone(),
            reason,
        }
    }

    /// The processor exited with `code`, saying `message` on its way out
    /// (which may name files of ours: it is kept from the media's readers).
    fn processor(code: i32, message: &str) -> Self {
        let shown = format!("the media processor exited with status {code}");
        Self {
            kind: FailureKind::Processor,
            reason: if message.is_empty() {
                shown.clone()
            } else {
                format!("the media processor failed: {message}")
            },
            shown,
        }
    }

    /// A failure on our side.
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        Self {
            kind: FailureKind::Backend,
            reason: e.to_string(),
            shown: BACKEND_FAILURE.to_owned(),
        }
    }

    /// What the media's readers are told: the media's own faults, ours
    /// without a word of their internals (paths, backends and hosts are in
    /// the log and the job's record).
    pub(crate) fn shown(&self) -> String {
        self.shown.clone()
    }
}

/// What a member sees when processing failed on the service's side.
pub(crate) const BACKEND_FAILURE: &str =
    "the service could not process this media; the fault is on its side and has been logged";

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FailureKind::Backend => write!(f, "internal error: {}", self.reason),
            _ => f.write_str(&self.reason),
        }
    }
}

/// The signal sent to a process past its CPU-time limit.
const SIGXCPU: i32 = 24;

/// What a Rust program prints before it aborts on a failed allocation (the
/// render program past its address-space limit).
const OUT_OF_MEMORY: &str = "memory allocation of ";

/// The signal that ended a process, if one did.
fn killed_by(status: &std::process::ExitStatus) -> Option<i32> {
    #[cfg(unix)]
    {
        std::os::unix::process::ExitStatusExt::signal(status)
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        None
    }
}

/// The program each job runs: `jobs.render_program`, or `media-render`
/// installed beside the service's own binary.
pub(crate) fn render_program(settings: &Settings) -> anyhow::Result<PathBuf> {
    match &settings.jobs.render_program {
        Some(program) => Ok(program.clone()),
        None => Ok(std::env::current_exe()
            .context("locating media-api")?
            .with_file_name("media-render")),
    }
}

/// Sets the child's resource limits, then runs it (util-linux).
const PRLIMIT: &str = "/usr/bin/prlimit";

/// Without bubblewrap, asks the kernel to SIGKILL the child when the
/// worker thread that started it dies (util-linux; `--pdeathsig` survives
/// the `exec`s into `prlimit` and the render program), so a killed worker
/// leaves no orphan decoding on. bubblewrap's `--die-with-parent` does the
/// same for the sandbox.
const SETPRIV: &str = "/usr/bin/setpriv";

/// The child's whole environment.
const SANDBOX_PATH: &str = "/usr/bin:/bin";

/// bubblewrap's arguments before the per-job binds: every namespace new, a
/// filesystem of `/usr` read-only (and the merged-`/usr` links), fresh
/// `/proc`, `/dev` and `/tmp`, and the child dies with its worker.
const BWRAP_ARGS: &[&str] = &[
    "--unshare-all",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
    "--setenv",
    "PATH",
    SANDBOX_PATH,
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/sbin",
    "/sbin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--ro-bind-try",
    "/etc/ld.so.cache",
    "/etc/ld.so.cache",
    // Debian links some libraries (BLAS, which FFmpeg's filters pull in)
    // through its alternatives.
    "--ro-bind-try",
    "/etc/alternatives",
    "/etc/alternatives",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
];

/// Where `bwrap` is, when the mode wants it and it is installed.
fn sandbox(mode: SandboxMode) -> Option<&'static Path> {
    static BWRAP: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    if mode == SandboxMode::Off {
        return None;
    }
    BWRAP
        .get_or_init(|| {
            ["/usr/bin/bwrap", "/bin/bwrap"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// Says at start how jobs' children will be isolated.
pub(crate) fn announce_sandbox(mode: SandboxMode) {
    match (mode, sandbox(mode)) {
        (SandboxMode::Off, _) => tracing::warn!(
            "jobs.sandbox is off: decoders run with an empty environment only, able to read \
             what this service's user can and to reach the network"
        ),
        (_, Some(bwrap)) => {
            tracing::info!(bwrap = %bwrap.display(), "decoders run in a bubblewrap sandbox")
        }
        (SandboxMode::Bwrap, None) => tracing::error!(
            "jobs.sandbox is bwrap, and bubblewrap is not installed: every job will fail \
             (install Debian's bubblewrap package)"
        ),
        (SandboxMode::Auto, None) => tracing::warn!(
            "bubblewrap (bwrap) is not installed: decoders run with an empty environment only, \
             able to read what this service's user can and to reach the network; install \
             Debian's bubblewrap package"
        ),
    }
}

/// Runs `media-render` on `spec` (written into `dir`) under the configured
/// resource limits and wall-clock timeout.
pub(crate) async fn run_render(
    settings: &Settings,
    dir: &Path,
    spec: &RenderSpec,
) -> Result<RenderResult, JobFailure> {
    let spec_path = dir.join("spec.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec(spec).map_err(JobFailure::backend)?,
    )
    .map_err(JobFailure::backend)?;
    let exe = render_program(settings).map_err(JobFailure::backend)?;
    if !exe.is_file() {
        return Err(JobFailure::backend(format!(
            "the render program {} is not installed",
            exe.display()
        )));
    }
    let limits = &settings.jobs;
    // util-linux's `prlimit` sets the limits and becomes the child: limits
    // without unsafe pre_exec. The CPU limit's hard value is a second past
    // the soft one, so the child gets SIGXCPU (told apart) before SIGKILL.
    let prlimit = [
        format!("--as={0}:{0}", limits.memory.0),
        format!("--cpu={}:{}", limits.cpu_seconds, limits.cpu_seconds + 1),
        format!("--nofile={0}:{0}", limits.max_open_files),
        format!("--nproc={0}:{0}", limits.max_processes),
        "--".to_owned(),
    ];
    let mut command = match sandbox(limits.sandbox) {
        Some(bwrap) => {
            let mut c = tokio::process::Command::new(bwrap);
            c.args(BWRAP_ARGS)
                .arg("--ro-bind")
                .arg(&exe)
                .arg(&exe)
                .arg("--bind")
                .arg(dir)
                .arg(dir)
                .arg("--chdir")
                .arg(dir)
                .arg(PRLIMIT);
            c
        }
        None if limits.sandbox == SandboxMode::Bwrap => {
            return Err(JobFailure::backend(
                "jobs.sandbox is bwrap, and bubblewrap (bwrap) is not installed",
            ));
        }
        None => {
            let mut c = tokio::process::Command::new(SETPRIV);
            c.args(["--pdeathsig", "KILL", PRLIMIT]);
            c
        }
    };
    let child = command
        .env_clear()
        .env("PATH", SANDBOX_PATH)
        .args(prlimit)
        .arg(exe)
        .arg("--spec")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(JobFailure::backend)?;
    let output = match tokio::time::timeout(limits.timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(JobFailure::backend)?,
        Err(_) => {
            return Err(JobFailure::media(
                FailureKind::Timeout,
                format!("processing took longer than {:?}", limits.timeout),
            ));
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr.lines().last().unwrap_or("").trim();
        let message = message.trim_start_matches("media-render: ").to_owned();
        let signal = killed_by(&output.status);
        return Err(match output.status.code() {
            Some(EXIT_MEDIA_REFUSED) => JobFailure::media(FailureKind::Refused, message),
            // prlimit could not run the program: an installation fault.
            Some(code @ (126 | 127)) => JobFailure::backend(format!(
                "the render program could not be run (status {code}): {message}"
            )),
            Some(code) => JobFailure::processor(code, &message),
            None if signal == Some(SIGXCPU) => JobFailure::media(
                FailureKind::CpuLimit,
                format!(
                    "processing used more than the {} CPU seconds allowed",
                    limits.cpu_seconds
                ),
            ),
            None if stderr.contains(OUT_OF_MEMORY) => JobFailure::media(
                FailureKind::MemoryLimit,
                format!(
                    "processing needed more than the {} of memory allowed",
                    limits.memory
                ),
            ),
            None => JobFailure::media(
                FailureKind::Crash,
                match signal {
                    Some(signal) => {
                        format!("the media processor crashed (killed by signal {signal})")
                    }
                    None => "the media processor crashed".to_owned(),
                },
            ),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        JobFailure::media(
            FailureKind::Crash,
            format!("unreadable processor output: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        for kind in [
            FailureKind::Processor,
            FailureKind::Crash,
            FailureKind::Backend,
        ] {
            assert!(kind.retryable(), "{kind:?}");
        }
        for kind in [
            FailureKind::Refused,
            FailureKind::Attempts,
            FailureKind::Timeout,
            FailureKind::CpuLimit,
            FailureKind::MemoryLimit,
        ] {
            assert!(!kind.retryable(), "{kind:?}");
        }
    }
}
