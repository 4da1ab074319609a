//! Content sniffing: the real type of a file from its first bytes, never from
//! what the client claimed.

/// How many leading bytes [`sniff`] wants to see.
pub const SNIFF_LEN: usize = 8192;

/// The broad class of a content, which decides how it is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A still or animated image.
    Image,
    /// A video.
    Video,
    /// Audio, such as a voice note.
    Audio,
    /// Anything else: stored and served, never processed.
    Other,
}

/// What the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    /// The MIME type.
    pub mime: &'static str,
    /// The broad class.
    pub kind: MediaKind,
}

/// Sniffs the type from the first bytes of a content (up to [`SNIFF_LEN`]).
pub fn sniff(head: &[u8]) -> Sniffed {
    let Some(t) = infer::get(head) else {
        return Sniffed {
            mime: if looks_like_text(head) {
                "text/plain"
            } else {
                "application/octet-stream"
            },
            kind: MediaKind::Other,
        };
    };
    let kind = match t.matcher_type() {
        infer::MatcherType::Image => MediaKind::Image,
        infer::MatcherType::Video => MediaKind::Video,
        infer::MatcherType::Audio => MediaKind::Audio,
        _ => MediaKind::Other,
    };
    Sniffed {
        mime: t.mime_type(),
        kind,
    }
}

/// Types the worker pool makes derivatives of: an allowlist, so a format we
/// never meant to feed a decoder never reaches one.
pub const PROCESSED_IMAGES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Video containers handed to FFmpeg.
pub const PROCESSED_VIDEOS: &[&str] = &[
    "video/mp4",
    "video/x-m4v",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/3gpp",
];

/// Audio formats handed to FFmpeg (voice notes and music).
pub const PROCESSED_AUDIO: &[&str] = &[
    "audio/mpeg",
    "audio/m4a",
    "audio/mp4",
    "audio/aac",
    "audio/ogg",
    "audio/opus",
    "audio/x-flac",
    "audio/x-wav",
    "audio/amr",
    "audio/webm",
];

/// Whether content of this (sniffed) type gets processed.
pub fn is_processed(mime: &str) -> bool {
    PROCESSED_IMAGES.contains(&mime)
        || PROCESSED_VIDEOS.contains(&mime)
        || PROCESSED_AUDIO.contains(&mime)
}

/// File name endings that say "this is an image, a video or audio".
const MEDIA_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "heic", "heif", "avif", "bmp", "tif", "tiff", "mp4",
    "m4v", "mov", "webm", "mkv", "avi", "3gp", "mp3", "m4a", "aac", "ogg", "oga", "opus", "wav",
    "flac", "amr",
];

/// Whether the client presented the file as media, by its declared type or
/// its name. A file presented as media whose bytes are not is a failure to
/// report, not a document to store silently.
pub fn claims_media(declared_type: Option<&str>, file_name: &str) -> bool {
    let by_type = declared_type.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.starts_with("image/") || t.starts_with("video/") || t.starts_with("audio/")
    });
    let by_name = file_name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| MEDIA_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()));
    by_type || by_name
}

/// The broad class of a sniffed MIME type.
pub fn kind_of(mime: &str) -> MediaKind {
    match mime.split('/').next() {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Other,
    }
}

/// UTF-8 without NULs or other control bytes than whitespace.
fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    // The head may end inside a multi-byte character: ignore up to 3 trailing bytes.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    valid
        && !head
            .iter()
            .any(|&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(
            sniff(png),
            Sniffed {
                mime: "image/png",
                kind: MediaKind::Image
            }
        );
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
        assert_eq!(sniff(jpeg).mime, "image/jpeg");
        assert_eq!(sniff(b"hello, world\n").mime, "text/plain");
        assert_eq!(sniff(&[0u8, 1, 2, 3, 255]).mime, "application/octet-stream");
        assert_eq!(sniff(b"").mime, "application/octet-stream");
    }

    #[test]
    fn claims_by_type_or_name() {
        assert!(claims_media(Some("video/mp4"), "x"));
        assert!(claims_media(None, "clip.MP4"));
        assert!(!claims_media(Some("application/pdf"), "report.pdf"));
        assert!(!claims_media(None, "noextension"));
        assert_eq!(kind_of("image/png"), MediaKind::Image);
        assert_eq!(kind_of("text/plain"), MediaKind::Other);
    }

    #[test]
    fn a_truncated_utf8_tail_is_still_text() {
        let mut head = "naïve café ".repeat(10).into_bytes();
        head.push(0xc3); // first byte of a two-byte character, cut off
        assert_eq!(sniff(&head).mime, "text/plain");
    }
}
