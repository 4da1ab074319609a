//! Newtypes for identifiers and untrusted values. Each has a `parse` that is
//! the only way in, so past the HTTP layer an invalid value cannot exist.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new id; v7 UUIDs sort by creation time.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The id as a number.
            pub fn as_u128(&self) -> u128 {
                self.0.as_u128()
            }

            /// Parses the hyphenated form; anything else is `None`.
            pub fn parse(value: &str) -> Option<Self> {
                (value.len() == 36)
                    .then(|| uuid::Uuid::try_parse(value).ok())
                    .flatten()
                    .map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An upload session.
    UploadId
);
uuid_id!(
    /// A media item: one user's reference to a content.
    MediaId
);
uuid_id!(
    /// A conversation.
    ConversationId
);
uuid_id!(
    /// A message, unique across conversations.
    MessageId
);
uuid_id!(
    /// The id a client gives a message it sends, so that a retry finds it.
    ClientMessageId
);

/// A BLAKE3-256 digest, shown as 64 lowercase hex digits (what `b3sum` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Blake3(pub [u8; 32]);

impl Blake3 {
    /// Parses 64 hex digits (either case).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        if value.len() != 64 || hex::decode_to_slice(value, &mut out).is_err() {
            return Err("a BLAKE3 digest is 64 hexadecimal digits".into());
        }
        Ok(Self(out))
    }

    /// The lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<blake3::Hash> for Blake3 {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for Blake3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A file name as the user gave it, checked: 1 to 255 bytes of UTF-8, no path
/// separators, no control characters, not `.` or `..`. Names that break these
/// rules are rejected rather than silently rewritten, so what the user sees is
/// what they sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FileName(String);

impl FileName {
    /// Checks a name.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("file_name is empty".into());
        }
        if value.len() > 255 {
            return Err(format!("file_name is {} bytes; at most 255", value.len()));
        }
        if value.contains(['/', '\\']) {
            return Err("file_name must not contain path separators (/ or \\)".into());
        }
        if value.chars().any(char::is_control) {
            return Err("file_name must not contain control characters".into());
        }
        if let Some(c) = value.chars().find(|&c| is_hidden_format(c)) {
            return Err(format!(
                "file_name must not contain invisible format characters (U+{:04X}): a \
                 right-to-left override (U+202E) can make a name ending in `gpj.exe` \
                 show as one ending in `exe.jpg`",
                u32::from(c)
            ));
        }
        if value == "." || value == ".." || value.trim().is_empty() {
            return Err("file_name must name a file".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode's format characters (general category Cf) that change how text
/// around them is shown without being seen: bidirectional overrides and
/// isolates, zero-width spaces, the byte-order mark, tags. The zero-width
/// joiner and non-joiner (U+200C, U+200D) are allowed: emoji sequences and
/// several scripts need them.
pub fn is_hidden_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B
            | 0x200E..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A user id: the token's `sub`. Opaque to us, but bounded and printable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Accepts 1 to 128 bytes with no control characters.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > 128 {
            return Err("a user id is 1 to 128 bytes".into());
        }
        if value.chars().any(char::is_control) {
            return Err("a user id has no control characters".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> String {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A page's size as a listing takes it: `asked`, or `default` (never over
/// `max`) when not asked; `None` when asked for 0 or more than `max`.
pub fn page_size(asked: Option<u32>, default: u32, max: u32) -> Option<u32> {
    let size = asked.unwrap_or(default.min(max));
    (1..=max).contains(&size).then_some(size)
}

/// A listing's cursor, opaque to clients: the sort time and id of the last
/// item given, in URL-safe base64.
pub fn encode_page_cursor(at: i64, id: impl fmt::Display) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}.{id}"))
}

/// Reads a cursor [`encode_page_cursor`] made, with the id's own parser;
/// `None` for anything else.
pub fn decode_page_cursor<T>(
    cursor: &str,
    parse_id: impl FnOnce(&str) -> Option<T>,
) -> Option<(i64, T)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let (at, id) = std::str::from_utf8(&raw).ok()?.split_once('.')?;
    Some((at.parse().ok()?, parse_id(id)?))
}

/// A chunk's number as the path gives it: a whole number. Whether it names
/// a chunk of the session (1 to its last) is the session's to say, by
/// [`ChunkNumber::within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkNumber(u64);

impl ChunkNumber {
    /// Accepts the decimal digits of a number that fits 64 bits; the error
    /// names what was sent (its first 32 characters).
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .parse()
            .map(Self)
            .map_err(|_| value.chars().take(32).collect())
    }

    /// The number as sent.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The 1-based chunk of a session of `total` chunks, if it is one.
    pub fn within(self, total: u32) -> Option<u32> {
        u32::try_from(self.0)
            .ok()
            .filter(|n| (1..=total).contains(n))
    }
}

/// The key of an object in the store. Always generated by us, never derived
/// from user input, so it is safe as a file path and an S3 key alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// A fresh, unique key for a new object.
    pub fn generate() -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        // Two hex characters of fan-out keep directories small on the filesystem store.
        Self(format!("o/{}/{}", &id[30..32], id))
    }

    /// Re-reads a key we generated earlier (from the metadata store).
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 512
            && !value.starts_with('/')
            && value
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!("{value:?} is not an object key this service made"))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Milliseconds since the Unix epoch: the one time type of the metadata store.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// How long from now until `unix_seconds` (zero once it has passed): the
/// life left to a token that expires then.
pub fn millis_until(unix_seconds: u64) -> std::time::Duration {
    let at = i64::try_from(unix_seconds)
        .unwrap_or(i64::MAX / 2000)
        .saturating_mul(1000);
    std::time::Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
}

/// RFC 3339 in UTC with milliseconds, always the same length
/// (`2026-11-23T08:00:00.000Z`), for a Unix-milliseconds time.
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(FORMAT)
        .unwrap_or_default()
}

/// A duration in milliseconds, to add to a Unix-ms time (a duration too long
/// for that saturates at half of `i64`, so adding it to now cannot overflow).
pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Reads an RFC 3339 time as Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_the_default_or_what_was_asked_within_the_limit() {
        assert_eq!(page_size(None, 50, 200), Some(50));
        assert_eq!(
            page_size(None, 50, 20),
            Some(20),
            "a default never over the limit"
        );
        assert_eq!(page_size(Some(200), 50, 200), Some(200));
        assert_eq!(page_size(Some(201), 50, 200), None);
        assert_eq!(page_size(Some(0), 50, 200), None);
    }

    #[test]
    fn chunk_numbers_at_their_edges() {
        let within = |v: &str| ChunkNumber::parse(v).map(|n| n.within(3));
        assert_eq!(within("1"), Ok(Some(1)));
        assert_eq!(within("3"), Ok(Some(3)));
        assert_eq!(within("0"), Ok(None));
        assert_eq!(within("4"), Ok(None));
        assert_eq!(within("4294967297"), Ok(None));
        assert_eq!(within("x"), Err("x".to_owned()));
        assert_eq!(within("-1"), Err("-1".to_owned()));
        assert!(within("99999999999999999999999").is_err());
        assert_eq!(
            ChunkNumber::parse(&"9".repeat(40)).unwrap_err().len(),
            32,
            "the error quotes at most 32 characters"
        );
    }

    #[test]
    fn user_ids_are_bounded() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse("user-42@example").is_ok());
    }

    #[test]
    fn uuid_ids_parse_only_their_canonical_form() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(&id.to_string()), Some(id));
        assert_eq!(UploadId::parse("nope"), None);
        assert_eq!(UploadId::parse(&id.to_string().replace('-', "")), None);
        assert_eq!(UploadId::parse(""), None);
    }

    #[test]
    fn blake3_digests_are_64_hex_digits() {
        let h = blake3::hash(b"abc");
        assert_eq!(Blake3::parse(&h.to_hex()).map(|b| b.0), Ok(*h.as_bytes()));
        assert_eq!(
            Blake3::parse(&h.to_hex().to_uppercase()).map(|b| b.0),
            Ok(*h.as_bytes())
        );
        assert!(Blake3::parse("abc").is_err());
        assert!(Blake3::parse(&"g".repeat(64)).is_err());
    }

    #[test]
    fn file_names_at_their_edges() {
        assert!(FileName::parse("photo.jpg").is_ok());
        assert!(FileName::parse("Über café 🎉.mp4").is_ok());
        assert!(FileName::parse(&"a".repeat(255)).is_ok());
        assert!(FileName::parse(&"a".repeat(256)).is_err());
        // 4-byte characters: 64 of them are 256 bytes.
        assert!(FileName::parse(&"🎉".repeat(64)).is_err());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", "a\0b", "  "] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
