//! One-request uploads of small files (`POST /v1/media`): the body in memory
//! within the budget, hashed, stored and referenced in one go.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::{Completion, INLINE_HASH_MAX, UploadError, UploadService};
use crate::blob_store::BlobKey;
use crate::ids::{Blake3, FileName, MediaId, UserId};
use crate::metadata_store::NewContent;
use crate::processing;
use crate::quotas::Rate;

impl UploadService {
    /// A one-request upload of a small file.
    pub async fn upload_small<S, E>(
        &self,
        owner: &UserId,
        file_name: &str,
        declared_type: Option<&str>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<Completion, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let file_name = FileName::parse(file_name).map_err(UploadError::InvalidFileName)?;
        let limit = self.limits.max_single_upload.0;
        if content_length.is_some_and(|len| len > limit) {
            return Err(UploadError::BodyTooLarge { limit });
        }
        self.charge(owner, Rate::Media, 1).await?;
        if let Some(len) = content_length {
            self.admit_bytes(owner, len).await?;
        }
        // A declared length reserves what it needs; a chunked body, the limit.
        let expected = content_length.unwrap_or(limit);
        let _permit = self
            .memory
            .reserve(owner, expected.min(self.limits.inflight_memory.0))
            .await?;
        let mut body = self.paced(body);
        let mut buffer = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(frame) = body.next().await {
            let frame = frame?;
            if (buffer.len() + frame.len()) as u64 > limit {
                return Err(UploadError::BodyTooLarge { limit });
            }
            buffer.extend_from_slice(&frame);
        }
        let data = buffer.freeze();
        if content_length.is_none() {
            self.admit_bytes(owner, data.len() as u64).await?;
        }
        // Hashing a small body takes less time than handing it to another
        // thread and back (a 100 KB body hashes in about 30 µs); large ones
        // go to the blocking pool so the runtime's workers stay responsive.
        let root = if data.len() <= INLINE_HASH_MAX {
            Blake3::from(blake3::hash(&data))
        } else {
            let hashed = data.clone();
            tokio::task::spawn_blocking(move || Blake3::from(blake3::hash(&hashed)))
                .await
                .map_err(|e| UploadError::Backend(e.to_string()))?
        };
        let key = BlobKey::generate();
        let content_type =
            transcoder::sniff::sniff(&data[..data.len().min(transcoder::sniff::SNIFF_LEN)]).mime;
        self.check_type_size(content_type, data.len() as u64)?;
        let dimensions = processing::header_dimensions(
            content_type,
            &data[..data.len().min(transcoder::sniff::DIMENSIONS_LEN)],
        );
        self.check_pixels(dimensions)?;
        let claimed_media = transcoder::sniff::claims_media(declared_type, file_name.as_str());
        let content = NewContent {
            blake3: root,
            size: data.len() as u64,
            content_type: content_type.to_owned(),
            storage_key: key.clone(),
            origin: None,
            processing: processing::plan(content_type, claimed_media),
            probe: dimensions.map(processing::header_probe),
        };
        self.backends.blobs.put(&key, data).await?;
        let created = match self
            .backends
            .media
            .create_media(owner, &file_name, &content, MediaId::generate())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = self.backends.blobs.delete(&key).await;
                return Err(e.into());
            }
        };
        self.after_create(&content, &created).await;
        metrics::counter!("uploads_completed_total", "kind" => "single").increment(1);
        Ok(Completion::of(&created.media, created.owned_before))
    }
}
