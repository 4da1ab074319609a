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
    fn a_truncated_utf8_tail_is_still_text() {
        let mut head = "naïve café ".repeat(10).into_bytes();
        head.push(0xc3); // first byte of a two-byte character, cut off
        assert_eq!(sniff(&head).mime, "text/plain");
    }
}
