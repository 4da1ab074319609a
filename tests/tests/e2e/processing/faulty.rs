//! A decoder child that crashes, hangs, spins or runs out of memory: that
//! one job fails with the kind its end says, is retried or not as that kind
//! says, ends dead with a readable reason, and the worker lives on to
//! process the next file; a worker SIGKILLed mid-job leaves no child behind.

use super::*;

/// What the faulty render program does, chosen by the last bytes of a file.
const CRASH: &[u8] = b"FAULT:crash";
const HANG: &[u8] = b"FAULT:hang_";
const SPIN: &[u8] = b"FAULT:spin_";

/// A render program that crashes (SIGSEGV), hangs or spins on a file that
/// ends with one of the markers, and runs the real `media-render` on any
/// other file. A hanging child is named `tag`, to be found in `/proc`.
fn faulty_render(dir: &Path, tag: &str) -> PathBuf {
    let script = format!(
        r#"#!/usr/bin/bash
input=$(sed -n 's/^{{"input":"\([^"]*\)".*/\1/p' "$2")
case "$(tail -c 11 "$input")" in
  FAULT:crash) kill -SEGV $$ ;;
  FAULT:hang_) exec -a {tag} sleep 3600 ;;
  FAULT:spin_) while :; do :; done ;;
esac
exec {real} "$@"
"#,
        real = media_e2e::render_binary().display(),
    );
    let path = dir.join("faulty-render");
    std::fs::write(&path, script).expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A PNG that is fine but for the marker after its end.
fn marked(marker: &[u8], seed: u8) -> Vec<u8> {
    let mut png = good_png(seed);
    png.extend_from_slice(marker);
    png
}

/// Processes whose name is `tag` (a hanging child the test made).
fn running_as(tag: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split('\0').next() == Some(tag))
        })
        .collect()
}

/// `state attempts last_error` of the job of the content `blake3`.
async fn job_of(app: &TestApp, blake3: &str) -> String {
    let rows = media_e2e::raw_column(
        app,
        &format!(
            "select state || ' ' || attempts || ' ' || coalesce(last_error, '') \
             from jobs where blake3 = '{blake3}'"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "one job for {blake3}: {rows:?}");
    rows[0].clone()
}

both_sets!(a_decoder_child_that_crashes_hangs_spins_or_runs_out_of_memory_fails_that_job_alone);
async fn a_decoder_child_that_crashes_hangs_spins_or_runs_out_of_memory_fails_that_job_alone(
    set: BackendSet,
) {
    let (mut settings, dir) = test_settings(set).await;
    let tools = tempfile::tempdir().expect("tempdir");
    let tag = format!("faulty-hang-{}", media_e2e::unique("h"));
    settings.jobs.render_program = Some(faulty_render(tools.path(), &tag));
    // The script runs the real render program, which bubblewrap's sandbox
    // (only the configured program inside) would not show it; the sandbox
    // has its own test (`processing::sandbox`).
    settings.jobs.sandbox = media_api::config::SandboxMode::Off;
    settings.jobs.serve_workers = Some(1);
    settings.jobs.max_attempts = 3;
    settings.jobs.backoff = Duration::from_millis(50);
    settings.jobs.timeout = Duration::from_secs(3);
    settings.jobs.cpu_seconds = 2;
    // Room for the render program and a 640×480 image, not for 81 Mpx.
    settings.jobs.memory = "320MiB".parse().expect("size");
    settings.jobs.poll_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    // (file, the job's end: state, attempts, a piece of its reason)
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "crash.png",
            marked(CRASH, 1),
            "dead 3",
            "killed by signal 11",
        ),
        ("hang.png", marked(HANG, 2), "dead 1", "took longer than 3s"),
        (
            "spin.png",
            marked(SPIN, 3),
            "dead 1",
            "more than the 2 CPU seconds",
        ),
        // A real decoder, crafted input: 9000 × 9000 declared (under
        // `max_image_pixels`), its buffer past the child's address space.
        (
            "huge.png",
            png_declaring(9000, 9000),
            "dead 1",
            "more than the 320MiB of memory",
        ),
    ];
    let mut posted = Vec::new();
    for (name, body, end, reason) in cases {
        let done = post(&alice, name, "image/png", body).await;
        posted.push((name, done, end, reason));
    }
    for (name, done, end, reason) in &posted {
        let media = settled(&alice, done["media_id"].as_str().expect("id")).await;
        assert_eq!(media["status"], "failed", "{set:?} {name}: {media}");
        let shown = media["failure_reason"].as_str().unwrap_or("");
        assert!(shown.contains(reason), "{set:?} {name}: shown {shown:?}");
        let job = job_of(&app, done["blake3"].as_str().expect("blake3")).await;
        assert!(
            job.starts_with(&format!("{end} ")) && job.contains(reason),
            "{set:?} {name}: the job ended {job:?}, not {end:?} with {reason:?}"
        );
    }
    // The hanging child was killed at its deadline, not left behind.
    assert_eq!(
        running_as(&tag),
        Vec::<u32>::new(),
        "{set:?}: a hung child lives"
    );
    // The same worker goes on.
    let good = post(&alice, "fine.png", "image/png", good_png(9)).await;
    let media = settled(&alice, good["media_id"].as_str().expect("id")).await;
    assert_eq!(media["status"], "ready", "{set:?}: {media}");
    assert_eq!(
        media["variants"].as_array().map(Vec::len),
        Some(3),
        "{media}"
    );
    app.stop().await;
}

// Without bubblewrap (whose sandbox dies with its worker), a SIGKILLed
// worker's child is killed by the kernel too: nothing decodes on, orphaned.
both_sets!(a_killed_workers_child_dies_with_it_without_the_sandbox_too);
async fn a_killed_workers_child_dies_with_it_without_the_sandbox_too(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(0);
    let tools = tempfile::tempdir().expect("tempdir");
    let tag = format!("faulty-hang-{}", media_e2e::unique("k"));
    let program = faulty_render(tools.path(), &tag);
    let app = TestApp::spawn_with(set, settings.clone(), dir).await;
    let mut worker =
        media_e2e::service_command(&settings, "faulty-test-secret-long-enough-0123456789")
            .arg("worker")
            .env("MEDIA_JOBS__WORKERS", "1")
            .env("MEDIA_JOBS__POLL_INTERVAL", "200ms")
            .env("MEDIA_JOBS__SANDBOX", "off")
            .env("MEDIA_JOBS__RENDER_PROGRAM", &program)
            .spawn()
            .expect("start a worker");
    let alice = app.user("alice");
    post(&alice, "hang.png", "image/png", marked(HANG, 4)).await;
    let pid = worker.id().expect("pid");
    let mut hung = Vec::new();
    let started = eventually(Duration::from_secs(30), || {
        hung = running_as(&tag);
        let found = !hung.is_empty();
        async move { found }
    })
    .await;
    assert!(started, "{set:?}: the worker never ran the job");
    assert!(
        hung.iter()
            .all(|c| super::workers::descendants_of(pid).contains(c)),
        "{set:?}: the hanging child is not the worker's"
    );
    worker.kill().await.expect("SIGKILL the worker");
    let gone = eventually(Duration::from_secs(5), || {
        let left = running_as(&tag);
        async move { left.is_empty() }
    })
    .await;
    let left = running_as(&tag);
    for pid in &left {
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status();
    }
    assert!(
        gone,
        "{set:?}: the child outlived its SIGKILLed worker: {left:?}"
    );
    app.stop().await;
}
