//! The configuration's sections: the processing queue, the presets, the
//! limits, and the log format, each with its defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ByteSize;
use super::units::{GIB, KIB, MIB};

/// The processing queue and its workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Workers `media-api worker` runs (unset: one per core).
    pub workers: Option<usize>,
    /// Workers `media-api serve` runs in-process (unset: one per core, on
    /// any backends; 0 turns them off, for deployments that run dedicated
    /// `media-api worker` processes).
    pub serve_workers: Option<usize>,
    /// Workers of a node that may run batch work (operators' reprocessing)
    /// at once (unset: all but one, at least one), so live uploads always
    /// find a worker free.
    pub batch_workers: Option<usize>,
    /// Claims a job gets before it is dead.
    pub max_attempts: u32,
    /// How long a claim lasts without a heartbeat; a job whose worker died is
    /// claimed again after it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// First retry delay; doubled on each further failure.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Wall-clock limit of one job's child process.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// CPU-seconds limit of one job's child process.
    pub cpu_seconds: u64,
    /// Address-space limit of one job's child process.
    pub memory: ByteSize,
    /// How long an idle worker waits for a wake-up before looking again.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The `media-render` binary each job runs as a child process (unset:
    /// the one beside this binary).
    pub render_program: Option<PathBuf>,
    /// How the child is isolated: `auto` (in a bubblewrap sandbox when `bwrap`
    /// is installed, else with only its environment emptied, warned at
    /// start), `bwrap` (required: jobs fail without it), or `off`.
    pub sandbox: SandboxMode,
    /// Most files one job's child may have open.
    pub max_open_files: u64,
    /// Most processes and threads the child's user may run (`ulimit -u`;
    /// counts every task of the service's user, so keep it well above what
    /// the host runs under that user).
    pub max_processes: u64,
}

/// How a job's child process is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// bubblewrap when installed, else the environment emptied only.
    Auto,
    /// bubblewrap, required.
    Bwrap,
    /// The environment emptied only.
    Off,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            workers: None,
            serve_workers: None,
            batch_workers: None,
            max_attempts: 3,
            lease: Duration::from_secs(30),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(300),
            cpu_seconds: 300,
            memory: ByteSize(2 * GIB),
            poll_interval: Duration::from_secs(5),
            render_program: None,
            sandbox: SandboxMode::Auto,
            max_open_files: 256,
            max_processes: 4096,
        }
    }
}

/// Derivative presets. Bump a preset's `version` when its output changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    /// Image derivatives (WebP).
    pub image: Vec<transcoder::preset::ImagePreset>,
    /// Most pixels an image may declare.
    pub max_image_pixels: u64,
    /// Video and audio derivatives: `poster` and `thumb` (WebP), `video`
    /// (H.264 + AAC MP4) and `audio` (Opus).
    pub av: transcoder::preset::AvPresets,
    /// Most pixels a video frame may have.
    pub max_video_pixels: u64,
    /// Longest video or audio that is processed (longer ones stay
    /// downloadable, marked failed).
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
}

impl Default for Presets {
    fn default() -> Self {
        Self {
            image: transcoder::preset::ImagePreset::defaults(),
            max_image_pixels: 100_000_000,
            av: transcoder::preset::AvPresets::default(),
            // 8K UHD.
            max_video_pixels: 7680 * 4320,
            max_duration: Duration::from_secs(3 * 3600),
        }
    }
}

/// Every limit the service enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest file a chunked upload may declare.
    pub max_file_size: ByteSize,
    /// Largest body of a one-request upload (`POST /v1/media`).
    pub max_single_upload: ByteSize,
    /// Chunk size when the client asks for none (a power of two).
    pub default_chunk_size: ByteSize,
    /// Largest chunk size a client may ask for (a power of two).
    pub max_chunk_size: ByteSize,
    /// Largest JSON request body.
    pub max_json_body: ByteSize,
    /// Bytes of chunk data held in memory at once across all requests; past it,
    /// new chunk requests wait instead of the process growing.
    pub inflight_memory: ByteSize,
    /// One user's share of `inflight_memory`: their requests past it wait,
    /// so one user's parallel uploads cannot take the whole node's budget.
    pub inflight_memory_per_user: ByteSize,
    /// Slowest a request body may arrive, on average, after `body_grace`:
    /// a slower one is cut off (`408 body-too-slow`) and gives its memory back.
    pub min_body_rate: ByteSize,
    /// How long a body may take before `min_body_rate` applies.
    #[serde(with = "humantime_serde")]
    pub body_grace: Duration,
    /// How long an upload session may stay incomplete.
    #[serde(with = "humantime_serde")]
    pub upload_expiry: Duration,
    /// Most items one page of a listing may hold.
    pub max_page_size: u32,
    /// Most partial uploads one tus final upload may be made of.
    pub max_concat_uploads: usize,
    /// A completion not heard from for this long was cut off (its node
    /// died, its request timed out): another `complete` call or the janitor
    /// takes it over.
    #[serde(with = "humantime_serde")]
    pub abandoned_completion: Duration,
    /// Upload event streams and realtime sockets one user may hold open on
    /// one node, together.
    pub max_streams_per_user: usize,
    /// Largest image, by its sniffed type.
    pub max_image_size: ByteSize,
    /// Largest audio file (voice notes, music), by its sniffed type.
    pub max_audio_size: ByteSize,
    /// Largest video, by its sniffed type.
    pub max_video_size: ByteSize,
    /// Largest file of any other type (documents, archives).
    pub max_document_size: ByteSize,
}

impl Limits {
    /// The size limit of a content of this (sniffed or declared) type.
    pub fn max_size_of(&self, content_type: &str) -> u64 {
        use transcoder::sniff::{MediaKind, kind_of};
        match kind_of(content_type) {
            MediaKind::Image => self.max_image_size.0,
            MediaKind::Audio => self.max_audio_size.0,
            MediaKind::Video => self.max_video_size.0,
            MediaKind::Other => self.max_document_size.0,
        }
    }

    /// The largest size any type may have.
    pub fn max_size_of_any_type(&self) -> u64 {
        [
            self.max_image_size,
            self.max_audio_size,
            self.max_video_size,
            self.max_document_size,
        ]
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap_or(0)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize(10 * GIB),
            max_single_upload: ByteSize(16 * MIB),
            default_chunk_size: ByteSize(8 * MIB),
            max_chunk_size: ByteSize(64 * MIB),
            max_json_body: ByteSize(64 * KIB),
            inflight_memory: ByteSize(128 * MIB),
            inflight_memory_per_user: ByteSize(64 * MIB),
            min_body_rate: ByteSize(4 * KIB),
            body_grace: Duration::from_secs(15),
            upload_expiry: Duration::from_secs(24 * 3600),
            max_page_size: 200,
            max_concat_uploads: 64,
            abandoned_completion: Duration::from_secs(60),
            max_streams_per_user: 32,
            max_image_size: ByteSize(16 * MIB),
            max_audio_size: ByteSize(100 * MIB),
            max_video_size: ByteSize(2 * GIB),
            max_document_size: ByteSize(2 * GIB),
        }
    }
}

/// The messaging core's limits (`chat.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Most members in a group, its creator included.
    pub max_group_members: usize,
    /// Most bytes of text in one message.
    pub max_text_bytes: usize,
    /// Most attachments in one message.
    pub max_attachments: usize,
    /// Most characters in a group's title.
    pub max_title_chars: usize,
    /// Most bytes of one attachment's caption.
    pub max_caption_bytes: usize,
    /// How long a sender may edit a message.
    #[serde(with = "humantime_serde")]
    pub edit_window: Duration,
    /// How long a sender may delete a message for everyone.
    #[serde(with = "humantime_serde")]
    pub delete_window: Duration,
    /// Most conversations one forward posts into.
    pub max_forward_targets: usize,
    /// How long the sync log keeps events; an older cursor is expired.
    #[serde(with = "humantime_serde")]
    pub sync_retention: Duration,
    /// Most messages in one history page (a page is 50 unless asked).
    pub max_history_page: u32,
    /// Most events in one sync page (a page is 100 unless asked).
    pub max_sync_page: u32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        let core = chat_core::message::ChatLimits::default();
        Self {
            max_group_members: core.max_group_members,
            max_text_bytes: core.max_text_bytes,
            max_attachments: core.max_attachments,
            max_title_chars: core.max_title_chars,
            max_caption_bytes: 1024,
            edit_window: core.edit_window,
            delete_window: core.delete_window,
            max_forward_targets: core.max_forward_targets,
            sync_retention: Duration::from_secs(30 * 24 * 3600),
            max_history_page: 200,
            max_sync_page: 1000,
        }
    }
}

impl ChatSettings {
    /// The limits `chat-core` checks.
    pub fn limits(&self) -> chat_core::message::ChatLimits {
        chat_core::message::ChatLimits {
            max_group_members: self.max_group_members,
            max_text_bytes: self.max_text_bytes,
            max_attachments: self.max_attachments,
            max_title_chars: self.max_title_chars,
            edit_window: self.edit_window,
            delete_window: self.delete_window,
            max_forward_targets: self.max_forward_targets,
        }
    }
}

/// The realtime gateway's limits and clocks (`realtime.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeSettings {
    /// Largest client frame; a bigger one closes the socket (1009).
    pub max_frame_bytes: ByteSize,
    /// Most frames queued for one socket before it is closed as lagging (4008).
    pub max_queued_frames: usize,
    /// Most bytes queued for one socket before it is closed as lagging (4008).
    pub max_queued_bytes: ByteSize,
    /// Least time between two typing frames of one user in one conversation.
    #[serde(with = "humantime_serde")]
    pub typing_interval: Duration,
    /// Most users one socket follows the presence of.
    pub max_presence_users: usize,
    /// Most uploads one socket follows at once (the oldest open ones when
    /// it connects, then each new one while there is room).
    pub max_followed_uploads: usize,
    /// How often a node says which users it still has.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a user stays online after their node's last heartbeat.
    #[serde(with = "humantime_serde")]
    pub presence_expiry: Duration,
    /// Events per read of the sync log when a socket catches up.
    pub sync_batch: u32,
    /// How long one frame may take to be written to a socket (its client not
    /// reading, its network gone) before the socket is given up.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            max_frame_bytes: ByteSize(64 * 1024),
            max_queued_frames: 1000,
            max_queued_bytes: ByteSize(1024 * 1024),
            typing_interval: Duration::from_secs(3),
            max_presence_users: 256,
            max_followed_uploads: 64,
            heartbeat: Duration::from_secs(30),
            presence_expiry: Duration::from_secs(90),
            sync_batch: 100,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What one user may store and do (`quotas.*`), enforced across API nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Bytes of the media a user holds (each media item counts its content's
    /// size, however many users share it) plus their open sessions' sizes.
    pub stored_bytes: ByteSize,
    /// Upload sessions a user may have open at once.
    pub open_uploads: u64,
    /// Bytes of chunks and one-request bodies a user may send per hour.
    pub upload_bytes_per_hour: ByteSize,
    /// Uploads (sessions opened, one-request uploads, instant dedups) a user
    /// may start per hour.
    pub media_per_hour: u64,
    /// Messages a user may post per minute (a forward posts one per target).
    pub messages_per_minute: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            stored_bytes: ByteSize(20 * GIB),
            open_uploads: 20,
            upload_bytes_per_hour: ByteSize(20 * GIB),
            media_per_hour: 1000,
            messages_per_minute: 100,
        }
    }
}
