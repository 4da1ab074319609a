//! The worker pool: derivatives of images, isolation from hostile files, and
//! content processed once however often it is uploaded; video and audio in
//! `av`, the workers' life (processes, signals, priorities) in `workers`.

mod av;
mod faulty;
mod sandbox;
mod workers;

use av::garbage_moov_mp4;

use std::time::Duration;

use std::path::{Path, PathBuf};

use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, User, eventually, ffmpeg_fixture, ffprobe, json_of, test_settings,
};
use serde_json::Value;

pub(crate) async fn spawn(set: BackendSet) -> TestApp {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(2);
    settings.jobs.backoff = Duration::from_millis(50);
    settings.jobs.max_attempts = 2;
    settings.jobs.poll_interval = Duration::from_millis(200);
    TestApp::spawn_with(set, settings, dir).await
}

/// Waits until processing ends (ready or failed) and returns the media.
pub(crate) async fn settled(user: &User<'_>, media_id: &str) -> Value {
    let path = format!("/v1/media/{media_id}");
    let done = eventually(Duration::from_secs(60), || async {
        let m = json_of(user.get(&path).await, 200).await;
        m["status"] != "processing"
    })
    .await;
    let media = json_of(user.get(&path).await, 200).await;
    assert!(done, "still processing after 60 s: {media}");
    media
}

pub(crate) async fn post(user: &User<'_>, name: &str, content_type: &str, body: Vec<u8>) -> Value {
    let r = user
        .app
        .client
        .post(user.app.url(&format!("/v1/media?file_name={name}")))
        .bearer_auth(&user.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    json_of(r, 201).await
}

async fn variant_bytes(user: &User<'_>, media_id: &str, name: &str) -> Vec<u8> {
    let (content_type, bytes) = variant_of(user, media_id, name).await;
    assert_eq!(content_type, "image/webp");
    bytes
}

/// A variant's type and bytes, fetched the way a client does (through the redirect).
async fn variant_of(user: &User<'_>, media_id: &str, name: &str) -> (String, Vec<u8>) {
    user.download(&format!("/v1/media/{media_id}/content?variant={name}"))
        .await
}

/// An APP1 segment with EXIF orientation `orientation` and a GPS IFD.
fn exif_segment(orientation: u16) -> Vec<u8> {
    let mut t: Vec<u8> = Vec::new();
    t.extend(b"II*\0");
    t.extend(8u32.to_le_bytes());
    t.extend(2u16.to_le_bytes());
    t.extend(0x0112u16.to_le_bytes());
    t.extend(3u16.to_le_bytes());
    t.extend(1u32.to_le_bytes());
    t.extend(orientation.to_le_bytes());
    t.extend([0, 0]);
    let gps_ifd: u32 = 8 + 2 + 2 * 12 + 4;
    t.extend(0x8825u16.to_le_bytes());
    t.extend(4u16.to_le_bytes());
    t.extend(1u32.to_le_bytes());
    t.extend(gps_ifd.to_le_bytes());
    t.extend(0u32.to_le_bytes());
    t.extend(1u16.to_le_bytes());
    t.extend(0x0001u16.to_le_bytes());
    t.extend(2u16.to_le_bytes());
    t.extend(2u32.to_le_bytes());
    t.extend(b"N\0\0\0");
    t.extend(0u32.to_le_bytes());
    let mut segment = vec![0xFF, 0xE1];
    segment.extend(((2 + 6 + t.len()) as u16).to_be_bytes());
    segment.extend(b"Exif\0\0");
    segment.extend(t);
    segment
}

/// A 400×200 JPEG as stored (red top band, blue below), tagged to be shown
/// rotated 90° clockwise, with GPS tags.
pub(crate) fn rotated_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(400, 200, |_, y| {
        if y < 30 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .expect("encode");
    let mut tagged = jpeg[..2].to_vec();
    tagged.extend(exif_segment(6));
    tagged.extend(&jpeg[2..]);
    tagged
}

both_sets!(a_rotated_jpeg_with_gps_gives_upright_bounded_derivatives_without_exif);
async fn a_rotated_jpeg_with_gps_gives_upright_bounded_derivatives_without_exif(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let jpeg = rotated_jpeg();
    assert!(jpeg.windows(4).any(|w| w == b"Exif"));
    let done = post(&alice, "portrait.jpg", "image/jpeg", jpeg).await;
    let id = done["media_id"].as_str().expect("id");
    let media = settled(&alice, id).await;
    assert_eq!(media["status"], "ready", "{set:?}: {media}");
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64()),
        (Some(200), Some(400)),
        "upright size"
    );
    let variants = media["variants"].as_array().expect("variants");
    let find = |name: &str| {
        variants
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        (
            find("thumb")["width"].as_u64(),
            find("thumb")["height"].as_u64()
        ),
        (Some(160), Some(320))
    );
    assert_eq!(
        (
            find("preview")["width"].as_u64(),
            find("preview")["height"].as_u64()
        ),
        (Some(200), Some(400))
    );

    for name in ["thumb", "preview"] {
        let bytes = variant_bytes(&alice, id, name).await;
        // The container's own list of chunks: pictures only (WebP keeps
        // metadata in `EXIF`, `XMP ` and `ICCP` chunks).
        let chunks = webp_chunks(&bytes);
        assert!(
            chunks
                .iter()
                .all(|c| matches!(c.as_str(), "VP8 " | "VP8L" | "VP8X" | "ALPH")),
            "{set:?}: {name} carries more than pixels: {chunks:?}"
        );
        // And the decoder's metadata readers find nothing either.
        use image::ImageDecoder;
        let mut decoder =
            image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).expect("webp");
        assert_eq!(
            decoder.exif_metadata().expect("exif"),
            None,
            "{set:?}: {name}"
        );
        assert_eq!(
            decoder.xmp_metadata().expect("xmp"),
            None,
            "{set:?}: {name}"
        );
        assert_eq!(decoder.icc_profile().expect("icc"), None, "{set:?}: {name}");
        let img = image::load_from_memory(&bytes).expect("webp").to_rgb8();
        let (w, h) = img.dimensions();
        assert!(h > w, "{set:?}: {name} is not upright ({w}x{h})");
        // The stored top band is on the right once turned upright.
        let right = img.get_pixel(w - 3, h / 2);
        let left = img.get_pixel(2, h / 2);
        assert!(
            right[0] > 150 && right[2] < 100,
            "{set:?}: {name} right edge {right:?}"
        );
        assert!(
            left[2] > 150 && left[0] < 100,
            "{set:?}: {name} left edge {left:?}"
        );
    }
    app.stop().await;
}

/// The chunk ids of a WebP (RIFF) file, in order.
fn webp_chunks(bytes: &[u8]) -> Vec<String> {
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        "not a WebP"
    );
    let mut chunks = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = String::from_utf8_lossy(&bytes[at..at + 4]).into_owned();
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        chunks.push(id);
        // Chunks are padded to an even size.
        at += 8 + size + size % 2;
    }
    chunks
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 640 × 480 PNG.
pub(crate) fn good_png(seed: u8) -> Vec<u8> {
    media_e2e::test_image(image::ImageFormat::Png, 640, 480, seed)
}

/// A JPEG cut at two fifths: its header reads, its decoder refuses it.
pub(crate) fn truncated_jpeg() -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&image::RgbImage::from_fn(300, 300, |x, y| {
            image::Rgb([x as u8, y as u8, 9])
        }))
        .expect("encode");
    jpeg.truncate(jpeg.len() * 2 / 5);
    jpeg
}

/// A valid PNG header that claims 100,000 × 100,000 pixels, and almost nothing else.
pub(crate) fn png_bomb() -> Vec<u8> {
    png_declaring(100_000, 100_000)
}

/// A valid PNG header that claims `width` × `height` RGB pixels, and almost
/// nothing else.
pub(crate) fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    // A first bit of image data (an empty zlib stream): the decoder sees a
    // plausible file and must refuse on the header's size alone.
    let mut idat = b"IDAT".to_vec();
    idat.extend([0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    png.extend(8u32.to_be_bytes());
    png.extend(&idat);
    png.extend(crc32(&idat).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

both_sets!(hostile_files_fail_with_a_reason_and_the_next_good_file_is_processed);
async fn hostile_files_fail_with_a_reason_and_the_next_good_file_is_processed(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let truncated = truncated_jpeg();
    let random = media_e2e::random_bytes(200_000, 77);
    // A bomb never gets as far as a job: its header is read at completion.
    let refused = alice
        .app
        .client
        .post(alice.app.url("/v1/media?file_name=bomb.png"))
        .bearer_auth(&alice.token)
        .body(png_bomb())
        .send()
        .await
        .expect("post");
    let problem = media_e2e::problem_of(refused, 413, "too-many-pixels").await;
    assert_eq!(
        (problem["width"].as_u64(), problem["height"].as_u64()),
        (Some(100_000), Some(100_000))
    );
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("truncated.jpg", "image/jpeg", truncated),
        ("empty.mp4", "video/mp4", Vec::new()),
        ("random.mp4", "video/mp4", random),
        ("garbage-moov.mp4", "video/mp4", garbage_moov_mp4()),
    ];
    let mut ids = Vec::new();
    for (name, content_type, body) in cases {
        let done = post(&alice, name, content_type, body).await;
        ids.push((name, done["media_id"].as_str().expect("id").to_owned()));
    }
    for (name, id) in &ids {
        let media = settled(&alice, id).await;
        assert_eq!(media["status"], "failed", "{set:?} {name}: {media}");
        let reason = media["failure_reason"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "{set:?} {name}: no reason");
        // The original stays downloadable.
        assert_eq!(
            alice.get(&format!("/v1/media/{id}/content")).await.status(),
            302
        );
    }

    let good = post(&alice, "fine.png", "image/png", good_png(1)).await;
    let media = settled(&alice, good["media_id"].as_str().expect("id")).await;
    assert_eq!(
        media["status"], "ready",
        "{set:?}: the worker did not survive: {media}"
    );
    // Thumb, preview, and the original without its metadata.
    assert_eq!(
        media["variants"].as_array().map(Vec::len),
        Some(3),
        "{media}"
    );
    // Failures counted by reason: metrics::each_process_counts_its_own_events.
    app.stop().await;
}

both_sets!(content_uploaded_by_two_users_is_processed_once);
async fn content_uploaded_by_two_users_is_processed_once(set: BackendSet) {
    let app = spawn(set).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let png = good_png(2);
    let a = post(&alice, "a.png", "image/png", png.clone()).await;
    let b = post(&bob, "b.png", "image/png", png).await;
    assert_eq!(b["deduplicated"], false, "bob is not told of alice's copy");
    let ma = settled(&alice, a["media_id"].as_str().expect("id")).await;
    let mb = settled(&bob, b["media_id"].as_str().expect("id")).await;
    assert_eq!(ma["status"], "ready");
    assert_eq!(ma["variants"], mb["variants"]);
    let jobs: u64 = app
        .state
        .backends
        .jobs
        .counts()
        .await
        .expect("counts")
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(jobs, 1, "{set:?}: one job for one content");
    // The job's metrics: metrics::each_process_counts_its_own_events.
    app.stop().await;
}

both_sets!(a_failure_on_the_services_side_shows_none_of_its_internals);
async fn a_failure_on_the_services_side_shows_none_of_its_internals(set: BackendSet) {
    // The worker cannot start its decoder: a fault of ours, not the media's.
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(1);
    settings.jobs.max_attempts = 1;
    settings.jobs.poll_interval = Duration::from_millis(200);
    let missing = dir.path().join("secret-location").join("media-render");
    settings.jobs.render_program = Some(missing);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let done = post(&alice, "fine.png", "image/png", good_png(3)).await;
    let media = settled(&alice, done["media_id"].as_str().expect("id")).await;
    assert_eq!(media["status"], "failed", "{media}");
    let reason = media["failure_reason"].as_str().unwrap_or("");
    assert!(!reason.contains("secret-location"), "{reason}");
    assert!(!reason.contains('/'), "no path: {reason}");
    assert!(reason.contains("logged"), "{reason}");
    app.stop().await;
}
