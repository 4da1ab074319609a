//! `mediactl` as a person uses it: in a terminal (a pseudo-terminal made by
//! util-linux `script`), interrupted with Ctrl-C halfway through an upload
//! and run again; and its other commands' answers and exit codes.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{
    BackendSet, ServiceProcess, eventually, free_port, mediactl_binary, test_settings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "mediactl-test-secret-long-enough-0123456789";
const MIB: usize = 1024 * 1024;

/// `mediactl ARGS` in a pseudo-terminal of 120 columns, its output
/// (everything the terminal would show) collected as it comes.
struct InTerminal {
    child: tokio::process::Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl InTerminal {
    fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut line = format!(
            "stty cols 120 rows 40; exec '{}'",
            mediactl_binary().display()
        );
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        let mut cmd = tokio::process::Command::new("script");
        cmd.args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("script (util-linux) runs mediactl in a terminal");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = output.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().expect("output").extend_from_slice(&buf[..n]);
            }
        });
        Self { child, output }
    }

    /// Types Ctrl-C, as a person at the keyboard does.
    async fn ctrl_c(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(&[0x03]).await.expect("type ^C");
        stdin.flush().await.expect("flush");
    }

    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(180), self.child.wait())
            .await
            .expect("mediactl ends")
            .expect("wait");
        // Let the reader take the last bytes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        status.code().unwrap_or(-1)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("output")).into_owned()
    }
}

fn b3sum(path: &Path) -> String {
    let out = std::process::Command::new("b3sum")
        .arg(path)
        .output()
        .expect("b3sum (infra/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

async fn chunks_received(service: &ServiceProcess) -> u64 {
    service.metric("upload_chunks_received_total", &[]).await as u64
}

both_sets!(an_upload_interrupted_with_ctrl_c_resumes_sending_only_what_is_missing);
async fn an_upload_interrupted_with_ctrl_c_resumes_sending_only_what_is_missing(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("holiday.mov.bin");
    // 200 MiB: 25 chunks of 8 MiB.
    std::fs::write(&file, media_e2e::random_bytes(200 * MIB, 17)).expect("write");
    let env = [
        ("MEDIA_URL", service.base.clone()),
        ("MEDIA_TOKEN", service.token("alice")),
        (
            "XDG_STATE_HOME",
            work.path().join("state").display().to_string(),
        ),
    ];
    let path = file.display().to_string();
    // Paced to 40 MiB/s, so that halfway is a moment a test can catch.
    let args = [
        "upload",
        path.as_str(),
        "--parallel",
        "2",
        "--limit-rate",
        "40M",
    ];
    let before = chunks_received(&service).await;
    let mut first = InTerminal::start(&args, &env);
    let halfway = eventually(Duration::from_secs(60), || async {
        chunks_received(&service).await - before >= 8
    })
    .await;
    assert!(
        halfway,
        "{set:?}: the upload did not get going: {}",
        first.text()
    );
    first.ctrl_c().await;
    assert_eq!(first.exit_code().await, 130, "{set:?}: {}", first.text());
    let shown = first.text();
    // A bar was drawn (redrawn in place), with sizes, rate and time left.
    assert!(shown.contains("holiday.mov.bin"), "{shown}");
    assert!(
        shown.contains(" MiB/200.00 MiB"),
        "{set:?}: no byte count in: {shown}"
    );
    assert!(shown.contains("MiB/s") && shown.contains("ETA"), "{shown}");
    assert!(
        shown.contains('\r') || shown.contains("\x1b["),
        "not redrawn in place: {shown:?}"
    );
    assert!(shown.contains("run the same command again"), "{shown}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_first = chunks_received(&service).await - before;
    assert!(
        sent_first < 25,
        "{set:?}: it was not interrupted ({sent_first} chunks)"
    );

    let mut second = InTerminal::start(&args, &env);
    assert_eq!(second.exit_code().await, 0, "{set:?}: {}", second.text());
    let sent_second = chunks_received(&service).await - before - sent_first;
    assert_eq!(
        sent_first + sent_second,
        25,
        "{set:?}: chunks were sent twice, or not at all (first run {sent_first}, second {sent_second})"
    );
    let shown = second.text();
    assert!(
        shown.contains(&format!(
            "sending {sent_second} of 25 chunks ({sent_first} already there)"
        )),
        "{set:?}: {shown}"
    );
    let digest = b3sum(&file);
    assert!(
        shown.contains(&format!("blake3 {digest}")),
        "{set:?}: the printed BLAKE3 is not b3sum's {digest}: {shown}"
    );
    // Done: nothing left in the state file.
    let state = std::fs::read_to_string(work.path().join("state/mediactl/uploads.json"))
        .expect("state file");
    assert_eq!(state.trim(), "{}", "{state}");
    // Uploaded again, the owner's copy is recognised by its hash: no byte sent.
    let mut again = InTerminal::start(&args, &env);
    assert_eq!(again.exit_code().await, 0, "{}", again.text());
    assert!(
        again.text().contains("already yours: nothing sent"),
        "{}",
        again.text()
    );
    assert_eq!(chunks_received(&service).await - before, 25);
    service.kill().await;
}

/// Runs `mediactl ARGS` with stdout a pipe; answers (exit code, stdout, stderr).
async fn mediactl(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(mediactl_binary());
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("mediactl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn mediactl_prints_lines_for_scripts_and_exit_codes_that_say_what_happened() {
    let (settings, _dir) = test_settings(BackendSet::Embedded).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("notes.bin");
    let data = media_e2e::random_bytes(3 * MIB + 5, 23);
    std::fs::write(&file, &data).expect("write");
    let user = [
        ("MEDIA_URL", service.base.clone()),
        ("MEDIA_TOKEN", service.token("bob")),
        (
            "XDG_STATE_HOME",
            work.path().join("state").display().to_string(),
        ),
    ];
    let path = file.display().to_string();
    let (code, out, err) = mediactl(&["upload", &path], &user).await;
    assert_eq!(code, 0, "{out}{err}");
    // No bars in a pipe: lines, and the result.
    assert!(!out.contains('\r') && !out.contains("\x1b["), "{out:?}");
    let digest = blake3::hash(&data).to_hex().to_string();
    let done = out
        .lines()
        .find(|l| l.contains(&digest))
        .expect("the result line");
    let media_id = done.split_whitespace().nth(1).expect("media id").to_owned();
    let (code, out, _) = mediactl(&["ls"], &user).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .next()
            .is_some_and(|h| h.starts_with("MEDIA ID")),
        "{out}"
    );
    assert!(
        out.contains("notes.bin") && out.contains("3.0 MiB"),
        "{out}"
    );

    // A download resumes a partial file with a Range request.
    let target = work.path().join("copy.bin");
    std::fs::write(work.path().join("copy.bin.part"), &data[..MIB]).expect("part");
    let (code, out, err) = mediactl(
        &["download", &media_id, "-o", &target.display().to_string()],
        &user,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("resuming after 1.0 MiB"), "{out}");
    assert!(std::fs::read(&target).expect("copy") == data);

    // Refusals print the problem's title and code, and exit 3.
    let (code, _, err) =
        mediactl(&["download", "01a00000-0000-7000-8000-000000000000"], &user).await;
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err.trim(),
        "error: Not Found (media-not-found): no such media",
        "{err}"
    );
    let (code, _, err) = mediactl(&["admin", "stats"], &user).await;
    assert_eq!(code, 3);
    assert!(err.contains("(admin-required)"), "{err}");
    // Usage errors exit 2; a service that does not answer, 4.
    let (code, _, _) = mediactl(&["upload"], &user).await;
    assert_eq!(code, 2);
    let admin = [
        ("MEDIA_URL", service.base.clone()),
        ("MEDIA_TOKEN", service.admin_token()),
    ];
    let (code, _, err) = mediactl(&["admin", "erase", "bob"], &admin).await;
    assert_eq!(code, 2, "erasing asks first: {err}");
    assert!(err.contains("--yes"), "{err}");
    let (code, out, _) = mediactl(&["admin", "stats"], &admin).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("media") && l.trim_end().ends_with(" 1")),
        "{out}"
    );
    let (code, out, _) = mediactl(&["admin", "stats", "--json"], &admin).await;
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(stats["media"], 1);
    let (code, out, _) = mediactl(
        &[
            "admin",
            "reprocess",
            "--content-type",
            "image/*",
            "--dry-run",
        ],
        &admin,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.starts_with("0 contents match"), "{out}");
    let (code, _, err) = mediactl(&["admin", "reprocess", "--preset", "nope"], &admin).await;
    assert_eq!(code, 3);
    assert!(err.contains("(invalid-selector)"), "{err}");
    let (code, out, _) = mediactl(&["admin", "block", &digest, "--reason", "test"], &admin).await;
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("blocked {digest} (new;")), "{out}");
    let (code, _, err) = mediactl(&["download", &media_id, "-o", "/dev/null"], &user).await;
    assert_eq!(code, 3);
    assert!(err.contains("(content-blocked)"), "{err}");
    let (code, out, _) = mediactl(&["admin", "unblock", &digest], &admin).await;
    assert_eq!(
        (code, out.trim()),
        (0, format!("unblocked {digest}").as_str())
    );
    let (code, out, err) = mediactl(&["admin", "erase", "bob", "--yes"], &admin).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("media deleted") && l.ends_with(" 1")),
        "{out}"
    );
    let (code, out, _) = mediactl(&["admin", "fsck"], &admin).await;
    assert_eq!(code, 0);
    assert!(out.contains(": clean"), "{out}");
    service.kill().await;
    let gone = [
        ("MEDIA_URL", format!("http://127.0.0.1:{}", free_port())),
        ("MEDIA_TOKEN", "t".to_owned()),
    ];
    let (code, _, err) = mediactl(&["ls"], &gone).await;
    assert_eq!(code, 4, "{err}");
    assert!(
        err.starts_with("error: the service is unavailable"),
        "{err}"
    );
}
