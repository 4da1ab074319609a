//! What processing is asked to make, and what it made: the presets, the
//! decode limits and the description of a derivative. Plain data, shared by
//! the service (which reads presets from its configuration and stores the
//! results) and the render child (which does the work); no decoder here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bounds on what a decoder may be asked to do, against decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Most pixels (width × height) an image may declare.
    pub max_pixels: u64,
    /// Most bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_alloc: 1 << 30,
        }
    }
}

/// One image derivative to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePreset {
    /// Its name, such as `thumb`.
    pub name: String,
    /// Bumped when the output would change, so old variants are not reused.
    pub version: u32,
    /// The box the image is fitted inside.
    pub max_width: u32,
    /// The box the image is fitted inside.
    pub max_height: u32,
    /// WebP quality, 0 to 100.
    pub quality: f32,
}

impl ImagePreset {
    /// A WebP fitted inside an `edge`-pixel square, version 1.
    pub fn webp(name: &str, edge: u32, quality: f32) -> Self {
        Self {
            name: name.into(),
            version: 1,
            max_width: edge,
            max_height: edge,
            quality,
        }
    }

    /// The default image presets: `thumb` (320, q75) and `preview` (1600, q82).
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::webp("thumb", 320, 75.0),
            Self::webp("preview", 1600, 82.0),
        ]
    }
}

/// A derivative written to disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    /// Preset name.
    pub preset: String,
    /// Preset version.
    pub version: u32,
    /// Where it was written.
    pub path: PathBuf,
    /// Its MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Pixels wide.
    pub width: u32,
    /// Pixels high.
    pub height: u32,
    /// Length, for video and audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The H.264 + AAC MP4 transcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoPreset {
    /// Its name, such as `h264_720p`.
    pub name: String,
    /// Bumped when the output would change.
    pub version: u32,
    /// Most pixels along the longer side (1280 for 720p).
    pub max_long_edge: u32,
    /// Most pixels along the shorter side (720 for 720p).
    pub max_short_edge: u32,
    /// x264 constant rate factor: lower is better and bigger.
    pub crf: u8,
    /// x264 speed preset, such as `veryfast`.
    pub x264_preset: String,
    /// AAC bit rate, bits per second.
    pub audio_bit_rate: u32,
}

/// The compact audio transcode (Opus in Ogg).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioPreset {
    /// Its name, such as `opus`.
    pub name: String,
    /// Bumped when the output would change.
    pub version: u32,
    /// Opus bit rate, bits per second.
    pub bit_rate: u32,
    /// 1 (mono, right for voice) or 2.
    pub channels: u16,
}

impl Default for VideoPreset {
    /// `h264_720p`: 1280×720, CRF 23, `veryfast`, AAC 128 kb/s.
    fn default() -> Self {
        Self {
            name: "h264_720p".into(),
            version: 1,
            max_long_edge: 1280,
            max_short_edge: 720,
            crf: 23,
            x264_preset: "veryfast".into(),
            audio_bit_rate: 128_000,
        }
    }
}

impl Default for AudioPreset {
    /// `opus`: 32 kb/s mono.
    fn default() -> Self {
        Self {
            name: "opus".into(),
            version: 1,
            bit_rate: 32_000,
            channels: 1,
        }
    }
}

/// Everything made from one video or audio file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvPresets {
    /// The still frame, as an image preset (WebP).
    pub poster: ImagePreset,
    /// Made from the poster.
    pub thumb: ImagePreset,
    /// The playable video.
    pub video: VideoPreset,
    /// Audio-only files.
    pub audio: AudioPreset,
}

impl Default for AvPresets {
    /// A 1280 px WebP poster, a 320 px thumbnail, `h264_720p` and `opus`.
    fn default() -> Self {
        Self {
            poster: ImagePreset::webp("poster", 1280, 80.0),
            thumb: ImagePreset::webp("thumb", 320, 75.0),
            video: VideoPreset::default(),
            audio: AudioPreset::default(),
        }
    }
}

/// Bounds on what a file may ask of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvLimits {
    /// Longest video or audio processed, in milliseconds.
    pub max_duration_ms: u64,
    /// Most pixels (width × height) a video frame may have.
    pub max_pixels: u64,
}
