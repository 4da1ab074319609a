//! Stock tus clients against the service, both pinned and installed by
//! `infra/install-protocol-clients.sh`: tuspy (PyPI) and tus-js-client (npm,
//! under Node), each killed halfway and started again; tus-js-client's
//! parallel uploads (concatenation).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{BackendSet, ServiceProcess, free_port, test_settings};
use tokio::io::AsyncBufReadExt;

const SECRET: &str = "tus-clients-test-secret-long-enough-0123";
const MIB: u64 = 1024 * 1024;

fn python() -> PathBuf {
    media_e2e::venv_program("python")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// `node` with tus-js-client installed beside the script.
fn node() -> tokio::process::Command {
    let modules = script("node_modules/tus-js-client/package.json");
    assert!(
        modules.is_file(),
        "{} is missing: infra/install-protocol-clients.sh installs tus-js-client (infra/test.sh runs it)",
        modules.display()
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script("tus_js_upload.js"));
    cmd
}

/// A tus `HEAD` of an upload.
async fn head(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .head(url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .expect("head")
}

/// Where a finished tus upload led: its media, read back.
async fn media_of(service: &ServiceProcess, token: &str, url: &str) -> serde_json::Value {
    let answer = head(url, token).await;
    let media_id = media_e2e::header(&answer, "media-id");
    assert!(!media_id.is_empty(), "no media for {url}");
    reqwest::Client::new()
        .get(format!("{}/v1/media/{media_id}", service.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("media")
        .json()
        .await
        .expect("json")
}

/// After a 40 MiB upload killed halfway and resumed: less than 1.5 × the
/// file reached the service, and the media is the file.
async fn resumed_whole(service: &ServiceProcess, token: &str, url: &str, file: &std::path::Path) {
    let sent = service.metric("tus_bytes_received_total", &[]).await;
    assert!(
        sent >= (40 * MIB) as f64 && sent < 1.5 * (40 * MIB) as f64,
        "{sent} bytes reached the service for a 40 MiB file"
    );
    let media = media_of(service, token, url).await;
    assert_eq!(media["blake3"], b3sum(file).as_str(), "{media}");
    assert_eq!(media["file_name"], "forty.bin");
}

/// A client run to its end: its output, which must end in `DONE URL`.
async fn finish(child: tokio::process::Child, what: &str) -> (String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the client ends")
        .expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("DONE "))
        .unwrap_or_else(|| panic!("{what}: no DONE line: {text}"))
        .to_owned();
    (text, url)
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
        cmd.arg(script("tuspy_upload.py"))
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
    let (text, done) = finish(run(), &format!("{set:?}")).await;
    assert_eq!(done, url, "{set:?}: not resumed: {text}");
    // It went on from the server's offset: its first PATCH ended past 16 MiB.
    let resumed_at: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("OFFSET "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("an offset");
    assert!(resumed_at > 16 * MIB, "{set:?}: started over: {text}");
    resumed_whole(&service, &token, &url, &file).await;
    service.kill().await;
}

both_sets!(tus_js_client_killed_halfway_resumes_from_the_servers_offset);
async fn tus_js_client_killed_halfway_resumes_from_the_servers_offset(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("forty.bin");
    std::fs::write(&file, media_e2e::random_bytes(40 * MIB as usize, 82)).expect("write");
    let store = work.path().join("tus-urls.json");
    let endpoint = format!("{}/v1/tus/", service.base);
    let token = service.token("alice");
    // The client's defaults: the whole file in one PATCH.
    let run = || {
        let mut cmd = node();
        cmd.args([&endpoint, &token])
            .arg(&file)
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("node")
    };
    // The first run, killed (SIGKILL) mid-PATCH once it has sent 20 MiB.
    let mut first = run();
    let mut lines = tokio::io::BufReader::new(first.stdout.take().expect("stdout")).lines();
    let mut url = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(u) = line.strip_prefix("URL ") {
            url = u.to_owned();
        }
        let sent = line
            .strip_prefix("PROGRESS ")
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        if sent.is_some_and(|n| n >= 20 * MIB) {
            first.kill().await.expect("kill");
            break;
        }
    }
    let _ = first.wait().await;
    assert!(
        url.starts_with("http"),
        "{set:?}: tus-js-client printed no URL"
    );
    // The server kept what arrived of the cut-off PATCH.
    let answer = head(&url, &token).await;
    let kept: u64 = media_e2e::header(&answer, "upload-offset")
        .parse()
        .expect("offset");
    assert!(kept > 0, "{set:?}: nothing of the cut-off PATCH was kept");
    // Started again: it finds its upload in its URL store, asks the server's
    // offset and sends the rest.
    let (text, done) = finish(run(), &format!("{set:?}")).await;
    assert!(
        text.contains(&format!("RESUMING {url}")),
        "{set:?}: not resumed: {text}"
    );
    assert_eq!(done, url, "{set:?}: {text}");
    resumed_whole(&service, &token, &url, &file).await;
    service.kill().await;
}

both_sets!(tus_js_client_parallel_uploads_concatenate_into_the_same_content);
async fn tus_js_client_parallel_uploads_concatenate_into_the_same_content(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let work = tempfile::tempdir().expect("tempdir");
    // Not a multiple of 4: the pieces are of unequal, unaligned sizes.
    let file = work.path().join("parallel.bin");
    std::fs::write(
        &file,
        media_e2e::random_bytes(40 * MIB as usize + 12_345, 83),
    )
    .expect("write");
    let endpoint = format!("{}/v1/tus/", service.base);
    let token = service.token("bob");
    let mut cmd = node();
    cmd.args([&endpoint, &token])
        .arg(&file)
        .arg(work.path().join("tus-urls.json"))
        .arg("4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (_, url) = finish(cmd.spawn().expect("node"), &format!("{set:?}")).await;
    let media = media_of(&service, &token, &url).await;
    assert_eq!(media["blake3"], b3sum(&file).as_str(), "{set:?}: {media}");
    assert_eq!(media["file_name"], "parallel.bin");
    assert_eq!(media["size"], 40 * MIB + 12_345);
    // The final upload names its four pieces; each is used up.
    let answer = head(&url, &token).await;
    let concat = media_e2e::header(&answer, "upload-concat");
    let pieces: Vec<&str> = concat
        .strip_prefix("final;")
        .unwrap_or_else(|| panic!("{set:?}: Upload-Concat {concat:?}"))
        .split_whitespace()
        .collect();
    assert_eq!(pieces.len(), 4, "{set:?}: {concat}");
    for piece in pieces {
        let gone = head(piece, &token).await;
        assert_eq!(gone.status(), 410, "{set:?}: {piece}");
    }
    service.kill().await;
}
