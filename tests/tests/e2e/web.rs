//! The web client: the page and its assets as the service serves them, the
//! development sign-in and where it is on, and the browser suite
//! (`tests/browser/chat.spec.mjs`, Playwright 1.64.1 driving Debian's
//! Chromium 156, both pinned and installed by
//! `infra/install-protocol-clients.sh`) against a service process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use media_e2e::{
    BackendSet, ServiceProcess, TestApp, both_sets, free_port, problem_of, test_settings,
};
use serde_json::json;

const SECRET: &str = "web-client-test-secret-long-enough-012345";

/// The page, its assets with validators, and what it may load.
async fn the_page_and_its_assets_are_the_services_own(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let page = app.client.get(app.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(
        media_e2e::header(&page, "content-type"),
        "text/html; charset=utf-8"
    );
    let csp = media_e2e::header(&page, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    if set == BackendSet::Real {
        // Media come from where the download URLs point: the S3 endpoint
        // here (no CDN edge set), and nowhere else.
        let store = media_e2e::real_env("AWS_ENDPOINT_URL");
        assert!(
            csp.contains(&format!("img-src 'self' blob: data: {store};")),
            "{csp}"
        );
        assert!(
            csp.contains(&format!("media-src 'self' blob: data: {store};")),
            "{csp}"
        );
        let media = app.user("csp").upload("a.bin", b"x").await;
        let url = app
            .client
            .get(app.url(&format!(
                "/v1/media/{}/content?redirect=false",
                media["media_id"].as_str().expect("id")
            )))
            .bearer_auth(app.token("csp"))
            .send()
            .await
            .expect("url");
        let url = media_e2e::json_of(url, 200).await;
        assert!(
            url["url"].as_str().expect("url").starts_with(&store),
            "{url}"
        );
    } else {
        assert!(csp.contains("img-src 'self' blob: data:;"), "{csp}");
    }
    let html = page.text().await.expect("html");
    // The page learns whether to offer the development sign-in.
    let offered = set == BackendSet::Embedded;
    assert!(
        html.contains(&format!(
            r#"<script type="application/json" id="client-config">{{"dev_sign_in":{offered}}}</script>"#
        )),
        "{html}"
    );
    // Nothing from another host.
    let elsewhere: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.contains("://"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the page names other hosts: {elsewhere:?}"
    );

    let script = app
        .client
        .get(app.url("/assets/app.js"))
        .send()
        .await
        .expect("app.js");
    assert_eq!(script.status(), 200);
    assert_eq!(
        media_e2e::header(&script, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        media_e2e::header(&script, "x-content-type-options"),
        "nosniff"
    );
    assert_eq!(media_e2e::header(&script, "cache-control"), "no-cache");
    let etag = media_e2e::header(&script, "etag");
    assert!(etag.starts_with('"'), "{etag}");
    let again = app
        .client
        .get(app.url("/assets/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.expect("body").is_empty());
    for asset in ["app.css", "icon.svg", "clip.svg"] {
        let r = app
            .client
            .get(app.url(&format!("/assets/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
    }
    for missing in ["/assets/nope.js", "/assets/..%2Fsecrets", "/assets/"] {
        let r = app
            .client
            .get(app.url(missing))
            .send()
            .await
            .expect("missing");
        assert_eq!(r.status(), 404, "{missing}");
        assert_eq!(
            media_e2e::header(&r, "content-type"),
            "application/problem+json",
            "{missing}"
        );
    }
}
both_sets!(the_page_and_its_assets_are_the_services_own);

/// The development sign-in mints a token only where it is on: by default
/// the embedded default, anywhere it is set; elsewhere 403.
async fn the_dev_sign_in_is_on_only_where_it_is_meant_to_be(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let sign_in = |user: serde_json::Value| {
        app.client
            .post(app.url("/dev/sign-in"))
            .json(&json!({ "user": user }))
            .send()
    };
    match set {
        BackendSet::Embedded => {
            let answer =
                media_e2e::json_of(sign_in(json!("zoe")).await.expect("sign in"), 200).await;
            assert_eq!(answer["user"], "zoe");
            let token = answer["token"].as_str().expect("token");
            let me = app
                .client
                .get(app.url("/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .expect("me");
            let me = media_e2e::json_of(me, 200).await;
            assert_eq!(me["user"], "zoe");
            assert_eq!(
                me["admin"], false,
                "a development token is never an admin's"
            );
            for bad in [json!(""), json!("x".repeat(129)), json!("a\u{7}b")] {
                problem_of(
                    sign_in(bad.clone()).await.expect("bad"),
                    400,
                    "invalid-user-id",
                )
                .await;
            }
            let extra = app
                .client
                .post(app.url("/dev/sign-in"))
                .json(&json!({ "user": "zoe", "admin": true }))
                .send()
                .await
                .expect("extra field");
            problem_of(extra, 422, "invalid-json-fields").await;
        }
        BackendSet::Real => {
            problem_of(
                sign_in(json!("zoe")).await.expect("off"),
                403,
                "dev-sign-in-disabled",
            )
            .await;
            // Set explicitly, it is on here too.
            let (mut settings, dir) = test_settings(set).await;
            settings.dev_sign_in = Some(true);
            let on = TestApp::spawn_with(set, settings, dir).await;
            let r = on
                .client
                .post(on.url("/dev/sign-in"))
                .json(&json!({ "user": "zoe" }))
                .send()
                .await
                .expect("on");
            assert_eq!(r.status(), 200);
        }
    }
}
both_sets!(the_dev_sign_in_is_on_only_where_it_is_meant_to_be);

/// Set explicitly off, the embedded default refuses it too.
#[tokio::test]
async fn the_embedded_default_can_turn_the_dev_sign_in_off() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    settings.dev_sign_in = Some(false);
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let r = app
        .client
        .post(app.url("/dev/sign-in"))
        .json(&json!({ "user": "zoe" }))
        .send()
        .await
        .expect("off");
    problem_of(r, 403, "dev-sign-in-disabled").await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains(r#"{"dev_sign_in":false}"#));
}

fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// A fixture made by ffmpeg, copied under the name the suite drops it as.
fn fixture(dir: &Path, name: &str, args: &[&str]) {
    std::fs::copy(media_e2e::ffmpeg_fixture(name, args), dir.join(name)).expect("fixture");
}

/// `(width, height)` of a PNG file.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (be(16), be(20))
}

/// One browser suite at a time: two Chromiums on a 2-core machine beside
/// the rest of the suite would only test the machine.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The browser suite: Alice and Bob in a group (a JPEG and a 10 s MP4 by
/// drag-and-drop, live, thumbnail then poster, the video plays and seeks,
/// ticks to read), a device offline for three messages, a 50 MiB upload
/// cut off by a reload and resumed, keyboard-only use, replies, edits,
/// deletes, typing, presence, scroll-back, the gallery, screenshots at
/// 1280×800 and 390×844, and no console error anywhere.
async fn the_web_client_in_chromium(set: BackendSet) {
    let cli = suite().join("node_modules/@playwright/test/cli.js");
    assert!(
        cli.is_file(),
        "{} is missing: infra/install-protocol-clients.sh installs Playwright (infra/test.sh runs it)",
        cli.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "Debian's chromium is missing: infra/install-protocol-clients.sh installs it"
    );
    let _one = ONE_BROWSER.lock().await;
    let (settings, _dir) = test_settings(set).await;
    // The embedded default offers the development sign-in by itself; the
    // real set is a production shape, where the test has to turn it on.
    let env: &[(&str, &str)] = match set {
        BackendSet::Embedded => &[],
        BackendSet::Real => &[("MEDIA_DEV_SIGN_IN", "true")],
    };
    let service = ServiceProcess::start_with(&settings, free_port(), SECRET, env).await;
    let fixtures = tempfile::tempdir().expect("fixtures");
    fixture(
        fixtures.path(),
        "beach.jpg",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x960",
            "-frames:v",
            "1",
            "-q:v",
            "3",
        ],
    );
    fixture(
        fixtures.path(),
        "waves.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=10",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            "-movflags",
            "+faststart",
        ],
    );
    fixture(
        fixtures.path(),
        "voice.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=3",
            "-c:a",
            "aac",
        ],
    );
    let name = match set {
        BackendSet::Embedded => "embedded",
        BackendSet::Real => "postgres_redis_garage",
    };
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/browser")
        .join(name);
    let shots = out.join("screenshots");
    let _ = std::fs::remove_dir_all(&out);
    let run = tokio::process::Command::new("node")
        .arg(&cli)
        .args(["test", "--config", "playwright.config.mjs"])
        .current_dir(suite())
        .env("MEDIA_URL", &service.base)
        .env("MEDIA_ADMIN_TOKEN", service.admin_token())
        .env("MEDIA_FIXTURES", fixtures.path())
        .env("MEDIA_SCREENSHOTS", &shots)
        .env("MEDIA_BROWSER_OUT", out.join("results"))
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .output();
    let run = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("the browser suite ends within 15 minutes")
        .expect("run Playwright");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.success(),
        "the browser suite failed on {name}:\n{stdout}"
    );
    assert!(
        stdout.contains("6 passed"),
        "every browser test ran:\n{stdout}"
    );
    assert_eq!(png_size(&shots.join("desktop-1280x800.png")), (1280, 800));
    assert_eq!(png_size(&shots.join("phone-390x844.png")), (390, 844));

    let log = service.log();
    assert!(
        log.contains("DEVELOPMENT SIGN-IN IS ON"),
        "the service warns that the development sign-in is on"
    );
    // The socket's token travels in its URL; the log never shows a query.
    assert!(!log.contains("access_token"), "a token reached the log");
    assert!(!log.contains("eyJ"), "a token reached the log");
}
both_sets!(the_web_client_in_chromium);

/// An image's width and height are in its media document from the moment
/// it is complete, before processing (read from its header), so the page
/// lays out its placeholder at the right shape: no jump when the thumbnail
/// comes. Processing replaces them with the whole probe.
async fn an_images_shape_is_known_before_it_is_processed(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(0);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let jpeg = media_e2e::test_image(image::ImageFormat::Jpeg, 120, 90, 7);
    let png = media_e2e::test_image(image::ImageFormat::Png, 33, 77, 8);
    // A JPEG whose frame header comes after 20 KiB of metadata, as a
    // phone's EXIF with its own thumbnail puts it.
    let mut exif = jpeg[..2].to_vec();
    exif.extend([0xff, 0xe1, 0x50, 0x02]);
    exif.extend(std::iter::repeat_n(0u8, 0x5000));
    exif.extend(&jpeg[2..]);
    // A phone's portrait photo: stored sideways, EXIF orientation 6.
    let exif_block: &[u8] = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0";
    let mut portrait = jpeg[..2].to_vec();
    portrait.extend([
        0xff,
        0xe1,
        0x00,
        u8::try_from(exif_block.len() + 2).expect("short"),
    ]);
    portrait.extend(exif_block);
    portrait.extend(&jpeg[2..]);
    let chunked = alice.upload("wide.jpg", &jpeg).await;
    let rotated = alice.upload("portrait.jpg", &portrait).await;
    let single = alice.post_media("tall.png", &png).await;
    let late = alice.upload("exif.jpg", &exif).await;
    for (media, shape) in [
        (chunked, (120, 90)),
        (single, (33, 77)),
        (late, (120, 90)),
        (rotated, (90, 120)),
    ] {
        let id = media["media_id"].as_str().expect("id");
        let doc = media_e2e::json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
        assert_eq!(doc["status"], "processing", "{doc}");
        assert_eq!(
            (doc["width"].as_u64(), doc["height"].as_u64()),
            (Some(shape.0), Some(shape.1)),
            "{doc}"
        );
    }
    // Not an image: nothing is made up.
    let other = alice.post_media("notes.txt", b"just some text").await;
    let id = other["media_id"].as_str().expect("id");
    let doc = media_e2e::json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
    assert!(doc.get("width").is_none(), "{doc}");
}
both_sets!(an_images_shape_is_known_before_it_is_processed);

/// A copy of someone else's content is shown as new content for as long as
/// its processing took (dedup is private): its shape is what its header
/// told, exactly as new content's is, never what processing found later. A
/// JPEG whose frame header lies past the 64 KiB read has no shape while new,
/// so its copy has none either, though its processing found one.
async fn a_copy_shown_as_new_shows_only_what_its_header_told(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let jpeg = media_e2e::test_image(image::ImageFormat::Jpeg, 64, 48, 9);
    let mut far = jpeg[..2].to_vec();
    for _ in 0..2 {
        // Two 40 KiB APP segments: the frame header starts past 80 KiB.
        far.extend([0xff, 0xe2, 0xa0, 0x02]);
        far.extend(std::iter::repeat_n(0u8, 0xa000));
    }
    far.extend(&jpeg[2..]);
    let alice = app.user("alice");
    let first = alice.upload("far.jpg", &far).await;
    let id = first["media_id"].as_str().expect("id").to_owned();
    let doc = crate::processing::settled(&alice, &id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(
        (doc["width"].as_u64(), doc["height"].as_u64()),
        (Some(64), Some(48)),
        "{doc}"
    );
    // Its processing "took" ten minutes, so a copy stays masked while we look.
    let masked_for = |blake3: &str| {
        format!("update jobs set created_at = updated_at - 600000 where blake3 = '{blake3}'")
    };
    media_e2e::raw_sql(&app, &masked_for(first["blake3"].as_str().expect("blake3"))).await;

    let bob = app.user("bob");
    let copy = bob.upload("far.jpg", &far).await;
    let id = copy["media_id"].as_str().expect("id");
    let doc = media_e2e::json_of(bob.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(doc["status"], "processing", "{doc}");
    assert!(doc.get("width").is_none(), "{doc}");
    // With a readable header, the copy shows the header's shape.
    let near = media_e2e::test_image(image::ImageFormat::Png, 30, 20, 4);
    let near_first = alice.upload("near.png", &near).await;
    let near_id = near_first["media_id"].as_str().expect("id");
    let near_doc = crate::processing::settled(&alice, near_id).await;
    assert_eq!(near_doc["status"], "ready", "{near_doc}");
    media_e2e::raw_sql(
        &app,
        &masked_for(near_first["blake3"].as_str().expect("blake3")),
    )
    .await;
    let carol = app.user("carol");
    let copy = carol.upload("near.png", &near).await;
    let id = copy["media_id"].as_str().expect("id");
    let doc = media_e2e::json_of(carol.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(doc["status"], "processing", "{doc}");
    assert_eq!(
        (doc["width"].as_u64(), doc["height"].as_u64()),
        (Some(30), Some(20)),
        "{doc}"
    );
}
both_sets!(a_copy_shown_as_new_shows_only_what_its_header_told);
