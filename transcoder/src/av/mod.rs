//! Video and audio through FFmpeg (`ffmpeg-next`): probe, a poster frame, an
//! H.264 + AAC MP4 transcode that starts playing before it is fully
//! downloaded, and a compact Opus transcode for voice notes.
//!
//! Rotation (the display matrix phones write instead of turning the pixels)
//! is honoured the way the `ffmpeg` command line does: the poster is turned
//! upright and the transcode gets a `transpose` in its filter graph, so every
//! derivative plays upright with no rotation flag left to trust.

use std::path::Path;

use ffmpeg::codec::packet::side_data::Type as SideDataType;
use ffmpeg::format::stream::Disposition;
use ffmpeg::{Packet, Rational, codec, decoder, format, frame, media};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

mod transcode;

use crate::image_render;
pub use crate::preset::{AudioPreset, AvLimits, AvPresets, ImagePreset, Rendered, VideoPreset};
pub use transcode::{transcode_audio, transcode_video};

/// What a video or audio file is, as far as its container says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The demuxer's name, such as `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`.
    pub container: String,
    /// Length in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// Pixels wide as displayed (after rotation), for video.
    pub width: Option<u32>,
    /// Pixels high as displayed (after rotation), for video.
    pub height: Option<u32>,
    /// Clockwise degrees the picture is turned for display: 0, 90, 180 or 270.
    pub rotation: u32,
    /// Video codec, such as `h264`.
    pub video_codec: Option<String>,
    /// Audio codec, such as `aac`.
    pub audio_codec: Option<String>,
    /// Overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
}

impl Probe {
    /// Whether there is a picture track (cover art does not count).
    pub fn has_video(&self) -> bool {
        self.video_codec.is_some()
    }
}

/// Why a video or audio file could not be processed. The message is shown to the owner.
#[derive(Debug, thiserror::Error)]
pub enum AvError {
    /// Not a file FFmpeg can read, or a broken one.
    #[error("the file cannot be decoded: {0}")]
    Undecodable(String),
    /// Over a configured limit.
    #[error("{0}")]
    OverLimit(String),
    /// Making the poster's images failed.
    #[error(transparent)]
    Image(#[from] image_render::ImageError),
    /// Our side: an encoder missing from this FFmpeg build, or the disk.
    #[error("the media processor cannot write its output: {0}")]
    Output(String),
}

impl From<ffmpeg::Error> for AvError {
    fn from(e: ffmpeg::Error) -> Self {
        Self::Undecodable(e.to_string())
    }
}

fn output_error(e: impl std::fmt::Display) -> AvError {
    AvError::Output(e.to_string())
}

/// Readies FFmpeg once per process and keeps its log quiet (errors only).
fn init() -> Result<(), AvError> {
    ffmpeg::init().map_err(output_error)?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    Ok(())
}

/// Opens `input` with only the `demuxers` named (FFmpeg's
/// `format_whitelist`, from [`crate::sniff::demuxers_for`]) and only the
/// `file` protocol: a container cannot make FFmpeg read another file or URL.
fn open_input(input: &Path, demuxers: &str) -> Result<format::context::Input, AvError> {
    init()?;
    let mut options = ffmpeg::Dictionary::new();
    options.set("format_whitelist", demuxers);
    options.set("protocol_whitelist", "file");
    format::input_with_dictionary(&input, options)
        .map_err(|e| AvError::Undecodable(format!("{e} (not a readable {demuxers} file)")))
}

/// The picture track: the best video stream that is not cover art.
fn video_stream(ictx: &format::context::Input) -> Option<format::stream::Stream<'_>> {
    let is_picture = |s: &format::stream::Stream<'_>| {
        s.parameters().medium() == media::Type::Video
            && !s.disposition().contains(Disposition::ATTACHED_PIC)
    };
    match ictx.streams().best(media::Type::Video) {
        Some(s) if is_picture(&s) => Some(s),
        _ => ictx.streams().find(|s| is_picture(s)),
    }
}

/// Clockwise display rotation from a stream's display matrix, snapped to a
/// quarter turn (what `ffmpeg` itself does before choosing a `transpose`).
fn rotation_of(stream: &format::stream::Stream<'_>) -> u32 {
    let Some(side) = stream
        .side_data()
        .find(|sd| sd.kind() == SideDataType::DisplayMatrix)
    else {
        return 0;
    };
    let m: Vec<f64> = side
        .data()
        .chunks_exact(4)
        .take(9)
        .map(|c| f64::from(i32::from_ne_bytes([c[0], c[1], c[2], c[3]])) / 65536.0)
        .collect();
    if m.len() < 5 {
        return 0;
    }
    let (sx, sy) = (m[0].hypot(m[3]), m[1].hypot(m[4]));
    if sx == 0.0 || sy == 0.0 {
        return 0;
    }
    let degrees = (m[1] / sy).atan2(m[0] / sx).to_degrees().round();
    match (degrees.rem_euclid(360.0) as u32 + 45) / 90 % 4 {
        1 => 90,
        2 => 180,
        3 => 270,
        _ => 0,
    }
}

fn decoder_for(stream: &format::stream::Stream<'_>) -> Result<decoder::Decoder, AvError> {
    let mut ctx = codec::Context::from_parameters(stream.parameters())?;
    ctx.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    Ok(ctx.decoder())
}

/// Reads what the container says about `input`.
pub fn probe(input: &Path, demuxers: &str) -> Result<Probe, AvError> {
    probe_context(&open_input(input, demuxers)?)
}

fn probe_context(ictx: &format::context::Input) -> Result<Probe, AvError> {
    let mut probe = Probe {
        container: ictx.format().name().to_owned(),
        ..Probe::default()
    };
    let duration = ictx.duration();
    if duration > 0 {
        probe.duration_ms = Some(duration as u64 / 1000);
    }
    let bit_rate = ictx.bit_rate();
    if bit_rate > 0 {
        probe.bit_rate = Some(bit_rate as u64);
    }
    if let Some(stream) = video_stream(ictx) {
        let video = decoder_for(&stream)?.video()?;
        let rotation = rotation_of(&stream);
        let (w, h) = display_size(video.width(), video.height(), video.aspect_ratio());
        let (w, h) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
        if w == 0 || h == 0 {
            return Err(AvError::Undecodable("the video has no picture size".into()));
        }
        probe.width = Some(w);
        probe.height = Some(h);
        probe.rotation = rotation;
        probe.video_codec = Some(stream.parameters().id().name().to_owned());
        if probe.duration_ms.is_none() && stream.duration() > 0 {
            probe.duration_ms = Some(to_ms(stream.duration(), stream.time_base()));
        }
    }
    if let Some(stream) = ictx.streams().best(media::Type::Audio) {
        probe.audio_codec = Some(stream.parameters().id().name().to_owned());
        if probe.duration_ms.is_none() && stream.duration() > 0 {
            probe.duration_ms = Some(to_ms(stream.duration(), stream.time_base()));
        }
    }
    if probe.video_codec.is_none() && probe.audio_codec.is_none() {
        return Err(AvError::Undecodable(
            "there is no video or audio track in it".into(),
        ));
    }
    Ok(probe)
}

fn to_ms(ts: i64, time_base: Rational) -> u64 {
    (ts as f64 * f64::from(time_base) * 1000.0).max(0.0) as u64
}

/// The size a frame is shown at, with non-square pixels stretched out.
fn display_size(width: u32, height: u32, sar: Rational) -> (u32, u32) {
    if sar.numerator() > 0 && sar.denominator() > 0 && sar.numerator() != sar.denominator() {
        let w = f64::from(width) * f64::from(sar.numerator()) / f64::from(sar.denominator());
        ((w.round() as u32).max(1), height)
    } else {
        (width, height)
    }
}

/// Refuses what is over the limits, before any decoding.
pub fn check_limits(probe: &Probe, limits: AvLimits) -> Result<(), AvError> {
    if let Some(ms) = probe.duration_ms
        && ms > limits.max_duration_ms
    {
        return Err(AvError::OverLimit(format!(
            "it lasts {} s, over the limit of {} s",
            ms / 1000,
            limits.max_duration_ms / 1000
        )));
    }
    if let (Some(w), Some(h)) = (probe.width, probe.height)
        && u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(AvError::OverLimit(format!(
            "its frames are {w}x{h} pixels, over the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Makes every derivative of a video or audio file in `out_dir`: for video
/// the poster, the thumbnail (from the poster) and the MP4; for audio the
/// compact transcode. Only the presets `wanted` names are made.
pub fn render(
    input: &Path,
    out_dir: &Path,
    presets: &AvPresets,
    limits: AvLimits,
    demuxers: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(Probe, Vec<Rendered>), AvError> {
    let probe = probe(input, demuxers)?;
    check_limits(&probe, limits)?;
    let mut out = Vec::new();
    if probe.has_video() {
        let stills: Vec<_> = [&presets.poster, &presets.thumb]
            .into_iter()
            .filter(|p| wanted(&p.name))
            .cloned()
            .collect();
        if !stills.is_empty() {
            let poster = poster_frame(input, demuxers, &probe)?;
            let size = image_render::ImageInfo {
                width: poster.width(),
                height: poster.height(),
            };
            out.extend(image_render::render_image(&poster, out_dir, &stills, size)?);
        }
        if wanted(&presets.video.name) {
            out.push(transcode_video(
                input,
                &out_dir.join(format!("{}.mp4", presets.video.name)),
                &presets.video,
                demuxers,
                &probe,
            )?);
        }
    } else if wanted(&presets.audio.name) {
        out.push(transcode_audio(
            input,
            &out_dir.join(format!("{}.ogg", presets.audio.name)),
            &presets.audio,
            demuxers,
        )?);
    }
    Ok((probe, out))
}

/// The frame about one second in (the first, for shorter videos), upright.
pub fn poster_frame(
    input: &Path,
    demuxers: &str,
    probe: &Probe,
) -> Result<image::DynamicImage, AvError> {
    let mut ictx = open_input(input, demuxers)?;
    let stream =
        video_stream(&ictx).ok_or_else(|| AvError::Undecodable("no video track".into()))?;
    let index = stream.index();
    let time_base = stream.time_base();
    let mut video = decoder_for(&stream)?.video()?;
    let wanted_s = if probe.duration_ms.unwrap_or(0) > 1000 {
        1.0
    } else {
        0.0
    };
    if wanted_s > 0.0 {
        let ts = 1_000_000; // AV_TIME_BASE units
        // A file that cannot seek still gives frames from the start.
        let _ = ictx.seek(ts, ..ts);
    }
    let wanted_pts = (wanted_s / f64::from(time_base)).floor() as i64;
    let mut frame = frame::Video::empty();
    let mut chosen = frame::Video::empty();
    let mut have = false;
    let mut packet = Packet::empty();
    let mut eof = false;
    'reading: while !eof {
        match packet.read(&mut ictx) {
            Ok(()) if packet.stream() == index => {
                // A damaged packet is skipped, as players do.
                let _ = video.send_packet(&packet);
            }
            Ok(()) => continue,
            Err(_) => {
                eof = true;
                let _ = video.send_eof();
            }
        }
        while video.receive_frame(&mut frame).is_ok() {
            std::mem::swap(&mut frame, &mut chosen);
            have = true;
            if chosen.timestamp().unwrap_or(i64::MAX) >= wanted_pts {
                break 'reading;
            }
        }
    }
    if !have {
        return Err(AvError::Undecodable("no frame of the video decodes".into()));
    }
    let (w, h) = display_size(chosen.width(), chosen.height(), chosen.aspect_ratio());
    let mut rgb = frame::Video::empty();
    ffmpeg::software::scaling::Context::get(
        chosen.format(),
        chosen.width(),
        chosen.height(),
        format::Pixel::RGB24,
        w,
        h,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )?
    .run(&chosen, &mut rgb)?;
    let stride = rgb.stride(0);
    let row = w as usize * 3;
    let data = rgb.data(0);
    let mut pixels = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        pixels.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    let image = image::RgbImage::from_raw(w, h, pixels)
        .ok_or_else(|| AvError::Undecodable("the poster frame has no pixels".into()))?;
    let image = image::DynamicImage::ImageRgb8(image);
    Ok(match probe.rotation {
        90 => image.rotate90(),
        180 => image.rotate180(),
        270 => image.rotate270(),
        _ => image,
    })
}

/// The size that fits `(w, h)` in a box of `long × short` (turned to match
/// the video's own orientation), never enlarging, both even as H.264 wants.
pub fn fit_even(w: u32, h: u32, long: u32, short: u32) -> (u32, u32) {
    let (max_w, max_h) = if w >= h { (long, short) } else { (short, long) };
    let (fw, fh) = image_render::fit(w, h, max_w, max_h);
    ((fw & !1).max(2), (fh & !1).max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_turns_with_the_video_and_sizes_stay_even() {
        assert_eq!(fit_even(1920, 1080, 1280, 720), (1280, 720));
        assert_eq!(fit_even(1080, 1920, 1280, 720), (720, 1280));
        assert_eq!(fit_even(640, 360, 1280, 720), (640, 360));
        assert_eq!(fit_even(1921, 1081, 1280, 720), (1278, 720));
        assert_eq!(fit_even(3, 3, 1280, 720), (2, 2));
    }

    #[test]
    fn limits_refuse_long_and_huge_media() {
        let limits = AvLimits {
            max_duration_ms: 60_000,
            max_pixels: 1920 * 1080,
        };
        let mut p = Probe {
            duration_ms: Some(10_000),
            width: Some(1920),
            height: Some(1080),
            video_codec: Some("h264".into()),
            ..Probe::default()
        };
        assert!(check_limits(&p, limits).is_ok());
        p.duration_ms = Some(61_000);
        assert!(matches!(
            check_limits(&p, limits),
            Err(AvError::OverLimit(_))
        ));
        p.duration_ms = Some(1_000);
        p.width = Some(4000);
        assert!(matches!(
            check_limits(&p, limits),
            Err(AvError::OverLimit(_))
        ));
    }

    #[test]
    fn garbage_is_undecodable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.mp4");
        std::fs::write(&junk, [0x42u8; 4096]).expect("write");
        assert!(matches!(probe(&junk, "mp3"), Err(AvError::Undecodable(_))));
        let empty = dir.path().join("empty.mp4");
        std::fs::write(&empty, b"").expect("write");
        assert!(matches!(probe(&empty, "mp3"), Err(AvError::Undecodable(_))));
    }

    /// One second of 8 kHz mono 16-bit silence as a WAV file.
    fn wav() -> Vec<u8> {
        let data = vec![0u8; 16_000];
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes()); // PCM
        w.extend_from_slice(&1u16.to_le_bytes()); // mono
        w.extend_from_slice(&8000u32.to_le_bytes());
        w.extend_from_slice(&16_000u32.to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(&data);
        w
    }

    /// A file that FFmpeg, left to choose, would open with a demuxer that
    /// reads another file (a concat list naming one) is refused when only
    /// the sniffed type's demuxers are allowed.
    #[test]
    fn only_the_allowed_demuxers_open_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("other.wav"), wav()).expect("wav");
        let list = dir.path().join("original");
        std::fs::write(&list, "ffconcat version 1.0\nfile 'other.wav'\n").expect("list");
        // Left to choose, FFmpeg follows the list to the other file.
        let followed = probe(&list, "concat,wav").expect("the concat demuxer reads the other file");
        assert_eq!(
            followed.audio_codec.as_deref(),
            Some("pcm_s16le"),
            "{followed:?}"
        );
        // Held to what the content was sniffed as, it is refused.
        for demuxers in [
            "mp3",
            "wav",
            "mov,mp4,m4a,3gp,3g2,mj2",
            "matroska,webm",
            "ogg",
        ] {
            assert!(
                matches!(probe(&list, demuxers), Err(AvError::Undecodable(_))),
                "{demuxers}"
            );
        }
        // The WAV itself opens with its own demuxer, not with another's.
        let other = dir.path().join("other.wav");
        assert!(probe(&other, "wav").is_ok());
        assert!(probe(&other, "mp3").is_err());
    }
}
