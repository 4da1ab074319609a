//! The decoder child is a sandbox: checked from inside a job, by a render
//! program that reports what it can see and reach instead of rendering.

use super::*;

/// A render program that looks around and reports, as its last line of
/// stderr (which the service keeps as the job's internal error).
fn probe_program(dir: &Path, secret: &Path, port: u16) -> PathBuf {
    let script = format!(
        r#"#!/usr/bin/bash
names=$(env | cut -d= -f1 | grep -v -x -e PATH -e PWD -e SHLVL -e _ | sort | tr '\n' ',')
if cat '{secret}' >/dev/null 2>&1; then secret=readable; else secret=unreadable; fi
if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then net=reachable; else net=unreachable; fi
echo "sandbox env=[$names] secret=$secret net=$net files=$(ulimit -n) procs=$(ulimit -u)" >&2
exit 1
"#,
        secret = secret.display(),
    );
    let path = dir.join("probe-render");
    std::fs::write(&path, script).expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

both_sets!(the_decoder_child_has_no_environment_no_secrets_and_no_network);
async fn the_decoder_child_has_no_environment_no_secrets_and_no_network(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    let tools = tempfile::tempdir().expect("tempdir");
    // A secret of the service's, in its data directory.
    let secret = settings.data_dir.join("probe-secret");
    std::fs::create_dir_all(&settings.data_dir).expect("data dir");
    std::fs::write(&secret, "the service's secret").expect("secret");
    let port = media_e2e::free_port();
    settings.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    settings.jobs.render_program = Some(probe_program(tools.path(), &secret, port));
    settings.jobs.serve_workers = Some(1);
    settings.jobs.max_attempts = 1;
    settings.jobs.max_open_files = 77;
    settings.jobs.max_processes = 3333;
    settings.jobs.poll_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    // The service itself is reachable on that port, and the worker process
    // has database and store settings in its environment to leak.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let alice = app.user("alice");
    let done = post(&alice, "x.png", "image/png", good_png(5)).await;
    let media = settled(&alice, done["media_id"].as_str().expect("id")).await;
    assert_eq!(media["status"], "failed", "{media}");
    let report = media_e2e::raw_column(&app, "select last_error from jobs").await;
    let report = report.first().expect("the job's error");
    assert!(
        report.contains("sandbox env=[] "),
        "{set:?}: the child had an environment: {report}"
    );
    assert!(report.contains("secret=unreadable"), "{set:?}: {report}");
    assert!(report.contains("net=unreachable"), "{set:?}: {report}");
    assert!(report.contains("files=77 procs=3333"), "{set:?}: {report}");
    app.stop().await;
}
