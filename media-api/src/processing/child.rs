//! The child-process runner: each job's decoding runs in `media-render`
//! under `ulimit -v` (address space) and `ulimit -t` (CPU seconds) and a
//! wall-clock timeout, and how it ended becomes a typed [`JobFailure`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use transcoder::render::{EXIT_MEDIA_REFUSED, RenderResult, RenderSpec};

use crate::config::Settings;

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
            Self::Processor => "processor",
            Self::Crash => "crash",
            Self::Attempts => "attempts",
            Self::Backend => "backend",
        }
    }

    /// A refusal comes out the same every time, and so does a job that ran
    /// out of its time or CPU: the same media would use them up again, and
    /// retrying would spend them again. A crash or a backend error may not
    /// recur.
    pub(crate) fn retryable(self) -> bool {
        !matches!(
            self,
            Self::Refused | Self::Attempts | Self::Timeout | Self::CpuLimit
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
    let limits = &settings.jobs;
    // `ulimit` in a shell that then becomes the child: limits without unsafe pre_exec.
    let script = format!(
        "ulimit -v {} && ulimit -t {} && exec \"$0\" --spec \"$1\"",
        limits.memory.0 / 1024,
        limits.cpu_seconds
    );
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
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
        return Err(match output.status.code() {
            Some(EXIT_MEDIA_REFUSED) => JobFailure::media(FailureKind::Refused, message),
            // The shell could not run the program: an installation fault.
            Some(code @ (126 | 127)) => JobFailure::backend(format!(
                "the render program could not be run (status {code}): {message}"
            )),
            Some(code) => JobFailure::processor(code, &message),
            None if killed_by(&output.status) == Some(SIGXCPU) => JobFailure::media(
                FailureKind::CpuLimit,
                format!(
                    "processing used more than the {} CPU seconds allowed",
                    limits.cpu_seconds
                ),
            ),
            None => JobFailure::media(
                FailureKind::Crash,
                "the media processor crashed (killed by a signal: out of memory, or a decoder fault)",
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
        ] {
            assert!(!kind.retryable(), "{kind:?}");
        }
    }
}
