//! A session's life: progress while a chunk streams, the live view lost,
//! a declared hash that does not match, abort, expiry.

use super::*;

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
    // The client gave up on its own request, so it may see no answer; if it
    // does, the answer names the cut body.
    if let Ok(r) = response {
        problem_of(r, 400, "chunk-incomplete").await;
    }

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
        // Redis loses everything of this service, as after a restart
        // without persistence: every key of this test's namespace goes
        // (not FLUSHALL, which would wipe the concurrent tests' state too).
        BackendSet::Real => {
            let client = redis::Client::open(media_e2e::real_env("MEDIA_REDIS_URL")).expect("url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let pattern = format!("{}:*", app.state.settings.redis_namespace);
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .expect("keys");
            assert!(
                !keys.is_empty(),
                "the live progress was in Redis: {pattern}"
            );
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .expect("delete");
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
    // Long enough that creating the session and sending a chunk fit in it
    // on a loaded machine; the janitor then has 10 s more.
    settings.limits.upload_expiry = Duration::from_secs(4);
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
    let gone = eventually(Duration::from_secs(14), || async {
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
            .map(|p| p.iter().any(|p| p.key == record.storage_key.as_str()))
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

both_sets!(the_janitor_keeps_up_with_any_number_of_expired_sessions);
async fn the_janitor_keeps_up_with_any_number_of_expired_sessions(set: BackendSet) {
    const SESSIONS: usize = 250;
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.upload_expiry = Duration::from_millis(300);
    settings.quotas.open_uploads = SESSIONS as u64;
    // Its own runs stay out of the way: the test runs one step by hand.
    settings.janitor_interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let ids: Vec<String> = futures_util::stream::iter(0..SESSIONS)
        .map(|i| {
            let alice = alice.clone();
            async move {
                let s = alice.open(&format!("left-{i}.bin"), 1000).await;
                s["upload_id"].as_str().expect("id").to_owned()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // One step expires every one that is due, not a fixed hundred.
    assert_eq!(
        app.state.uploads.expire_due().await.expect("janitor"),
        SESSIONS
    );
    for id in &ids {
        let record = app
            .state
            .backends
            .uploads
            .upload(media_api::ids::UploadId::parse(id).expect("id"))
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(
            record.state,
            media_api::metadata_store::UploadState::Expired
        );
    }
    assert_eq!(app.state.uploads.expire_due().await.expect("janitor"), 0);
    app.stop().await;
}

both_sets!(a_completion_cut_off_is_finished_or_rolled_back_by_the_janitor);
async fn a_completion_cut_off_is_finished_or_rolled_back_by_the_janitor(set: BackendSet) {
    use media_api::metadata_store::UploadState;
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.abandoned_completion = Duration::from_millis(500);
    settings.janitor_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(20 * MIB, 70);
    // Two sessions whose `complete` was cut off right after it began (the
    // request timed out, or its node died) and whose client never came
    // back: one with every chunk, one missing a chunk.
    let (whole, cs, total) = session(&alice, "whole.bin", data.len()).await;
    alice
        .send_chunks(&whole, &data, cs, &(1..=total).collect::<Vec<_>>(), 2)
        .await;
    let (partial, _, _) = session(&alice, "partial.bin", data.len()).await;
    alice.send_chunks(&partial, &data, cs, &[1, 3], 2).await;
    for id in [&whole, &partial] {
        let id = media_api::ids::UploadId::parse(id).expect("id");
        let moved = app
            .state
            .backends
            .uploads
            .transition(id, &[UploadState::Receiving], UploadState::Completing, None)
            .await
            .expect("transition");
        assert!(moved);
    }
    assert_eq!(progress(&alice, &whole).await["state"], "completing");
    // The janitor finishes the first and puts the second back to receiving.
    let ended = eventually(Duration::from_secs(15), || async {
        progress(&alice, &whole).await["state"] == "completed"
            && progress(&alice, &partial).await["state"] == "receiving"
    })
    .await;
    assert!(
        ended,
        "{set:?}: {} / {}",
        progress(&alice, &whole).await,
        progress(&alice, &partial).await
    );
    let done = json_of(alice.complete(&whole).await, 200).await;
    assert!(stored_bytes(&app, done["media_id"].as_str().expect("id")).await == data);
    // The client of the second sends its last chunk and completes.
    alice.send_chunks(&partial, &data, cs, &[2], 1).await;
    let done = json_of(alice.complete(&partial).await, 200).await;
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    app.stop().await;
}
