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
        /// The original's type, to make its metadata-free rendition
        /// ([`STRIPPED`]) too.
        #[serde(default)]
        strip: Option<String>,
    },
    /// Video and audio, through FFmpeg.
    Av {
        /// Poster, thumbnail, video and audio presets.
        presets: AvPresets,
        /// Duration and frame-size limits.
        limits: AvLimits,
        /// The sniffed type: FFmpeg may open the file only with its
        /// demuxers ([`crate::sniff::demuxers_for`]).
        content_type: String,
        /// Only these presets (by name); all of them when `None`. A batch
        /// remaking a video's thumbnail does not transcode the video again.
        #[serde(default)]
        only: Option<Vec<String>>,
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

/// The variant that is the original without its metadata (`crate::strip`):
/// what anyone but its uploader is served as an image attachment's original.
pub const STRIPPED: &str = "stripped";

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
        RenderJob::Image {
            presets,
            limits,
            strip,
        } => match image_render::render(&spec.input, &spec.out_dir, presets, *limits) {
            Ok((info, mut rendered)) => {
                if let Some(content_type) = strip {
                    rendered.extend(stripped(&spec, content_type, info)?);
                }
                Ok(RenderResult {
                    probe: serde_json::json!({ "width": info.width, "height": info.height }),
                    rendered,
                })
            }
            Err(e @ ImageError::Io(..)) => Err(RenderError::Internal(e.to_string())),
            Err(e) => Err(RenderError::Media(e.to_string())),
        },
        RenderJob::Av {
            presets,
            limits,
            content_type,
            only,
        } => {
            let Some(demuxers) = crate::sniff::demuxers_for(content_type) else {
                return Err(RenderError::Media(format!(
                    "{content_type} is not a type FFmpeg may open"
                )));
            };
            let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
            match av::render(
                &spec.input,
                &spec.out_dir,
                presets,
                *limits,
                demuxers,
                &wanted,
            ) {
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

/// The original without its metadata, beside the derivatives. An image that
/// decodes but cannot be taken apart gets none (its other derivatives stand):
/// its original is then served to its uploader only.
#[cfg(feature = "decoders")]
fn stripped(
    spec: &RenderSpec,
    content_type: &str,
    info: crate::image_render::ImageInfo,
) -> Result<Option<Rendered>, RenderError> {
    let bytes = std::fs::read(&spec.input)
        .map_err(|e| RenderError::Internal(format!("reading the original: {e}")))?;
    let clean = match crate::strip::strip(&bytes, content_type) {
        Ok(clean) => clean,
        Err(e) => {
            eprintln!("media-render: no metadata-free original: {e}");
            return Ok(None);
        }
    };
    let path = spec.out_dir.join(STRIPPED);
    std::fs::write(&path, &clean)
        .map_err(|e| RenderError::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(Some(Rendered {
        preset: STRIPPED.into(),
        version: 1,
        path,
        content_type: content_type.into(),
        size: clean.len() as u64,
        width: info.width,
        height: info.height,
        duration_ms: None,
    }))
}
