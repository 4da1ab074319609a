//! Promises the README makes that no other test held: body limits and
//! request deadlines, the problem codes of bad types, completed uploads and
//! cut bodies, a failing backend's 503 with `Retry-After`, the S3 part
//! minimum, page sizes, preset versions from the configuration, variants
//! collected with their content, secrets kept out of logs, draining on
//! SIGTERM, and the `aborted` event.

use std::time::Duration;

use futures_util::StreamExt;
use media_e2e::both_sets;
use media_e2e::{
    BackendSet, ServiceProcess, TestApp, eventually, free_port, header, json_of, problem_of,
    random_bytes, test_settings,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// Sends `head` (request line and headers, without the blank line), then
/// `body` after `pause`; with `cut`, closes the sending half after the body
/// however long the request said it was. Returns the status and the body of
/// the answer.
async fn raw(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
    pause: Duration,
    cut: bool,
) -> (u16, Value) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(format!("{head}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("head");
    tokio::time::sleep(pause).await;
    let _ = socket.write_all(body).await;
    if cut {
        socket.shutdown().await.expect("half-close");
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked answer: the JSON is the line that starts with `{`.
    let json = body
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn json_bodies_over_the_limit_are_refused_and_slow_requests_time_out() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    settings.limits.max_json_body = "1KiB".parse().expect("size");
    settings.request_timeout = Duration::from_millis(500);
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let alice = app.user("alice");
    let long = "x".repeat(2000);
    problem_of(
        alice
            .create_upload(json!({ "file_name": long, "size": 10 }))
            .await,
        413,
        "body-too-large",
    )
    .await;
    // Just under the limit is read (and judged on its content).
    let r = alice
        .create_upload(json!({ "file_name": "x".repeat(900), "size": 10 }))
        .await;
    assert_ne!(r.status(), 413);
    // A body that does not come within the deadline.
    let token = app.token("alice");
    let (status, problem) = raw(
        app.addr,
        &format!(
            "POST /v1/uploads HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: 30"
        ),
        b"{\"file_name\":\"a\",\"size\":10}  ",
        Duration::from_millis(1500),
        false,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (408, Some("request-timeout"))
    );
    app.stop().await;
}

both_sets!(problem_codes_for_bad_types_completed_uploads_and_cut_bodies);
async fn problem_codes_for_bad_types_completed_uploads_and_cut_bodies(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    for bad in ["nonsense", "text/\u{7}plain", &"a/".repeat(200)] {
        problem_of(
            alice
                .create_upload(json!({ "file_name": "f", "size": 10, "content_type": bad }))
                .await,
            400,
            "invalid-content-type",
        )
        .await;
    }
    // A chunk whose body ends before its length: refused, nothing recorded.
    let data = random_bytes(9 * MIB, 90);
    let session = alice.open("cut.bin", data.len()).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let token = app.token("alice");
    let (status, problem) = raw(
        app.addr,
        &format!(
            "PUT /v1/uploads/{id}/chunks/2 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-length: {}",
            MIB
        ),
        &data[8 * MIB..8 * MIB + 1000],
        Duration::ZERO,
        true,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("chunk-incomplete")),
        "{set:?}: {problem}"
    );
    let progress = json_of(alice.get(&format!("/v1/uploads/{id}")).await, 200).await;
    assert_eq!(progress["received_chunks"], json!([]), "{set:?}");
    // A completed upload takes no more chunks and cannot be deleted.
    alice.send_chunks(&id, &data, 8 * MIB, &[1, 2], 2).await;
    json_of(alice.complete(&id).await, 200).await;
    problem_of(
        alice.put_chunk(&id, 1, data[..8 * MIB].to_vec()).await,
        409,
        "upload-completed",
    )
    .await;
    problem_of(
        alice.delete(&format!("/v1/uploads/{id}")).await,
        409,
        "upload-completed",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_failing_backend_answers_503_with_retry_after_and_no_detail() {
    let (mut settings, dir) = test_settings(BackendSet::Real).await;
    // A bucket that does not exist: every store call fails.
    settings.blob_store = Some("s3://no-such-bucket-for-this-test/p".into());
    let app = TestApp::spawn_with(BackendSet::Real, settings, dir).await;
    let alice = app.user("alice");
    let r = alice
        .create_upload(json!({ "file_name": "f", "size": 10 }))
        .await;
    assert_eq!(header(&r, "retry-after"), "1");
    let problem = problem_of(r, 503, "backend-unavailable").await;
    let text = problem.to_string();
    assert!(
        !text.contains("no-such-bucket") && !text.to_lowercase().contains("nosuchbucket"),
        "the store's error reached the client: {text}"
    );
    app.stop().await;
}

both_sets!(s3_parts_are_at_least_8_mib);
async fn s3_parts_are_at_least_8_mib(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let r = alice
        .create_upload(json!({ "file_name": "f", "size": 20 * MIB, "chunk_size": 4 * MIB }))
        .await;
    match set {
        // S3 wants 5 MiB parts (but the last): the smallest power of two is 8 MiB.
        BackendSet::Real => {
            problem_of(r, 400, "invalid-chunk-size").await;
        }
        // The filesystem store has no such rule.
        BackendSet::Embedded => {
            assert_eq!(json_of(r, 201).await["chunk_size"], 4 * MIB);
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn pages_default_to_50_and_limits_are_bounded() {
    let app = TestApp::spawn(BackendSet::Embedded).await;
    let alice = app.user("alice");
    for i in 0..55u64 {
        alice
            .post_media("n.txt", format!("note {i}").as_bytes())
            .await;
    }
    let first = json_of(alice.get("/v1/media").await, 200).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(50));
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = json_of(alice.get(&format!("/v1/media?cursor={cursor}")).await, 200).await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(5));
    assert!(second.get("next_cursor").is_none(), "{second}");
    for bad in ["0", "201"] {
        problem_of(
            alice.get(&format!("/v1/media?limit={bad}")).await,
            400,
            "invalid-limit",
        )
        .await;
    }
    let all = json_of(alice.get("/v1/media?limit=200").await, 200).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(55));
    app.stop().await;
}

both_sets!(preset_versions_come_from_the_configuration_and_variants_go_with_their_content);
async fn preset_versions_come_from_the_configuration_and_variants_go_with_their_content(
    set: BackendSet,
) {
    let (mut settings, dir) = test_settings(set).await;
    for preset in &mut settings.presets.image {
        if preset.name == "thumb" {
            preset.version = 3;
        }
    }
    settings.gc_grace = Duration::from_secs(1);
    settings.gc_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let media = alice
        .post_media(
            "p.png",
            &media_e2e::test_image(image::ImageFormat::Png, 400, 300, 40),
        )
        .await;
    let id = media["media_id"].as_str().expect("id").to_owned();
    let ready = eventually(Duration::from_secs(60), || async {
        json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await["status"] == "ready"
    })
    .await;
    assert!(ready, "{set:?}: not processed");
    let blobs = app.state.backends.blobs.clone();
    let keys: Vec<String> = blobs.list("").await.expect("list");
    assert!(
        keys.iter().any(|k| k.ends_with("/thumb-v3")),
        "{set:?}: the configured version names the variant: {keys:?}"
    );
    assert!(!keys.iter().any(|k| k.ends_with("/thumb-v1")), "{keys:?}");
    assert_eq!(
        keys.len(),
        4,
        "{set:?}: the original, thumb, preview and the metadata-free original: {keys:?}"
    );
    // The last reference goes: the original and every variant follow.
    assert_eq!(alice.delete(&format!("/v1/media/{id}")).await.status(), 204);
    let gone = eventually(Duration::from_secs(15), || async {
        blobs.list("").await.is_ok_and(|l| l.is_empty())
    })
    .await;
    assert!(gone, "{set:?}: left behind: {:?}", blobs.list("").await);
    app.stop().await;
}

#[tokio::test]
async fn settings_and_logs_never_show_secrets() {
    let (mut settings, _dir) = test_settings(BackendSet::Embedded).await;
    let secrets = [
        "jwt-secret-that-must-not-leak-0123456789",
        "url-secret-that-must-not-leak-0123456789",
    ];
    settings.jwt_secret = Some(secrecy::SecretString::from(secrets[0]));
    settings.url_signing_secret = Some(secrecy::SecretString::from(secrets[1]));
    settings.database_url = Some(secrecy::SecretString::from(
        "postgres://u:db-password-leak@h/d",
    ));
    let debug = format!("{settings:?}");
    for s in secrets.iter().chain(&["db-password-leak"]) {
        assert!(!debug.contains(s), "Debug shows a secret: {debug}");
    }
    // The service, logging at debug level, over requests that use both secrets.
    let (settings, _dir) = test_settings(BackendSet::Embedded).await;
    let service = ServiceProcess::start_with(
        &settings,
        free_port(),
        secrets[0],
        &[
            ("MEDIA_URL_SIGNING_SECRET", secrets[1]),
            ("MEDIA_JOBS__SERVE_WORKERS", "0"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let (base, token) = (service.base.clone(), service.token("alice"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = client
        .post(format!("{base}/v1/media?file_name=a.txt"))
        .bearer_auth(&token)
        .body("hello")
        .send()
        .await
        .expect("post");
    let id = json_of(r, 201).await["media_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = client
        .get(format!("{base}/v1/media/{id}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("content");
    assert_eq!(r.status(), 302);
    let log = service.kill_and_log().await;
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "no debug log: {log}"
    );
    for s in secrets {
        assert!(!log.contains(s), "the log shows a secret");
    }
}

#[tokio::test]
async fn requests_in_flight_finish_after_sigterm() {
    let (settings, _dir) = test_settings(BackendSet::Embedded).await;
    let secret = "drain-test-secret-long-enough-0123456789";
    let service = ServiceProcess::start(&settings, free_port(), secret).await;
    let token = service.token("alice");
    let client = reqwest::Client::new();
    let data = random_bytes(2 * MIB, 91);
    let r = client
        .post(format!("{}/v1/uploads", service.base))
        .bearer_auth(&token)
        .json(&json!({ "file_name": "d.bin", "size": data.len() }))
        .send()
        .await
        .expect("create");
    let id = json_of(r, 201).await["upload_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A chunk whose second half comes after the signal.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let put = tokio::spawn(
        client
            .put(format!("{}/v1/uploads/{id}/chunks/1", service.base))
            .bearer_auth(&token)
            .header("content-length", data.len())
            .body(body)
            .send(),
    );
    tx.send(Ok(data[..MIB].to_vec())).await.expect("first half");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = service.pid();
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(Ok(data[MIB..].to_vec()))
        .await
        .expect("second half");
    drop(tx);
    let r = put
        .await
        .expect("task")
        .expect("the chunk PUT got an answer");
    assert_eq!(r.status(), 200, "the request in flight was dropped");
    let status = service.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

fn tokio_stream_of(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

#[tokio::test]
async fn deleting_an_upload_sends_aborted_and_ends_its_stream() {
    let app = TestApp::spawn(BackendSet::Embedded).await;
    let alice = app.user("alice");
    let session = alice.open("a.bin", 10 * MIB).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let r = alice.get(&format!("/v1/uploads/{id}/events")).await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    // The first snapshot, then the deletion.
    let first = stream.next().await.expect("an event").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("event: progress"));
    assert_eq!(
        alice.delete(&format!("/v1/uploads/{id}")).await.status(),
        204
    );
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("bytes")));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end: {seen}");
    assert!(seen.contains("event: aborted"), "{seen}");
    assert!(seen.contains("\"reason\":\"deleted\""), "{seen}");
    app.stop().await;
}

#[tokio::test]
async fn a_failing_job_is_retried_after_its_backoff_then_dead_after_its_attempts() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    // A render program that fails every time, as a crashing decoder would.
    settings.jobs.render_program = Some("/bin/false".into());
    settings.jobs.max_attempts = 3;
    settings.jobs.backoff = Duration::from_millis(400);
    settings.jobs.poll_interval = Duration::from_millis(50);
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let alice = app.user("alice");
    let started = std::time::Instant::now();
    let media = alice
        .post_media(
            "p.png",
            &media_e2e::test_image(image::ImageFormat::Png, 400, 300, 40),
        )
        .await;
    let id = media["media_id"].as_str().expect("id").to_owned();
    let failed = eventually(Duration::from_secs(30), || async {
        json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await["status"] == "failed"
    })
    .await;
    assert!(failed, "the job never gave up");
    // Three attempts with 400 ms, then 800 ms between them.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "dead after {:?}: the retries did not wait their backoff",
        started.elapsed()
    );
    let view = json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(
        view["failure_reason"], "the media processor exited with status 1",
        "{view}"
    );
    let counts = app.state.backends.jobs.counts().await.expect("counts");
    assert!(
        counts
            .iter()
            .any(|(s, n)| *s == media_api::metadata_store::jobs::JobState::Dead && *n == 1),
        "{counts:?}"
    );
    app.stop().await;
}
