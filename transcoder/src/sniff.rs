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
    // 3GPP (older Android phones' videos): an ISO file whose brand is
    // `3gp*` or `3g2*`, which the matcher library does not know.
    if head.len() >= 12
        && &head[4..8] == b"ftyp"
        && (&head[8..11] == b"3gp" || &head[8..11] == b"3g2")
    {
        return Sniffed {
            mime: "video/3gpp",
            kind: MediaKind::Video,
        };
    }
    // Matroska and WebM share the EBML magic; the header's DocType element
    // tells them apart wherever the muxer put it (the matcher library looks
    // at fixed offsets only, and takes FFmpeg's Matroska files for WebM).
    if let Some(doc_type) = ebml_doc_type(head) {
        return Sniffed {
            mime: if doc_type == b"webm" {
                "video/webm"
            } else {
                "video/x-matroska"
            },
            kind: MediaKind::Video,
        };
    }
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

/// Audio formats handed to FFmpeg (voice notes and music). (An audio-only
/// MP4 or WebM sniffs as its container, `video/mp4` or `video/webm`, and is
/// processed as audio once probed.)
pub const PROCESSED_AUDIO: &[&str] = &[
    "audio/mpeg",
    "audio/m4a",
    "audio/aac",
    "audio/ogg",
    "audio/opus",
    "audio/x-flac",
    "audio/x-wav",
    "audio/amr",
];

/// The FFmpeg demuxers a content of this sniffed type may be opened with,
/// as FFmpeg's `format_whitelist` names them; `None` for a type FFmpeg never
/// reads. Nothing else is allowed: a file sniffed as MP3 that FFmpeg would
/// probe as a playlist (HLS), a concat list or any other container that
/// reads other files or URLs is refused.
pub fn demuxers_for(mime: &str) -> Option<&'static str> {
    Some(match mime {
        "video/mp4" | "video/x-m4v" | "video/quicktime" | "video/3gpp" | "audio/m4a" => {
            "mov,mp4,m4a,3gp,3g2,mj2"
        }
        "video/webm" | "video/x-matroska" => "matroska,webm",
        "audio/mpeg" => "mp3",
        "audio/aac" => "aac",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/x-flac" => "flac",
        "audio/x-wav" => "wav",
        "audio/amr" => "amr",
        _ => return None,
    })
}

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

/// The DocType of an EBML file (`matroska` or `webm`), read from its header.
fn ebml_doc_type(head: &[u8]) -> Option<&[u8]> {
    if !head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return None;
    }
    let header = &head[..head.len().min(64)];
    // The DocType element: ID 0x4282, a one-byte size (0x80 | n), n bytes.
    let at = header.windows(2).position(|w| w == [0x42, 0x82])?;
    let size = usize::from(*header.get(at + 2)? & 0x7F);
    let doc_type = header.get(at + 3..at + 3 + size)?;
    (doc_type == b"matroska" || doc_type == b"webm").then_some(doc_type)
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

/// How many leading bytes [`image_dimensions`] reads: room for a JPEG's
/// metadata segments (a phone's EXIF with its own thumbnail) before the
/// frame header.
pub const DIMENSIONS_LEN: usize = 64 * 1024;

/// Pixels wide and high of a PNG, GIF, JPEG or WebP from its first bytes
/// (up to [`DIMENSIONS_LEN`]), as its header states them, before any
/// decoder runs: what a client needs to lay out an image's placeholder
/// while the image is processed. A JPEG's EXIF orientation is applied (a
/// phone's portrait photo stored sideways is taller than wide), as
/// processing applies it. `None` when the header is not there or not one of
/// those.
pub fn image_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let be16 = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let le16 = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let le24 = |at: usize| {
        head.get(at..at + 3)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    };
    let be32 = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let dims = if head.starts_with(b"\x89PNG\r\n\x1a\n") && head.get(12..16) == Some(b"IHDR") {
        (be32(16)?, be32(20)?)
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        (le16(6)?, le16(8)?)
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        match head.get(12..16)? {
            b"VP8 " if head.get(23..26) == Some(&[0x9d, 0x01, 0x2a]) => {
                (le16(26)? & 0x3fff, le16(28)? & 0x3fff)
            }
            b"VP8L" if head.get(20) == Some(&0x2f) => {
                let b = head.get(21..25)?;
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                ((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1)
            }
            b"VP8X" => (le24(24)? + 1, le24(27)? + 1),
            _ => return None,
        }
    } else if head.starts_with(&[0xff, 0xd8]) {
        // Walk the segments to the first frame header (SOF0–SOF15 but the
        // DHT, JPG and DAC markers that share the range), noting the EXIF
        // orientation on the way.
        let mut at = 2;
        let mut sideways = false;
        let (w, h) = loop {
            while head.get(at) == Some(&0xff) && head.get(at + 1) == Some(&0xff) {
                at += 1;
            }
            if head.get(at) != Some(&0xff) {
                return None;
            }
            let marker = *head.get(at + 1)?;
            if matches!(marker, 0xd0..=0xd9 | 0x01) {
                at += 2;
                continue;
            }
            let length = be16(at + 2)? as usize;
            if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                break (be16(at + 7)?, be16(at + 5)?);
            }
            if length < 2 {
                return None;
            }
            if marker == 0xe1 && head.get(at + 4..at + 10) == Some(b"Exif\0\0") {
                let end = (at + 2 + length).min(head.len());
                sideways = matches!(
                    crate::strip::orientation_in_tiff(&head[at + 10..end]),
                    Some(5..=8)
                );
            }
            at += 2 + length;
        };
        if sideways { (h, w) } else { (w, h) }
    } else {
        return None;
    };
    (dims.0 > 0 && dims.1 > 0).then_some(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matroska_webm_and_3gpp_by_their_headers() {
        // FFmpeg's Matroska header: the DocType past the matcher library's offsets.
        let mkv = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x88matroska\x42\x87";
        assert_eq!(sniff(mkv).mime, "video/x-matroska");
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87";
        assert_eq!(sniff(webm).mime, "video/webm");
        assert_eq!(sniff(b"\0\0\0\x14ftyp3gp5\0\0\0\0").mime, "video/3gpp");
        assert_eq!(sniff(b"\0\0\0\x14ftyp3g2a\0\0\0\0").mime, "video/3gpp");
        // An EBML file of another kind is not taken for video by its magic alone.
        let other = b"\x1a\x45\xdf\xa3\x8f\x42\x82\x84abcd";
        assert_ne!(sniff(other).mime, "video/x-matroska");
    }

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

    #[cfg(feature = "decoders")]
    #[test]
    fn image_dimensions_come_from_the_header() {
        use image::ImageFormat;
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let img =
                image::RgbImage::from_fn(37, 23, |x, y| image::Rgb([x as u8 * 6, y as u8 * 9, 90]));
            let mut bytes = std::io::Cursor::new(Vec::new());
            image::DynamicImage::ImageRgb8(img)
                .write_to(&mut bytes, format)
                .expect("encode");
            assert_eq!(
                image_dimensions(bytes.get_ref()),
                Some((37, 23)),
                "{format:?}"
            );
            // Cut before the header says it: nothing, not a guess.
            assert_eq!(image_dimensions(&bytes.get_ref()[..9]), None, "{format:?}");
        }
    }

    #[test]
    fn a_jpeg_frame_header_is_found_past_its_metadata() {
        // A JPEG whose frame header comes after a large metadata segment.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe1, 0x80, 0x00];
        jpeg.extend(std::iter::repeat_n(0u8, 0x8000 - 2));
        jpeg.extend([0xff, 0xc2, 0x00, 0x11, 0x08, 0x0f, 0xa0, 0x0b, 0xb8]);
        assert_eq!(image_dimensions(&jpeg), Some((3000, 4000)));
        // The same with an EXIF block saying "rotate 90°" (orientation 6),
        // big-endian and little-endian: taller than wide, as it is shown.
        for exif in [
            &b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0"[..],
            &b"Exif\0\0II\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0"[..],
        ] {
            let mut rotated = vec![0xff, 0xd8, 0xff, 0xe1, 0x00, (exif.len() + 2) as u8];
            rotated.extend(exif);
            rotated.extend(&jpeg[2..]);
            assert_eq!(image_dimensions(&rotated), Some((4000, 3000)));
        }
        assert_eq!(image_dimensions(b"not an image at all"), None);
    }
}
