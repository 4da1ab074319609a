//! Completing a session: every chunk there, the BLAKE3 merged from the
//! chunks' chaining values, the parts joined, the type sniffed, the media
//! created (deduplicated by content) with its processing job. Idempotent, and
//! an abandoned completion is taken over.

use std::time::Duration;

use super::chunk_hash::merge_root;
use super::{COMPLETION_WAIT, Completion, UploadError, UploadService, is_expired};
use crate::blob_store::{BlobStoreError, ByteRange, CompletedPart, MultipartId};
use crate::ids::{Blake3, MediaId, UploadId, UserId, now_ms};
use crate::metadata_store::{
    ChunkRecord, Created, MetadataError, NewContent, UploadRecord, UploadState,
};
use crate::processing;
use crate::progress_bus::EventKind;
use crate::progress_bus::upload_topic;

impl UploadService {
    /// Ends a session whose content is refused at completion: aborted,
    /// its joined object deleted (nothing of it is kept), its watchers told.
    async fn refuse(&self, upload: &UploadRecord, reason: &str) {
        self.drop_session(upload, UploadState::Completing, UploadState::Aborted)
            .await;
        let key = &upload.storage_key;
        if let Err(e) = self.backends.blobs.delete(key).await {
            tracing::error!(error = %e, key = %key, "could not delete a refused object");
        }
        self.publish(
            upload.upload_id,
            EventKind::Aborted,
            serde_json::json!({ "reason": reason }),
        )
        .await;
    }

    /// Completes a session: checks every chunk is there, merges the BLAKE3,
    /// joins the parts, sniffs the type and creates the media. Idempotent:
    /// calling it again returns the same media.
    pub async fn complete(&self, owner: &UserId, id: UploadId) -> Result<Completion, UploadError> {
        let started = tokio::time::Instant::now();
        loop {
            let upload = self.load(owner, id).await?;
            match upload.state {
                UploadState::Completed => return self.completed(&upload).await,
                UploadState::Aborted => return Err(UploadError::Aborted),
                UploadState::Expired => return Err(UploadError::Expired),
                _ if is_expired(&upload) => return Err(UploadError::Expired),
                UploadState::Receiving => {
                    if self
                        .backends
                        .uploads
                        .transition(
                            upload.upload_id,
                            &[UploadState::Receiving],
                            UploadState::Completing,
                            None,
                        )
                        .await?
                    {
                        return self.finish(upload).await;
                    }
                }
                UploadState::Completing => {
                    if self.take_over(&upload).await? {
                        return self.finish(upload).await;
                    }
                    if started.elapsed() > COMPLETION_WAIT {
                        return Err(UploadError::CompletionInProgress);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Takes over a completion not heard from for `limits.abandoned_completion`
    /// (its node died, or its request was cut off mid-way); true when this
    /// caller now holds it and must finish it.
    pub(super) async fn take_over(&self, upload: &UploadRecord) -> Result<bool, UploadError> {
        let stale_before = self.stale_before();
        if upload.updated_at >= stale_before {
            return Ok(false);
        }
        let taken = self
            .backends
            .uploads
            .transition(
                upload.upload_id,
                &[UploadState::Completing],
                UploadState::Completing,
                Some(stale_before),
            )
            .await?;
        if taken {
            tracing::warn!(upload = %upload.upload_id, "taking over an abandoned completion");
        }
        Ok(taken)
    }

    pub(super) async fn completed(&self, upload: &UploadRecord) -> Result<Completion, UploadError> {
        let media_id = upload
            .media_id
            .ok_or_else(|| UploadError::Backend("completed upload without media".into()))?;
        // The owner deleted the media since: its session has nothing to show.
        let media = self
            .backends
            .media
            .media(media_id)
            .await?
            .ok_or(UploadError::MediaDeleted)?;
        // As the first answer said: the flag was kept with the session.
        Ok(Completion::of(&media, upload.deduplicated))
    }

    /// Puts a session back to receiving after a completion that could not finish.
    pub(super) async fn reopen(&self, upload: &UploadRecord) {
        if let Err(e) = self
            .backends
            .uploads
            .transition(
                upload.upload_id,
                &[UploadState::Completing],
                UploadState::Receiving,
                None,
            )
            .await
        {
            tracing::error!(error = %e, upload = %upload.upload_id, "could not reopen an upload");
        }
    }

    /// The completion proper; the caller holds the session in `completing`.
    pub(super) async fn finish(&self, upload: UploadRecord) -> Result<Completion, UploadError> {
        let meta = &self.backends.uploads;
        let blobs = &self.backends.blobs;
        let chunks = match meta.chunks(upload.upload_id).await {
            Ok(c) => c,
            Err(e) => {
                self.reopen(&upload).await;
                return Err(e.into());
            }
        };
        let have: std::collections::BTreeSet<u32> = chunks.iter().map(|c| c.number).collect();
        let missing: Vec<u32> = (1..=upload.total_chunks)
            .filter(|n| !have.contains(n))
            .collect();
        if !missing.is_empty() {
            self.reopen(&upload).await;
            return Err(UploadError::ChunksMissing(missing));
        }
        let cvs: Vec<[u8; 32]> = chunks.iter().map(|c| c.chaining_value).collect();
        let root = Blake3::from(merge_root(&cvs, upload.chunk_size, upload.size));
        let key = &upload.storage_key;
        let multipart = MultipartId(upload.multipart_id.clone());
        if let Some(declared) = upload.declared_blake3
            && declared != root
        {
            // Not what the client meant to send: store nothing.
            self.drop_session(&upload, UploadState::Completing, UploadState::Aborted)
                .await;
            self.publish(
                upload.upload_id,
                EventKind::Aborted,
                serde_json::json!({ "reason": "hash-mismatch" }),
            )
            .await;
            return Err(UploadError::HashMismatch {
                declared: declared.to_hex(),
                actual: root.to_hex(),
            });
        }
        match self.join_parts(&upload, &chunks).await {
            Ok(()) => {}
            Err(BlobStoreError::InvalidPart { .. }) => {
                // A part was replaced after it was recorded (a racing PUT with
                // other bytes): forget every chunk whose part is not what we
                // recorded, and ask for those again.
                let stored = blobs.list_parts(key, &multipart).await.unwrap_or_default();
                self.reopen(&upload).await;
                let mut bad = Vec::new();
                for chunk in &chunks {
                    let same = stored
                        .iter()
                        .any(|(n, etag)| *n == chunk.number && *etag == chunk.etag);
                    if !same {
                        meta.forget_chunk(upload.upload_id, chunk.number, &chunk.sha256)
                            .await?;
                        let _ = self
                            .backends
                            .progress
                            .unmark_chunk(&upload_topic(upload.upload_id), chunk.number)
                            .await;
                        bad.push(chunk.number);
                    }
                }
                return Err(if bad.is_empty() {
                    UploadError::Backend("the store refused the parts; try again".into())
                } else {
                    UploadError::ChunksMissing(bad)
                });
            }
            Err(BlobStoreError::NoSuchUpload) => {
                // The store dropped the parts (its lifecycle rule): nothing to complete.
                self.drop_session(&upload, UploadState::Completing, UploadState::Expired)
                    .await;
                return Err(UploadError::Expired);
            }
            Err(e) => {
                self.reopen(&upload).await;
                return Err(e.into());
            }
        }
        let read_head = |len: usize| async move {
            blobs
                .get(
                    key,
                    Some(ByteRange {
                        start: 0,
                        end: Some(len as u64 - 1),
                    }),
                )
                .await?
                .collect()
                .await
                .map_err(|e| UploadError::Backend(format!("while sniffing: {e}")))
        };
        let mut head = read_head(transcoder::sniff::SNIFF_LEN).await?;
        let content_type = transcoder::sniff::sniff(&head).mime;
        let mut dimensions = processing::header_dimensions(content_type, &head);
        if dimensions.is_none() && content_type == "image/jpeg" && upload.size > head.len() as u64 {
            // A JPEG whose metadata (a phone's EXIF) comes before its frame
            // header: one more read. (The other types state their size in
            // their first bytes.)
            head = read_head(transcoder::sniff::DIMENSIONS_LEN).await?;
            dimensions = processing::header_dimensions(content_type, &head);
        }
        if let Err(refused) = self.check_pixels(dimensions) {
            self.refuse(&upload, "too-many-pixels").await;
            return Err(refused);
        }
        if let Err(refused) = self.check_type_size(content_type, upload.size) {
            self.refuse(&upload, "too-large-for-type").await;
            return Err(refused);
        }
        let claimed_media = transcoder::sniff::claims_media(
            upload.declared_type.as_deref(),
            upload.file_name.as_str(),
        );
        let content = NewContent {
            blake3: root,
            size: upload.size,
            content_type: content_type.to_owned(),
            storage_key: upload.storage_key.clone(),
            origin: Some(upload.upload_id),
            processing: processing::plan(content_type, claimed_media),
            probe: dimensions.map(processing::header_probe),
        };
        let finished = meta
            .finish_upload(upload.upload_id, &content, MediaId::generate())
            .await;
        if let Err(MetadataError::ContentBlocked) = finished {
            self.refuse(&upload, "content-blocked").await;
        }
        let Some(created) = finished? else {
            // Someone else finished it meanwhile (a takeover): answer theirs.
            let upload = self.load_by_id(upload.upload_id).await?;
            return self.completed(&upload).await;
        };
        self.after_create(&content, &created).await;
        let _ = self
            .backends
            .progress
            .forget(&upload_topic(upload.upload_id))
            .await;
        let completion = Completion::of(&created.media, created.owned_before);
        metrics::counter!("uploads_completed_total", "kind" => "chunked").increment(1);
        self.publish(
            upload.upload_id,
            EventKind::Completed,
            serde_json::to_value(&completion).unwrap_or_default(),
        )
        .await;
        Ok(completion)
    }

    /// Joins a session's recorded parts into its object. An object that an
    /// earlier, abandoned join made already counts as joined.
    pub(super) async fn join_parts(
        &self,
        upload: &UploadRecord,
        chunks: &[ChunkRecord],
    ) -> Result<(), BlobStoreError> {
        let blobs = &self.backends.blobs;
        let parts: Vec<CompletedPart> = chunks
            .iter()
            .map(|c| CompletedPart {
                number: c.number,
                etag: c.etag.clone(),
                sha256: c.sha256,
            })
            .collect();
        let multipart = MultipartId(upload.multipart_id.clone());
        match blobs
            .complete_multipart(&upload.storage_key, &multipart, &parts)
            .await
        {
            Err(BlobStoreError::NoSuchUpload)
                if blobs.head(&upload.storage_key).await?.is_some() =>
            {
                Ok(())
            }
            joined => joined,
        }
    }

    /// After a media was created: when the content was stored already, the
    /// bytes just written are redundant and go.
    pub(super) async fn after_create(&self, content: &NewContent, created: &Created) {
        if created.deduplicated {
            metrics::counter!("dedup_hits_total", "kind" => "completion").increment(1);
            metrics::counter!("dedup_bytes_saved_total").increment(content.size);
        }
        if created.deduplicated && created.media.storage_key != content.storage_key {
            // After the answer, not before it: a copy of someone else's
            // content must not answer later than new content would (the
            // dedup side channel). An object left by a crash here is no
            // row's, and costs only space.
            let (blobs, key) = (self.backends.blobs.clone(), content.storage_key.clone());
            tokio::spawn(async move {
                if let Err(e) = blobs.delete(&key).await {
                    tracing::error!(error = %e, key = %key, "could not delete a redundant object");
                }
            });
        }
        if let Some(shown_after) = created.media.shown_after {
            self.announce_when_shown(content, created, shown_after);
        }
    }

    /// A media item shown `processing` until `shown_after` tells its upload's
    /// stream and its conversations when that ends, as new content's
    /// processing would. Best effort: a reader that misses it (this node
    /// stopped) still sees the status on its next read.
    fn announce_when_shown(&self, content: &NewContent, created: &Created, shown_after: i64) {
        let backends = self.backends.clone();
        let (blake3, upload, media) = (content.blake3, content.origin, created.media.clone());
        tokio::spawn(async move {
            let wait = u64::try_from(shown_after - now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Ok(Some(now)) = backends.media.media(media.media_id).await else {
                return;
            };
            let variants = backends.jobs.variants(&blake3).await.unwrap_or_default();
            let names: Vec<&str> = variants.iter().map(|v| v.preset.as_str()).collect();
            let data = match now.failure {
                Some(reason) => serde_json::json!({ "status": "failed", "reason": reason }),
                None => serde_json::json!({ "status": now.status, "variants": names }),
            };
            processing::announce(&backends, &blake3, upload, data, Some(&media.owner)).await;
        });
    }
}
