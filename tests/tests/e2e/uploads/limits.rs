//! The limits a user meets: size limits by content type (on the sniffed
//! type, and early on a stated one), quotas and rates.

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
