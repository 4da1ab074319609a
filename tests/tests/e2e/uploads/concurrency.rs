//! Races, one-request uploads, event streams from any node, a service
//! killed between chunks, and the memory budget under load.

use super::*;

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
    problem_of(
        post("report%E2%80%AEfdp.exe", vec![1]).await.expect("send"),
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
    let reader =
        media_e2e::collect_events(stream, Duration::from_secs(20), Some("event: completed"));
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
    let (settings, _dir) = test_settings(set).await;
    // Room for exactly one 8 MiB chunk at a time; a process of its own, so
    // the wait counter read below is this service's alone.
    let service = ServiceProcess::start_with(
        &settings,
        free_port(),
        "memory-budget-secret-long-enough-0123456789",
        &[
            ("MEDIA_LIMITS__MAX_CHUNK_SIZE", "8MiB"),
            ("MEDIA_LIMITS__INFLIGHT_MEMORY", "8MiB"),
            ("MEDIA_LIMITS__INFLIGHT_MEMORY_PER_USER", "8MiB"),
        ],
    )
    .await;
    assert_eq!(service.metric("upload_memory_waits_total", &[]).await, 0.0);
    let client = reqwest::Client::new();
    let token = service.token("alice");
    let data = random_bytes(32 * MIB, 13);
    let r = client
        .post(format!("{}/v1/uploads", service.base))
        .bearer_auth(&token)
        .json(&json!({ "file_name": "queue.bin", "size": data.len() }))
        .send()
        .await
        .expect("create");
    let session = json_of(r, 201).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let cs = session["chunk_size"].as_u64().expect("chunk size") as usize;
    // Four chunks at once into room for one: three must wait, none may fail.
    let puts = futures_util::future::join_all((1..=4).rev().map(|n| {
        let (client, token, url) = (
            client.clone(),
            token.clone(),
            format!("{}/v1/uploads/{id}/chunks/{n}", service.base),
        );
        let body = chunk_of(&data, cs, n);
        async move { client.put(url).bearer_auth(token).body(body).send().await }
    }))
    .await;
    for r in puts {
        assert_eq!(r.expect("put").status(), 200, "{set:?}");
    }
    let done = client
        .post(format!("{}/v1/uploads/{id}/complete", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("complete");
    let done = json_of(done, 200).await;
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    assert!(
        service.metric("upload_memory_waits_total", &[]).await >= 1.0,
        "{set:?}: no chunk ever waited for memory"
    );
    service.kill().await;
}

both_sets!(an_event_stream_ends_when_its_token_expires);
async fn an_event_stream_ends_when_its_token_expires(set: BackendSet) {
    use futures_util::StreamExt;
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let session = alice.open("slow.bin", 1 << 20).await;
    let id = session["upload_id"].as_str().expect("id");
    let token = app.token_expiring("alice", 2);
    let r = app
        .client
        .get(app.url(&format!("/v1/uploads/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .expect("events");
    assert_eq!(r.status(), 200);
    let started = std::time::Instant::now();
    let mut body = r.bytes_stream();
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

both_sets!(a_chunk_whose_session_expires_while_it_arrives_is_gone_not_unavailable);
async fn a_chunk_whose_session_expires_while_it_arrives_is_gone_not_unavailable(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.upload_expiry = Duration::from_secs(2);
    settings.janitor_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(1 << 20, 41);
    let session = alice.open("late.bin", data.len()).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    // Half the chunk now, the rest after the session has expired and the
    // janitor has taken its multipart upload away.
    let (first, rest) = data.split_at(data.len() / 2);
    let (first, rest) = (
        bytes::Bytes::copy_from_slice(first),
        bytes::Bytes::copy_from_slice(rest),
    );
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        futures_util::stream::once(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            Ok::<_, std::io::Error>(rest)
        }),
    );
    let r = app
        .client
        .put(app.url(&format!("/v1/uploads/{id}/chunks/1")))
        .bearer_auth(&alice.token)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("put");
    problem_of(r, 410, "upload-expired").await;
    app.stop().await;
}
