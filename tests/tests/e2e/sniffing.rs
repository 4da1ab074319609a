//! Every type on the processing allowlist, made as a client would send it,
//! is recognised by its bytes (never by its name) and queued for
//! processing; the fixtures are made here by the `image` crate and the
//! `ffmpeg` command line.

use std::collections::BTreeSet;

use media_e2e::{BackendSet, TestApp, ffmpeg_fixture, json_of, test_image, test_settings};

/// The allowlist, as the transcoder states it.
fn allowlisted() -> BTreeSet<&'static str> {
    use transcoder::sniff::{PROCESSED_AUDIO, PROCESSED_IMAGES, PROCESSED_VIDEOS};
    PROCESSED_IMAGES
        .iter()
        .chain(PROCESSED_VIDEOS)
        .chain(PROCESSED_AUDIO)
        .copied()
        .collect()
}

/// An AMR-NB file: the magic line, then 12.2 kb/s frames of silence (no
/// encoder for it ships with Debian's FFmpeg).
fn amr() -> Vec<u8> {
    let mut out = b"#!AMR\n".to_vec();
    for _ in 0..25 {
        out.push(0x3C);
        out.extend([0u8; 31]);
    }
    out
}

/// A file the `ffmpeg` command line makes: `inputs` then `output` options.
fn ffmpeg(name: &str, inputs: &[&str], output: &[&str]) -> Vec<u8> {
    let args: Vec<&str> = inputs.iter().chain(output).copied().collect();
    std::fs::read(ffmpeg_fixture(name, &args)).expect("fixture")
}

const AUDIO: &[&str] = &["-f", "lavfi", "-i", "sine=d=0.5:r=48000"];
const AV: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc=s=64x48:d=0.5:r=10",
    "-f",
    "lavfi",
    "-i",
    "sine=d=0.5:r=48000",
];
const H264_AAC: &[&str] = &[
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-shortest",
];

fn h264(name: &str, muxer: &str) -> Vec<u8> {
    let output: Vec<&str> = H264_AAC.iter().copied().chain(["-f", muxer]).collect();
    ffmpeg(name, AV, &output)
}

/// (expected sniffed type, file name sent, bytes)
fn fixtures() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "image/jpeg",
            "a.bin",
            test_image(image::ImageFormat::Jpeg, 48, 32, 90),
        ),
        (
            "image/png",
            "a.bin",
            test_image(image::ImageFormat::Png, 48, 32, 90),
        ),
        (
            "image/gif",
            "a.bin",
            test_image(image::ImageFormat::Gif, 48, 32, 90),
        ),
        (
            "image/webp",
            "a.bin",
            test_image(image::ImageFormat::WebP, 48, 32, 90),
        ),
        ("video/mp4", "v.mp4", h264("v.mp4", "mp4")),
        ("video/x-m4v", "v.m4v", h264("v.m4v", "ipod")),
        ("video/quicktime", "v.mov", h264("v.mov", "mov")),
        ("video/x-matroska", "v.mkv", h264("v.mkv", "matroska")),
        ("video/3gpp", "v.3gp", h264("v.3gp", "3gp")),
        (
            "video/webm",
            "v.webm",
            ffmpeg(
                "v.webm",
                AV,
                &[
                    "-c:v",
                    "libvpx",
                    "-c:a",
                    "libopus",
                    "-shortest",
                    "-f",
                    "webm",
                ],
            ),
        ),
        (
            "audio/mpeg",
            "a.mp3",
            ffmpeg("a.mp3", AUDIO, &["-c:a", "libmp3lame", "-f", "mp3"]),
        ),
        (
            "audio/m4a",
            "a.m4a",
            ffmpeg("a.m4a", AUDIO, &["-c:a", "aac", "-f", "ipod"]),
        ),
        (
            "audio/aac",
            "a.aac",
            ffmpeg("a.aac", AUDIO, &["-c:a", "aac", "-f", "adts"]),
        ),
        (
            "audio/ogg",
            "a.ogg",
            ffmpeg("a.ogg", AUDIO, &["-c:a", "libvorbis", "-f", "ogg"]),
        ),
        (
            "audio/opus",
            "a.opus",
            ffmpeg("a.opus", AUDIO, &["-c:a", "libopus", "-f", "ogg"]),
        ),
        (
            "audio/x-flac",
            "a.flac",
            ffmpeg("a.flac", AUDIO, &["-f", "flac"]),
        ),
        (
            "audio/x-wav",
            "a.wav",
            ffmpeg("a.wav", AUDIO, &["-f", "wav"]),
        ),
        ("audio/amr", "a.amr", amr()),
    ]
}

#[tokio::test]
async fn every_allowlisted_type_is_recognised_by_its_bytes_and_queued() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    // Only the sniffing is under test: nothing is processed meanwhile.
    settings.jobs.serve_workers = Some(0);
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let alice = app.user("alice");
    let fixtures = fixtures();
    let covered: BTreeSet<&str> = fixtures.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(
        covered,
        allowlisted(),
        "every allowlisted type has a fixture, and no other"
    );
    for (expected, name, bytes) in fixtures {
        // Sent under a neutral type: the bytes decide.
        let r = app
            .client
            .post(app.url(&format!("/v1/media?file_name={name}")))
            .bearer_auth(&alice.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("post");
        let media = json_of(r, 201).await;
        assert_eq!(media["content_type"], expected, "{name}");
        let id = media["media_id"].as_str().expect("id");
        let view = json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
        assert_eq!(
            view["status"], "processing",
            "{expected} is queued for processing: {view}"
        );
    }
    app.stop().await;
}
