//! Chunked, resumable uploads as a client app sees them, on both backend sets:
//! round trips and bad input here; a session's life (progress, loss of the
//! live view, hash mismatch, abort, expiry) in `lifecycle`; races, one-request
//! uploads, event streams and crashes in `concurrency`.

mod concurrency;
mod lifecycle;
mod limits;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use media_e2e::both_sets;
use media_e2e::{
    BackendSet, ServiceProcess, TestApp, User, eventually, free_port, json_of, problem_of,
    random_bytes, stored_bytes, test_settings,
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
    settings.limits.max_document_size = "200GiB".parse().expect("size");
    settings.quotas.stored_bytes = "1024TiB".parse().expect("size");
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
    // Invisible format characters: a right-to-left override makes
    // `invoice\u{202E}fdp.exe` show as `invoiceexe.pdf`.
    for name in [
        "invoice\u{202E}fdp.exe",
        "a\u{200B}b.txt",
        "\u{FEFF}x.png",
        "x\u{2066}y",
    ] {
        problem_of(
            c(json!({"file_name": name, "size": 5})).await,
            400,
            "invalid-file-name",
        )
        .await;
    }
    // Joiners stay: emoji sequences need them.
    let family = c(json!({"file_name": "\u{1F468}\u{200D}\u{1F469}.png", "size": 5})).await;
    assert_eq!(family.status(), 201);
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
    // The client gave up on its own request, so it may see no answer; if it
    // does, the answer names the cut body.
    if let Ok(r) = dropped {
        problem_of(r, 400, "chunk-incomplete").await;
    }

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
