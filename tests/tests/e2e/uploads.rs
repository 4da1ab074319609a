//! Chunked, resumable uploads as a client app sees them, on both backend sets.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, User, eventually, json_of, metric, problem_of, random_bytes, stored_bytes,
    test_settings, wait_ready,
};
use serde_json::json;

const MIB: usize = 1024 * 1024;

fn chunk_of(data: &[u8], chunk_size: usize, n: usize) -> Vec<u8> {
    let start = (n - 1) * chunk_size;
    data[start..(start + chunk_size).min(data.len())].to_vec()
}

async fn session(user: &User<'_>, name: &str, size: usize) -> (String, usize, usize) {
    let s = user.open(name, size).await;
    (
        s["upload_id"].as_str().expect("id").to_owned(),
        s["chunk_size"].as_u64().expect("chunk size") as usize,
        s["total_chunks"].as_u64().expect("total") as usize,
    )
}

async fn progress(user: &User<'_>, id: &str) -> serde_json::Value {
    json_of(user.get(&format!("/v1/uploads/{id}")).await, 200).await
}

both_sets!(a_large_file_in_shuffled_parallel_chunks_round_trips);
async fn a_large_file_in_shuffled_parallel_chunks_round_trips(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(50 * MIB + 12_345, 1);
    let r = alice
        .create_upload(json!({"file_name": "holiday.bin", "size": data.len(), "content_type": "application/x-test"}))
        .await;
    assert!(r.headers().contains_key("location"));
    let s = json_of(r, 201).await;
    assert_eq!(s["chunk_size"], 8 * MIB, "{set:?}: default chunk size");
    assert_eq!(s["total_chunks"], 7);
    assert_eq!(s["received_chunks"], json!([]));
    assert!(s["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let id = s["upload_id"].as_str().expect("id");

    let mut order: Vec<usize> = (1..=7).collect();
    media_e2e::shuffle(&mut order, 42);
    alice.send_chunks(id, &data, 8 * MIB, &order, 4).await;

    let p = progress(&alice, id).await;
    assert_eq!(p["state"], "receiving");
    assert_eq!(p["received_chunks"], json!([1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(p["missing_chunks"], json!([]));
    assert_eq!(p["received_bytes"], data.len());
    assert_eq!(p["percent"], 100.0);

    let done = json_of(alice.complete(id).await, 200).await;
    assert_eq!(
        done["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}"
    );
    assert_eq!(done["size"], data.len());
    assert_eq!(done["file_name"], "holiday.bin");
    assert_eq!(
        done["content_type"], "application/octet-stream",
        "sniffed, not claimed"
    );
    assert_eq!(done["deduplicated"], false);
    let media_id = done["media_id"].as_str().expect("media id");
    assert!(
        stored_bytes(&app, media_id).await == data,
        "{set:?}: stored object differs"
    );

    // Complete again: the same answer.
    let again = json_of(alice.complete(id).await, 200).await;
    assert_eq!(again["media_id"], done["media_id"]);
    let p = progress(&alice, id).await;
    assert_eq!(p["state"], "completed");
    assert_eq!(p["media_id"], done["media_id"]);

    let media = json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    for field in ["media_id", "blake3", "size", "content_type", "file_name"] {
        assert_eq!(media[field], done[field], "{field}");
    }
    assert_eq!(media["status"], "ready");
    assert!(media["created_at"].as_str().is_some());

    // Nobody else learns that the upload or the media exist.
    let bob = app.user("bob");
    problem_of(
        bob.get(&format!("/v1/uploads/{id}")).await,
        404,
        "upload-not-found",
    )
    .await;
    problem_of(bob.complete(id).await, 404, "upload-not-found").await;
    problem_of(
        bob.get(&format!("/v1/media/{media_id}")).await,
        404,
        "media-not-found",
    )
    .await;
    app.stop().await;
}

both_sets!(edge_sizes_one_byte_one_chunk_and_whole_chunks);
async fn edge_sizes_one_byte_one_chunk_and_whole_chunks(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    for (len, chunks) in [(1, 1), (8 * MIB, 1), (16 * MIB, 2), (8 * MIB + 1, 2)] {
        let data = random_bytes(len, len as u64);
        let s = alice.open("edge.bin", len).await;
        assert_eq!(s["total_chunks"], chunks, "{set:?} {len}");
        let done = alice.upload("edge.bin", &data).await;
        assert_eq!(
            done["blake3"],
            blake3::hash(&data).to_hex().as_str(),
            "{set:?} {len}"
        );
        let id = done["media_id"].as_str().expect("id");
        assert!(stored_bytes(&app, id).await == data, "{set:?} {len}");
    }
    app.stop().await;
}

both_sets!(chunk_size_is_chosen_and_requests_are_checked);
async fn chunk_size_is_chosen_and_requests_are_checked(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.max_file_size = "200GiB".parse().expect("size");
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    // 100 GiB in 8 MiB chunks would be 12,800 parts: the size doubles.
    let big = 100u64 << 30;
    let s = json_of(
        alice
            .create_upload(json!({"file_name": "big", "size": big}))
            .await,
        201,
    )
    .await;
    assert_eq!(s["chunk_size"], 16 * MIB, "{set:?}");
    assert_eq!(s["total_chunks"], 6400);
    problem_of(
        alice
            .create_upload(json!({"file_name": "big", "size": big, "chunk_size": 8 * MIB}))
            .await,
        400,
        "invalid-chunk-size",
    )
    .await;
    let s = json_of(
        alice
            .create_upload(json!({"file_name": "f", "size": 100 * MIB, "chunk_size": 16 * MIB}))
            .await,
        201,
    )
    .await;
    assert_eq!(s["chunk_size"], 16 * MIB);
    assert_eq!(s["total_chunks"], 7);
    for bad in [3 * MIB as u64, 12 * MIB as u64, 1 << 40] {
        problem_of(
            alice
                .create_upload(json!({"file_name": "f", "size": 100 * MIB, "chunk_size": bad}))
                .await,
            400,
            "invalid-chunk-size",
        )
        .await;
    }
    app.stop().await;
}

both_sets!(bad_input_gets_its_own_code_and_records_nothing);
async fn bad_input_gets_its_own_code_and_records_nothing(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.max_file_size = "1GiB".parse().expect("size");
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let c = |body| alice.create_upload(body);
    problem_of(
        c(json!({"file_name": "a", "size": 0})).await,
        400,
        "invalid-size",
    )
    .await;
    problem_of(
        c(json!({"file_name": "a", "size": -5})).await,
        400,
        "invalid-size",
    )
    .await;
    problem_of(
        c(json!({"file_name": "a", "size": 2u64 << 30})).await,
        413,
        "file-too-large",
    )
    .await;
    problem_of(
        c(json!({"file_name": "a/b", "size": 5})).await,
        400,
        "invalid-file-name",
    )
    .await;
    problem_of(
        c(json!({"file_name": "..\\x", "size": 5})).await,
        400,
        "invalid-file-name",
    )
    .await;
    problem_of(
        c(json!({"file_name": "a\u{7}b", "size": 5})).await,
        400,
        "invalid-file-name",
    )
    .await;
    problem_of(
        c(json!({"file_name": "x".repeat(256), "size": 5})).await,
        400,
        "invalid-file-name",
    )
    .await;
    problem_of(
        c(json!({"file_name": "a", "size": 5, "blake3": "xyz"})).await,
        400,
        "invalid-blake3",
    )
    .await;
    problem_of(c(json!(["file_name", "a"])).await, 400, "json-not-object").await;
    problem_of(c(json!("just a string")).await, 400, "json-not-object").await;
    problem_of(c(json!({"size": 5})).await, 422, "invalid-json-fields").await;
    problem_of(
        c(json!({"file_name": "a", "size": "5"})).await,
        422,
        "invalid-json-fields",
    )
    .await;
    let raw = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body("{\"file_name\": ")
        .send()
        .await
        .expect("send");
    problem_of(raw, 400, "malformed-json").await;

    let data = random_bytes(9 * MIB, 7);
    let (id, cs, _) = session(&alice, "f.bin", data.len()).await;
    let put = |n: &'static str, body: Vec<u8>| alice.put_chunk(&id, n, body);
    problem_of(put("0", vec![1]).await, 400, "chunk-out-of-range").await;
    problem_of(put("3", vec![1]).await, 400, "chunk-out-of-range").await;
    problem_of(put("two", vec![1]).await, 400, "invalid-chunk-number").await;
    problem_of(
        put("1", chunk_of(&data, cs, 1)[..100].to_vec()).await,
        400,
        "chunk-size-mismatch",
    )
    .await;
    let mut long = chunk_of(&data, cs, 2);
    long.push(0);
    problem_of(put("2", long).await, 400, "chunk-size-mismatch").await;

    let digest_put = |value: String| {
        app.client
            .put(app.url(&format!("/v1/uploads/{id}/chunks/2")))
            .bearer_auth(&alice.token)
            .header("content-digest", value)
            .body(chunk_of(&data, cs, 2))
            .send()
    };
    problem_of(
        digest_put("sha-256=nonsense".into()).await.expect("send"),
        400,
        "invalid-content-digest",
    )
    .await;
    let wrong = base64_of(&sha256(b"something else"));
    problem_of(
        digest_put(format!("sha-256=:{wrong}:"))
            .await
            .expect("send"),
        400,
        "content-digest-mismatch",
    )
    .await;

    // A client that disconnects mid-chunk.
    let half = chunk_of(&data, cs, 1)[..cs / 2].to_vec();
    let stream = futures_util::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(Bytes::from(half)),
        Err(std::io::Error::other("network dropped")),
    ]);
    let dropped = app
        .client
        .put(app.url(&format!("/v1/uploads/{id}/chunks/1")))
        .bearer_auth(&alice.token)
        .header("content-length", cs.to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(dropped.is_err() || dropped.is_ok_and(|r| r.status() == 400));

    // Nothing of the above was recorded; the dropped chunk stops counting
    // as soon as the service sees the connection go.
    let settled = eventually(Duration::from_secs(5), || async {
        progress(&alice, &id).await["received_bytes"] == 0
    })
    .await;
    let p = progress(&alice, &id).await;
    assert!(settled, "{set:?}: {p}");
    assert_eq!(p["received_chunks"], json!([]), "{set:?}: {p}");
    problem_of(alice.complete(&id).await, 409, "chunks-missing").await;
    let p = progress(&alice, &id).await;
    assert_eq!(
        p["state"], "receiving",
        "a refused complete leaves the session open"
    );

    // A good digest is accepted; the same chunk again is harmless; other bytes conflict.
    let good = base64_of(&sha256(&chunk_of(&data, cs, 2)));
    let ok = json_of(
        digest_put(format!("sha-256=:{good}:")).await.expect("send"),
        200,
    )
    .await;
    assert_eq!(ok["chunk"], 2);
    assert_eq!(ok["size"], data.len() - cs);
    assert_eq!(ok["sha256"], hex_of(&sha256(&chunk_of(&data, cs, 2))));
    assert_eq!(ok["received_chunks"], 1);
    assert_eq!(ok["received_bytes"], data.len() - cs);
    json_of(alice.put_chunk(&id, 2, chunk_of(&data, cs, 2)).await, 200).await;
    let mut other = chunk_of(&data, cs, 2);
    other[0] ^= 1;
    problem_of(alice.put_chunk(&id, 2, other).await, 409, "chunk-conflict").await;
    let missing = problem_of(alice.complete(&id).await, 409, "chunks-missing").await;
    assert_eq!(missing["missing_chunks"], json!([1]));

    // Unknown and malformed ids.
    problem_of(
        alice.get("/v1/uploads/not-an-id").await,
        404,
        "upload-not-found",
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    problem_of(
        alice.put_chunk(&unknown.to_string(), 1, vec![1]).await,
        404,
        "upload-not-found",
    )
    .await;
    app.stop().await;
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

both_sets!(progress_moves_while_a_chunk_streams_and_resumes_after_a_drop);
async fn progress_moves_while_a_chunk_streams_and_resumes_after_a_drop(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(20 * MIB, 3);
    let (id, cs, total) = session(&alice, "slow.bin", data.len()).await;
    assert_eq!(total, 3);
    // Chunk 1 arrives slowly: 3 MiB, then a pause, then the network drops.
    let first = chunk_of(&data, cs, 1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let request = app
        .client
        .put(app.url(&format!("/v1/uploads/{id}/chunks/1")))
        .bearer_auth(&alice.token)
        .header("content-length", cs.to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let sender = async {
        for piece in first[..3 * MIB].chunks(256 * 1024) {
            tx.send(Ok(Bytes::copy_from_slice(piece)))
                .await
                .expect("send");
        }
        let moved = eventually(Duration::from_secs(10), || async {
            progress(&alice, &id).await["received_bytes"]
                .as_u64()
                .unwrap_or(0)
                >= 2 * MIB as u64
        })
        .await;
        assert!(
            moved,
            "{set:?}: received_bytes did not move during the chunk"
        );
        tx.send(Err(std::io::Error::other("dropped")))
            .await
            .expect("send");
    };
    let (response, ()) = tokio::join!(request, sender);
    assert!(response.is_err() || response.is_ok_and(|r| r.status() == 400));

    // The client reads progress and sends what is missing.
    let settled = eventually(Duration::from_secs(5), || async {
        progress(&alice, &id).await["received_bytes"] == 0
    })
    .await;
    assert!(settled, "{set:?}: the dropped chunk still counts");
    let p = progress(&alice, &id).await;
    assert_eq!(p["missing_chunks"], json!([1, 2, 3]), "{set:?}: {p}");
    let missing: Vec<usize> = p["missing_chunks"]
        .as_array()
        .expect("array")
        .iter()
        .map(|n| n.as_u64().expect("n") as usize)
        .collect();
    alice.send_chunks(&id, &data, cs, &missing, 2).await;
    let done = json_of(alice.complete(&id).await, 200).await;
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    app.stop().await;
}

both_sets!(losing_the_live_progress_mid_upload_fails_nothing);
async fn losing_the_live_progress_mid_upload_fails_nothing(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(30 * MIB, 4);
    let (id, cs, total) = session(&alice, "f.bin", data.len()).await;
    alice.send_chunks(&id, &data, cs, &[2, 4], 2).await;
    match set {
        // Redis flushed, as after a restart without persistence.
        BackendSet::Real => {
            let client = redis::Client::open(media_e2e::real_env("MEDIA_REDIS_URL")).expect("url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut conn)
                .await
                .expect("flush");
        }
        BackendSet::Embedded => {
            app.state
                .backends
                .progress
                .forget(&id)
                .await
                .expect("forget");
        }
    }
    let p = progress(&alice, &id).await;
    assert_eq!(
        p["received_chunks"],
        json!([2, 4]),
        "{set:?}: rebuilt from the store"
    );
    let rest: Vec<usize> = (1..=total).filter(|n| ![2, 4].contains(n)).collect();
    alice.send_chunks(&id, &data, cs, &rest, 2).await;
    let p = progress(&alice, &id).await;
    assert_eq!(p["received_chunks"], json!([1, 2, 3, 4]));
    let done = json_of(alice.complete(&id).await, 200).await;
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    app.stop().await;
}

both_sets!(a_declared_hash_that_does_not_match_stores_nothing);
async fn a_declared_hash_that_does_not_match_stores_nothing(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(10 * MIB, 5);
    let wrong = blake3::hash(b"not the file").to_hex().to_string();
    let s = json_of(
        alice
            .create_upload(json!({"file_name": "f", "size": data.len(), "blake3": wrong}))
            .await,
        201,
    )
    .await;
    let id = s["upload_id"].as_str().expect("id");
    alice.send_chunks(id, &data, 8 * MIB, &[1, 2], 2).await;
    let problem = problem_of(alice.complete(id).await, 422, "hash-mismatch").await;
    assert_eq!(
        problem["actual_blake3"],
        blake3::hash(&data).to_hex().as_str()
    );
    assert_eq!(progress(&alice, id).await["state"], "aborted");
    problem_of(
        alice.put_chunk(id, 1, chunk_of(&data, 8 * MIB, 1)).await,
        410,
        "upload-aborted",
    )
    .await;
    let blobs = &app.state.backends.blobs;
    assert_eq!(
        blobs.list("").await.expect("list"),
        Vec::<String>::new(),
        "{set:?}"
    );
    assert!(
        blobs.list_multipart().await.expect("list").is_empty(),
        "{set:?}"
    );
    // With the right hash declared, the same bytes complete.
    let s = json_of(
        alice
            .create_upload(json!({"file_name": "f", "size": data.len(), "blake3": blake3::hash(&data).to_hex().to_uppercase()}))
            .await,
        201,
    )
    .await;
    let id = s["upload_id"].as_str().expect("id");
    alice.send_chunks(id, &data, 8 * MIB, &[2, 1], 2).await;
    json_of(alice.complete(id).await, 200).await;
    app.stop().await;
}

both_sets!(delete_aborts_the_multipart_upload);
async fn delete_aborts_the_multipart_upload(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(9 * MIB, 6);
    let (id, cs, _) = session(&alice, "f", data.len()).await;
    alice.send_chunks(&id, &data, cs, &[1], 1).await;
    assert_eq!(
        app.state
            .backends
            .blobs
            .list_multipart()
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        alice.delete(&format!("/v1/uploads/{id}")).await.status(),
        204
    );
    assert_eq!(
        alice.delete(&format!("/v1/uploads/{id}")).await.status(),
        204,
        "idempotent"
    );
    assert!(
        app.state
            .backends
            .blobs
            .list_multipart()
            .await
            .expect("list")
            .is_empty(),
        "{set:?}"
    );
    assert_eq!(progress(&alice, &id).await["state"], "aborted");
    problem_of(
        alice.put_chunk(&id, 2, chunk_of(&data, cs, 2)).await,
        410,
        "upload-aborted",
    )
    .await;
    problem_of(alice.complete(&id).await, 410, "upload-aborted").await;
    let bob = app.user("bob");
    problem_of(
        bob.delete(&format!("/v1/uploads/{id}")).await,
        404,
        "upload-not-found",
    )
    .await;
    app.stop().await;
}

both_sets!(expired_sessions_are_aborted_by_the_janitor);
async fn expired_sessions_are_aborted_by_the_janitor(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.upload_expiry = Duration::from_secs(2);
    settings.janitor_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(9 * MIB, 8);
    let (id, cs, _) = session(&alice, "f", data.len()).await;
    alice.send_chunks(&id, &data, cs, &[2], 1).await;
    let upload_id = media_api::ids::UploadId::parse(&id).expect("id");
    let record = app
        .state
        .backends
        .uploads
        .upload(upload_id)
        .await
        .expect("db")
        .expect("row");
    let backends = &app.state.backends;
    // The janitor marks the session expired, aborts its parts and drops its chunk rows.
    let gone = eventually(Duration::from_secs(10), || async {
        let state = backends
            .uploads
            .upload(upload_id)
            .await
            .ok()
            .flatten()
            .map(|u| u.state);
        let parts_left = backends
            .blobs
            .list_multipart()
            .await
            .map(|p| p.iter().any(|p| p.key == record.storage_key))
            .unwrap_or(true);
        let chunks_left = backends
            .uploads
            .chunks(upload_id)
            .await
            .map(|c| !c.is_empty())
            .unwrap_or(true);
        state == Some(media_api::metadata_store::UploadState::Expired)
            && !parts_left
            && !chunks_left
    })
    .await;
    assert!(
        gone,
        "{set:?}: the janitor did not expire the session and drop its parts"
    );
    problem_of(
        alice.get(&format!("/v1/uploads/{id}")).await,
        410,
        "upload-expired",
    )
    .await;
    problem_of(
        alice.put_chunk(&id, 1, chunk_of(&data, cs, 1)).await,
        410,
        "upload-expired",
    )
    .await;
    problem_of(alice.complete(&id).await, 410, "upload-expired").await;
    problem_of(
        alice.delete(&format!("/v1/uploads/{id}")).await,
        410,
        "upload-expired",
    )
    .await;
    app.stop().await;
}

both_sets!(races_have_one_outcome);
async fn races_have_one_outcome(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(17 * MIB, 9);
    let (id, cs, _) = session(&alice, "race.bin", data.len()).await;

    // The same chunk twice at once, same bytes: both succeed.
    let (a, b) = tokio::join!(
        alice.put_chunk(&id, 1, chunk_of(&data, cs, 1)),
        alice.put_chunk(&id, 1, chunk_of(&data, cs, 1)),
    );
    assert_eq!(
        (a.status().as_u16(), b.status().as_u16()),
        (200, 200),
        "{set:?}"
    );

    // The same chunk twice at once, different bytes: never two successes
    // with different contents; the chunk ends either missing or one of them.
    let mut other = chunk_of(&data, cs, 2);
    other[10] ^= 0xff;
    let (a, b) = tokio::join!(
        alice.put_chunk(&id, 2, chunk_of(&data, cs, 2)),
        alice.put_chunk(&id, 2, other.clone()),
    );
    let codes = (a.status().as_u16(), b.status().as_u16());
    assert!(
        codes != (200, 200),
        "{set:?}: both different chunks accepted"
    );
    assert!(
        [200, 409].contains(&codes.0) && [200, 409].contains(&codes.1),
        "{codes:?}"
    );

    // Complete racing the last chunk: either it completes with every byte
    // or it reports the chunk missing; never a wrong object.
    let p = progress(&alice, &id).await;
    let missing: Vec<usize> = p["missing_chunks"]
        .as_array()
        .expect("a")
        .iter()
        .map(|n| n.as_u64().expect("n") as usize)
        .collect();
    if missing.contains(&2) {
        alice.send_chunks(&id, &data, cs, &[2], 1).await;
    }
    let (put3, done) = tokio::join!(
        alice.put_chunk(&id, 3, chunk_of(&data, cs, 3)),
        alice.complete(&id)
    );
    // Either order is fine; what the two answers say must agree.
    let put3_ok = put3.status() == 200;
    if !put3_ok {
        let problem = json_of(put3, 409).await;
        assert_eq!(
            problem["code"], "completion-in-progress",
            "{set:?}: {problem}"
        );
    }
    if done.status() == 409 {
        let problem = problem_of(done, 409, "chunks-missing").await;
        assert_eq!(problem["missing_chunks"], json!([3]), "{set:?}");
    } else {
        assert!(put3_ok, "{set:?}: completed without the chunk it refused");
        assert_eq!(done.status(), 200);
    }
    if !put3_ok {
        alice.send_chunks(&id, &data, cs, &[3], 1).await;
    }
    // Complete twice at once: one media.
    let (x, y) = tokio::join!(alice.complete(&id), alice.complete(&id));
    let (x, y) = (json_of(x, 200).await, json_of(y, 200).await);
    assert_eq!(x["media_id"], y["media_id"], "{set:?}");
    let stored = stored_bytes(&app, x["media_id"].as_str().expect("id")).await;
    assert_eq!(
        x["blake3"],
        blake3::hash(&stored).to_hex().as_str(),
        "hash names the stored bytes"
    );
    let mut expected_other = data.clone();
    expected_other[cs..2 * cs].copy_from_slice(&other);
    assert!(
        stored == data || stored == expected_other,
        "{set:?}: stored object is a mix"
    );
    app.stop().await;
}

both_sets!(one_request_upload_of_small_files);
async fn one_request_upload_of_small_files(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde".to_vec();
    let post = |name: &str, body: Vec<u8>| {
        app.client
            .post(app.url(&format!("/v1/media?file_name={name}")))
            .bearer_auth(&alice.token)
            .header("content-type", "text/html")
            .body(body)
            .send()
    };
    let r = post("dot.png", png.clone()).await.expect("send");
    assert!(r.headers().contains_key("location"));
    let done = json_of(r, 201).await;
    assert_eq!(
        done["content_type"], "image/png",
        "{set:?}: sniffed, not the header"
    );
    assert_eq!(done["blake3"], blake3::hash(&png).to_hex().as_str());
    assert_eq!(done["size"], png.len());
    assert_eq!(done["deduplicated"], false);
    assert!(stored_bytes(&app, done["media_id"].as_str().expect("id")).await == png);

    let empty = json_of(post("empty.txt", Vec::new()).await.expect("send"), 201).await;
    assert_eq!(empty["size"], 0);
    assert_eq!(empty["blake3"], blake3::hash(b"").to_hex().as_str());

    let too_big = random_bytes(16 * MIB + 1, 1);
    problem_of(
        post("big.bin", too_big).await.expect("send"),
        413,
        "body-too-large",
    )
    .await;
    problem_of(
        post("a%2Fb", vec![1]).await.expect("send"),
        400,
        "invalid-file-name",
    )
    .await;
    let no_name = app
        .client
        .post(app.url("/v1/media"))
        .bearer_auth(&alice.token)
        .body(vec![1u8])
        .send()
        .await
        .expect("send");
    problem_of(no_name, 400, "invalid-file-name").await;
    app.stop().await;
}

both_sets!(events_stream_progress_from_any_node);
async fn events_stream_progress_from_any_node(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    // Every node of a deployment shares one JWT secret.
    settings.jwt_secret = Some(secrecy::SecretString::from(
        "a-shared-secret-for-every-node-0123456789".to_owned(),
    ));
    let node_a = TestApp::spawn_with(set, settings.clone(), dir).await;
    // On the real set a second node shares the database, Redis and bucket:
    // chunks sent to it must show up on the first node's stream.
    let second = match set {
        BackendSet::Real => {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut s = settings.clone();
            s.data_dir = dir.path().to_path_buf();
            Some(TestApp::spawn_with(set, s, dir).await)
        }
        BackendSet::Embedded => None,
    };
    let node_b = second.as_ref().unwrap_or(&node_a);
    let alice_a = User {
        app: &node_a,
        token: node_b.token("alice"),
    };
    let alice_b = node_b.user("alice");
    let data = random_bytes(12 * MIB, 11);
    let (id, cs, _) = session(&alice_a, "live.bin", data.len()).await;

    let stream = alice_a.get(&format!("/v1/uploads/{id}/events")).await;
    assert_eq!(stream.status(), 200);
    assert!(media_e2e::header(&stream, "content-type").starts_with("text/event-stream"));
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let mut body = stream.bytes_stream();
        while let Ok(Some(Ok(piece))) =
            tokio::time::timeout(Duration::from_secs(20), body.next()).await
        {
            text.push_str(&String::from_utf8_lossy(&piece));
            if text.contains("event: completed") {
                break;
            }
        }
        text
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice_b.send_chunks(&id, &data, cs, &[2, 1], 1).await;
    json_of(alice_b.complete(&id).await, 200).await;
    let text = reader.await.expect("reader");
    assert!(text.contains("event: progress"), "{set:?}: {text}");
    assert!(text.contains("event: chunk"), "{set:?}: {text}");
    assert!(text.contains("event: completed"), "{set:?}: {text}");
    assert!(text.contains("\"percent\":100"), "{set:?}: {text}");
    if let Some(b) = second {
        b.stop().await;
    }
    node_a.stop().await;
}

/// The service as a separate process, so it can be killed.
struct ServiceProcess {
    child: tokio::process::Child,
    base: String,
}

impl ServiceProcess {
    async fn start(settings: &media_api::Settings, port: u16, secret: &str) -> Self {
        let mut cmd = media_e2e::service_command(settings, secret);
        cmd.env("MEDIA_LISTEN", format!("127.0.0.1:{port}"));
        let child = cmd.spawn().expect("start media-api");
        let base = format!("http://127.0.0.1:{port}");
        let ready = wait_ready(&base).await;
        assert!(ready, "the service process did not become ready");
        Self { child, base }
    }

    async fn kill(mut self) {
        // SIGKILL: no shutdown, no cleanup.
        self.child.kill().await.expect("kill");
    }
}

both_sets!(an_upload_survives_the_service_being_killed_between_chunks);
async fn an_upload_survives_the_service_being_killed_between_chunks(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let secret = "kill-test-secret-that-is-long-enough-012345";
    let port = media_e2e::free_port();
    let token =
        media_api::auth::TokenAuthority::new(&secrecy::SecretString::from(secret.to_owned()))
            .mint(
                &media_api::ids::UserId::parse("alice").expect("user"),
                false,
                Duration::from_secs(600),
            )
            .expect("token");
    let client = reqwest::Client::new();
    let data = random_bytes(30 * MIB, 12);
    let service = ServiceProcess::start(&settings, port, secret).await;
    let created = client
        .post(format!("{}/v1/uploads", service.base))
        .bearer_auth(&token)
        .json(&json!({"file_name": "survivor.bin", "size": data.len()}))
        .send()
        .await
        .expect("create");
    let s = json_of(created, 201).await;
    let id = s["upload_id"].as_str().expect("id").to_owned();
    let cs = s["chunk_size"].as_u64().expect("cs") as usize;
    let put = |base: String, n: usize| {
        let (client, token, body) = (client.clone(), token.clone(), chunk_of(&data, cs, n));
        let url = format!("{base}/v1/uploads/{id}/chunks/{n}");
        async move {
            client
                .put(url)
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .expect("put")
        }
    };
    for n in [1, 3] {
        assert_eq!(put(service.base.clone(), n).await.status(), 200);
    }
    service.kill().await;

    let service = ServiceProcess::start(&settings, port, secret).await;
    let p = client
        .get(format!("{}/v1/uploads/{id}", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("progress");
    let p = json_of(p, 200).await;
    assert_eq!(p["received_chunks"], json!([1, 3]), "{set:?}: {p}");
    assert_eq!(p["missing_chunks"], json!([2, 4]), "{set:?}: {p}");
    for n in [4, 2] {
        assert_eq!(put(service.base.clone(), n).await.status(), 200);
    }
    let done = client
        .post(format!("{}/v1/uploads/{id}/complete", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("complete");
    let done = json_of(done, 200).await;
    assert_eq!(
        done["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}"
    );
    service.kill().await;
}

both_sets!(chunks_past_the_memory_budget_wait_instead_of_failing);
async fn chunks_past_the_memory_budget_wait_instead_of_failing(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    // Room for exactly one 8 MiB chunk at a time.
    settings.limits.max_chunk_size = "8MiB".parse().expect("size");
    settings.limits.inflight_memory = "8MiB".parse().expect("size");
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let before = metric(&app, "upload_memory_waits_total").await;
    let data = random_bytes(32 * MIB, 13);
    let (id, cs, _) = session(&alice, "queue.bin", data.len()).await;
    alice.send_chunks(&id, &data, cs, &[4, 3, 2, 1], 4).await;
    let done = json_of(alice.complete(&id).await, 200).await;
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    assert!(
        metric(&app, "upload_memory_waits_total").await > before,
        "{set:?}: no chunk ever waited for memory"
    );
    app.stop().await;
}
