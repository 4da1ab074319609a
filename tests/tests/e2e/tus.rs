//! tus 1.0 at `/v1/tus/`: the protocol's statuses and headers, over the
//! same upload sessions as the native API.

use std::time::Duration;

use bytes::Bytes;
use media_e2e::both_sets;
use media_e2e::{BackendSet, TestApp, User, header, json_of, random_bytes};
use reqwest::Method;

const MIB: usize = 1024 * 1024;

fn tus(user: &User<'_>, method: Method, path: &str) -> reqwest::RequestBuilder {
    user.app
        .client
        .request(method, user.app.url(path))
        .bearer_auth(&user.token)
        .header("tus-resumable", "1.0.0")
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Creates a tus upload of `length` bytes; answers its path.
async fn create(user: &User<'_>, length: usize, name: &str) -> String {
    let r = tus(user, Method::POST, "/v1/tus/")
        .header("upload-length", length.to_string())
        .header(
            "upload-metadata",
            format!(
                "filename {},filetype {}",
                b64(name),
                b64("application/x-test")
            ),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(header(&r, "tus-resumable"), "1.0.0");
    assert!(
        header(&r, "upload-expires").ends_with(" GMT"),
        "{:?}",
        r.headers()
    );
    header(&r, "location")
}

async fn offset(user: &User<'_>, path: &str) -> u64 {
    let r = tus(user, Method::HEAD, path).send().await.expect("head");
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(header(&r, "cache-control"), "no-store");
    header(&r, "upload-offset").parse().expect("offset")
}

async fn patch(
    user: &User<'_>,
    path: &str,
    at: u64,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    tus(user, Method::PATCH, path)
        .header("upload-offset", at.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await
        .expect("patch")
}

both_sets!(a_tus_upload_in_unaligned_patches_is_a_session_like_any_other);
async fn a_tus_upload_in_unaligned_patches_is_a_session_like_any_other(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let options = app
        .client
        .request(Method::OPTIONS, app.url("/v1/tus/"))
        .send()
        .await
        .expect("options");
    assert_eq!(options.status(), 204);
    assert_eq!(header(&options, "tus-version"), "1.0.0");
    assert!(header(&options, "tus-extension").contains("creation"));
    assert!(header(&options, "tus-extension").contains("termination"));
    assert_eq!(
        header(&options, "tus-max-size"),
        app.state.settings.limits.max_file_size.0.to_string()
    );

    // 20 MiB + 3 in PATCHes of 3 MiB + 1: none lines up with a part.
    let data = random_bytes(20 * MIB + 3, 71);
    let path = create(&alice, data.len(), "trip.bin").await;
    let id = path.rsplit('/').next().expect("id").to_owned();
    let native = json_of(alice.get(&format!("/v1/uploads/{id}")).await, 200).await;
    assert_eq!(native["state"], "receiving", "{set:?}: {native}");
    assert_eq!(native["size"], data.len());
    assert_eq!(native["file_name"], "trip.bin");
    // Someone else's upload does not exist for them.
    let r = tus(&bob, Method::HEAD, &path).send().await.expect("head");
    assert_eq!(r.status(), 404);
    // No Tus-Resumable: 412 and the version spoken.
    let r = app
        .client
        .head(app.url(&path))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), 412);
    assert_eq!(header(&r, "tus-version"), "1.0.0");
    // Another body type: 415.
    let r = tus(&alice, Method::PATCH, &path)
        .header("upload-offset", "0")
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 415);

    let step = 3 * MIB + 1;
    let mut at = 0usize;
    let mut media_id = String::new();
    while at < data.len() {
        let end = (at + step).min(data.len());
        let r = patch(&alice, &path, at as u64, data[at..end].to_vec()).await;
        assert_eq!(
            r.status(),
            204,
            "{set:?}: {}",
            r.text().await.unwrap_or_default()
        );
        assert_eq!(header(&r, "upload-offset"), end.to_string());
        media_id = header(&r, "media-id");
        at = end;
        assert_eq!(offset(&alice, &path).await, at as u64, "{set:?}");
        if at < data.len() {
            // The wrong offset: 409, and nothing moves.
            let r = patch(&alice, &path, at as u64 + 1, vec![1u8; 5]).await;
            assert_eq!(r.status(), 409);
            assert_eq!(offset(&alice, &path).await, at as u64);
        }
    }
    assert!(
        !media_id.is_empty(),
        "{set:?}: the last PATCH named no media"
    );
    let r = tus(&alice, Method::HEAD, &path).send().await.expect("head");
    assert_eq!(header(&r, "media-id"), media_id);
    let native = json_of(alice.get(&format!("/v1/uploads/{id}")).await, 200).await;
    assert_eq!(native["state"], "completed", "{native}");
    assert_eq!(native["media_id"], media_id.as_str());
    let media = json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        media["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}: {media}"
    );
    let (_, bytes) = alice
        .download(&format!("/v1/media/{media_id}/content"))
        .await;
    assert!(bytes == data, "{set:?}: other bytes came back");
    // A PATCH after the end: the upload is complete.
    let r = patch(&alice, &path, data.len() as u64, vec![1u8]).await;
    assert!(r.status() == 409 || r.status() == 413, "{}", r.status());

    // Past Upload-Length: 413.
    let small = create(&alice, 10, "small.bin").await;
    let r = patch(&alice, &small, 0, vec![0u8; 11]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(offset(&alice, &small).await, 0);
    // Termination: the session is aborted, then gone.
    let r = tus(&alice, Method::DELETE, &small)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = tus(&alice, Method::HEAD, &small)
        .send()
        .await
        .expect("head");
    assert!(r.status() == 404 || r.status() == 410, "{}", r.status());
    // Over the size limit at creation: 413.
    let r = tus(&alice, Method::POST, "/v1/tus/")
        .header(
            "upload-length",
            (app.state.settings.limits.max_file_size.0 + 1).to_string(),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 413);
    app.stop().await;
}

both_sets!(a_patch_cut_off_midway_keeps_the_bytes_that_arrived);
async fn a_patch_cut_off_midway_keeps_the_bytes_that_arrived(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(12 * MIB + 17, 72);
    let path = create(&alice, data.len(), "cut.bin").await;
    // 9 MiB + 5 (a whole part and some), then the connection breaks.
    let sent = Bytes::from(data[..9 * MIB + 5].to_vec());
    let pieces: Vec<Result<Bytes, std::io::Error>> = sent
        .chunks(MIB)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::other("cable pulled"))))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let _ = tus(&alice, Method::PATCH, &path)
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await;
    // What arrived is kept (whatever the server saw before the break).
    let kept = {
        let mut last = 0;
        for _ in 0..50 {
            last = offset(&alice, &path).await;
            if last == (9 * MIB + 5) as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    };
    assert!(kept > 8 * MIB as u64, "{set:?}: only {kept} bytes kept");
    // The rest from the reported offset completes the same content.
    let r = patch(&alice, &path, kept, data[kept as usize..].to_vec()).await;
    assert_eq!(
        r.status(),
        204,
        "{set:?}: {}",
        r.text().await.unwrap_or_default()
    );
    let media_id = header(&r, "media-id");
    let media = json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        media["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}"
    );
    app.stop().await;
}

both_sets!(two_patches_at_once_one_writes_the_other_is_told_to_wait);
async fn two_patches_at_once_one_writes_the_other_is_told_to_wait(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(2 * MIB, 73);
    let path = create(&alice, data.len(), "race.bin").await;
    // A slow PATCH: half, a pause, the rest.
    let (first, second) = (
        Bytes::copy_from_slice(&data[..MIB]),
        Bytes::copy_from_slice(&data[MIB..]),
    );
    let slow = futures_util::stream::unfold(0, move |step| {
        let (first, second) = (first.clone(), second.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Some((Ok(second), 2))
                }
                _ => None,
            }
        }
    });
    let writer = patch(&alice, &path, 0, reqwest::Body::wrap_stream(slow));
    let racer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        patch(&alice, &path, 0, data.clone()).await
    };
    let (written, raced) = tokio::join!(writer, racer);
    assert_eq!(written.status(), 204, "{set:?}");
    assert!(
        raced.status() == 423 || raced.status() == 409,
        "{set:?}: a concurrent PATCH got {}",
        raced.status()
    );
    let media_id = header(&written, "media-id");
    let media = json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        media["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}"
    );
    app.stop().await;
}

both_sets!(a_patch_whose_checksum_does_not_match_moves_nothing);
async fn a_patch_whose_checksum_does_not_match_moves_nothing(set: BackendSet) {
    use base64::Engine;
    use sha2::Digest;
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let options = app
        .client
        .request(Method::OPTIONS, app.url("/v1/tus/"))
        .send()
        .await
        .expect("options");
    assert!(header(&options, "tus-extension").contains("checksum"));
    assert_eq!(header(&options, "tus-checksum-algorithm"), "sha1,sha256");
    let data = random_bytes(9 * MIB + 100, 74);
    let path = create(&alice, data.len(), "sum.bin").await;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let first = &data[..5 * MIB];
    let sha1 = b64(&sha1::Sha1::digest(first));
    let checked = |sum: String, at: u64, bytes: Vec<u8>| {
        tus(&alice, Method::PATCH, &path)
            .header("upload-offset", at.to_string())
            .header("content-type", "application/offset+octet-stream")
            .header("upload-checksum", sum)
            .body(bytes)
            .send()
    };
    // One byte changed: 460, and the offset does not move.
    let mut damaged = first.to_vec();
    damaged[12345] ^= 1;
    let r = checked(format!("sha1 {sha1}"), 0, damaged)
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 460, "{set:?}");
    assert_eq!(
        offset(&alice, &path).await,
        0,
        "{set:?}: a bad PATCH moved the offset"
    );
    let r = checked(format!("md5 {sha1}"), 0, first.to_vec())
        .await
        .expect("patch");
    assert_eq!(r.status(), 400);
    let r = checked(format!("sha1 {sha1}"), 0, first.to_vec())
        .await
        .expect("patch");
    assert_eq!(r.status(), 204, "{set:?}");
    let rest = &data[5 * MIB..];
    let sha256 = b64(&sha2::Sha256::digest(rest));
    let r = checked(
        format!("sha256 {sha256}"),
        first.len() as u64,
        rest.to_vec(),
    )
    .await
    .expect("patch");
    assert_eq!(r.status(), 204, "{set:?}");
    let media_id = header(&r, "media-id");
    let media = json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        media["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}"
    );
    app.stop().await;
}

both_sets!(tus_and_native_uploads_of_one_file_by_its_owner_store_it_once);
async fn tus_and_native_uploads_of_one_file_by_its_owner_store_it_once(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    // Native first, then tus naming its BLAKE3: no byte sent.
    let data = random_bytes(3 * MIB + 11, 75);
    let hash = blake3::hash(&data).to_hex().to_string();
    let native = alice.upload("first.bin", &data).await;
    let r = tus(&alice, Method::POST, "/v1/tus/")
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            format!("filename {},blake3 {}", b64("again.bin"), b64(&hash)),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{set:?}");
    assert_eq!(
        header(&r, "upload-offset"),
        data.len().to_string(),
        "{set:?}: not complete at once"
    );
    let media_id = header(&r, "media-id");
    assert!(
        !media_id.is_empty() && media_id != native["media_id"],
        "{set:?}"
    );
    let path = header(&r, "location");
    assert_eq!(offset(&alice, &path).await, data.len() as u64);
    let id = path.rsplit('/').next().expect("id");
    let session = json_of(alice.get(&format!("/v1/uploads/{id}")).await, 200).await;
    assert_eq!(session["state"], "completed", "{session}");
    assert_eq!(session["media_id"], media_id.as_str());
    // tus first, then native naming its BLAKE3: the owner's instant dedup.
    let other = random_bytes(2 * MIB + 5, 76);
    let other_hash = blake3::hash(&other).to_hex().to_string();
    let path = create(&alice, other.len(), "tus-first.bin").await;
    let r = patch(&alice, &path, 0, other.clone()).await;
    assert_eq!(r.status(), 204);
    let again = alice
        .create_upload(serde_json::json!({
            "file_name": "native-second.bin", "size": other.len(), "blake3": other_hash,
        }))
        .await;
    let again = json_of(again, 200).await;
    assert_eq!(again["deduplicated"], true, "{set:?}: {again}");
    // Two contents, two objects: nothing stored twice.
    let objects = app.state.backends.blobs.list("").await.expect("list");
    assert_eq!(objects.len(), 2, "{set:?}: {objects:?}");
    app.stop().await;
}
