//! The render protocol: what a worker asks the `media-render` child to do
//! (a [`RenderSpec`] written as JSON to a file), what the child answers on
//! stdout (a [`RenderResult`]), and how it says the media itself was refused
//! (exit status [`EXIT_MEDIA_REFUSED`], the reason on the last stderr line).
//!
//! The types are plain data, available without the decoders, so the service
//! speaks the protocol without linking FFmpeg; [`run`], which does the work,
//! exists only with the `decoders` feature (the `media-render` binary).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::preset::{AvLimits, AvPresets, DecodeLimits, ImagePreset, Rendered};

/// What the parent asks the `render` child to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderSpec {
    /// The original, on local disk.
    pub input: PathBuf,
    /// Where derivatives go.
    pub out_dir: PathBuf,
    /// What to make.
    pub job: RenderJob,
}

/// The derivatives of one kind of media.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderJob {
    /// Still (or animated) images.
    Image {
        /// Image presets.
        presets: Vec<ImagePreset>,
        /// Decode limits.
        limits: DecodeLimits,
    },
    /// Video and audio, through FFmpeg.
    Av {
        /// Poster, thumbnail, video and audio presets.
        presets: AvPresets,
        /// Duration and frame-size limits.
        limits: AvLimits,
    },
}

/// What the `render` child answers on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderResult {
    /// What the original is: its upright size, and for video and audio the
    /// container, codecs, duration, rotation and bit rate.
    pub probe: serde_json::Value,
    /// Derivatives written.
    pub rendered: Vec<Rendered>,
}

/// The exit status of a `render` child refusing the media itself (it is
/// undecodable or over a limit): the job is not retried.
pub const EXIT_MEDIA_REFUSED: i32 = 3;

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The media: undecodable, or over a limit. Shown to its owner.
    #[error("{0}")]
    Media(String),
    /// Our side: the spec, the disk, an encoder missing.
    #[error("{0}")]
    Internal(String),
}

/// The child's whole job: reads the spec at `spec_path`, makes the
/// derivatives, and answers what it made.
#[cfg(feature = "decoders")]
pub fn run(spec_path: &std::path::Path) -> Result<RenderResult, RenderError> {
    use crate::av::{self, AvError};
    use crate::image_render::{self, ImageError};
    let internal =
        |what: &str, e: &dyn std::fmt::Display| RenderError::Internal(format!("{what}: {e}"));
    let bytes = std::fs::read(spec_path).map_err(|e| internal("reading the spec", &e))?;
    let spec: RenderSpec =
        serde_json::from_slice(&bytes).map_err(|e| internal("parsing the spec", &e))?;
    match &spec.job {
        RenderJob::Image { presets, limits } => {
            match image_render::render(&spec.input, &spec.out_dir, presets, *limits) {
                Ok((info, rendered)) => Ok(RenderResult {
                    probe: serde_json::json!({ "width": info.width, "height": info.height }),
                    rendered,
                }),
                Err(e @ ImageError::Io(..)) => Err(RenderError::Internal(e.to_string())),
                Err(e) => Err(RenderError::Media(e.to_string())),
            }
        }
        RenderJob::Av { presets, limits } => {
            match av::render(&spec.input, &spec.out_dir, presets, *limits) {
                Ok((probe, rendered)) => Ok(RenderResult {
                    probe: serde_json::to_value(probe)
                        .map_err(|e| internal("encoding the probe", &e))?,
                    rendered,
                }),
                Err(e @ (AvError::Output(_) | AvError::Image(ImageError::Io(..)))) => {
                    Err(RenderError::Internal(e.to_string()))
                }
                Err(e) => Err(RenderError::Media(e.to_string())),
            }
        }
    }
}
