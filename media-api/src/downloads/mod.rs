//! Download URLs: access is checked by the API, bytes are served by the store
//! (or the CDN edge in front of it) through presigned URLs.
//!
//! URLs are signed per fixed time window: everything asked for within one
//! window gets a signature made at the window's start, valid until the end of
//! the next window. So the same media asked twice in a window gets the
//! byte-identical URL, and an edge that keys its cache on the full URL (as it
//! must, since the signature is what grants access) gets hits.
//!
//! `signed` serves the filesystem store's own signed URLs the way S3 serves
//! its presigned ones; `presign_cache` keeps each window's URLs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod presign_cache;
mod signed;

use std::sync::Arc;

pub use presign_cache::PresignCache;
pub use signed::{DownloadError, SignedObject, SignedQuery};

use crate::blob_store::signed_url::UrlSigner;
use crate::blob_store::{BlobKey, BlobStore, BlobStoreError, PresignRequest};
use crate::config::Settings;
use crate::metadata_store::MediaRecord;
use crate::metadata_store::jobs::VariantRecord;

/// Download URLs over the blob store.
#[derive(Clone)]
pub struct Downloads {
    blobs: Arc<dyn BlobStore>,
    url_signer: Option<UrlSigner>,
    window: Duration,
    cdn_base_url: Option<String>,
    presigned: Arc<PresignCache>,
}

/// A presigned URL and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadUrl {
    /// The URL.
    pub url: String,
    /// Unix seconds at which it expires.
    pub expires_at: u64,
    /// Seconds it still works from now: the longest a client may cache it.
    pub max_age: u64,
}

/// The window containing `now`: its start, and when URLs signed in it expire.
pub fn signing_window(now: SystemTime, window: Duration) -> (SystemTime, SystemTime) {
    let w = window.as_secs().max(1);
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let start = UNIX_EPOCH + Duration::from_secs(secs - secs % w);
    (start, start + Duration::from_secs(2 * w))
}

/// Whether a browser may show this type in place. Only media types that
/// cannot run script: never HTML, and never SVG, which is an image that can.
fn renders_inline(content_type: &str) -> bool {
    let t = content_type.to_ascii_lowercase();
    (t.starts_with("image/") && !t.starts_with("image/svg"))
        || t.starts_with("video/")
        || t.starts_with("audio/")
}

/// `Content-Disposition` per RFC 6266: `inline` only for images, video and
/// audio, `attachment` for everything else (so an uploaded HTML or SVG file
/// can never run as a page of ours), with the name as RFC 8187 `filename*`
/// and an ASCII fallback.
pub fn content_disposition(file_name: &str, content_type: &str) -> String {
    let kind = if renders_inline(content_type) {
        "inline"
    } else {
        "attachment"
    };
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(file_name.len() * 3);
    for b in file_name.bytes() {
        // RFC 8187 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Replaces a URL's scheme and authority with `base`'s, keeping path and query.
fn rebase(url: &str, base: &str) -> String {
    let path_start = url
        .find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(0);
    format!("{}{}", base.trim_end_matches('/'), &url[path_start..])
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads")
            .field("blobs", &self.blobs.kind())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Downloads {
    /// Downloads over this store, configured by the settings.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        url_signer: Option<UrlSigner>,
        settings: &Settings,
    ) -> Self {
        Self {
            blobs,
            url_signer,
            window: settings.download_url_window,
            cdn_base_url: settings.cdn_base_url.clone(),
            presigned: Arc::new(PresignCache::new(settings.download_url_cache)),
        }
    }

    /// A download URL for the object at `key`, served as `content_type`
    /// under `file_name`.
    async fn presign(
        &self,
        key: &BlobKey,
        blake3: &str,
        content_type: &str,
        file_name: &str,
    ) -> Result<DownloadUrl, BlobStoreError> {
        let now = SystemTime::now();
        let (start, expires) = signing_window(now, self.window);
        let disposition = content_disposition(file_name, content_type);
        let window = start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let what = format!("{key}\n{content_type}\n{disposition}");
        let url = match self.presigned.get(window, &what) {
            Some(url) => url,
            None => {
                let url = self
                    .blobs
                    .presign_get(
                        key,
                        &PresignRequest {
                            content_type,
                            content_disposition: &disposition,
                            blake3,
                            start,
                            expires_in: expires.duration_since(start).unwrap_or_default(),
                        },
                    )
                    .await?;
                self.presigned.put(window, what, url.clone());
                url
            }
        };
        let url = match &self.cdn_base_url {
            Some(base) => rebase(&url, base),
            None => url,
        };
        let expires_at = expires
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Ok(DownloadUrl {
            url,
            expires_at,
            max_age: expires.duration_since(now).unwrap_or_default().as_secs(),
        })
    }

    /// A download URL for a media item's original.
    pub async fn presign_media(&self, media: &MediaRecord) -> Result<DownloadUrl, BlobStoreError> {
        self.presign(
            &media.storage_key,
            &media.blake3.to_hex(),
            &media.content_type,
            media.file_name.as_str(),
        )
        .await
    }

    /// A download URL for one of a media item's variants, named after the
    /// original (`photo.jpg` → `photo-thumb.webp`).
    pub async fn presign_variant(
        &self,
        media: &MediaRecord,
        variant: &VariantRecord,
    ) -> Result<DownloadUrl, BlobStoreError> {
        let stem = media
            .file_name
            .as_str()
            .rsplit_once('.')
            .map_or(media.file_name.as_str(), |(stem, _)| stem);
        let extension = variant.content_type.rsplit('/').next().unwrap_or("bin");
        let name = format!("{stem}-{}.{extension}", variant.preset);
        // The variant's own identity: (content, preset, version).
        let etag = format!(
            "{}-{}-v{}",
            media.blake3.to_hex(),
            variant.preset,
            variant.version
        );
        self.presign(&variant.storage_key, &etag, &variant.content_type, &name)
            .await
    }
}

/// A single `Range: bytes=…` request. Anything else (several ranges, other
/// units, nonsense) is ignored, as RFC 9110 allows, and the whole object sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-` or `bytes=first-last`.
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a `Range` header.
pub fn parse_range(header: &str) -> Option<RangeSpec> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return last.parse().ok().filter(|n| *n > 0).map(RangeSpec::Suffix);
    }
    let first: u64 = first.parse().ok()?;
    if last.is_empty() {
        return Some(RangeSpec::From(first, None));
    }
    let last: u64 = last.parse().ok()?;
    (last >= first).then_some(RangeSpec::From(first, Some(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_one_url_lifetime() {
        let w = Duration::from_secs(3600);
        let t = UNIX_EPOCH + Duration::from_secs(10 * 3600 + 125);
        let (start, end) = signing_window(t, w);
        assert_eq!(start, UNIX_EPOCH + Duration::from_secs(10 * 3600));
        assert_eq!(end, UNIX_EPOCH + Duration::from_secs(12 * 3600));
        // Later in the same window: the same signing start.
        let (start2, _) = signing_window(t + Duration::from_secs(3000), w);
        assert_eq!(start, start2);
        // The next window signs anew.
        let (start3, _) = signing_window(t + Duration::from_secs(3600), w);
        assert_ne!(start, start3);
    }

    #[test]
    fn dispositions_never_let_html_or_svg_render() {
        assert!(content_disposition("a.jpg", "image/jpeg").starts_with("inline;"));
        assert!(content_disposition("v.mp4", "video/mp4").starts_with("inline;"));
        assert!(content_disposition("n.ogg", "audio/ogg").starts_with("inline;"));
        assert!(content_disposition("p.html", "text/html").starts_with("attachment;"));
        assert!(content_disposition("x.svg", "image/svg+xml").starts_with("attachment;"));
        assert!(
            content_disposition("d.bin", "application/octet-stream").starts_with("attachment;")
        );
        assert_eq!(
            content_disposition("Über \"uns\".pdf", "application/pdf"),
            "attachment; filename=\"_ber _uns_.pdf\"; filename*=UTF-8''%C3%9Cber%20%22uns%22.pdf"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=1000-1999"),
            Some(RangeSpec::From(1000, Some(1999)))
        );
        assert_eq!(parse_range("bytes=5-"), Some(RangeSpec::From(5, None)));
        assert_eq!(parse_range("bytes=-500"), Some(RangeSpec::Suffix(500)));
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=x-",
            "bytes=-0",
            "bytes=-",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn urls_rebase_onto_the_edge() {
        assert_eq!(
            rebase(
                "http://127.0.0.1:3900/media/o/x?X-Amz-Signature=ab",
                "http://edge:8080/"
            ),
            "http://edge:8080/media/o/x?X-Amz-Signature=ab"
        );
        assert_eq!(
            rebase("/blobs/o/x?sig=1", "https://cdn.example"),
            "https://cdn.example/blobs/o/x?sig=1"
        );
    }
}
