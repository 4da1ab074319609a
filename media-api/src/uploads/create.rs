//! Opening a session: the chunk size, the checks on the declared file, the
//! multipart upload, and instant dedup for content the caller already owns.

use super::{Completion, CreateUpload, MAX_PARTS, Opened, UploadError, UploadService};
use crate::blob_store::BlobKey;
use crate::ids::{Blake3, FileName, MediaId, UploadId, UserId, now_ms};
use crate::metadata_store::{UploadRecord, UploadState};
use crate::progress_bus::{Event, EventKind, upload_topic, user_topic};
use crate::quotas::Rate;

impl UploadService {
    /// The chunk size for a file: the requested one when it fits the rules,
    /// else the default grown until the file fits in 10,000 parts.
    pub fn choose_chunk_size(&self, size: u64, requested: Option<u64>) -> Result<u64, UploadError> {
        // A power of two never below the store's minimum part size (5 MiB on S3 → 8 MiB).
        let min = self
            .backends
            .blobs
            .min_part_size()
            .next_power_of_two()
            .max(64 * 1024);
        let max = self.limits.max_chunk_size.0;
        if let Some(r) = requested {
            if !r.is_power_of_two() || r < min || r > max {
                return Err(UploadError::InvalidChunkSize(format!(
                    "chunk_size must be a power of two from {min} to {max}"
                )));
            }
            if size.div_ceil(r) > MAX_PARTS {
                return Err(UploadError::InvalidChunkSize(format!(
                    "chunk_size {r} cuts {size} bytes into more than {MAX_PARTS} chunks"
                )));
            }
            return Ok(r);
        }
        let mut chunk = self.limits.default_chunk_size.0.max(min);
        while size.div_ceil(chunk) > MAX_PARTS {
            chunk *= 2;
        }
        if chunk > max {
            return Err(UploadError::FileTooLarge {
                size,
                limit: max * MAX_PARTS,
            });
        }
        Ok(chunk)
    }

    /// What a new upload of `size` bytes declares: its name, its BLAKE3
    /// and its type, which must look like one and is refused early when its
    /// limit is already passed (the sniffed type decides at completion all
    /// the same).
    pub(super) fn check_declared(
        &self,
        request: &CreateUpload,
        size: u64,
    ) -> Result<(FileName, Option<Blake3>), UploadError> {
        let file_name =
            FileName::parse(&request.file_name).map_err(UploadError::InvalidFileName)?;
        // Over every type's limit, no content of any type could be taken.
        let limit = self
            .limits
            .max_file_size
            .0
            .min(self.limits.max_size_of_any_type());
        if size > limit {
            return Err(UploadError::FileTooLarge { size, limit });
        }
        let declared_blake3 = request
            .blake3
            .as_deref()
            .map(Blake3::parse)
            .transpose()
            .map_err(UploadError::InvalidBlake3)?;
        let Some(t) = &request.content_type else {
            return Ok((file_name, declared_blake3));
        };
        if t.len() > 255 || t.chars().any(char::is_control) || !t.contains('/') {
            return Err(UploadError::InvalidContentType(
                "content_type must be a MIME type such as image/jpeg".into(),
            ));
        }
        self.check_type_size(t, size)?;
        Ok((file_name, declared_blake3))
    }

    /// Opens a session: checks the request, creates the multipart upload,
    /// stores the session. When the caller already owns content with the
    /// declared BLAKE3 and size, answers with a new media item at once instead
    /// (instant dedup); content anyone else owns makes no difference here.
    pub async fn create(
        &self,
        owner: &UserId,
        request: CreateUpload,
    ) -> Result<Opened, UploadError> {
        let size = u64::try_from(request.size)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                UploadError::InvalidSize(
                    "size must be a positive number of bytes; send empty files with POST /v1/media"
                        .into(),
                )
            })?;
        let (file_name, declared_blake3) = self.check_declared(&request, size)?;
        let chunk_size = self.choose_chunk_size(size, request.chunk_size)?;
        self.charge(owner, Rate::Media, 1).await?;
        // One read of what the owner holds serves both checks. A session's
        // count is checked first, unless an instant dedup (which opens no
        // session) may answer before one is opened.
        let usage = self.quotas.usage(owner).await?;
        if declared_blake3.is_none() {
            self.quotas.check_sessions(&usage)?;
        }
        self.quotas.check_stored(&usage, size)?;
        if let Some(blake3) = &declared_blake3
            && let Some(media) = self
                .backends
                .media
                .create_media_if_owned(owner, &file_name, blake3, size, MediaId::generate())
                .await?
        {
            metrics::counter!("dedup_hits_total", "kind" => "instant").increment(1);
            metrics::counter!("dedup_bytes_saved_total").increment(size);
            return Ok(Opened::Existing(Completion::of(&media, true)));
        }
        if declared_blake3.is_some() {
            self.quotas.check_sessions(&usage)?;
        }
        let record = self
            .open_session(
                owner,
                file_name,
                size,
                request.content_type,
                declared_blake3,
                chunk_size,
            )
            .await?;
        Ok(Opened::Session(record))
    }

    /// Opens a session whose checks are done: its multipart upload, its
    /// record, its progress, and the owner's devices told.
    pub(super) async fn open_session(
        &self,
        owner: &UserId,
        file_name: FileName,
        size: u64,
        declared_type: Option<String>,
        declared_blake3: Option<Blake3>,
        chunk_size: u64,
    ) -> Result<UploadRecord, UploadError> {
        let total_chunks = u32::try_from(size.div_ceil(chunk_size)).unwrap_or(u32::MAX);
        let key = BlobKey::generate();
        let multipart = self.backends.blobs.create_multipart(&key).await?;
        let now = now_ms();
        let expires_at =
            now + i64::try_from(self.limits.upload_expiry.as_millis()).unwrap_or(i64::MAX / 2);
        let record = UploadRecord {
            upload_id: UploadId::generate(),
            owner: owner.clone(),
            file_name,
            size,
            declared_type,
            declared_blake3,
            chunk_size,
            total_chunks,
            state: UploadState::Receiving,
            storage_key: key.clone(),
            multipart_id: multipart.0.clone(),
            media_id: None,
            created_at: now,
            updated_at: now,
            expires_at,
            deduplicated: false,
        };
        if let Err(e) = self.backends.uploads.create_upload(&record).await {
            // Leave nothing behind in the store for a session that does not exist.
            let _ = self.backends.blobs.abort_multipart(&key, &multipart).await;
            return Err(e.into());
        }
        if let Err(e) = self
            .backends
            .progress
            .seed(&upload_topic(record.upload_id), &[], expires_at)
            .await
        {
            tracing::warn!(error = %e, "progress bus unavailable; progress will be rebuilt");
        }
        // The owner's connected devices follow it from now on.
        let started = Event {
            kind: EventKind::UploadStarted,
            data: serde_json::json!({ "upload_id": record.upload_id.to_string() }),
        };
        if let Err(e) = self
            .backends
            .progress
            .publish(&user_topic(owner.as_str()), &started)
            .await
        {
            tracing::warn!(error = %e, "could not announce a new upload");
        }
        Ok(record)
    }
}
