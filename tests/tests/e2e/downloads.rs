//! Downloads for clients and the CDN edge: presigned URLs that caches can
//! reuse, ranges, safe dispositions, and the nginx edge.

use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, User, header, json_of, problem_of, random_bytes, test_settings,
};

const MIB: usize = 1024 * 1024;

async fn location(user: &User<'_>, media_id: &str) -> String {
    let r = user.get(&format!("/v1/media/{media_id}/content")).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap_or_default());
    header(&r, "location")
}

async fn fetch(app: &TestApp, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.absolute(url));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("fetch")
}

both_sets!(downloads_round_trip_with_ranges_and_stable_urls);
async fn downloads_round_trip_with_ranges_and_stable_urls(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let data = random_bytes(3 * MIB + 777, 50);
    let done = alice.upload("clip.bin", &data).await;
    let id = done["media_id"].as_str().expect("id");

    let r = alice.get(&format!("/v1/media/{id}/content")).await;
    assert_eq!(r.status(), 302, "{set:?}");
    let cache = header(&r, "cache-control");
    let max_age: u64 = cache
        .strip_prefix("private, max-age=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{set:?}: cache-control {cache:?}"));
    assert!(
        (3600..=7200).contains(&max_age),
        "{set:?}: max-age {max_age}"
    );
    let url = header(&r, "location");

    let whole = fetch(&app, &url, None).await;
    assert_eq!(whole.status(), 200, "{set:?}");
    assert_eq!(header(&whole, "content-type"), "application/octet-stream");
    assert!(
        whole.bytes().await.expect("bytes") == data,
        "{set:?}: downloaded bytes differ"
    );

    let part = fetch(&app, &url, Some("bytes=1000-1999")).await;
    assert_eq!(part.status(), 206, "{set:?}");
    assert_eq!(
        header(&part, "content-range"),
        format!("bytes 1000-1999/{}", data.len())
    );
    assert_eq!(part.bytes().await.expect("bytes"), &data[1000..2000]);
    let tail = fetch(&app, &url, Some("bytes=-10")).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.expect("bytes"), &data[data.len() - 10..]);
    let past = fetch(&app, &url, Some(&format!("bytes={}-", data.len() + 5))).await;
    assert_eq!(past.status(), 416, "{set:?}");
    if set == BackendSet::Embedded {
        // S3 answers in its own XML; ours is a problem with the size.
        assert_eq!(
            header(&past, "content-range"),
            format!("bytes */{}", data.len())
        );
        problem_of(past, 416, "range-not-satisfiable").await;
    }

    // The same media asked again in the window: the identical URL.
    assert_eq!(location(&alice, id).await, url, "{set:?}");
    let json = json_of(
        alice
            .get(&format!("/v1/media/{id}/content?redirect=false"))
            .await,
        200,
    )
    .await;
    assert_eq!(json["url"], url.as_str());
    assert!(
        json["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let head = app
        .client
        .head(app.url(&format!("/v1/media/{id}/content")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 302);
    assert_eq!(header(&head, "location"), url);

    problem_of(
        bob.get(&format!("/v1/media/{id}/content")).await,
        404,
        "media-not-found",
    )
    .await;
    problem_of(
        alice
            .get(&format!("/v1/media/{id}/content?variant=thumb"))
            .await,
        404,
        "variant-not-found",
    )
    .await;
    problem_of(
        app.client
            .get(app.url(&format!("/v1/media/{id}/content")))
            .send()
            .await
            .expect("send"),
        401,
        "token-missing",
    )
    .await;
    app.stop().await;
}

both_sets!(html_downloads_as_an_attachment_and_a_jpeg_inline);
async fn html_downloads_as_an_attachment_and_a_jpeg_inline(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let html = b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>".to_vec();
    let jpeg =
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9".to_vec();
    let page = alice.post_media("page.html", &html).await;
    let photo = alice.post_media("Ünïcode photo.jpg", &jpeg).await;
    assert_eq!(photo["content_type"], "image/jpeg");

    let r = fetch(
        &app,
        &location(&alice, page["media_id"].as_str().expect("id")).await,
        None,
    )
    .await;
    assert_eq!(r.status(), 200, "{set:?}");
    let disposition = header(&r, "content-disposition");
    assert!(
        disposition.starts_with("attachment;"),
        "{set:?}: {disposition}"
    );
    assert!(
        disposition.contains("filename*=UTF-8''page.html"),
        "{disposition}"
    );
    assert_eq!(
        header(&r, "content-type"),
        page["content_type"].as_str().unwrap_or_default()
    );
    assert!(r.bytes().await.expect("bytes") == html);

    let r = fetch(
        &app,
        &location(&alice, photo["media_id"].as_str().expect("id")).await,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/jpeg", "{set:?}");
    let disposition = header(&r, "content-disposition");
    assert!(disposition.starts_with("inline;"), "{set:?}: {disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%C3%9Cn%C3%AFcode%20photo.jpg"),
        "{disposition}"
    );
    app.stop().await;
}

/// The URL with one query parameter's value replaced.
fn tampered(url: &str, parameter: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').expect("a query");
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == parameter => format!("{k}={value}"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

both_sets!(tampered_and_expired_urls_are_refused_by_both_stores);
async fn tampered_and_expired_urls_are_refused_by_both_stores(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.download_url_window = Duration::from_secs(2);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(5000, 51);
    let done = alice.post_media("f.bin", &data).await;
    let id = done["media_id"].as_str().expect("id");
    // The URL says how long it lives (`max-age`, whole seconds, rounded
    // down): it stops working at most one second after `answered + max-age`.
    let r = alice.get(&format!("/v1/media/{id}/content")).await;
    let answered = std::time::Instant::now();
    assert_eq!(r.status(), 302);
    let url = header(&r, "location");
    let max_age: u64 = header(&r, "cache-control")
        .rsplit("max-age=")
        .next()
        .and_then(|s| s.parse().ok())
        .expect("max-age");
    assert!(
        max_age <= 4,
        "{set:?}: a 2 s window signs for at most 4 s, not {max_age}"
    );
    let expired_by = answered + Duration::from_secs(max_age + 1);
    let (type_param, signature_param) = match set {
        BackendSet::Embedded => ("x-type", "x-signature"),
        BackendSet::Real => ("response-content-type", "X-Amz-Signature"),
    };
    let forged = tampered(&url, type_param, "text%2Fhtml");
    let r = fetch(&app, &forged, None).await;
    assert_eq!(
        r.status(),
        403,
        "{set:?}: a changed content type must be refused"
    );
    if set == BackendSet::Embedded {
        problem_of(r, 403, "signature-invalid").await;
    }
    let r = fetch(
        &app,
        &tampered(&url, signature_param, &"0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(r.status(), 403, "{set:?}");
    if set == BackendSet::Embedded {
        problem_of(r, 403, "signature-invalid").await;
    }
    // Waited out by the URL's own lifetime, with a margin, whatever the
    // machine's load did to the steps above.
    tokio::time::sleep_until((expired_by + Duration::from_millis(500)).into()).await;
    let r = fetch(&app, &url, None).await;
    // AWS S3 and our filesystem store answer 403; Garage itself answers 400
    // ("Date is too old"), which the nginx edge turns into S3's 403.
    let refused = r.status() == 403 || (set == BackendSet::Real && r.status() == 400);
    assert!(
        refused,
        "{set:?}: an expired URL must be refused, got {}",
        r.status()
    );
    if set == BackendSet::Embedded {
        problem_of(r, 403, "url-expired").await;
    }
    // A fresh URL works again.
    let again = fetch(&app, &location(&alice, id).await, None).await;
    assert_eq!(again.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn filesystem_urls_carry_etag_conditional_and_immutable_caching() {
    let app = TestApp::spawn(BackendSet::Embedded).await;
    let alice = app.user("alice");
    let data = random_bytes(10_000, 52);
    let done = alice.post_media("f.bin", &data).await;
    let url = location(&alice, done["media_id"].as_str().expect("id")).await;
    let r = fetch(&app, &url, None).await;
    let etag = header(&r, "etag");
    assert_eq!(etag, format!("\"{}\"", blake3::hash(&data).to_hex()));
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    let cached = app
        .client
        .get(app.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.expect("body").is_empty());
    let stale = app
        .client
        .get(app.url(&url))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .expect("conditional");
    assert_eq!(stale.status(), 200);
    let past = fetch(&app, &url, Some("bytes=20000-")).await;
    assert_eq!(header(&past, "content-range"), "bytes */10000");
    problem_of(past, 416, "range-not-satisfiable").await;
    app.stop().await;
}

#[tokio::test]
async fn the_nginx_edge_caches_presigned_fetches_and_serves_ranges() {
    let (mut settings, dir) = test_settings(BackendSet::Real).await;
    settings.cdn_base_url = Some(media_e2e::real_env("MEDIA_CDN_BASE_URL"));
    settings.download_url_window = Duration::from_secs(2);
    let app = TestApp::spawn_with(BackendSet::Real, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(3 * MIB + 4321, 53);
    let done = alice.upload("edge.bin", &data).await;
    let id = done["media_id"].as_str().expect("id");
    let url = location(&alice, id).await;
    let edge = media_e2e::real_env("MEDIA_CDN_BASE_URL");
    assert!(url.starts_with(&edge), "{url} does not point at the edge");

    let first = fetch(&app, &url, None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache-status"), "MISS");
    assert!(first.bytes().await.expect("bytes") == data);
    let second = fetch(&app, &url, None).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-cache-status"), "HIT");
    assert!(
        second.bytes().await.expect("bytes") == data,
        "a cache hit served other bytes"
    );

    let part = fetch(&app, &url, Some("bytes=1000-1999")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        header(&part, "x-cache-status"),
        "HIT",
        "the slice was cached by the full fetch"
    );
    assert_eq!(part.bytes().await.expect("bytes"), &data[1000..2000]);
    let across = fetch(&app, &url, Some("bytes=1048000-1049999")).await;
    assert_eq!(across.status(), 206);
    assert_eq!(
        across.bytes().await.expect("bytes"),
        &data[1_048_000..1_050_000]
    );

    let forged = tampered(&url, "X-Amz-Signature", &"0".repeat(64));
    assert_eq!(
        fetch(&app, &forged, None).await.status(),
        403,
        "tampered URL through the edge"
    );
    let forged_type = tampered(&url, "response-content-type", "text%2Fhtml");
    assert_eq!(fetch(&app, &forged_type, None).await.status(), 403);

    // A URL never fetched before it expired: the edge has nothing cached, the store refuses.
    let other = alice.post_media("late.bin", &random_bytes(2000, 54)).await;
    let late = location(&alice, other["media_id"].as_str().expect("id")).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let r = fetch(&app, &late, None).await;
    assert_eq!(r.status(), 403, "an expired URL through the edge");
    assert_ne!(header(&r, "x-cache-status"), "HIT");
    app.stop().await;
}

/// Fetched through the edge as a browser would, a first time and from cache:
/// each file keeps its sniffed type and its disposition with its name (the
/// store drops the URL's overrides on the ranged fetches the edge makes).
#[tokio::test]
async fn the_edge_keeps_each_files_type_and_name_first_and_cached() {
    let (mut settings, dir) = test_settings(BackendSet::Real).await;
    settings.cdn_base_url = Some(media_e2e::real_env("MEDIA_CDN_BASE_URL"));
    let app = TestApp::spawn_with(BackendSet::Real, settings, dir).await;
    let alice = app.user("alice");
    let png = media_e2e::test_image(image::ImageFormat::Png, 64, 48, 3);
    let video = media_e2e::h264_clip(1);
    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec();
    let document = random_bytes(2 * MIB + 17, 54);
    let files: [(&str, &[u8], &str, &str); 4] = [
        ("photo.png", &png, "image/png", "inline;"),
        ("clip.mp4", &video, "video/mp4", "inline;"),
        ("page.html", &html, "text/html", "attachment;"),
        (
            "Überweisung März €.pdf",
            &document,
            "application/octet-stream",
            "attachment;",
        ),
    ];
    for (name, bytes, content_type, disposition) in files {
        let done = alice.post_media(name, bytes).await;
        let url = location(&alice, done["media_id"].as_str().expect("id")).await;
        for (attempt, cache) in [(1, "MISS"), (2, "HIT")] {
            let r = fetch(&app, &url, None).await;
            assert_eq!(r.status(), 200, "{name} fetch {attempt}");
            assert_eq!(
                header(&r, "x-cache-status"),
                cache,
                "{name} fetch {attempt}"
            );
            assert!(
                header(&r, "content-type").starts_with(content_type),
                "{name} fetch {attempt}: {}",
                header(&r, "content-type")
            );
            let got = header(&r, "content-disposition");
            assert!(
                got.starts_with(disposition),
                "{name} fetch {attempt}: {got}"
            );
            let named = got.split("filename*=UTF-8''").nth(1).map(percent_decoded);
            assert_eq!(
                named.as_deref(),
                Some(name),
                "{name} fetch {attempt}: {got}"
            );
            assert!(r.bytes().await.expect("bytes") == *bytes, "{name}");
        }
        // A range from cache keeps them too.
        let part = fetch(&app, &url, Some("bytes=0-9")).await;
        assert_eq!(part.status(), 206);
        assert!(
            header(&part, "content-type").starts_with(content_type),
            "{name}"
        );
    }
    app.stop().await;
}

/// An RFC 8187 value decoded.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
