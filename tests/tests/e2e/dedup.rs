//! Content-hash deduplication, references, garbage collection and the
//! promise that no user learns whether someone else has a file.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, User, eventually, header, json_of, problem_of, random_bytes, stored_bytes,
    test_settings,
};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

async fn spawn(set: BackendSet, grace: Duration, interval: Duration) -> TestApp {
    let (mut settings, dir) = test_settings(set).await;
    settings.gc_grace = grace;
    settings.gc_interval = interval;
    TestApp::spawn_with(set, settings, dir).await
}

async fn objects(app: &TestApp) -> Vec<String> {
    app.state
        .backends
        .blobs
        .list("")
        .await
        .expect("list objects")
}

/// Whether the store comes to hold exactly one object.
async fn settles_to_one_object(app: &TestApp) -> bool {
    eventually(Duration::from_secs(10), || async {
        objects(app).await.len() == 1
    })
    .await
}

both_sets!(twenty_users_completing_the_same_content_at_once_store_it_once);
async fn twenty_users_completing_the_same_content_at_once_store_it_once(set: BackendSet) {
    let app = spawn(set, Duration::from_secs(3600), Duration::from_secs(60)).await;
    let data = random_bytes(20 * MIB, 20);
    let users: Vec<User<'_>> = (0..20).map(|i| app.user(&format!("user{i}"))).collect();
    // Everyone sends every chunk first...
    let sessions: Vec<String> = futures_util::stream::iter(&users)
        .map(|u| {
            let data = &data;
            async move {
                let s = u.open("same.bin", data.len()).await;
                let id = s["upload_id"].as_str().expect("id").to_owned();
                u.send_chunks(&id, data, 8 * MIB, &[3, 1, 2], 3).await;
                id
            }
        })
        .buffered(4)
        .collect()
        .await;
    // ...then all twenty complete at the same moment.
    let completions =
        futures_util::future::join_all(users.iter().zip(&sessions).map(|(u, id)| u.complete(id)))
            .await;
    let mut media_ids = BTreeSet::new();
    for r in completions {
        let done = json_of(r, 200).await;
        assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
        media_ids.insert(done["media_id"].as_str().expect("id").to_owned());
        // None of them held it before: none is told that someone else did.
        assert_eq!(done["deduplicated"], false, "{set:?}: {done}");
    }
    assert_eq!(media_ids.len(), 20, "{set:?}: twenty media");
    let totals = app
        .state
        .backends
        .media
        .blob_totals()
        .await
        .expect("totals");
    assert_eq!(totals, (1, data.len() as u64), "{set:?}: one blob");
    // The redundant copies go just after their completions answer.
    assert!(
        settles_to_one_object(&app).await,
        "{set:?}: one object in the store"
    );
    assert!(
        app.state
            .backends
            .blobs
            .list_multipart()
            .await
            .expect("list")
            .is_empty()
    );
    for id in &media_ids {
        assert!(stored_bytes(&app, id).await == data, "{set:?}: {id}");
    }
    app.stop().await;
}

/// What may differ between two sessions: the values of per-request headers.
fn header_names(r: &reqwest::Response) -> BTreeSet<String> {
    r.headers().keys().map(|k| k.as_str().to_owned()).collect()
}

fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(s) => Value::String(format!("string of {} chars", s.len())),
        other => other.clone(),
    }
}

both_sets!(instant_dedup_for_the_owner_and_no_existence_leak_for_others);
async fn instant_dedup_for_the_owner_and_no_existence_leak_for_others(set: BackendSet) {
    let app = spawn(set, Duration::from_secs(3600), Duration::from_secs(60)).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let data = random_bytes(12 * MIB, 21);
    let hash = blake3::hash(&data).to_hex().to_string();
    let first = alice.upload("original.bin", &data).await;

    // The owner: a new media item at once, without a byte sent.
    let r = alice
        .create_upload(json!({"file_name": "again.bin", "size": data.len(), "blake3": hash}))
        .await;
    let again = json_of(r, 200).await;
    assert_eq!(again["deduplicated"], true, "{set:?}");
    assert_eq!(again["blake3"], hash.as_str());
    assert_eq!(again["size"], data.len());
    assert_eq!(again["file_name"], "again.bin");
    assert_eq!(again["content_type"], first["content_type"]);
    assert_ne!(again["media_id"], first["media_id"], "a new media record");
    assert!(stored_bytes(&app, again["media_id"].as_str().expect("id")).await == data);
    // The right hash with the wrong size is not a claim to the content.
    let r = alice
        .create_upload(json!({"file_name": "x", "size": data.len() + 1, "blake3": hash}))
        .await;
    assert_eq!(r.status(), 201);

    // Someone else claiming the same hash gets an ordinary session, exactly
    // like a claim to content nobody has.
    let unknown = blake3::hash(b"content nobody has").to_hex().to_string();
    let claim = |h: String| {
        bob.create_upload(json!({"file_name": "guess.bin", "size": data.len(), "blake3": h}))
    };
    let known_r = claim(hash.clone()).await;
    let unknown_r = claim(unknown).await;
    assert_eq!(known_r.status(), 201, "{set:?}");
    assert_eq!(header_names(&known_r), header_names(&unknown_r), "{set:?}");
    assert_eq!(
        header(&known_r, "content-type"),
        header(&unknown_r, "content-type")
    );
    let known = json_of(known_r, 201).await;
    let unknown = json_of(unknown_r, 201).await;
    assert_eq!(shape(&known), shape(&unknown), "{set:?}");
    for field in ["chunk_size", "total_chunks", "received_chunks"] {
        assert_eq!(known[field], unknown[field], "{field}");
    }
    // Bob proves possession by sending the bytes; then he shares the blob.
    let id = known["upload_id"].as_str().expect("id");
    bob.send_chunks(id, &data, 8 * MIB, &[2, 1], 2).await;
    let bobs = json_of(bob.complete(id).await, 200).await;
    assert_eq!(
        bobs["deduplicated"], false,
        "{set:?}: not told of alice's copy"
    );
    assert!(
        settles_to_one_object(&app).await,
        "{set:?}: still one object"
    );
    app.stop().await;
}

both_sets!(listing_is_newest_first_by_cursor_and_deletion_drops_one_reference);
async fn listing_is_newest_first_by_cursor_and_deletion_drops_one_reference(set: BackendSet) {
    let app = spawn(set, Duration::from_secs(3600), Duration::from_secs(60)).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let mut uploaded = Vec::new();
    for i in 0..5u64 {
        let done = alice
            .post_media(&format!("f{i}.txt"), &random_bytes(1000, i))
            .await;
        uploaded.push(done["media_id"].as_str().expect("id").to_owned());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    bob.post_media("bobs.txt", b"bob's own").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/media?limit=2&cursor={c}"),
            None => "/v1/media?limit=2".to_owned(),
        };
        let page = json_of(alice.get(&path).await, 200).await;
        pages += 1;
        for item in page["items"].as_array().expect("items") {
            seen.push(item["media_id"].as_str().expect("id").to_owned());
            assert!(item["blake3"].is_string() && item["created_at"].is_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "{set:?}");
    let mut newest_first = uploaded.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "{set:?}: every item once, newest first");

    problem_of(alice.get("/v1/media?limit=0").await, 400, "invalid-limit").await;
    problem_of(
        alice.get("/v1/media?limit=100000").await,
        400,
        "invalid-limit",
    )
    .await;
    problem_of(alice.get("/v1/media?limit=x").await, 400, "invalid-query").await;
    problem_of(
        alice.get("/v1/media?cursor=forged").await,
        400,
        "invalid-cursor",
    )
    .await;

    let target = &uploaded[0];
    problem_of(
        bob.delete(&format!("/v1/media/{target}")).await,
        404,
        "media-not-found",
    )
    .await;
    assert_eq!(
        alice.delete(&format!("/v1/media/{target}")).await.status(),
        204
    );
    problem_of(
        alice.delete(&format!("/v1/media/{target}")).await,
        404,
        "media-not-found",
    )
    .await;
    problem_of(
        alice.get(&format!("/v1/media/{target}")).await,
        404,
        "media-not-found",
    )
    .await;
    let page = json_of(alice.get("/v1/media").await, 200).await;
    assert_eq!(page["items"].as_array().expect("items").len(), 4);
    app.stop().await;
}

both_sets!(unreferenced_content_goes_after_the_grace_period_and_a_new_reference_keeps_it);
async fn unreferenced_content_goes_after_the_grace_period_and_a_new_reference_keeps_it(
    set: BackendSet,
) {
    let grace = Duration::from_secs(3);
    let app = spawn(set, grace, Duration::from_millis(200)).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));

    // Two references; deleting one keeps the content.
    let data = random_bytes(100_000, 30);
    let a = alice.post_media("a.bin", &data).await;
    let b = bob.post_media("b.bin", &data).await;
    assert_eq!(b["deduplicated"], false, "{set:?}: bob did not hold it");
    let a_id = a["media_id"].as_str().expect("id");
    let b_id = b["media_id"].as_str().expect("id");
    assert_eq!(
        alice.delete(&format!("/v1/media/{a_id}")).await.status(),
        204
    );
    // Past the grace period and several GC passes: still there.
    tokio::time::sleep(grace + Duration::from_secs(1)).await;
    assert!(
        stored_bytes(&app, b_id).await == data,
        "{set:?}: a referenced blob was deleted"
    );

    // The last reference goes: after the grace period, so does the object.
    let dropped = std::time::Instant::now();
    assert_eq!(bob.delete(&format!("/v1/media/{b_id}")).await.status(), 204);
    // Two thirds into the grace period (ten GC passes later), it is kept.
    tokio::time::sleep(grace * 2 / 3).await;
    assert_eq!(
        objects(&app).await.len(),
        1,
        "{set:?}: deleted before the grace period was over"
    );
    let gone = eventually(Duration::from_secs(10), || async {
        objects(&app).await.is_empty()
    })
    .await;
    assert!(gone, "{set:?}: the unreferenced object was never deleted");
    // Measured from before the DELETE was sent, so no clock can make a
    // correct GC fail this.
    assert!(
        dropped.elapsed() >= grace,
        "{set:?}: deleted {:?} after its last reference, under the {grace:?} grace",
        dropped.elapsed()
    );
    assert_eq!(
        app.state
            .backends
            .media
            .blob_totals()
            .await
            .expect("totals"),
        (0, 0)
    );

    // Deleted, then uploaded again within the grace period: revived, nothing deleted.
    let other = random_bytes(200_000, 31);
    let first = alice.post_media("c.bin", &other).await;
    let first_id = first["media_id"].as_str().expect("id");
    assert_eq!(
        alice
            .delete(&format!("/v1/media/{first_id}"))
            .await
            .status(),
        204
    );
    let again = alice.post_media("c.bin", &other).await;
    // Alice no longer holds it, so she is not told; the waiting blob is
    // revived all the same (one object, not deleted).
    assert_eq!(again["deduplicated"], false, "{set:?}");
    tokio::time::sleep(grace + Duration::from_secs(1)).await;
    let again_id = again["media_id"].as_str().expect("id");
    assert!(
        stored_bytes(&app, again_id).await == other,
        "{set:?}: revived blob was deleted"
    );
    assert_eq!(objects(&app).await.len(), 1);
    app.stop().await;
}

both_sets!(gc_racing_completions_never_leaves_media_without_its_object);
async fn gc_racing_completions_never_leaves_media_without_its_object(set: BackendSet) {
    // No grace at all, and a GC pass every few milliseconds.
    let app = spawn(set, Duration::ZERO, Duration::from_millis(5)).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let data = random_bytes(9 * MIB, 40);
    let small = random_bytes(50_000, 41);
    for round in 0..12 {
        // Two users complete the same content at once (one dedups onto the
        // other's blob), each checks its media's object, then both delete,
        // leaving the blob to the GC.
        let (x, y) = tokio::join!(
            alice.upload("race.bin", &data),
            bob.post_media("race-small.bin", &small)
        );
        let z = alice.post_media("race-small.bin", &small).await;
        for (done, bytes) in [(&x, &data), (&y, &small), (&z, &small)] {
            let id = done["media_id"].as_str().expect("id");
            assert!(
                stored_bytes(&app, id).await == *bytes,
                "{set:?} round {round}: media {id} points at a missing or wrong object"
            );
        }
        for (user, done) in [(&alice, &x), (&bob, &y), (&alice, &z)] {
            let id = done["media_id"].as_str().expect("id");
            assert_eq!(user.delete(&format!("/v1/media/{id}")).await.status(), 204);
        }
    }
    let empty = eventually(Duration::from_secs(10), || async {
        objects(&app).await.is_empty()
    })
    .await;
    assert!(empty, "{set:?}: unreferenced objects stayed");
    app.stop().await;
}

/// Keys and value types of a document, recursively (values compared only
/// where they are the same for any content: booleans and statuses).
fn keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), keys(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(keys).collect()),
        Value::Bool(_) | Value::Null => v.clone(),
        Value::Number(_) => Value::String("number".into()),
        Value::String(_) => Value::String("string".into()),
    }
}

/// Sends `data` through a chunked session and completes it twice.
async fn complete_twice(user: &User<'_>, name: &str, data: &[u8]) -> (Value, Value) {
    let session = user.open(name, data.len()).await;
    let id = session["upload_id"].as_str().expect("id");
    let chunk = session["chunk_size"].as_u64().expect("chunk size") as usize;
    let total = session["total_chunks"].as_u64().expect("total") as usize;
    let order: Vec<usize> = (1..=total).collect();
    user.send_chunks(id, data, chunk, &order, 2).await;
    let first = json_of(user.complete(id).await, 200).await;
    let second = json_of(user.complete(id).await, 200).await;
    (first, second)
}

both_sets!(a_copy_of_someone_elses_content_answers_and_processes_as_new_content);
async fn a_copy_of_someone_elses_content_answers_and_processes_as_new_content(set: BackendSet) {
    let app = crate::processing::spawn(set).await;
    let (alice, bob, carol) = (app.user("alice"), app.user("bob"), app.user("carol"));
    let png = crate::processing::good_png(60);
    let alices = crate::processing::post(&alice, "a.png", "image/png", png.clone()).await;
    let alices = crate::processing::settled(&alice, alices["media_id"].as_str().expect("id")).await;
    assert_eq!(alices["status"], "ready", "{alices}");

    // Bob uploads alice's image; carol an image nobody has. Both see the
    // same answer, and the same `processing` media right after it.
    let bobs = crate::processing::post(&bob, "b.png", "image/png", png.clone()).await;
    let bobs_view = json_of(
        bob.get(&format!(
            "/v1/media/{}",
            bobs["media_id"].as_str().expect("id")
        ))
        .await,
        200,
    )
    .await;
    let bobs_thumb = bob
        .get(&format!(
            "/v1/media/{}/content?variant=thumb",
            bobs["media_id"].as_str().expect("id")
        ))
        .await;
    let carols = crate::processing::post(
        &carol,
        "c.png",
        "image/png",
        crate::processing::good_png(61),
    )
    .await;
    let carols_view = json_of(
        carol
            .get(&format!(
                "/v1/media/{}",
                carols["media_id"].as_str().expect("id")
            ))
            .await,
        200,
    )
    .await;
    assert_eq!(bobs["deduplicated"], false, "{set:?}: {bobs}");
    assert_eq!(keys(&bobs), keys(&carols), "{set:?}");
    assert_eq!(bobs_view["status"], "processing", "{set:?}: {bobs_view}");
    assert_eq!(
        keys(&bobs_view),
        keys(&carols_view),
        "{set:?}: {bobs_view} vs {carols_view}"
    );
    assert_eq!(bobs_view["variants"], json!([]), "{set:?}");
    problem_of(bobs_thumb, 404, "variant-not-found").await;
    // Then it is ready, with the variants made once for alice.
    let bobs_done = crate::processing::settled(&bob, bobs["media_id"].as_str().expect("id")).await;
    assert_eq!(bobs_done["status"], "ready", "{set:?}: {bobs_done}");
    assert_eq!(bobs_done["variants"], alices["variants"], "{set:?}");
    assert_eq!(bobs_done["width"], alices["width"], "{set:?}");

    // A repeated `complete` answers as the first did: for bob's copy of
    // alice's bytes (not his to know of), and for alice's second copy of
    // her own (hers to know of).
    let data = random_bytes(300_000, 62);
    alice.post_media("mine.bin", &data).await;
    let (first, second) = complete_twice(&bob, "his.bin", &data).await;
    assert_eq!(first["deduplicated"], false, "{set:?}");
    assert_eq!(first, second, "{set:?}: bob's second complete differs");
    let (first, second) = complete_twice(&alice, "again.bin", &data).await;
    assert_eq!(first["deduplicated"], true, "{set:?}: alice held it");
    assert_eq!(first, second, "{set:?}: alice's second complete differs");
    // Once the media is deleted, its session says so.
    let id = first["media_id"].as_str().expect("id");
    assert_eq!(alice.delete(&format!("/v1/media/{id}")).await.status(), 204);
    let session = alice.open("third.bin", data.len()).await;
    let upload = session["upload_id"].as_str().expect("id").to_owned();
    let chunk = session["chunk_size"].as_u64().expect("chunk") as usize;
    let total = session["total_chunks"].as_u64().expect("total") as usize;
    alice
        .send_chunks(&upload, &data, chunk, &(1..=total).collect::<Vec<_>>(), 2)
        .await;
    let third = json_of(alice.complete(&upload).await, 200).await;
    let third_id = third["media_id"].as_str().expect("id");
    assert_eq!(
        alice
            .delete(&format!("/v1/media/{third_id}"))
            .await
            .status(),
        204
    );
    problem_of(alice.complete(&upload).await, 410, "media-deleted").await;
    app.stop().await;
}

both_sets!(two_references_dropped_at_once_leave_the_content_to_the_gc);
async fn two_references_dropped_at_once_leave_the_content_to_the_gc(set: BackendSet) {
    let app = spawn(set, Duration::ZERO, Duration::from_millis(100)).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    for round in 0..30u64 {
        let data = random_bytes(1000, 1000 + round);
        let (a, b) = tokio::join!(
            alice.post_media("x.bin", &data),
            bob.post_media("x.bin", &data)
        );
        let (a, b) = (
            a["media_id"].as_str().expect("id"),
            b["media_id"].as_str().expect("id"),
        );
        // Both last references go in the same moment.
        let (pa, pb) = (format!("/v1/media/{a}"), format!("/v1/media/{b}"));
        let (ra, rb) = tokio::join!(alice.delete(&pa), bob.delete(&pb));
        assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (204, 204));
    }
    let empty = eventually(Duration::from_secs(15), || async {
        objects(&app).await.is_empty()
    })
    .await;
    assert!(
        empty,
        "{set:?}: {} contents nobody references stayed",
        objects(&app).await.len()
    );
    app.stop().await;
}

both_sets!(content_the_gc_cannot_collect_does_not_hold_up_the_rest);
async fn content_the_gc_cannot_collect_does_not_hold_up_the_rest(set: BackendSet) {
    let app = spawn(set, Duration::ZERO, Duration::from_millis(100)).await;
    let alice = app.user("alice");
    // 120 contents still referenced but marked unreferenced long ago (as a
    // lost race or a bug would leave them): the oldest candidates of every pass.
    for i in 0..120u64 {
        alice
            .post_media("kept.bin", &random_bytes(100, 2000 + i))
            .await;
    }
    media_e2e::raw_sql(&app, "update blobs set unreferenced_since = 1").await;
    // A content really unreferenced, marked now: behind all of them.
    let gone = alice.post_media("gone.bin", &random_bytes(100, 3000)).await;
    let id = gone["media_id"].as_str().expect("id");
    assert_eq!(alice.delete(&format!("/v1/media/{id}")).await.status(), 204);
    let collected = eventually(Duration::from_secs(15), || async {
        objects(&app).await.len() == 120
    })
    .await;
    assert!(collected, "{set:?}: {} objects", objects(&app).await.len());
    // The ones still referenced are there, and readable.
    let page = json_of(alice.get("/v1/media?limit=200").await, 200).await;
    for item in page["items"].as_array().expect("items") {
        let id = item["media_id"].as_str().expect("id");
        assert_eq!(stored_bytes(&app, id).await.len(), 100);
    }
    app.stop().await;
}
