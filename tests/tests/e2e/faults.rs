//! Backends that go away under load, through a proxy the test cuts (the
//! backend itself, shared with every other test, keeps running).

use std::time::{Duration, Instant};

use media_e2e::{BackendSet, FaultProxy, ServiceProcess, free_port, test_settings};
use serde_json::{Value, json};

const SECRET: &str = "faults-test-secret-long-enough-0123456789ab";
const MIB: usize = 1024 * 1024;

/// The URL a backend setting holds.
fn exposed(url: Option<&secrecy::SecretString>) -> String {
    use secrecy::ExposeSecret;
    url.expect("the real set names the backend")
        .expose_secret()
        .to_owned()
}

/// A client that waits as long as uploads through an outage may take.
fn patient_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// For each `(token, data)`: an upload session opened and its first chunk
/// sent; `(upload_id, chunk_size)`.
async fn opened_with_first_chunk(
    client: &reqwest::Client,
    base: &str,
    files: &[(String, Vec<u8>)],
) -> Vec<(String, usize)> {
    let mut sessions = Vec::new();
    for (token, data) in files {
        let request = client
            .post(format!("{base}/v1/uploads"))
            .json(&json!({ "file_name": "f.bin", "size": data.len() }));
        let open = json_answer(request, token).await;
        let id = open["upload_id"].as_str().expect("id").to_owned();
        let chunk = open["chunk_size"].as_u64().expect("chunk") as usize;
        let first = client
            .put(format!("{base}/v1/uploads/{id}/chunks/1"))
            .bearer_auth(token)
            .body(data[..chunk].to_vec())
            .send()
            .await
            .expect("chunk 1");
        assert_eq!(first.status(), 200);
        sessions.push((id, chunk));
    }
    sessions
}

/// The JSON answer to `request`, made with `token`.
async fn json_answer(request: reqwest::RequestBuilder, token: &str) -> Value {
    request
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("json")
}

/// `GET /v1/uploads/{id}`.
async fn progress_of(client: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    json_answer(client.get(format!("{base}/v1/uploads/{id}")), token).await
}

/// `GET /v1/me`'s `usage`.
async fn usage_of(client: &reqwest::Client, base: &str, token: &str) -> Value {
    json_answer(client.get(format!("{base}/v1/me")), token).await["usage"].clone()
}

/// Completes an upload and checks its BLAKE3 is `data`'s.
async fn completes_as(client: &reqwest::Client, base: &str, token: &str, id: &str, data: &[u8]) {
    let done = json_answer(
        client.post(format!("{base}/v1/uploads/{id}/complete")),
        token,
    )
    .await;
    assert_eq!(
        done["blake3"].as_str(),
        Some(blake3::hash(data).to_hex().as_str()),
        "{done}"
    );
}

/// A call made while a backend is away: `503 backend-unavailable` with a
/// `Retry-After`, well within the request deadline (20 s here).
async fn unavailable(call: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>) {
    let started = Instant::now();
    let r = call.await.expect("an answer");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a call waited {:?}",
        started.elapsed()
    );
    assert_eq!(r.status(), 503, "the backend is away");
    let retry = media_e2e::header(&r, "retry-after");
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After: {retry:?}"
    );
    let problem: Value = r.json().await.expect("problem");
    assert_eq!(problem["code"], "backend-unavailable", "{problem}");
}

/// The S3 store away for ten seconds under load: chunk `PUT`s answer `503
/// backend-unavailable` with `Retry-After` (no 500, none hangs past the
/// request deadline), progress still reads (it is the database's), and
/// every upload completes once the store is back, with the right BLAKE3.
#[tokio::test]
async fn the_store_away_for_ten_seconds_answers_503_and_every_upload_completes_after() {
    let (settings, _dir) = test_settings(BackendSet::Real).await;
    let endpoint = media_e2e::real_env("AWS_ENDPOINT_URL");
    let store = FaultProxy::start(endpoint.trim_start_matches("http://")).await;
    let service = ServiceProcess::start_with(
        &settings,
        free_port(),
        SECRET,
        &[
            ("AWS_ENDPOINT_URL", &store.url()),
            ("MEDIA_REQUEST_TIMEOUT", "20s"),
        ],
    )
    .await;
    let client = patient_client();
    let base = service.base.clone();
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                service.token(&format!("user{i}")),
                media_e2e::random_bytes(8 * MIB + 1000 * (i + 1), i as u64),
            )
        })
        .collect();
    let put = |token: &str, id: &str, n: usize, body: Vec<u8>| {
        client
            .put(format!("{base}/v1/uploads/{id}/chunks/{n}"))
            .bearer_auth(token)
            .body(body)
            .send()
    };
    let sessions = opened_with_first_chunk(&client, &base, &files).await;

    store.cut();
    let away = Instant::now();
    for ((token, data), (id, chunk)) in files.iter().zip(&sessions) {
        unavailable(put(token, id, 2, data[*chunk..].to_vec())).await;
        // What the database holds still answers.
        let progress = progress_of(&client, &base, token, id).await;
        assert_eq!(progress["received_chunks"], json!([1]), "{progress}");
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(away.elapsed())).await;
    store.restore();

    // Each client does what a client does: asks what is missing, sends it.
    for ((token, data), (id, chunk)) in files.iter().zip(&sessions) {
        let progress = progress_of(&client, &base, token, id).await;
        assert_eq!(progress["missing_chunks"], json!([2]), "{progress}");
        let r = put(token, id, 2, data[*chunk..].to_vec())
            .await
            .expect("chunk 2 again");
        assert_eq!(r.status(), 200, "the store is back");
        completes_as(&client, &base, token, id, data).await;
    }
    assert!(!service.log().contains("panicked"));
}

/// PostgreSQL away for ten seconds (every connection dropped, as a restart
/// drops them): calls answer `503 backend-unavailable` with `Retry-After`
/// or finish, none waits past the request deadline, and once it is back
/// the pool reconnects and every upload completes.
#[tokio::test]
async fn the_database_away_for_ten_seconds_answers_503_and_every_upload_completes_after() {
    let (mut settings, _dir) = test_settings(BackendSet::Real).await;
    let url = exposed(settings.database_url.as_ref());
    // postgres://user:pass@127.0.0.1:PORT/db → the same through the proxy.
    let at = url.rfind('@').expect("host");
    let slash = at + url[at..].find('/').expect("db");
    let database = FaultProxy::start(&url[at + 1..slash]).await;
    let proxied = format!("{}@{}{}", &url[..at], database.addr, &url[slash..]);
    settings.database_url = Some(proxied.into());
    let service = ServiceProcess::start_with(
        &settings,
        free_port(),
        SECRET,
        &[("MEDIA_REQUEST_TIMEOUT", "20s")],
    )
    .await;
    let client = patient_client();
    let base = service.base.clone();
    let token = service.token("dana");
    let data = media_e2e::random_bytes(2 * MIB, 5);
    let open = || async {
        client
            .post(format!("{base}/v1/uploads"))
            .bearer_auth(&token)
            .json(&json!({ "file_name": "f.bin", "size": data.len() }))
            .send()
            .await
            .expect("open")
    };
    let first: Value = open().await.json().await.expect("json");
    let id = first["upload_id"].as_str().expect("id").to_owned();

    database.cut();
    let away = Instant::now();
    for _ in 0..3 {
        unavailable(async { Ok(open().await) }).await;
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(away.elapsed())).await;
    database.restore();

    let ready = media_e2e::eventually(Duration::from_secs(30), || async {
        client
            .put(format!("{base}/v1/uploads/{id}/chunks/1"))
            .bearer_auth(&token)
            .body(data.clone())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the pool reconnected");
    completes_as(&client, &base, &token, &id, &data).await;
    assert!(!service.log().contains("panicked"));
}

/// Redis killed mid-upload, started again empty (no persistence), and
/// flushed (`FLUSHALL`) before the uploads end: no upload fails — chunks are
/// recorded in the database, progress reads from it, rates let requests
/// through while their counters are unreachable — and once Redis is back
/// the live progress and the rate counters work again.
#[tokio::test]
async fn redis_killed_restarted_empty_and_flushed_mid_upload_fails_no_upload() {
    let (mut settings, _dir) = test_settings(BackendSet::Real).await;
    let redis = media_e2e::OwnRedis::start().await;
    settings.redis_url = Some(redis.url().into());
    let service = ServiceProcess::start_with(&settings, free_port(), SECRET, &[]).await;
    let client = patient_client();
    let base = service.base.clone();
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                service.token(&format!("rita{i}")),
                media_e2e::random_bytes(16 * MIB + 777 * (i + 1), 40 + i as u64),
            )
        })
        .collect();
    let sessions = opened_with_first_chunk(&client, &base, &files).await;
    let put = |token: &str, id: &str, n: usize, body: &[u8]| {
        client
            .put(format!("{base}/v1/uploads/{id}/chunks/{n}"))
            .bearer_auth(token)
            .body(body.to_vec())
            .send()
    };

    let mut redis = redis;
    redis.kill().await;
    for ((token, data), (id, chunk)) in files.iter().zip(&sessions) {
        let r = put(token, id, 2, &data[*chunk..2 * chunk])
            .await
            .expect("chunk 2");
        assert_eq!(r.status(), 200, "a chunk while Redis is down");
    }
    // The rate counters cannot be read meanwhile, and say so.
    let usage = usage_of(&client, &base, &files[0].0).await;
    assert!(
        usage
            .get("upload_bytes_per_hour")
            .is_some_and(Value::is_null),
        "{usage}"
    );
    // Started again, empty; progress is the database's.
    let redis = redis.restart().await;
    for ((token, _), (id, _)) in files.iter().zip(&sessions) {
        assert_eq!(
            progress_of(&client, &base, token, id).await["received_chunks"],
            json!([1, 2])
        );
    }
    // Flushed too, before the last chunks.
    redis.flushall().await;
    for ((token, data), (id, chunk)) in files.iter().zip(&sessions) {
        let r = put(token, id, 3, &data[2 * chunk..])
            .await
            .expect("chunk 3");
        assert_eq!(r.status(), 200, "a chunk after the restart and the flush");
        assert_eq!(
            progress_of(&client, &base, token, id).await["received_chunks"],
            json!([1, 2, 3])
        );
        completes_as(&client, &base, token, id, data).await;
    }
    // The rate counters read again.
    let came_back = media_e2e::eventually(Duration::from_secs(15), || async {
        usage_of(&client, &base, &files[0].0).await["upload_bytes_per_hour"].is_u64()
    })
    .await;
    assert!(came_back, "rate counters read again");
    assert!(!service.log().contains("panicked"));
}
