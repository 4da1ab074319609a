//! Stock tus clients against the service: tuspy (PyPI, pinned by
//! `infra/install-protocol-clients.sh`), killed halfway and started again.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{BackendSet, ServiceProcess, free_port, test_settings};
use tokio::io::AsyncBufReadExt;

const SECRET: &str = "tus-clients-test-secret-long-enough-0123";
const MIB: u64 = 1024 * 1024;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let local = std::env::var_os("MEDIA_INFRA_DIR")
        .map_or_else(|| root.join("infra/.local"), PathBuf::from);
    let python = local.join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: infra/install-protocol-clients.sh installs tuspy (infra/test.sh runs it)",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/tuspy_upload.py")
}

fn b3sum(path: &std::path::Path) -> String {
    let out = std::process::Command::new("b3sum")
        .arg(path)
        .output()
        .expect("b3sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

both_sets!(tuspy_killed_halfway_resumes_from_the_servers_offset);
async fn tuspy_killed_halfway_resumes_from_the_servers_offset(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("forty.bin");
    std::fs::write(&file, media_e2e::random_bytes(40 * MIB as usize, 81)).expect("write");
    let store = work.path().join("tus-urls.json");
    // PATCHes of 3 MiB + 7: none lines up with an 8 MiB part.
    let chunk = (3 * MIB + 7).to_string();
    let endpoint = format!("{}/v1/tus/", service.base);
    let token = service.token("alice");
    let run = || {
        let mut cmd = tokio::process::Command::new(python());
        cmd.arg(script())
            .args([&endpoint, &token])
            .arg(&file)
            .arg(&store)
            .arg(&chunk)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("tuspy")
    };
    // The first run, killed (SIGKILL) once it has sent 16 MiB.
    let mut first = run();
    let mut lines = tokio::io::BufReader::new(first.stdout.take().expect("stdout")).lines();
    let mut url = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some((at, u)) = line.strip_prefix("OFFSET ").and_then(|l| l.split_once(' ')) else {
            continue;
        };
        url = u.to_owned();
        if at.parse::<u64>().expect("offset") >= 16 * MIB {
            // Mid-way through the next PATCH, as a crash would.
            first.kill().await.expect("kill");
            break;
        }
    }
    let _ = first.wait().await;
    assert!(url.starts_with("http"), "{set:?}: tuspy printed no URL");
    // Started again: it asks the server's offset and sends the rest.
    let second = run();
    let out = tokio::time::timeout(Duration::from_secs(120), second.wait_with_output())
        .await
        .expect("tuspy ends")
        .expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{set:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("DONE {url}")),
        "{set:?}: not resumed: {text}"
    );
    // It went on from the server's offset: its first PATCH ended past 16 MiB.
    let resumed_at: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("OFFSET "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("an offset");
    assert!(resumed_at > 16 * MIB, "{set:?}: started over: {text}");
    let sent = service.metric("tus_bytes_received_total", &[]).await;
    assert!(
        sent >= (40 * MIB) as f64 && sent < 1.5 * (40 * MIB) as f64,
        "{set:?}: {sent} bytes reached the service for a 40 MiB file"
    );
    let head = reqwest::Client::new()
        .head(&url)
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .expect("head");
    let media_id = media_e2e::header(&head, "media-id");
    assert!(!media_id.is_empty(), "{set:?}: no media");
    let media: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/media/{media_id}", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("media")
        .json()
        .await
        .expect("json");
    assert_eq!(media["blake3"], b3sum(&file).as_str(), "{set:?}: {media}");
    assert_eq!(media["file_name"], "forty.bin");
    service.kill().await;
}
