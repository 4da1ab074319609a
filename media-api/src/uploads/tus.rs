//! tus 1.0 on upload sessions: a tus upload is a session like any other
//! (owner, limits, quotas, expiry, progress, BLAKE3, dedup, processing);
//! tus only changes how its bytes arrive. A PATCH carries bytes at the
//! session's offset in any amount: each part it fills goes through the chunk
//! path (hashed, stored as a multipart part, recorded), and the bytes that
//! do not fill one yet wait in the metadata store (`tus_uploads.tail`), so
//! the next PATCH may reach any node, or come after a restart. A PATCH cut
//! off midway keeps what arrived. One PATCH at a time: the session's lock,
//! held with a heartbeat; a second gets `423`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::{ChunkPut, Completion, CreateUpload, Opened, UploadError, UploadService};
use crate::ids::{Blake3, BlobKey, ChunkNumber, MediaId, UploadId, UserId, millis as ms, now_ms};
use crate::metadata_store::{UploadRecord, UploadState};

/// How long a PATCH's hold on the session lasts without a heartbeat.
const LOCK_LEASE: Duration = Duration::from_secs(15);

/// A PATCH's `Upload-Checksum`: its bytes are taken only if they hash to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusChecksum {
    /// SHA-1 (the algorithm the protocol requires servers to support).
    Sha1(Vec<u8>),
    /// SHA-256.
    Sha256(Vec<u8>),
}

impl TusChecksum {
    fn matches(&self, data: &[u8]) -> bool {
        use sha2::Digest;
        match self {
            Self::Sha1(d) => sha1::Sha1::digest(data).as_slice() == d.as_slice(),
            Self::Sha256(d) => sha2::Sha256::digest(data).as_slice() == d.as_slice(),
        }
    }
}

/// Where a tus upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusState {
    /// Bytes received in order from the start.
    pub offset: u64,
    /// The upload's length.
    pub length: u64,
    /// Unix ms after which it is gone, while it is open.
    pub expires_at: Option<i64>,
    /// The media item, once complete.
    pub media_id: Option<String>,
}

impl UploadService {
    /// Opens a tus upload. For content its owner holds already (a `blake3`
    /// in the metadata), a new media item is made and no byte is needed:
    /// tus still wants an upload to point at, so the session is born complete.
    pub async fn tus_create(
        &self,
        owner: &UserId,
        request: CreateUpload,
    ) -> Result<UploadRecord, UploadError> {
        let declared_type = request.content_type.clone();
        let upload = match self.create(owner, request).await? {
            Opened::Session(upload) => upload,
            Opened::Existing(done) => {
                let now = now_ms();
                let upload = UploadRecord {
                    upload_id: UploadId::generate(),
                    owner: owner.clone(),
                    file_name: done.file_name.clone(),
                    size: done.size,
                    declared_type,
                    declared_blake3: Blake3::parse(&done.blake3).ok(),
                    chunk_size: done.size.max(1),
                    total_chunks: 1,
                    state: UploadState::Completed,
                    storage_key: BlobKey::generate(),
                    multipart_id: String::new(),
                    media_id: MediaId::parse(&done.media_id),
                    created_at: now,
                    updated_at: now,
                    expires_at: now,
                    deduplicated: true,
                };
                self.backends.uploads.create_upload(&upload).await?;
                upload
            }
        };
        self.backends.tus.tus_create(upload.upload_id).await?;
        Ok(upload)
    }

    /// Where the caller's upload stands, as tus says it.
    pub async fn tus_state(&self, owner: &UserId, id: UploadId) -> Result<TusState, UploadError> {
        let upload = self.owned(owner, id).await?;
        match upload.state {
            UploadState::Expired => return Err(UploadError::Expired),
            UploadState::Aborted => return Err(UploadError::Aborted),
            _ => {}
        }
        if super::is_expired(&upload) {
            return Err(UploadError::Expired);
        }
        let tail = self.backends.tus.tus_tail(id).await?.len() as u64;
        self.state_of(&upload, tail).await
    }

    async fn state_of(&self, upload: &UploadRecord, tail: u64) -> Result<TusState, UploadError> {
        let done = upload.state == UploadState::Completed;
        let offset = if done {
            upload.size
        } else {
            self.contiguous(upload).await?.1 + tail
        };
        Ok(TusState {
            offset,
            length: upload.size,
            expires_at: (!done).then_some(upload.expires_at),
            media_id: upload.media_id.map(|m| m.to_string()),
        })
    }

    /// The chunks received in order from the first: how many, and their bytes.
    async fn contiguous(&self, upload: &UploadRecord) -> Result<(u32, u64), UploadError> {
        let mut numbers = self.recorded_numbers(upload).await?;
        numbers.sort_unstable();
        let k = numbers
            .iter()
            .enumerate()
            .take_while(|(i, n)| **n as usize == i + 1)
            .count() as u32;
        let bytes = (1..=k).map(|n| upload.chunk_len(n)).sum();
        Ok((k, bytes))
    }

    /// Takes a PATCH's bytes at `offset`: whole parts through the chunk
    /// path, the rest kept as the tail; completes the session when the
    /// last byte is in. Answers where the upload stands after.
    ///
    /// The work runs in a task of its own: when the client goes away, the
    /// HTTP server drops the request's future, but the task reads on until
    /// the body ends or breaks, keeps what arrived and lets the lock go.
    pub async fn tus_patch<S, E>(
        &self,
        owner: &UserId,
        id: UploadId,
        offset: u64,
        content_length: Option<u64>,
        checksum: Option<TusChecksum>,
        body: S,
    ) -> Result<TusState, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (service, owner) = (self.clone(), owner.clone());
        tokio::spawn(async move {
            service
                .tus_patch_here(&owner, id, offset, content_length, checksum, body)
                .await
        })
        .await
        .map_err(|e| UploadError::Backend(format!("a PATCH's task failed: {e}")))?
    }

    async fn tus_patch_here<S, E>(
        &self,
        owner: &UserId,
        id: UploadId,
        offset: u64,
        content_length: Option<u64>,
        checksum: Option<TusChecksum>,
        body: S,
    ) -> Result<TusState, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let upload = self.owned(owner, id).await?;
        match upload.state {
            UploadState::Receiving if super::is_expired(&upload) => {
                return Err(UploadError::Expired);
            }
            UploadState::Receiving => {}
            UploadState::Expired => return Err(UploadError::Expired),
            UploadState::Aborted => return Err(UploadError::Aborted),
            UploadState::Completing => return Err(UploadError::CompletionInProgress),
            UploadState::Completed => return Err(UploadError::AlreadyCompleted),
        }
        let tus = &self.backends.tus;
        tus.tus_create(id).await?;
        let token = uuid::Uuid::new_v4().to_string();
        if !tus
            .tus_lock(id, &token, now_ms() + ms(LOCK_LEASE), now_ms())
            .await?
        {
            return Err(UploadError::TusLocked);
        }
        // Held while the body arrives, however long that is.
        let beat = {
            let (tus, token) = (tus.clone(), token.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOCK_LEASE / 3).await;
                    let _ = tus
                        .tus_lock(id, &token, now_ms() + ms(LOCK_LEASE), now_ms())
                        .await;
                }
            })
        };
        let body = self.paced(body);
        let outcome = match checksum {
            None => {
                self.tus_receive(owner, &upload, &token, offset, content_length, body.boxed())
                    .await
            }
            Some(checksum) => match self.verified(body, &checksum).await {
                Ok(data) => {
                    let len = Some(data.len() as u64);
                    let once = futures_util::stream::once(async move { Ok(data) });
                    self.tus_receive(owner, &upload, &token, offset, len, once.boxed())
                        .await
                }
                Err(e) => Err(e),
            },
        };
        beat.abort();
        let _ = tus.tus_unlock(id, &token).await;
        // Where the PATCH left it: no need to read it back.
        Ok(match outcome? {
            Received::Completed(done) => TusState {
                offset: upload.size,
                length: upload.size,
                expires_at: None,
                media_id: Some(done.media_id),
            },
            Received::At(offset) => TusState {
                offset,
                length: upload.size,
                expires_at: Some(upload.expires_at),
                media_id: None,
            },
        })
    }

    /// A PATCH body with a checksum, whole (at most `max_chunk_size`), if
    /// it hashes to it: bytes that cannot be verified are not taken.
    async fn verified(
        &self,
        mut body: impl Stream<Item = Result<Bytes, UploadError>> + Unpin,
        checksum: &TusChecksum,
    ) -> Result<Bytes, UploadError> {
        let limit = self.limits.max_chunk_size.0;
        let mut data = BytesMut::new();
        while let Some(frame) = body.next().await {
            let frame = frame?;
            if (data.len() + frame.len()) as u64 > limit {
                return Err(UploadError::BodyTooLarge { limit });
            }
            data.extend_from_slice(&frame);
        }
        if !checksum.matches(&data) {
            return Err(UploadError::TusChecksumMismatch);
        }
        Ok(data.freeze())
    }

    async fn tus_receive(
        &self,
        owner: &UserId,
        upload: &UploadRecord,
        token: &str,
        offset: u64,
        content_length: Option<u64>,
        mut body: futures_util::stream::BoxStream<'_, Result<Bytes, UploadError>>,
    ) -> Result<Received, UploadError> {
        let id = upload.upload_id;
        let tus = &self.backends.tus;
        let (k, in_parts) = self.contiguous(upload).await?;
        let tail = tus.tus_tail(id).await?;
        let at = in_parts + tail.len() as u64;
        if offset != at {
            return Err(UploadError::TusOffsetMismatch { expected: at });
        }
        if content_length.is_some_and(|len| at + len > upload.size) {
            return Err(UploadError::TusPastLength {
                length: upload.size,
            });
        }
        let mut buffer = BytesMut::from(&tail[..]);
        let mut next = k + 1;
        let mut cut_off = None;
        loop {
            let frame = match body.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    // Cut off: what arrived is kept.
                    cut_off = Some(e);
                    break;
                }
                None => break,
            };
            let received = in_parts_of(upload, next) + (buffer.len() + frame.len()) as u64;
            if received > upload.size {
                // Nothing of this frame is kept; what came before is.
                cut_off = Some(UploadError::TusPastLength {
                    length: upload.size,
                });
                break;
            }
            metrics::counter!("tus_bytes_received_total").increment(frame.len() as u64);
            buffer.extend_from_slice(&frame);
            while next <= upload.total_chunks && buffer.len() as u64 >= upload.chunk_len(next) {
                let len = upload.chunk_len(next);
                let part = buffer
                    .split_to(usize::try_from(len).unwrap_or(usize::MAX))
                    .freeze();
                let put = ChunkPut {
                    number: ChunkNumber::parse(&next.to_string())
                        .map_err(|e| UploadError::Backend(format!("chunk number {e}")))?,
                    content_length: Some(len),
                    sha256: None,
                };
                let one = futures_util::stream::once(async move { Ok::<_, std::io::Error>(part) });
                self.put_chunk(owner, id, put, Box::pin(one)).await?;
                next += 1;
            }
        }
        if !tus.tus_set_tail(id, token, &buffer).await? {
            return Err(UploadError::TusLocked);
        }
        if let Some(e) = cut_off {
            return Err(e);
        }
        if next > upload.total_chunks {
            return Ok(Received::Completed(self.complete(owner, id).await?));
        }
        Ok(Received::At(
            in_parts_of(upload, next) + buffer.len() as u64,
        ))
    }
}

/// How a PATCH's bytes ended.
enum Received {
    /// The last byte is in: the session completed.
    Completed(Completion),
    /// The upload's offset now.
    At(u64),
}

/// The bytes of the chunks before `next`.
fn in_parts_of(upload: &UploadRecord, next: u32) -> u64 {
    (1..next).map(|n| upload.chunk_len(n)).sum()
}
