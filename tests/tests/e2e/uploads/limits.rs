//! The limits a user meets: size limits by content type (on the sniffed
//! type, and early on a stated one), quotas and rates.

use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{BackendSet, TestApp, User, json_of, problem_of, random_bytes, test_settings};
use serde_json::json;

const MIB: usize = 1024 * 1024;

/// A PNG `size` bytes long: a real image, then bytes after its end (which
/// decoders ignore); it sniffs as `image/png`.
fn png_of(size: usize) -> Vec<u8> {
    let mut png = media_e2e::test_image(image::ImageFormat::Png, 32, 32, 7);
    png.extend(random_bytes(size - png.len(), 8));
    png
}

/// Everything the store holds: objects and multipart uploads.
async fn stored(app: &TestApp) -> (Vec<String>, usize) {
    let blobs = &app.state.backends.blobs;
    let objects = blobs.list("").await.expect("list");
    let multipart = blobs.list_multipart().await.expect("multipart").len();
    (objects, multipart)
}

async fn media_count(user: &User<'_>) -> usize {
    let page = json_of(user.get("/v1/media").await, 200).await;
    page["items"].as_array().expect("items").len()
}

both_sets!(a_file_over_its_types_limit_is_refused_and_nothing_is_kept);
async fn a_file_over_its_types_limit_is_refused_and_nothing_is_kept(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.limits.max_image_size = media_api::config::ByteSize(MIB as u64);
    settings.limits.max_audio_size = media_api::config::ByteSize(MIB as u64);
    settings.limits.max_video_size = media_api::config::ByteSize(20 * MIB as u64);
    settings.limits.max_document_size = media_api::config::ByteSize(20 * MIB as u64);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let image = png_of(9 * MIB);

    // Chunked, no type stated: refused at completion on the sniffed type.
    let session = alice.open("holiday.bin", image.len()).await;
    let id = session["upload_id"].as_str().expect("id");
    let chunk = session["chunk_size"].as_u64().expect("chunk") as usize;
    let total = session["total_chunks"].as_u64().expect("total") as usize;
    alice
        .send_chunks(id, &image, chunk, &(1..=total).collect::<Vec<_>>(), 2)
        .await;
    let refused = problem_of(alice.complete(id).await, 413, "too-large-for-type").await;
    assert_eq!(refused["limit"], MIB, "{set:?}: {refused}");
    assert_eq!(refused["content_type"], "image/png", "{set:?}: {refused}");
    // The session ended, and nothing of it is kept.
    problem_of(alice.complete(id).await, 410, "upload-aborted").await;
    assert_eq!(stored(&app).await, (Vec::new(), 0), "{set:?}");
    assert_eq!(media_count(&alice).await, 0);

    // A stated type over its limit is refused before any byte is sent.
    let r = alice
        .create_upload(
            json!({"file_name": "a.png", "size": image.len(), "content_type": "image/png"}),
        )
        .await;
    let early = problem_of(r, 413, "too-large-for-type").await;
    assert_eq!(early["limit"], MIB);
    // A size over every type's limit, whatever the type.
    let r = alice
        .create_upload(json!({"file_name": "big.bin", "size": 21 * MIB}))
        .await;
    let over = problem_of(r, 413, "file-too-large").await;
    assert_eq!(over["limit"], 20 * MIB, "{set:?}: {over}");

    // One request: refused before it is stored.
    let r = app
        .client
        .post(app.url("/v1/media?file_name=b.png"))
        .bearer_auth(&alice.token)
        .body(png_of(2 * MIB))
        .send()
        .await
        .expect("post");
    problem_of(r, 413, "too-large-for-type").await;
    assert_eq!(stored(&app).await, (Vec::new(), 0), "{set:?}");

    // The same size as a document is within its type's limit.
    let document = random_bytes(9 * MIB, 9);
    let done = alice.upload("report.bin", &document).await;
    assert_eq!(done["content_type"], "application/octet-stream");
    let small = alice.post_media("ok.png", &png_of(MIB / 2)).await;
    assert_eq!(small["content_type"], "image/png");
    assert_eq!(media_count(&alice).await, 2);
    app.stop().await;
}

async fn me(user: &User<'_>) -> serde_json::Value {
    json_of(user.get("/v1/me").await, 200).await
}

async fn post_raw(user: &User<'_>, name: &str, body: Vec<u8>) -> reqwest::Response {
    user.app
        .client
        .post(user.app.url(&format!("/v1/media?file_name={name}")))
        .bearer_auth(&user.token)
        .body(body)
        .send()
        .await
        .expect("post")
}

both_sets!(stored_bytes_and_open_sessions_are_limited_per_user_and_shown_by_me);
async fn stored_bytes_and_open_sessions_are_limited_per_user_and_shown_by_me(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.quotas.stored_bytes = media_api::config::ByteSize(MIB as u64);
    settings.quotas.open_uploads = 2;
    let app = TestApp::spawn_with(set, settings, dir).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let data = random_bytes(600_000, 10);
    let first = alice.post_media("a.bin", &data).await;
    // A second copy counts again: it is what she references.
    let over = problem_of(
        post_raw(&alice, "b.bin", random_bytes(600_000, 11)).await,
        413,
        "quota-exceeded",
    )
    .await;
    assert_eq!(over["limit"], MIB, "{set:?}: {over}");
    assert_eq!(over["used"], 600_000, "{set:?}: {over}");
    let hash = blake3::hash(&data).to_hex().to_string();
    let r = alice
        .create_upload(json!({"file_name": "again.bin", "size": data.len(), "blake3": hash}))
        .await;
    problem_of(r, 413, "quota-exceeded").await;
    // Bob's quota is his own, though he stores the same content.
    bob.post_media("b.bin", &data).await;

    // Open sessions count their declared size, and their number.
    let r = alice
        .create_upload(json!({"file_name": "c.bin", "size": 300_000}))
        .await;
    let open = json_of(r, 201).await;
    let r = alice
        .create_upload(json!({"file_name": "d.bin", "size": 200_000}))
        .await;
    problem_of(r, 413, "quota-exceeded").await;
    let r = alice
        .create_upload(json!({"file_name": "e.bin", "size": 1}))
        .await;
    json_of(r, 201).await;
    let r = alice
        .create_upload(json!({"file_name": "f.bin", "size": 1}))
        .await;
    let many = problem_of(r, 409, "too-many-open-uploads").await;
    assert_eq!(many["limit"], 2);
    let account = me(&alice).await;
    assert_eq!(
        account["usage"]["stored_bytes"], 900_001,
        "{set:?}: {account}"
    );
    assert_eq!(account["usage"]["media"], 1, "{account}");
    assert_eq!(account["usage"]["open_uploads"], 2, "{account}");
    assert_eq!(account["limits"]["stored_bytes"], MIB, "{account}");
    assert_eq!(account["limits"]["open_uploads"], 2, "{account}");
    assert_eq!(account["limits"]["max_image_size"], 16 * MIB, "{account}");

    // Ending a session and deleting a media item give room back.
    let open_id = open["upload_id"].as_str().expect("id");
    assert_eq!(
        alice
            .delete(&format!("/v1/uploads/{open_id}"))
            .await
            .status(),
        204
    );
    let first_id = first["media_id"].as_str().expect("id");
    assert_eq!(
        alice
            .delete(&format!("/v1/media/{first_id}"))
            .await
            .status(),
        204
    );
    let account = me(&alice).await;
    assert_eq!(account["usage"]["stored_bytes"], 1, "{set:?}: {account}");
    alice.post_media("g.bin", &random_bytes(900_000, 12)).await;
    // Nothing refused was stored: bob's and alice's two items.
    let page = json_of(alice.get("/v1/media").await, 200).await;
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    app.stop().await;
}

both_sets!(rates_answer_429_with_retry_after_on_every_node);
async fn rates_answer_429_with_retry_after_on_every_node(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.quotas.messages_per_minute = 5;
    settings.quotas.media_per_hour = 3;
    settings.quotas.upload_bytes_per_hour = media_api::config::ByteSize(MIB as u64);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let other = match set {
        BackendSet::Real => Some(app.another_node().await),
        BackendSet::Embedded => None,
    };
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let conversation = media_e2e::group(&alice, &["bob"]).await;
    for i in 0..5 {
        media_e2e::say(&alice, &conversation, &format!("hello {i}")).await;
    }
    let send = |user: &User<'_>| {
        let path = format!("/v1/conversations/{conversation}/messages");
        let body =
            json!({"client_message_id": uuid::Uuid::now_v7().to_string(), "text": "one more"});
        let (client, url, token) = (
            user.app.client.clone(),
            user.app.url(&path),
            user.token.clone(),
        );
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("send")
        }
    };
    let r = send(&alice).await;
    assert_eq!(r.status(), 429, "{set:?}");
    let retry: u64 = media_e2e::header(&r, "retry-after")
        .parse()
        .expect("Retry-After");
    let refused = problem_of(r, 429, "rate-limited").await;
    assert_eq!(refused["quota"], "messages_per_minute", "{refused}");
    assert_eq!(refused["limit"], 5);
    assert!(
        (1..=12).contains(&retry),
        "{set:?}: one message drains in 12 s, not {retry}"
    );
    // Another node counts the same minute.
    if let Some(other) = &other {
        let alice_there = other.user("alice");
        problem_of(send(&alice_there).await, 429, "rate-limited").await;
    }
    // Bob's minute is his own.
    assert_eq!(send(&bob).await.status(), 201);
    assert_eq!(me(&alice).await["usage"]["messages_per_minute"], 5);

    // Uploads started per hour.
    for i in 0..3 {
        let r = alice
            .create_upload(json!({"file_name": format!("{i}.bin"), "size": 10}))
            .await;
        json_of(r, 201).await;
    }
    let r = alice
        .create_upload(json!({"file_name": "4.bin", "size": 10}))
        .await;
    assert!(!media_e2e::header(&r, "retry-after").is_empty());
    let refused = problem_of(r, 429, "rate-limited").await;
    assert_eq!(refused["quota"], "media_per_hour");

    // Bytes sent per hour, counted as they are sent.
    let session = bob.open("big.bin", 700_000).await;
    let id = session["upload_id"].as_str().expect("id");
    let chunk = session["chunk_size"].as_u64().expect("chunk") as usize;
    let data = random_bytes(700_000, 13);
    let total = session["total_chunks"].as_u64().expect("total") as usize;
    bob.send_chunks(id, &data, chunk, &(1..=total).collect::<Vec<_>>(), 1)
        .await;
    let r = post_raw(&bob, "more.bin", random_bytes(400_000, 14)).await;
    let refused = problem_of(r, 429, "rate-limited").await;
    assert_eq!(
        refused["quota"], "upload_bytes_per_hour",
        "{set:?}: {refused}"
    );
    let account = me(&bob).await;
    // The hour drains continuously: a few bytes have drained since.
    let used = account["usage"]["upload_bytes_per_hour"]
        .as_u64()
        .expect("used");
    assert!((690_000..=700_000).contains(&used), "{set:?}: {account}");
    if let Some(other) = other {
        other.stop().await;
    }
    app.stop().await;
}

/// 8 MiB chunks, a node budget and a user share of that many MiB.
fn budget(settings: &mut media_api::Settings, node_mib: u64, share_mib: u64) {
    let mib = |n: u64| media_api::config::ByteSize(n * MIB as u64);
    settings.limits.max_chunk_size = mib(8);
    settings.limits.default_chunk_size = mib(8);
    settings.limits.inflight_memory = mib(node_mib);
    settings.limits.inflight_memory_per_user = mib(share_mib);
}

/// A chunk PUT whose body is sent by hand: the headers and `sent` bytes of a
/// `len`-byte body, then nothing until the connection is dropped.
async fn held_chunk(
    app: &TestApp,
    token: &str,
    id: &str,
    n: usize,
    len: usize,
    sent: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "PUT /v1/uploads/{id}/chunks/{n} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(sent).await.expect("body");
    stream
}

both_sets!(one_users_uploads_take_only_their_share_of_the_memory_budget);
async fn one_users_uploads_take_only_their_share_of_the_memory_budget(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    budget(&mut settings, 16, 8);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let data = random_bytes(16 * MIB, 15);
    let hers = alice.open("hers.bin", data.len()).await;
    let her_id = hers["upload_id"].as_str().expect("id").to_owned();
    // Alice's first chunk arrives slowly: it holds her whole share.
    let _slow = held_chunk(&app, &alice.token, &her_id, 1, 8 * MIB, &data[..MIB]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Her second chunk waits for her share...
    let second = tokio::spawn({
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/uploads/{her_id}/chunks/2")),
            alice.token.clone(),
        );
        let body = data[8 * MIB..].to_vec();
        async move { client.put(url).bearer_auth(token).body(body).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...while bob's goes through at once: the rest of the node's budget is
    // not hers to take.
    let his = bob.open("his.bin", 8 * MIB).await;
    let his_id = his["upload_id"].as_str().expect("id");
    let put = tokio::time::timeout(
        Duration::from_secs(5),
        bob.put_chunk(his_id, 1, data[..8 * MIB].to_vec()),
    )
    .await;
    assert_eq!(
        put.expect("bob's chunk waited behind alice's").status(),
        200,
        "{set:?}"
    );
    assert!(
        !second.is_finished(),
        "{set:?}: alice's second chunk took more than her share"
    );
    app.stop().await;
}

both_sets!(a_body_slower_than_the_least_rate_is_cut_off_and_frees_its_memory);
async fn a_body_slower_than_the_least_rate_is_cut_off_and_frees_its_memory(set: BackendSet) {
    use tokio::io::AsyncReadExt;
    let (mut settings, dir) = test_settings(set).await;
    budget(&mut settings, 8, 8);
    settings.limits.min_body_rate = media_api::config::ByteSize(64 * 1024);
    settings.limits.body_grace = Duration::from_secs(1);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(8 * MIB, 16);
    let session = alice.open("slow.bin", data.len()).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    // 100 KB, then nothing: holding the node's whole budget.
    let started = std::time::Instant::now();
    let mut slow = held_chunk(&app, &alice.token, &id, 1, 8 * MIB, &data[..100_000]).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("no answer to a stalled body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{set:?}: {answer}");
    assert!(answer.contains("body-too-slow"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // Its memory is free again: the chunk sent whole goes through.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        alice.put_chunk(&id, 1, data.clone()),
    )
    .await
    .expect("the budget was never given back");
    assert_eq!(r.status(), 200);
    app.stop().await;
}
