//! The worker pool's media work against the field's tools, same input, same
//! core, same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use transcoder::av::{self, VideoPreset};
use transcoder::image_render::{self, DecodeLimits, ImagePreset};

use crate::measure::{Comparison, Report, time_pair};

/// The demuxers the service lets FFmpeg open an MP4 with.
const MP4_DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2";

/// Options of `load processing`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Thumbnails per side.
    #[arg(long, default_value_t = 20)]
    thumbnails: usize,
    /// Transcodes per side.
    #[arg(long, default_value_t = 3)]
    transcodes: usize,
    /// Skip the transcode comparison (it takes a minute or two).
    #[arg(long)]
    no_transcode: bool,
    /// Where inputs and outputs go (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// A `media-render` binary: also time the thumbnail as production makes
    /// it, in a child process (process start included).
    #[arg(long)]
    media_render: Option<PathBuf>,
}

/// A 4000×3000 (12 MP) photo-like JPEG: smooth gradients under fine noise,
/// quality 90, 4:2:0, as a phone camera writes.
fn photo(path: &Path) -> anyhow::Result<()> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state & 0x1f) as i32 - 16;
        let base = [
            (x * 255 / 4000) as i32,
            (y * 255 / 3000) as i32,
            ((x + y) * 255 / 7000) as i32,
        ];
        image::Rgb(base.map(|c| (c + noise).clamp(0, 255) as u8))
    });
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90).encode_image(&img)?;
    Ok(())
}

fn run_tool(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (infra/test.sh installs it)"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub(crate) fn run(options: &Options) -> anyhow::Result<Report> {
    let temp = tempfile::tempdir()?;
    let dir = options
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let mut comparisons = Vec::new();

    let jpeg = dir.join("photo-12mp.jpg");
    photo(&jpeg)?;
    let out = dir.join("ours");
    std::fs::create_dir_all(&out)?;
    let presets = [ImagePreset::webp("thumb", 320, 75.0)];
    let vips_out = dir.join("vips.webp");
    let vips = || {
        run_tool(
            Command::new("vipsthumbnail")
                .arg(&jpeg)
                .args(["--size", "320", "-o"])
                .arg(format!("{}[Q=75,strip]", vips_out.display())),
        )
    };
    let (ours, baseline) = time_pair(
        ("ours: thumb (in process)", "vipsthumbnail --size 320"),
        options.thumbnails,
        || {
            image_render::render(&jpeg, &out, &presets, DecodeLimits::default())?;
            Ok(())
        },
        vips,
    )?;
    if let Some(media_render) = &options.media_render {
        // The worker pool's own path: a spec file, a child process, JSON back.
        let spec = dir.join("spec.json");
        std::fs::write(
            &spec,
            serde_json::to_vec(&serde_json::json!({
                "input": jpeg,
                "out_dir": out,
                "job": {
                    "kind": "image",
                    "presets": presets,
                    "limits": DecodeLimits::default(),
                },
            }))?,
        )?;
        let (child, vips_again) = time_pair(
            ("ours: media-render child", "vipsthumbnail --size 320"),
            options.thumbnails,
            || run_tool(Command::new(media_render).arg("--spec").arg(&spec)),
            vips,
        )?;
        comparisons.push(Comparison::new(
            "12 MP JPEG to 320 px, child process",
            child,
            vips_again,
            1.0,
        ));
    }
    comparisons.insert(
        0,
        Comparison::new("12 MP JPEG to a 320 px WebP", ours, baseline, 1.0),
    );

    let mut setup = serde_json::json!({
        "jpeg": { "pixels": "4000x3000", "bytes": std::fs::metadata(&jpeg)?.len() },
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if !options.no_transcode {
        let movie = dir.join("movie-1080p-10s.mp4");
        run_tool(
            Command::new("ffmpeg")
                .args(["-v", "error", "-nostdin", "-y"])
                .args([
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=1920x1080:rate=30:duration=10",
                ])
                .args([
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000:duration=10",
                ])
                .args(["-c:v", "libx264", "-preset", "superfast", "-crf", "26"])
                .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
                .arg(&movie),
        )?;
        let preset = VideoPreset::default();
        let probe = av::probe(&movie, MP4_DEMUXERS)?;
        let ours_mp4 = dir.join("ours.mp4");
        let ffmpeg_mp4 = dir.join("ffmpeg.mp4");
        let (ours, baseline) = time_pair(
            ("ours: h264_720p (in process)", "ffmpeg, same settings"),
            options.transcodes,
            || {
                av::transcode_video(&movie, &ours_mp4, &preset, MP4_DEMUXERS, &probe)?;
                Ok(())
            },
            || {
                run_tool(
                    Command::new("ffmpeg")
                        .args(["-v", "error", "-nostdin", "-y", "-i"])
                        .arg(&movie)
                        .args(["-vf", "scale=1280:720,setsar=1,format=yuv420p"])
                        .args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"])
                        .args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"])
                        .args(["-movflags", "+faststart"])
                        .arg(&ffmpeg_mp4),
                )
            },
        )?;
        setup["movie"] = serde_json::json!({
            "input": "1920x1080 30 fps 10 s H.264 + AAC",
            "ours_bytes": std::fs::metadata(&ours_mp4)?.len(),
            "ffmpeg_bytes": std::fs::metadata(&ffmpeg_mp4)?.len(),
        });
        comparisons.push(Comparison::new(
            "1080p to h264_720p MP4",
            ours,
            baseline,
            1.05,
        ));
    }
    Ok(Report { setup, comparisons })
}
