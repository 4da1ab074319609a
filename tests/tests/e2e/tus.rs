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

/// tus's capability request.
async fn options(app: &TestApp) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/tus/"))
        .send()
        .await
        .expect("options")
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
    let options = options(&app).await;
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
    finish_with_the_rest(&alice, &path, kept as usize, &data, set).await;
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
    let options = options(&app).await;
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

/// Sends the rest of `data` from `at` in one PATCH: it completes the upload,
/// and the media is `data`.
async fn finish_with_the_rest(
    user: &User<'_>,
    path: &str,
    at: usize,
    data: &[u8],
    set: BackendSet,
) {
    let r = patch(user, path, at as u64, data[at..].to_vec()).await;
    assert_eq!(
        r.status(),
        204,
        "{set:?}: {}",
        r.text().await.unwrap_or_default()
    );
    let media_id = header(&r, "media-id");
    let media = json_of(user.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        media["blake3"],
        blake3::hash(data).to_hex().as_str(),
        "{set:?}"
    );
}

/// A tus request without a body, as stock clients send it.
async fn send(
    user: &User<'_>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = tus(user, method, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("tus request")
}

/// The problem `code` of a tus error answer.
async fn code_of(r: reqwest::Response) -> String {
    let problem: serde_json::Value = r.json().await.unwrap_or_default();
    problem["code"].as_str().unwrap_or_default().to_owned()
}

both_sets!(every_status_and_header_the_protocol_prescribes);
async fn every_status_and_header_the_protocol_prescribes(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let options = options(&app).await;
    assert_eq!(
        header(&options, "tus-extension"),
        "creation,creation-with-upload,expiration,checksum,termination,concatenation"
    );
    assert_eq!(header(&options, "tus-checksum-algorithm"), "sha1,sha256");

    // 412 for any other version, on every method but OPTIONS.
    let path = create(&alice, 100, "c.bin").await;
    for method in [Method::POST, Method::HEAD, Method::PATCH, Method::DELETE] {
        let target = if method == Method::POST {
            "/v1/tus/"
        } else {
            &path
        };
        let r = app
            .client
            .request(method.clone(), app.url(target))
            .bearer_auth(&alice.token)
            .header("tus-resumable", "0.2.2")
            .header("upload-length", "5")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 412, "{set:?}: {method}");
        assert_eq!(header(&r, "tus-version"), "1.0.0");
    }
    // 400s with stable codes for headers that cannot be read.
    for (headers, code) in [
        (vec![], "upload-length-required"),
        (vec![("upload-length", "-1")], "invalid-tus-header"),
        (vec![("upload-length", "ten")], "invalid-tus-header"),
        (
            vec![("upload-defer-length", "1")],
            "defer-length-unsupported",
        ),
        (
            vec![("upload-length", "5"), ("upload-metadata", "filename %%%")],
            "invalid-upload-metadata",
        ),
        (
            vec![("upload-length", "5"), ("upload-concat", "final;")],
            "invalid-upload-concat",
        ),
        (
            vec![
                ("upload-length", "5"),
                ("upload-concat", "final;/v1/tus/nope"),
            ],
            "invalid-upload-concat",
        ),
        (
            vec![("upload-length", "5"), ("upload-concat", "sideways")],
            "invalid-upload-concat",
        ),
    ] {
        let r = send(&alice, Method::POST, "/v1/tus/", &headers).await;
        assert_eq!(r.status(), 400, "{set:?}: {headers:?}");
        assert_eq!(header(&r, "content-type"), "application/problem+json");
        assert_eq!(code_of(r).await, code, "{set:?}: {headers:?}");
    }
    // PATCH: 415 for another body type, 400 without an offset, 409 at the
    // wrong one, 413 past the length, 460 for a checksum that does not
    // match, and Upload-Expires on each success.
    let r = tus(&alice, Method::PATCH, &path)
        .header("upload-offset", "0")
        .body("x")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 415);
    assert_eq!(code_of(r).await, "offset-stream-required");
    let r = tus(&alice, Method::PATCH, &path)
        .header("content-type", "application/offset+octet-stream")
        .body("x")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 400);
    assert_eq!(code_of(r).await, "upload-offset-required");
    let r = patch(&alice, &path, 0, vec![7u8; 40]).await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "upload-offset"), "40");
    assert!(header(&r, "upload-expires").ends_with(" GMT"), "{set:?}");
    let r = patch(&alice, &path, 0, vec![7u8; 10]).await;
    assert_eq!(r.status(), 409);
    assert_eq!(code_of(r).await, "offset-mismatch");
    let r = patch(&alice, &path, 40, vec![7u8; 61]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(code_of(r).await, "past-upload-length");
    let r = tus(&alice, Method::PATCH, &path)
        .header("upload-offset", "40")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", format!("sha1 {}", b64_bytes(&[0u8; 20])))
        .body(vec![7u8; 10])
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(code_of(r).await, "checksum-mismatch");
    let r = tus(&alice, Method::PATCH, &path)
        .header("upload-offset", "40")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", "md5 AAAA")
        .body(vec![7u8; 10])
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 400);
    assert_eq!(code_of(r).await, "checksum-algorithm-unsupported");
    assert_eq!(offset(&alice, &path).await, 40, "{set:?}");
    // HEAD: never cached (`offset` asserts it), with the length and expiry.
    let r = send(&alice, Method::HEAD, &path, &[]).await;
    assert_eq!(header(&r, "upload-length"), "100");
    assert!(header(&r, "upload-expires").ends_with(" GMT"));
    // 404: an unknown id, a malformed one, someone else's.
    for target in [
        "/v1/tus/00000000-0000-0000-0000-000000000000",
        "/v1/tus/..%2F..%2Fetc",
    ] {
        let r = send(&alice, Method::HEAD, target, &[]).await;
        assert_eq!(r.status(), 404, "{set:?}: {target}");
    }
    let r = send(&bob, Method::PATCH, &path, &[]).await;
    assert!(r.status() == 404 || r.status() == 415, "{}", r.status());
    let r = patch(&bob, &path, 40, vec![1u8]).await;
    assert_eq!(r.status(), 404, "{set:?}");
    // 410: expired, and terminated.
    let id = path.rsplit('/').next().expect("id");
    media_e2e::raw_sql(
        &app,
        &format!("update uploads set expires_at = 1 where upload_id = '{id}'"),
    )
    .await;
    let r = send(&alice, Method::HEAD, &path, &[]).await;
    assert_eq!(r.status(), 410, "{set:?}");
    let r = patch(&alice, &path, 40, vec![1u8]).await;
    assert_eq!(r.status(), 410, "{set:?}");
    assert_eq!(code_of(r).await, "upload-expired");
    // Termination: 204, the session aborted, its multipart upload gone
    // from the store; then 410.
    let doomed = create(&alice, 9 * MIB, "doomed.bin").await;
    assert_eq!(
        patch(&alice, &doomed, 0, vec![3u8; MIB]).await.status(),
        204
    );
    let doomed_id = doomed.rsplit('/').next().expect("id").to_owned();
    let key = media_e2e::raw_column(
        &app,
        &format!("select storage_key from uploads where upload_id = '{doomed_id}'"),
    )
    .await
    .remove(0);
    let pending = |key: String| {
        let blobs = app.state.backends.blobs.clone();
        async move {
            blobs
                .list_multipart()
                .await
                .expect("list")
                .iter()
                .any(|m| m.key.ends_with(&key))
        }
    };
    assert!(pending(key.clone()).await, "{set:?}: no multipart upload");
    assert_eq!(
        send(&alice, Method::DELETE, &doomed, &[]).await.status(),
        204
    );
    assert!(!pending(key).await, "{set:?}: the multipart upload is left");
    let native = json_of(alice.get(&format!("/v1/uploads/{doomed_id}")).await, 200).await;
    assert_eq!(native["state"], "aborted", "{set:?}");
    let r = send(&alice, Method::HEAD, &doomed, &[]).await;
    assert_eq!(r.status(), 410);
    let r = patch(&alice, &doomed, MIB as u64, vec![1u8]).await;
    assert_eq!(r.status(), 410);
    assert_eq!(code_of(r).await, "upload-aborted");
    app.stop().await;
}

fn b64_bytes(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Creates a partial upload of `data` and sends it whole.
async fn partial(user: &User<'_>, data: &[u8]) -> String {
    let r = send(
        user,
        Method::POST,
        "/v1/tus/",
        &[
            ("upload-length", &data.len().to_string()),
            ("upload-concat", "partial"),
        ],
    )
    .await;
    assert_eq!(r.status(), 201);
    let path = header(&r, "location");
    let r = patch(user, &path, 0, data.to_vec()).await;
    assert_eq!(r.status(), 204);
    // Its last byte completes nothing: a piece is not a file.
    assert_eq!(header(&r, "media-id"), "");
    let r = send(user, Method::HEAD, &path, &[]).await;
    assert_eq!(header(&r, "upload-concat"), "partial");
    assert_eq!(header(&r, "upload-offset"), data.len().to_string());
    path
}

both_sets!(concatenation_makes_one_file_of_partial_uploads);
async fn concatenation_makes_one_file_of_partial_uploads(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    // Three pieces of unaligned sizes, one bigger than a part.
    let data = random_bytes(9 * MIB + 777, 72);
    let (a, rest) = data.split_at(3 * MIB + 5);
    let (b, c) = rest.split_at(5 * MIB + 1);
    let pa = partial(&alice, a).await;
    let pb = partial(&alice, b).await;
    // A piece still missing bytes: 400, and nothing is used up.
    let r = send(
        &alice,
        Method::POST,
        "/v1/tus/",
        &[
            ("upload-length", &c.len().to_string()),
            ("upload-concat", "partial"),
        ],
    )
    .await;
    let pc = header(&r, "location");
    assert_eq!(patch(&alice, &pc, 0, c[..100].to_vec()).await.status(), 204);
    let base = app.url("");
    let final_of = |pieces: &[&str]| {
        format!(
            "final;{}",
            pieces
                .iter()
                .map(|p| format!("{base}{p}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let metadata = format!(
        "filename {},filetype {}",
        b64("whole.bin"),
        b64("application/x-test")
    );
    let r = send(
        &alice,
        Method::POST,
        "/v1/tus/",
        &[
            ("upload-concat", &final_of(&[&pa, &pb, &pc])),
            ("upload-metadata", &metadata),
        ],
    )
    .await;
    assert_eq!(r.status(), 400, "{set:?}");
    assert_eq!(code_of(r).await, "partial-upload-unfinished");
    assert_eq!(
        offset(&alice, &pa).await,
        a.len() as u64,
        "{set:?}: a piece was used up"
    );
    // Someone else's piece, or an ordinary upload, is not a piece of yours.
    let theirs = partial(&bob, b"bob's bytes").await;
    let plain = create(&alice, 10, "plain.bin").await;
    for other in [&theirs, &plain] {
        let r = send(
            &alice,
            Method::POST,
            "/v1/tus/",
            &[("upload-concat", &final_of(&[&pa, other]))],
        )
        .await;
        assert_eq!(r.status(), 400, "{set:?}: {other}");
        assert_eq!(code_of(r).await, "invalid-upload-concat");
    }
    // More pieces than `limits.max_concat_uploads`: 400 before any is read.
    let most = app.state.settings.limits.max_concat_uploads;
    let many: Vec<&str> = std::iter::repeat_n(pa.as_str(), most + 1).collect();
    let r = send(
        &alice,
        Method::POST,
        "/v1/tus/",
        &[("upload-concat", &final_of(&many))],
    )
    .await;
    assert_eq!(r.status(), 400);
    let problem: serde_json::Value = r.json().await.expect("problem");
    assert_eq!(problem["code"], "invalid-upload-concat");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&most.to_string()),
        "{problem}"
    );
    // The rest of the last piece, and the final upload: complete at once.
    assert_eq!(
        patch(&alice, &pc, 100, c[100..].to_vec()).await.status(),
        204
    );
    let concat = final_of(&[&pa, &pb, &pc]);
    let r = send(
        &alice,
        Method::POST,
        "/v1/tus/",
        &[("upload-concat", &concat), ("upload-metadata", &metadata)],
    )
    .await;
    assert_eq!(
        r.status(),
        201,
        "{set:?}: {}",
        r.text().await.unwrap_or_default()
    );
    let whole = header(&r, "location");
    let media_id = header(&r, "media-id");
    assert!(!media_id.is_empty(), "{set:?}: no media");
    assert_eq!(header(&r, "upload-offset"), data.len().to_string());
    // HEAD tells what it is made of.
    let r = send(&alice, Method::HEAD, &whole, &[]).await;
    assert_eq!(header(&r, "upload-concat"), concat);
    assert_eq!(header(&r, "upload-length"), data.len().to_string());
    assert_eq!(header(&r, "media-id"), media_id);
    // A PATCH to a final upload: 403.
    let r = patch(&alice, &whole, data.len() as u64, vec![1u8]).await;
    assert_eq!(r.status(), 403, "{set:?}");
    assert_eq!(code_of(r).await, "upload-is-final");
    // The file is the pieces in order, named and typed as the final upload said.
    let media = json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        media["blake3"],
        blake3::hash(&data).to_hex().as_str(),
        "{set:?}"
    );
    assert_eq!(media["file_name"], "whole.bin");
    let (_, bytes) = alice
        .download(&format!("/v1/media/{media_id}/content"))
        .await;
    assert!(bytes == data, "{set:?}: other bytes came back");
    // The pieces are used up: gone, and a second final of them refused.
    for piece in [&pa, &pb, &pc] {
        assert_eq!(send(&alice, Method::HEAD, piece, &[]).await.status(), 410);
    }
    let r = send(
        &alice,
        Method::POST,
        "/v1/tus/",
        &[("upload-concat", &concat)],
    )
    .await;
    assert_eq!(r.status(), 400);
    // Their objects are gone from the store: the file is the one object left
    // of this user's uploads.
    let keys = media_e2e::raw_column(
        &app,
        &format!(
            "select storage_key from uploads where upload_id in ('{}', '{}', '{}')",
            &pa[8..],
            &pb[8..],
            &pc[8..]
        ),
    )
    .await;
    assert_eq!(keys.len(), 3);
    for key in keys {
        let key = media_api::blob_store::BlobKey::parse(&key).expect("key");
        assert_eq!(
            app.state.backends.blobs.head(&key).await.expect("head"),
            None,
            "{set:?}: a piece's object is left"
        );
    }
    app.stop().await;
}

both_sets!(a_tail_whose_part_was_recorded_since_no_longer_counts);
async fn a_tail_whose_part_was_recorded_since_no_longer_counts(set: BackendSet) {
    // The bytes after the last part wait as the upload's tail; when that
    // part is recorded by another way (a native PUT of the same session, or
    // a PATCH whose node died between recording the part and clearing the
    // tail), the tail must not be counted on top of it.
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(12 * MIB + 5, 73);
    let path = create(&alice, data.len(), "mixed.bin").await;
    let id = path.rsplit('/').next().expect("id").to_owned();
    let chunk = json_of(alice.get(&format!("/v1/uploads/{id}")).await, 200).await["chunk_size"]
        .as_u64()
        .expect("chunk size") as usize;
    assert_eq!(chunk, 8 * MIB, "{set:?}");
    assert_eq!(
        patch(&alice, &path, 0, data[..3 * MIB].to_vec())
            .await
            .status(),
        204
    );
    assert_eq!(offset(&alice, &path).await, 3 * MIB as u64, "{set:?}");
    // The first part, whole, natively.
    let r = alice.put_chunk(&id, 1, data[..chunk].to_vec()).await;
    assert_eq!(r.status(), 200, "{set:?}");
    assert_eq!(
        offset(&alice, &path).await,
        chunk as u64,
        "{set:?}: the tail counted twice"
    );
    // The rest through tus: the file is the file.
    finish_with_the_rest(&alice, &path, chunk, &data, set).await;
    app.stop().await;
}

both_sets!(a_tus_upload_streams_its_progress_counts_against_quotas_and_is_processed);
async fn a_tus_upload_streams_its_progress_counts_against_quotas_and_is_processed(set: BackendSet) {
    let (mut settings, dir) = media_e2e::test_settings(set).await;
    settings.jobs.serve_workers = Some(2);
    settings.jobs.poll_interval = Duration::from_millis(200);
    settings.quotas.open_uploads = 2;
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let image = crate::processing::good_png(7);
    // The type it claims is not trusted: the bytes say what it is.
    let r = tus(&alice, Method::POST, "/v1/tus/")
        .header("upload-length", image.len().to_string())
        .header(
            "upload-metadata",
            format!(
                "filename {},filetype {}",
                b64("photo.png"),
                b64("application/x-not-this")
            ),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let path = header(&r, "location");
    let id = path.rsplit('/').next().expect("id").to_owned();
    // Its progress, live, on the upload's event stream.
    let stream = alice.get(&format!("/v1/uploads/{id}/events")).await;
    assert_eq!(stream.status(), 200);
    let reader =
        media_e2e::collect_events(stream, Duration::from_secs(30), Some("event: processed"));
    // An open tus upload is an open upload: the quota counts it.
    let second = create(&alice, 10, "second.bin").await;
    let r = send(&alice, Method::POST, "/v1/tus/", &[("upload-length", "10")]).await;
    assert_eq!(r.status(), 409, "{set:?}");
    assert_eq!(code_of(r).await, "too-many-open-uploads");
    assert_eq!(
        send(&alice, Method::DELETE, &second, &[]).await.status(),
        204
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let half = image.len() / 2;
    assert_eq!(
        patch(&alice, &path, 0, image[..half].to_vec())
            .await
            .status(),
        204
    );
    let r = patch(&alice, &path, half as u64, image[half..].to_vec()).await;
    assert_eq!(r.status(), 204, "{set:?}");
    let media_id = header(&r, "media-id");
    let media = crate::processing::settled(&alice, &media_id).await;
    assert_eq!(media["status"], "ready", "{set:?}: {media}");
    assert_eq!(media["content_type"], "image/png", "{set:?}: {media}");
    let variants: Vec<&str> = media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variants.contains(&"thumb"), "{set:?}: {media}");
    let text = reader.await.expect("reader");
    for event in [
        "event: progress",
        "event: chunk",
        "event: completed",
        "event: processed",
    ] {
        assert!(text.contains(event), "{set:?}: no {event:?} in {text}");
    }
    app.stop().await;
}
