//! The blob store seam: where content bytes live.
//!
//! Two implementations with one behaviour: [`s3::S3BlobStore`] (any S3 API,
//! Garage locally) and [`fs::FsBlobStore`] (the embedded default, a directory
//! under the data dir). Multipart uploads follow S3's model so the upload
//! flow is the same on both: parts are addressed by number, re-sending a part
//! replaces it, and completion names the exact parts (with their SHA-256) that
//! make the object, so a stale or clobbered part can never slip in.

pub mod fs;
pub mod s3;
pub mod signed_url;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::config::{S3Location, Settings};
pub use crate::ids::BlobKey;

/// An inclusive byte range, as in `Range: bytes=start-end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive; `None` means to the end.
    pub end: Option<u64>,
}

/// Object bytes being read.
pub struct BlobBody {
    /// Bytes in this body (the range's length when a range was asked for).
    pub len: u64,
    /// Size of the whole object.
    pub total: u64,
    /// The bytes.
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

impl fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobBody")
            .field("len", &self.len)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl BlobBody {
    /// Reads the whole body into memory (tests and small objects only).
    pub async fn collect(self) -> std::io::Result<Vec<u8>> {
        use futures_util::TryStreamExt;
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        let mut stream = self.stream;
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// A part's bytes as they arrived: the request body's frames, kept as they
/// are rather than gathered into one buffer, so nothing is copied between the
/// socket the client wrote to and the store.
#[derive(Debug, Clone, Default)]
pub struct PartBody {
    frames: Vec<Bytes>,
    len: u64,
    /// The SHA-256 this crate computed over exactly these bytes, when it did.
    hashed: Option<[u8; 32]>,
}

impl PartBody {
    /// Appends a frame.
    pub fn push(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.len += frame.len() as u64;
            self.frames.push(frame);
            self.hashed = None;
        }
    }

    /// Bytes in all.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Bytes] {
        &self.frames
    }

    /// Marks the bytes as hashed to `sha256` by the caller that read them
    /// (the chunk pipeline hashes every frame as it arrives).
    pub(crate) fn hashed_to(mut self, sha256: [u8; 32]) -> Self {
        self.hashed = Some(sha256);
        self
    }

    /// Whether this crate hashed exactly these bytes to `sha256`: an
    /// in-process store need not hash them again to verify the digest.
    pub(crate) fn known_to_hash_to(&self, sha256: &[u8; 32]) -> bool {
        self.hashed.as_ref() == Some(sha256)
    }

    /// The frames as an HTTP body of exact length (for an S3 request; a
    /// clone of it is cheap, so the SDK can rebuild it for a retry).
    pub fn into_http_body(self) -> FramesBody {
        FramesBody {
            remaining: self.len,
            frames: self.frames.into_iter(),
        }
    }
}

impl From<Bytes> for PartBody {
    fn from(bytes: Bytes) -> Self {
        let mut body = Self::default();
        body.push(bytes);
        body
    }
}

impl From<Vec<u8>> for PartBody {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

/// [`PartBody`] as an `http_body::Body` with an exact size hint.
#[derive(Debug)]
pub struct FramesBody {
    frames: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.frames.next();
        if let Some(frame) = &next {
            self.remaining -= frame.len() as u64;
        }
        std::task::Poll::Ready(next.map(|f| Ok(http_body::Frame::data(f))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// How a presigned GET URL must behave.
#[derive(Debug, Clone)]
pub struct PresignRequest<'a> {
    /// `Content-Type` the response carries.
    pub content_type: &'a str,
    /// `Content-Disposition` the response carries.
    pub content_disposition: &'a str,
    /// The content's BLAKE3 (hex): the filesystem store's `ETag`.
    pub blake3: &'a str,
    /// When the signature's validity starts. Signing the same request at the
    /// same start gives the same URL, which is what lets caches reuse it.
    pub start: std::time::SystemTime,
    /// How long from `start` the URL works.
    pub expires_in: std::time::Duration,
}

/// Identifies one multipart upload in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartId(pub String);

/// One part as the completion names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The tag the store returned for the part.
    pub etag: String,
    /// The part's SHA-256, which the store checks.
    pub sha256: [u8; 32],
}

/// A multipart upload the store still holds (not completed, not aborted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMultipart {
    /// The object key it will complete to.
    pub key: String,
    /// Its id.
    pub id: MultipartId,
    /// When it was started (Unix ms), when the store says.
    pub initiated_ms: Option<i64>,
}

/// An object as a listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// When it was last written (Unix ms).
    pub modified_ms: i64,
}

/// What can go wrong in the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobStoreError {
    /// The object does not exist.
    #[error("no such object")]
    NotFound,
    /// The multipart upload does not exist (completed, aborted or never made).
    #[error("no such multipart upload")]
    NoSuchUpload,
    /// A part is not the bytes its checksum names: refused when sent, or
    /// missing or replaced when named at completion.
    #[error("invalid part{}: {reason}", part.map(|n| format!(" {n}")).unwrap_or_default())]
    InvalidPart {
        /// The part, when the store says which.
        part: Option<u32>,
        /// What the store said.
        reason: String,
    },
    /// The range starts past the end of the object.
    #[error("range not satisfiable for an object of {size} bytes")]
    RangeNotSatisfiable {
        /// Size of the object.
        size: u64,
    },
    /// The key is not one of ours.
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    /// The store could not be reached.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("blob store error: {0}")]
    Other(String),
}

/// Where bytes live. Every operation is safe to retry.
/// The part size [`BlobStore::put_file`] sends a large file in.
const PUT_FILE_PART: u64 = 8 * 1024 * 1024;

/// Reads up to `size` bytes of `file` (fewer at its end).
async fn read_up_to(file: &mut tokio::fs::File, size: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size).read_to_end(&mut buffer).await?;
    Ok(buffer)
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// `s3` or `filesystem`, for readiness and logs.
    fn kind(&self) -> &'static str;

    /// Answers when the store is reachable and the bucket usable.
    async fn ping(&self) -> Result<(), BlobStoreError>;

    /// The smallest size a multipart part other than the last may have.
    fn min_part_size(&self) -> u64;

    /// Stores a whole object (small objects; large ones go multipart).
    async fn put(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobStoreError>;

    /// Stores the file at `path` as an object without reading it whole into
    /// memory: at most one part (8 MiB, or the store's minimum if larger) is
    /// held at a time, through a multipart upload when it is bigger.
    async fn put_file(&self, key: &BlobKey, path: &std::path::Path) -> Result<(), BlobStoreError> {
        let io = |e: std::io::Error| BlobStoreError::Other(format!("{}: {e}", path.display()));
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        let part = self.min_part_size().max(PUT_FILE_PART);
        if len <= part {
            let data = read_up_to(&mut file, len).await.map_err(io)?;
            return self.put(key, Bytes::from(data)).await;
        }
        let upload = self.create_multipart(key).await?;
        let written = async {
            let mut parts = Vec::new();
            let mut number = 1u32;
            loop {
                let data = read_up_to(&mut file, part).await.map_err(io)?;
                if data.is_empty() {
                    break;
                }
                let sha256: [u8; 32] = {
                    use sha2::Digest;
                    sha2::Sha256::digest(&data).into()
                };
                let etag = self
                    .upload_part(key, &upload, number, PartBody::from(data), sha256)
                    .await?;
                parts.push(CompletedPart {
                    number,
                    etag,
                    sha256,
                });
                number += 1;
            }
            self.complete_multipart(key, &upload, &parts).await
        }
        .await;
        if written.is_err() {
            let _ = self.abort_multipart(key, &upload).await;
        }
        written
    }

    /// Reads an object or a range of it.
    async fn get(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, BlobStoreError>;

    /// The object's size, or `None` when it does not exist.
    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobStoreError>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobStoreError>;

    /// Keys of every object whose key starts with `prefix`, in order.
    /// Holds them all: for tests and small stores; walk a large one with
    /// [`BlobStore::list_page`].
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobStoreError> {
        let mut keys: Vec<String> = Vec::new();
        loop {
            let page = self
                .list_page(prefix, keys.last().map(String::as_str), 1000)
                .await?;
            let full = page.len() == 1000;
            keys.extend(page.into_iter().map(|o| o.key));
            if !full {
                return Ok(keys);
            }
        }
    }

    /// At most `limit` keys starting with `prefix` and sorting after
    /// `after`, in byte order: one page of a listing that never holds the
    /// whole store.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedObject>, BlobStoreError>;

    /// Moves an object to another key (`NotFound` when there is none).
    async fn rename(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobStoreError>;

    /// Starts a multipart upload that will complete to `key`.
    async fn create_multipart(&self, key: &BlobKey) -> Result<MultipartId, BlobStoreError>;

    /// Stores part `number` (1-based); sending a part again replaces it.
    /// `sha256` is the part's digest, which the store verifies. Returns the etag.
    async fn upload_part(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
        number: u32,
        data: PartBody,
        sha256: [u8; 32],
    ) -> Result<String, BlobStoreError>;

    /// Parts the store holds for an upload: number and ETag, ascending.
    async fn list_parts(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
    ) -> Result<Vec<(u32, String)>, BlobStoreError>;

    /// Joins exactly `parts`, in order, into the object.
    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
        parts: &[CompletedPart],
    ) -> Result<(), BlobStoreError>;

    /// Drops a multipart upload and its parts; aborting a missing one succeeds.
    async fn abort_multipart(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
    ) -> Result<(), BlobStoreError>;

    /// Multipart uploads still open.
    async fn list_multipart(&self) -> Result<Vec<PendingMultipart>, BlobStoreError>;

    /// A URL anyone can GET the object with until it expires, answering with
    /// the given content type and disposition.
    async fn presign_get(
        &self,
        key: &BlobKey,
        request: &PresignRequest<'_>,
    ) -> Result<String, BlobStoreError>;
}

/// Builds the store the settings name, with the URL signer the service needs
/// to serve its own download URLs when the store is the filesystem.
pub async fn from_settings(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn BlobStore>, Option<signed_url::UrlSigner>)> {
    match &settings.blob_store {
        None => {
            let secret = crate::secrets::load_or_create_secret_file(
                settings.url_signing_secret.as_ref(),
                &settings.data_dir,
                "url-signing-secret",
            )?;
            let signer = signed_url::UrlSigner::new(&secret, settings.public_base_url.clone());
            let store =
                fs::FsBlobStore::open(settings.data_dir.join("blobs"), signer.clone()).await?;
            Ok((Arc::new(store), Some(signer)))
        }
        Some(location) => {
            let location = S3Location::parse(location).map_err(anyhow::Error::msg)?;
            let store = s3::S3BlobStore::from_env(location, settings.s3_force_path_style).await?;
            Ok((Arc::new(store), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let key = BlobKey::generate();
        assert_eq!(BlobKey::parse(key.as_str()).expect("valid"), key);
        assert_ne!(BlobKey::generate(), key);
    }

    #[test]
    fn keys_that_escape_are_refused() {
        for bad in ["", "/etc/passwd", "o/../x", "o//x", "o/./x", "o/x y", "o/ü"] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
