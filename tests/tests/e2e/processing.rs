//! The worker pool: derivatives of images, isolation from hostile files, and
//! content processed once however often it is uploaded.

use std::time::Duration;

use std::path::{Path, PathBuf};

use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, User, eventually, ffmpeg_fixture, ffprobe, header, json_of, test_settings,
};
use serde_json::Value;

async fn spawn(set: BackendSet) -> TestApp {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(2);
    settings.jobs.backoff = Duration::from_millis(50);
    settings.jobs.max_attempts = 2;
    settings.jobs.poll_interval = Duration::from_millis(200);
    TestApp::spawn_with(set, settings, dir).await
}

/// Waits until processing ends (ready or failed) and returns the media.
async fn settled(user: &User<'_>, media_id: &str) -> Value {
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

async fn post(user: &User<'_>, name: &str, content_type: &str, body: Vec<u8>) -> Value {
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
    let r = user
        .get(&format!("/v1/media/{media_id}/content?variant={name}"))
        .await;
    assert_eq!(r.status(), 302, "variant {name}");
    let url = header(&r, "location");
    let url = if url.starts_with('/') {
        user.app.url(&url)
    } else {
        url
    };
    let r = user
        .app
        .client
        .get(url)
        .send()
        .await
        .expect("fetch variant");
    assert_eq!(r.status(), 200);
    let content_type = header(&r, "content-type");
    (content_type, r.bytes().await.expect("bytes").to_vec())
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
fn rotated_jpeg() -> Vec<u8> {
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
        assert!(
            !bytes.windows(4).any(|w| w == b"Exif"),
            "{set:?}: EXIF in {name}"
        );
        assert!(
            !bytes.windows(4).any(|w| w == b"XMP "),
            "{set:?}: XMP in {name}"
        );
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

/// A valid PNG header that claims 100,000 × 100,000 pixels, and almost nothing else.
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
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

fn good_png(seed: u8) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

both_sets!(hostile_files_fail_with_a_reason_and_the_next_good_file_is_processed);
async fn hostile_files_fail_with_a_reason_and_the_next_good_file_is_processed(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&image::RgbImage::from_fn(300, 300, |x, y| {
            image::Rgb([x as u8, y as u8, 9])
        }))
        .expect("encode");
    let truncated = jpeg[..jpeg.len() * 2 / 5].to_vec();
    let random = media_e2e::random_bytes(200_000, 77);
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("truncated.jpg", "image/jpeg", truncated),
        ("bomb.png", "image/png", png_bomb()),
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
    let bomb = json_of(alice.get(&format!("/v1/media/{}", ids[1].1)).await, 200).await;
    assert!(
        bomb["failure_reason"]
            .as_str()
            .unwrap_or("")
            .contains("100000x100000"),
        "{bomb}"
    );

    let good = post(&alice, "fine.png", "image/png", good_png(1)).await;
    let media = settled(&alice, good["media_id"].as_str().expect("id")).await;
    assert_eq!(
        media["status"], "ready",
        "{set:?}: the worker did not survive: {media}"
    );
    assert_eq!(media["variants"].as_array().map(Vec::len), Some(2));
    // Each refusal by the decoder is counted by reason (the zero-byte and
    // random "videos" are not videos by their bytes, so they fail at
    // upload without a job).
    assert!(
        media_e2e::metric(&app, "job_failures_total").await >= 3.0,
        "{set:?}: failures not counted"
    );
    app.stop().await;
}

both_sets!(content_uploaded_by_two_users_is_processed_once);
async fn content_uploaded_by_two_users_is_processed_once(set: BackendSet) {
    let app = spawn(set).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let png = good_png(2);
    let a = post(&alice, "a.png", "image/png", png.clone()).await;
    let b = post(&bob, "b.png", "image/png", png).await;
    assert_eq!(b["deduplicated"], true);
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
    // The job's metrics: its duration (by kind) and enqueue-to-done
    // latency (the recorder is process-wide, shared with the other tests).
    assert!(media_e2e::metric(&app, "job_duration_seconds_count").await >= 1.0);
    assert!(media_e2e::metric(&app, "job_latency_seconds_count").await >= 1.0);
    app.stop().await;
}

/// A 10 s 1080p H.264 + AAC MP4, as a phone would send.
fn movie() -> PathBuf {
    ffmpeg_fixture(
        "movie.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30:duration=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=10",
            // A white block in the top-left corner: which way is up is unmistakable.
            "-vf",
            "drawbox=x=0:y=0:w=640:h=360:color=white:t=fill",
            "-c:v",
            "libx264",
            "-preset",
            "superfast",
            "-crf",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    )
}

/// The same movie, flagged (as phones do) to be shown turned a quarter.
fn rotated_movie() -> PathBuf {
    let source = movie();
    ffmpeg_fixture(
        "rotated.mp4",
        &[
            "-i",
            source.to_str().expect("path"),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
        ],
    )
}

/// A 6 s 720p VP8 + Opus WebM.
fn webm() -> PathBuf {
    ffmpeg_fixture(
        "clip.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30:duration=6",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=330:sample_rate=48000:duration=6",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "1M",
            "-c:a",
            "libopus",
            "-shortest",
        ],
    )
}

/// A 7 s voice note: mono AAC in M4A, as phones record them.
fn voice_note() -> PathBuf {
    ffmpeg_fixture(
        "voice.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=220:sample_rate=44100:duration=7",
            "-ac",
            "1",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
        ],
    )
}

/// The movie with the body of its `moov` box (the index) overwritten with noise.
fn garbage_moov_mp4() -> Vec<u8> {
    let mut bytes = std::fs::read(movie()).expect("movie");
    let (start, size) = top_level_boxes(&bytes)
        .into_iter()
        .find(|(_, _, kind)| kind == "moov")
        .map(|(start, size, _)| (start, size))
        .expect("the movie has a moov box");
    let noise = media_e2e::random_bytes(size - 8, 5);
    bytes[start + 8..start + size].copy_from_slice(&noise);
    bytes
}

/// The top-level boxes of an MP4: (offset, size, type).
fn top_level_boxes(bytes: &[u8]) -> Vec<(usize, usize, String)> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let mut size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
        if size == 1 && at + 16 <= bytes.len() {
            size = u64::from_be_bytes(bytes[at + 8..at + 16].try_into().expect("8")) as usize;
        } else if size == 0 {
            size = bytes.len() - at;
        }
        if size < 8 {
            break;
        }
        boxes.push((at, size, kind));
        at += size;
    }
    boxes
}

fn find_variant(media: &Value, name: &str) -> Value {
    media["variants"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} variant in {media}"))
}

/// Mean absolute difference of two images, each shrunk to 64×64 grey.
fn picture_distance(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    let small = |i: &image::DynamicImage| {
        i.resize_exact(64, 64, image::imageops::FilterType::Triangle)
            .to_luma8()
    };
    let (a, b) = (small(a), small(b));
    a.pixels()
        .zip(b.pixels())
        .map(|(p, q)| (f64::from(p[0]) - f64::from(q[0])).abs())
        .sum::<f64>()
        / (64.0 * 64.0)
}

/// The frame at 1 s as the `ffmpeg` command line shows it (it rotates too).
fn reference_frame(source: &Path) -> image::DynamicImage {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("frame.png");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-ss", "1", "-i"])
        .arg(source)
        .args(["-frames:v", "1"])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    image::open(&out).expect("reference frame")
}

#[tokio::test]
async fn videos_get_a_poster_a_thumb_and_a_faststart_h264_mp4() {
    // (name, file, upright size, source codecs)
    let cases = [
        ("movie.mp4", movie(), (1920, 1080), ("h264", "aac")),
        (
            "rotated.mp4",
            rotated_movie(),
            (1080, 1920),
            ("h264", "aac"),
        ),
        ("clip.webm", webm(), (1280, 720), ("vp8", "opus")),
    ];
    for set in BackendSet::ALL {
        let app = spawn(set).await;
        let alice = app.user("alice");
        let mut ids = Vec::new();
        for (name, path, ..) in &cases {
            let bytes = std::fs::read(path).expect("fixture");
            let done = alice.upload(name, &bytes).await;
            ids.push(done["media_id"].as_str().expect("id").to_owned());
        }
        for ((name, path, (w, h), (vcodec, acodec)), id) in cases.iter().zip(&ids) {
            let source = ffprobe(path);
            let source_s: f64 = source["format"]["duration"]
                .as_str()
                .and_then(|d| d.parse().ok())
                .expect("source duration");
            let media = settled(&alice, id).await;
            assert_eq!(media["status"], "ready", "{set:?} {name}: {media}");
            assert_eq!(
                (media["width"].as_u64(), media["height"].as_u64()),
                (Some(*w), Some(*h)),
                "{set:?} {name}: upright size"
            );
            assert_eq!(media["video_codec"], *vcodec, "{set:?} {name}");
            assert_eq!(media["audio_codec"], *acodec, "{set:?} {name}");
            let duration_ms = media["duration_ms"].as_u64().expect("duration");
            assert!(
                (duration_ms as f64 - source_s * 1000.0).abs() < 100.0,
                "{set:?} {name}: {duration_ms} ms vs {source_s} s"
            );

            // Poster and thumbnail: upright WebP stills inside their boxes.
            let portrait = h > w;
            let poster = find_variant(&media, "poster");
            let thumb = find_variant(&media, "thumb");
            assert_eq!(poster["content_type"], "image/webp");
            assert!(
                poster["width"].as_u64() <= Some(1280) && poster["height"].as_u64() <= Some(1280)
            );
            assert_eq!(
                thumb["width"].as_u64().max(thumb["height"].as_u64()),
                Some(320)
            );
            let (_, poster_bytes) = variant_of(&alice, id, "poster").await;
            let poster_img = image::load_from_memory(&poster_bytes).expect("poster decodes");
            assert_eq!(
                poster_img.height() > poster_img.width(),
                portrait,
                "{set:?} {name}: poster orientation"
            );
            // The same picture `ffmpeg` shows at 1 s, turned the same way.
            let reference = reference_frame(path);
            let distance = picture_distance(&poster_img, &reference);
            let turned = picture_distance(&poster_img, &reference.rotate180());
            // The transcode's frame at 1 s, turned the same way too.
            let (_, mp4_bytes) = variant_of(&alice, id, "h264_720p").await;
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("out.mp4");
            std::fs::write(&file, &mp4_bytes).expect("write");
            let played = reference_frame(&file);
            let played_distance = picture_distance(&played, &reference);
            let played_turned = picture_distance(&played, &reference.rotate180());
            eprintln!(
                "{name}: poster {distance:.1} grey levels off ffmpeg's frame ({turned:.1} off it turned over), \
                 transcode {played_distance:.1} ({played_turned:.1})"
            );
            assert!(
                distance < 12.0 && distance * 3.0 < turned,
                "{set:?} {name}: poster is {distance} grey levels off ffmpeg's frame ({turned} turned over)"
            );
            assert!(
                played_distance < 12.0 && played_distance * 3.0 < played_turned,
                "{set:?} {name}: the transcode is {played_distance} grey levels off ffmpeg's frame ({played_turned} turned over)"
            );
            let (_, thumb_bytes) = variant_of(&alice, id, "thumb").await;
            let thumb_img = image::load_from_memory(&thumb_bytes).expect("thumb decodes");
            assert!(
                picture_distance(&thumb_img, &reference) < 14.0,
                "{set:?} {name}: thumb"
            );

            // The MP4: H.264 + AAC, inside 1280×720 (turned with the video),
            // the source's length, and the index before the data.
            let mp4 = find_variant(&media, "h264_720p");
            assert_eq!(mp4["content_type"], "video/mp4");
            let (content_type, _) = variant_of(&alice, id, "h264_720p").await;
            assert_eq!(content_type, "video/mp4");
            assert_eq!(mp4["size"].as_u64(), Some(mp4_bytes.len() as u64));
            let probe = ffprobe(&file);
            let streams = probe["streams"].as_array().expect("streams");
            let video = streams
                .iter()
                .find(|s| s["codec_type"] == "video")
                .expect("video stream");
            let audio = streams
                .iter()
                .find(|s| s["codec_type"] == "audio")
                .expect("audio stream");
            assert_eq!(video["codec_name"], "h264", "{set:?} {name}");
            assert_eq!(audio["codec_name"], "aac", "{set:?} {name}");
            let (vw, vh) = (
                video["width"].as_u64().expect("w"),
                video["height"].as_u64().expect("h"),
            );
            let (long, short) = (vw.max(vh), vw.min(vh));
            assert!(long <= 1280 && short <= 720, "{set:?} {name}: {vw}x{vh}");
            assert_eq!((vw % 2, vh % 2), (0, 0), "even dimensions");
            assert_eq!(vh > vw, portrait, "{set:?} {name}: {vw}x{vh} turned wrong");
            assert!(
                video["side_data_list"].is_null(),
                "{set:?} {name}: a rotation flag is left: {video}"
            );
            assert_eq!(
                (mp4["width"].as_u64(), mp4["height"].as_u64()),
                (Some(vw), Some(vh))
            );
            let out_s: f64 = probe["format"]["duration"]
                .as_str()
                .and_then(|d| d.parse().ok())
                .expect("duration");
            assert!(
                (out_s - source_s).abs() < 0.15,
                "{set:?} {name}: {out_s} s vs {source_s} s"
            );
            let boxes: Vec<String> = top_level_boxes(&mp4_bytes)
                .into_iter()
                .map(|(_, _, k)| k)
                .collect();
            let moov = boxes.iter().position(|k| k == "moov").expect("moov");
            let mdat = boxes.iter().position(|k| k == "mdat").expect("mdat");
            assert!(moov < mdat, "{set:?} {name}: not faststart: {boxes:?}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_voice_note_gets_a_compact_opus_transcode() {
    let path = voice_note();
    let original = std::fs::read(&path).expect("fixture");
    for set in BackendSet::ALL {
        let app = spawn(set).await;
        let alice = app.user("alice");
        let done = alice.upload("voice.m4a", &original).await;
        let id = done["media_id"].as_str().expect("id");
        let media = settled(&alice, id).await;
        assert_eq!(media["status"], "ready", "{set:?}: {media}");
        assert_eq!(media["audio_codec"], "aac");
        assert!(media["video_codec"].is_null());
        let duration_ms = media["duration_ms"].as_u64().expect("duration");
        assert!(
            (6900..=7100).contains(&duration_ms),
            "{set:?}: {duration_ms}"
        );
        let variants = media["variants"].as_array().expect("variants");
        assert_eq!(variants.len(), 1, "{set:?}: audio has one variant: {media}");
        let opus = find_variant(&media, "opus");
        assert_eq!(opus["content_type"], "audio/ogg");
        let (content_type, bytes) = variant_of(&alice, id, "opus").await;
        assert_eq!(content_type, "audio/ogg");
        assert!(
            bytes.len() * 2 < original.len(),
            "{set:?}: {} bytes is not compact next to {}",
            bytes.len(),
            original.len()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("voice.ogg");
        std::fs::write(&file, &bytes).expect("write");
        let probe = ffprobe(&file);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "opus");
        assert_eq!(stream["channels"], 1);
        let seconds: f64 = probe["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("duration");
        assert!((seconds - 7.0).abs() < 0.1, "{set:?}: {seconds} s");
        assert_eq!(
            opus["duration_ms"].as_u64().map(|ms| ms / 100),
            Some((seconds * 10.0) as u64)
        );
        app.stop().await;
    }
}

/// `media-api worker` as its own process, one worker, on `settings`' backends.
fn worker_process(settings: &media_api::Settings) -> tokio::process::Child {
    let mut cmd = media_e2e::service_command(settings, "worker-test-secret-long-enough-0123456789");
    cmd.arg("worker")
        .env("MEDIA_JOBS__WORKERS", "1")
        .env("MEDIA_JOBS__LEASE", "3s")
        .env("MEDIA_JOBS__POLL_INTERVAL", "200ms");
    // No MEDIA_JOBS__RENDER_PROGRAM: the worker finds `media-render` beside
    // its own binary, as an installed service does.
    cmd.spawn().expect("start a worker")
}

/// The API alone in this process (the work happens in worker processes),
/// and the movie uploaded and claimed by a worker process.
async fn movie_claimed(
    set: BackendSet,
) -> (TestApp, media_api::Settings, tokio::process::Child, String) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(0);
    let app = TestApp::spawn_with(set, settings.clone(), dir).await;
    let worker = worker_process(&settings);
    let bytes = std::fs::read(movie()).expect("movie");
    let done = app.user("alice").upload("movie.mp4", &bytes).await;
    let id = done["media_id"].as_str().expect("id").to_owned();
    let jobs = app.state.backends.jobs.clone();
    let running = eventually(Duration::from_secs(30), || async {
        jobs.counts()
            .await
            .expect("counts")
            .iter()
            .any(|(s, n)| s == "running" && *n == 1)
    })
    .await;
    assert!(running, "{set:?}: the worker never claimed the job");
    (app, settings, worker, id)
}

both_sets!(a_worker_stopped_mid_transcode_finishes_its_job_before_exiting);
async fn a_worker_stopped_mid_transcode_finishes_its_job_before_exiting(set: BackendSet) {
    let (app, _settings, mut worker, id) = movie_claimed(set).await;
    let alice = app.user("alice");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pid = worker.id().expect("pid");
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(term.success());
    // The grace period (30 s) covers the running transcode.
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker exits within its grace period")
        .expect("wait");
    assert!(status.success(), "{set:?}: exit status {status}");
    let media = json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(
        media["status"], "ready",
        "{set:?}: the running job was not finished: {media}"
    );
    app.stop().await;
}

both_sets!(a_worker_killed_mid_transcode_is_replaced_and_the_variant_made_once);
async fn a_worker_killed_mid_transcode_is_replaced_and_the_variant_made_once(set: BackendSet) {
    let (app, settings, mut first, id) = movie_claimed(set).await;
    let alice = app.user("alice");
    let jobs = app.state.backends.jobs.clone();
    // Into the transcode (a 10 s 1080p movie takes several seconds), then SIGKILL.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill().await.expect("SIGKILL the worker");
    let media = json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(
        media["status"], "processing",
        "{set:?}: finished before the kill: {media}"
    );

    let mut second = worker_process(&settings);
    let media = settled(&alice, &id).await;
    assert_eq!(media["status"], "ready", "{set:?}: {media}");
    let names: Vec<&str> = media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["h264_720p", "poster", "thumb"],
        "{set:?}: each variant once"
    );
    let counts = jobs.counts().await.expect("counts");
    assert_eq!(
        counts,
        vec![("done".to_owned(), 1)],
        "{set:?}: one job, done"
    );
    let (_, mp4) = variant_of(&alice, &id, "h264_720p").await;
    assert!(top_level_boxes(&mp4).iter().any(|(_, _, k)| k == "mdat"));
    second.kill().await.expect("stop the second worker");
    app.stop().await;
}

#[tokio::test]
async fn the_upload_event_stream_ends_with_the_processed_media() {
    use futures_util::StreamExt;
    for set in BackendSet::ALL {
        let app = spawn(set).await;
        let alice = app.user("alice");
        let png = good_png(3);
        let session = alice.open("live.png", png.len()).await;
        let id = session["upload_id"].as_str().expect("id").to_owned();
        let stream = alice.get(&format!("/v1/uploads/{id}/events")).await;
        assert_eq!(stream.status(), 200);
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            let mut body = stream.bytes_stream();
            // The stream ends by itself after `processed`.
            while let Ok(Some(Ok(piece))) =
                tokio::time::timeout(Duration::from_secs(60), body.next()).await
            {
                text.push_str(&String::from_utf8_lossy(&piece));
            }
            text
        });
        let chunk = session["chunk_size"].as_u64().expect("chunk size") as usize;
        let total = session["total_chunks"].as_u64().expect("total") as usize;
        let order: Vec<usize> = (1..=total).collect();
        alice.send_chunks(&id, &png, chunk, &order, 2).await;
        let done = json_of(alice.complete(&id).await, 200).await;
        let text = reader.await.expect("reader");
        let completed = text
            .find("event: completed")
            .unwrap_or_else(|| panic!("{set:?}: {text}"));
        let processed = text
            .find("event: processed")
            .unwrap_or_else(|| panic!("{set:?}: {text}"));
        assert!(completed < processed, "{set:?}: {text}");
        let last = text[processed..]
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("processed data");
        let media: Value = serde_json::from_str(last).expect("JSON");
        assert_eq!(media["media_id"], done["media_id"]);
        assert_eq!(media["status"], "ready", "{set:?}: {media}");
        assert!(find_variant(&media, "thumb")["width"].as_u64().is_some());
        app.stop().await;
    }
}

#[tokio::test]
async fn live_uploads_are_processed_before_batch_work() {
    use media_api::metadata_store::jobs::{BATCH_PRIORITY, LIVE_PRIORITY};
    for set in BackendSet::ALL {
        let (mut settings, dir) = test_settings(set).await;
        // No workers: the test claims by hand to see the order.
        settings.jobs.serve_workers = Some(0);
        let app = TestApp::spawn_with(set, settings, dir).await;
        let alice = app.user("alice");
        let jobs = app.state.backends.jobs.clone();
        let first = post(&alice, "a.png", "image/png", good_png(10)).await;
        let a = media_api::ids::Blake3::parse(first["blake3"].as_str().expect("blake3"))
            .expect("blake3");
        // Presets changed: an operator queues `a` again, before `b` arrives.
        jobs.reprocess(&a, BATCH_PRIORITY).await.expect("reprocess");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = post(&alice, "b.png", "image/png", good_png(11)).await;
        let mut order = Vec::new();
        while let Some(job) = jobs
            .claim("test-worker", Duration::from_secs(60))
            .await
            .expect("claim")
        {
            order.push((job.blake3.to_hex(), job.priority));
        }
        let b = second["blake3"].as_str().expect("blake3").to_owned();
        assert_eq!(
            order,
            vec![
                (a.to_hex(), LIVE_PRIORITY),
                (b, LIVE_PRIORITY),
                (a.to_hex(), BATCH_PRIORITY)
            ],
            "{set:?}"
        );
        app.stop().await;
    }
}

both_sets!(idle_workers_wake_when_work_arrives_rather_than_polling);
async fn idle_workers_wake_when_work_arrives_rather_than_polling(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(1);
    // A poll interval far longer than the test: only a wake-up (NOTIFY on
    // PostgreSQL, an in-process signal on SQLite) can start the job.
    settings.jobs.poll_interval = Duration::from_secs(600);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    // Let the worker find the queue empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = post(&alice, "woken.png", "image/png", good_png(12)).await;
    let id = done["media_id"].as_str().expect("id");
    let path = format!("/v1/media/{id}");
    let ready = eventually(Duration::from_secs(20), || async {
        json_of(alice.get(&path).await, 200).await["status"] == "ready"
    })
    .await;
    assert!(ready, "{set:?}: the idle worker was not woken");
    app.stop().await;
}

/// `media-api` started by hand on the real backends, configured only through
/// the environment as the README's command does: with no worker setting it
/// processes uploads itself; with `MEDIA_JOBS__SERVE_WORKERS=0` it says at
/// start that it runs none, and `/readyz` shows the queue nobody drains.
#[tokio::test]
async fn serve_on_the_real_backends_processes_uploads_or_says_why_not() {
    use tokio::io::AsyncBufReadExt;
    let (settings, _dir) = test_settings(BackendSet::Real).await;
    let secret = "by-hand-test-secret-long-enough-0123456789";
    let token = media_api::auth::TokenAuthority::new(&secrecy::SecretString::from(secret))
        .mint(
            &media_api::ids::UserId::parse("newcomer").expect("user"),
            false,
            Duration::from_secs(600),
        )
        .expect("token");
    let client = reqwest::Client::new();
    for serve_workers in [None, Some("0")] {
        let port = media_e2e::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = media_e2e::service_command(&settings, secret);
        cmd.arg("serve")
            .env("MEDIA_LISTEN", format!("127.0.0.1:{port}"))
            .env("MEDIA_JOBS__RENDER_PROGRAM", media_e2e::render_binary())
            .env_remove("MEDIA_JOBS__SERVE_WORKERS")
            .stderr(std::process::Stdio::piped());
        if let Some(n) = serve_workers {
            cmd.env("MEDIA_JOBS__SERVE_WORKERS", n);
        }
        let mut child = cmd.spawn().expect("serve");
        // The log, collected as it comes (it also keeps the pipe drained).
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let collected = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = collected.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        assert!(media_e2e::wait_ready(&base).await, "not ready");
        let r = client
            .post(format!("{base}/v1/media?file_name=by-hand.png"))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .body(good_png(serve_workers.map_or(1, |_| 2)))
            .send()
            .await
            .expect("post");
        let media = json_of(r, 201).await;
        let path = format!(
            "{base}/v1/media/{}",
            media["media_id"].as_str().expect("id")
        );
        let status = || async {
            let r = client
                .get(&path)
                .bearer_auth(&token)
                .send()
                .await
                .expect("get");
            json_of(r, 200).await["status"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        let ready = json_of(
            client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .expect("readyz"),
            200,
        )
        .await;
        match serve_workers {
            None => {
                assert!(
                    ready["processing"]["workers_in_process"].as_u64() > Some(0),
                    "{ready}"
                );
                assert!(
                    eventually(Duration::from_secs(60), || async {
                        status().await == "ready"
                    })
                    .await,
                    "the upload was not processed by the service started by hand"
                );
            }
            Some(_) => {
                assert_eq!(ready["processing"]["workers_in_process"], 0, "{ready}");
                assert!(
                    eventually(Duration::from_secs(10), || async {
                        log.lock()
                            .expect("log")
                            .contains("runs no processing workers")
                    })
                    .await,
                    "serve did not say it runs no workers: {}",
                    log.lock().expect("log")
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
                assert_eq!(status().await, "processing");
                let ready = json_of(
                    client
                        .get(format!("{base}/readyz"))
                        .send()
                        .await
                        .expect("readyz"),
                    200,
                )
                .await;
                assert_eq!(
                    ready["processing"]["queued"], 1,
                    "the waiting job is shown: {ready}"
                );
            }
        }
        child.kill().await.expect("kill");
    }
}
