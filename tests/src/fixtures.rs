//! Test content made here, never downloaded: pseudo-random bytes, encoded
//! images, and media from the `ffmpeg` command line's `lavfi` sources.

use std::path::PathBuf;

/// Deterministic pseudo-random bytes (splitmix64): incompressible test content.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Fisher–Yates with a fixed seed: a shuffled but repeatable order.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let noise = random_bytes(items.len() * 8, seed ^ 0x5eed);
    for i in (1..items.len()).rev() {
        let r = u64::from_le_bytes(noise[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        items.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

/// An encoded `width` × `height` image (a gradient coloured by `seed`) in
/// `format`, made by the `image` crate.
pub fn test_image(format: image::ImageFormat, width: u32, height: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

/// A media file made by the `ffmpeg` command line from its `lavfi` test
/// sources, cached across tests (and runs) under the system temp dir.
/// `args` are everything between `ffmpeg -y` and the output file.
pub fn ffmpeg_fixture(name: &str, args: &[&str]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    args.hash(&mut hasher);
    let dir = std::env::temp_dir().join("media-e2e-fixtures");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let path = dir.join(format!("{:016x}-{name}", hasher.finish()));
    if path.is_file() {
        return path;
    }
    // Written aside and renamed, so a concurrent test never reads half a file.
    // (The name keeps its extension: ffmpeg picks the container by it.)
    let partial = dir.join(format!("partial-{}-{name}", uuid::Uuid::new_v4().simple()));
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .arg(&partial)
        .output()
        .expect("run ffmpeg (infra/test.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &path).expect("fixture in place");
    path
}

/// What `ffprobe` says about a file, as JSON (format and streams).
pub fn ffprobe(path: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// A 320×240 H.264 clip of `seconds`, 15 frames a second, no sound.
pub fn h264_clip(seconds: u32) -> Vec<u8> {
    let source = format!("testsrc2=size=320x240:rate=15:duration={seconds}");
    let path = ffmpeg_fixture(
        &format!("clip-{seconds}s.mp4"),
        &[
            "-f", "lavfi", "-i", &source, "-c:v", "libx264", "-pix_fmt", "yuv420p",
        ],
    );
    std::fs::read(path).expect("clip")
}
