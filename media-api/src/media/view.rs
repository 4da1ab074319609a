//! A media item as the API shows it: its content, processing status, what
//! probing found, and its variants.

use serde::Serialize;

use crate::ids::{FileName, rfc3339};
use crate::metadata_store::jobs::VariantRecord;
use crate::metadata_store::{MediaRecord, MediaStatus};

/// A media item as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MediaView {
    /// Its id.
    pub media_id: String,
    /// The content's BLAKE3.
    pub blake3: String,
    /// Bytes.
    pub size: u64,
    /// Sniffed type.
    pub content_type: String,
    /// The name it was uploaded under.
    #[schema(value_type = String)]
    pub file_name: FileName,
    /// RFC 3339.
    pub created_at: String,
    /// Processing status: `processing`, `ready` or `failed`.
    pub status: MediaStatus,
    /// Why processing failed (the original stays downloadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Blocked by the service's operators: nothing of it downloads (451).
    /// Present only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// Pixels wide, when probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u64>,
    /// Pixels high, when probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Length, when probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The container FFmpeg found, for video and audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Video codec, such as `h264`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    /// Audio codec, such as `aac`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Overall bit rate, bits per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_rate: Option<u64>,
    /// The derivatives made so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantView>>,
    /// Shown as `processing` as new content would be
    /// ([`MediaRecord::shown_after`]): its variants are not shown either.
    #[serde(skip)]
    masked: bool,
}

/// A derivative as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VariantView {
    /// Preset name: `?variant=NAME` downloads it.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Pixels wide.
    pub width: Option<u32>,
    /// Pixels high.
    pub height: Option<u32>,
    /// Length, for video and audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl From<&MediaRecord> for MediaView {
    fn from(m: &MediaRecord) -> Self {
        let probed = |key: &str| {
            m.probe
                .as_ref()
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_u64())
        };
        let named = |key: &str| {
            m.probe
                .as_ref()
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Self {
            media_id: m.media_id.to_string(),
            blake3: m.blake3.to_hex(),
            size: m.size,
            content_type: m.content_type.clone(),
            file_name: m.file_name.clone(),
            created_at: rfc3339(m.created_at),
            status: m.status,
            failure_reason: (m.status == MediaStatus::Failed)
                .then(|| m.failure.clone())
                .flatten(),
            blocked: m.blocked,
            width: probed("width"),
            height: probed("height"),
            duration_ms: probed("duration_ms"),
            container: named("container"),
            video_codec: named("video_codec"),
            audio_codec: named("audio_codec"),
            bit_rate: probed("bit_rate"),
            variants: None,
            masked: m.shown_after.is_some(),
        }
    }
}

impl MediaView {
    /// The view with its variants listed.
    pub fn with_variants(mut self, variants: &[VariantRecord]) -> Self {
        let variants = if self.masked { &[] } else { variants };
        self.variants = Some(
            variants
                .iter()
                .map(|v| VariantView {
                    name: v.preset.clone(),
                    content_type: v.content_type.clone(),
                    size: v.size,
                    width: v.width,
                    height: v.height,
                    duration_ms: v.duration_ms,
                })
                .collect(),
        );
        self
    }
}
