//! Video and audio: posters, thumbnails, the H.264 transcode, voice notes.

use super::*;

/// A 10 s 1080p H.264 + AAC MP4, as a phone would send.
pub(super) fn movie() -> PathBuf {
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
pub(super) fn garbage_moov_mp4() -> Vec<u8> {
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
pub(super) fn top_level_boxes(bytes: &[u8]) -> Vec<(usize, usize, String)> {
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

pub(super) fn find_variant(media: &Value, name: &str) -> Value {
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

both_sets!(videos_get_a_poster_a_thumb_and_a_faststart_h264_mp4);
async fn videos_get_a_poster_a_thumb_and_a_faststart_h264_mp4(set: BackendSet) {
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
        assert!(poster["width"].as_u64() <= Some(1280) && poster["height"].as_u64() <= Some(1280));
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

both_sets!(a_voice_note_gets_a_compact_opus_transcode);
async fn a_voice_note_gets_a_compact_opus_transcode(set: BackendSet) {
    let path = voice_note();
    let original = std::fs::read(&path).expect("fixture");
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
