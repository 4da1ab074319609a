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
use futures_util::{Stream, StreamExt, TryStreamExt};

use super::{ChunkPut, Completion, CreateUpload, Opened, UploadError, UploadService};
use crate::blob_store::BlobStore;
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
    /// Its `Upload-Concat` (`partial`, or `final;…`), for a concatenation.
    pub concat: Option<String>,
}

/// How a tus upload is put together (`Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concat {
    /// A piece of a final upload to come: its last byte completes nothing.
    Partial,
    /// Made of these partial uploads of the caller's, in this order; the
    /// header as the client sent it, repeated on `HEAD`.
    Final(Vec<UploadId>, String),
}

/// `Upload-Concat` of a partial upload.
const PARTIAL: &str = "partial";

impl UploadService {
    /// Opens a tus upload. For content its owner holds already (a `blake3`
    /// in the metadata), a new media item is made and no byte is needed:
    /// tus still wants an upload to point at, so the session is born complete.
    /// A partial upload is a piece of bytes, not a file: no dedup by a
    /// `blake3` (which names the whole file), no type.
    pub async fn tus_create(
        &self,
        owner: &UserId,
        mut request: CreateUpload,
        partial: bool,
    ) -> Result<UploadRecord, UploadError> {
        if partial {
            request.blake3 = None;
            request.content_type = None;
        }
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
        self.backends
            .tus
            .tus_create(upload.upload_id, partial.then_some(PARTIAL))
            .await?;
        Ok(upload)
    }

    /// Makes a final upload of the caller's partial ones, in order, and
    /// completes it as any upload completes (BLAKE3, dedup, media,
    /// processing). The pieces' bytes are read back from the store through
    /// the chunk path of a new session: an S3 part cannot span two objects,
    /// and the file's BLAKE3 needs its bytes in order. The partial uploads
    /// are used up, also when the whole is refused (their bytes are its).
    pub async fn tus_concatenate(
        &self,
        owner: &UserId,
        request: CreateUpload,
        partials: &[UploadId],
        concat: &str,
    ) -> Result<(UploadRecord, TusState), UploadError> {
        let most = self.limits.max_concat_uploads;
        if partials.is_empty() || partials.len() > most {
            return Err(UploadError::TusConcat(format!(
                "a final upload is made of 1 to {most} partial uploads"
            )));
        }
        if (1..partials.len()).any(|i| partials[..i].contains(&partials[i])) {
            return Err(UploadError::TusConcat(
                "a final upload names each partial upload once".into(),
            ));
        }
        let mut pieces = Vec::with_capacity(partials.len());
        for id in partials {
            let piece = match self.load(owner, *id).await {
                Err(UploadError::NotFound) => None,
                found => Some(found?),
            };
            let is_partial = self.backends.tus.tus_concat(*id).await?.as_deref() == Some(PARTIAL);
            match piece {
                Some(piece) if is_partial => pieces.push(piece),
                _ => {
                    return Err(UploadError::TusConcat(format!(
                        "{id} is not one of your partial uploads (Upload-Concat: partial)"
                    )));
                }
            }
        }
        let size: u64 = pieces.iter().map(|p| p.size).sum();
        let (file_name, declared_blake3) = self.check_declared(&request, size)?;
        let chunk_size = self.choose_chunk_size(size, None)?;
        self.claim_partials(&pieces).await?;
        let made = async {
            for piece in &pieces {
                let chunks = self.backends.uploads.chunks(piece.upload_id).await?;
                self.join_parts(piece, &chunks).await?;
            }
            let whole = self
                .open_session(
                    owner,
                    file_name,
                    size,
                    request.content_type,
                    declared_blake3,
                    chunk_size,
                )
                .await?;
            self.backends
                .tus
                .tus_create(whole.upload_id, Some(concat))
                .await?;
            let keys = pieces.iter().map(|p| p.storage_key.clone()).collect();
            let body = read_in_order(self.backends.blobs.clone(), keys);
            let state = self
                .tus_patch_here(owner, whole.upload_id, 0, Some(size), None, body, false)
                .await;
            Ok::<_, UploadError>((whole, state))
        }
        .await;
        // The pieces are used up once the whole has had all its bytes,
        // whatever its completion said; else they are put back as they were.
        let used_up = match &made {
            Ok((whole, _)) => matches!(
                self.load_by_id(whole.upload_id).await.map(|u| u.state),
                Ok(UploadState::Completed | UploadState::Aborted)
            ),
            Err(_) => false,
        };
        for piece in &pieces {
            if used_up {
                self.drop_session(piece, UploadState::Completing, UploadState::Aborted)
                    .await;
                if let Err(e) = self.backends.blobs.delete(&piece.storage_key).await {
                    tracing::warn!(error = %e, key = %piece.storage_key, "could not delete a used partial upload");
                }
            } else {
                self.reopen(piece).await;
            }
        }
        let (whole, state) = made?;
        if !used_up {
            let _ = self.abort(owner, whole.upload_id).await;
        }
        let mut state = state?;
        state.concat = Some(concat.to_owned());
        Ok((whole, state))
    }

    /// Takes the partial uploads for a final one (each `receiving` →
    /// `completing`, as a completion would), if each has all its bytes;
    /// puts back the ones it took when one cannot be.
    async fn claim_partials(&self, pieces: &[UploadRecord]) -> Result<(), UploadError> {
        for (i, piece) in pieces.iter().enumerate() {
            let id = piece.upload_id;
            let taken = match piece.state {
                UploadState::Receiving if !super::is_expired(piece) => {
                    match self.contiguous(piece).await {
                        Ok((k, _)) if k == piece.total_chunks => self
                            .backends
                            .uploads
                            .transition(
                                id,
                                &[UploadState::Receiving],
                                UploadState::Completing,
                                None,
                            )
                            .await
                            .map_err(UploadError::from),
                        Ok(_) => Err(UploadError::TusPartialUnfinished(id.to_string())),
                        Err(e) => Err(e),
                    }
                }
                // A final upload cut off before it used the piece up.
                UploadState::Completing => self.take_over(piece).await,
                UploadState::Receiving | UploadState::Expired => Err(UploadError::TusConcat(
                    format!("partial upload {id} has expired"),
                )),
                UploadState::Completed | UploadState::Aborted => Err(UploadError::TusConcat(
                    format!("partial upload {id} was used up or terminated"),
                )),
            };
            let failed = match taken {
                Ok(true) => continue,
                Ok(false) => UploadError::CompletionInProgress,
                Err(e) => e,
            };
            for earlier in &pieces[..i] {
                self.reopen(earlier).await;
            }
            return Err(failed);
        }
        Ok(())
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
        let concat = self.backends.tus.tus_concat(id).await?;
        let done = upload.state == UploadState::Completed;
        let offset = if done {
            upload.size
        } else {
            let received = self.received(&upload).await?;
            received.in_parts + received.tail.len() as u64
        };
        Ok(TusState {
            offset,
            length: upload.size,
            expires_at: (!done).then_some(upload.expires_at),
            media_id: upload.media_id.map(|m| m.to_string()),
            concat,
        })
    }

    /// What a tus upload holds: its parts in order from the first, and the
    /// bytes after them. A tail whose part was recorded since (its PATCH was
    /// cut off between the two writes, or its node died) no longer counts.
    async fn received(&self, upload: &UploadRecord) -> Result<Held, UploadError> {
        let (parts, in_parts) = self.contiguous(upload).await?;
        let (tail, tail_part) = self.backends.tus.tus_tail(upload.upload_id).await?;
        let tail = if tail_part == parts + 1 {
            tail
        } else {
            Vec::new()
        };
        Ok(Held {
            parts,
            in_parts,
            tail,
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
        // The bytes clients sent (a concatenation's copy is not counted).
        let body = body.inspect(|frame| {
            if let Ok(frame) = frame {
                metrics::counter!("tus_bytes_received_total").increment(frame.len() as u64);
            }
        });
        tokio::spawn(async move {
            let concat = service.backends.tus.tus_concat(id).await?;
            if concat.as_deref().is_some_and(|c| c != PARTIAL) {
                // Someone else's final upload is not found all the same.
                service.load(&owner, id).await?;
                return Err(UploadError::TusFinalUpload);
            }
            let partial = concat.is_some();
            service
                .tus_patch_here(&owner, id, offset, content_length, checksum, body, partial)
                .await
        })
        .await
        .map_err(|e| UploadError::Backend(format!("a PATCH's task failed: {e}")))?
    }

    #[allow(clippy::too_many_arguments)]
    async fn tus_patch_here<S, E>(
        &self,
        owner: &UserId,
        id: UploadId,
        offset: u64,
        content_length: Option<u64>,
        checksum: Option<TusChecksum>,
        body: S,
        partial: bool,
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
        tus.tus_create(id, None).await?;
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
                let to = Receiving {
                    token: &token,
                    offset,
                    content_length,
                    partial,
                };
                self.tus_receive(owner, &upload, to, body.boxed()).await
            }
            Some(checksum) => match self.verified(body, &checksum).await {
                Ok(data) => {
                    let to = Receiving {
                        token: &token,
                        offset,
                        content_length: Some(data.len() as u64),
                        partial,
                    };
                    let once = futures_util::stream::once(async move { Ok(data) });
                    self.tus_receive(owner, &upload, to, once.boxed()).await
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
                concat: None,
            },
            Received::At(offset) => TusState {
                offset,
                length: upload.size,
                expires_at: Some(upload.expires_at),
                media_id: None,
                concat: partial.then(|| PARTIAL.to_owned()),
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
        to: Receiving<'_>,
        mut body: futures_util::stream::BoxStream<'_, Result<Bytes, UploadError>>,
    ) -> Result<Received, UploadError> {
        let Receiving {
            token,
            offset,
            content_length,
            partial,
        } = to;
        let id = upload.upload_id;
        let Held {
            parts: k,
            in_parts,
            tail,
        } = self.received(upload).await?;
        let at = in_parts + tail.len() as u64;
        if offset != at {
            return Err(UploadError::TusOffsetMismatch { expected: at });
        }
        if content_length.is_some_and(|len| at + len > upload.size) {
            return Err(UploadError::TusPastLength {
                length: upload.size,
            });
        }
        // The bytes after the last whole part, as the frames they came in
        // (handed to the store as they are: nothing is copied).
        let mut pending = Frames::default();
        if !tail.is_empty() {
            pending.push(Bytes::from(tail));
        }
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
            let received = in_parts_of(upload, next) + (pending.len + frame.len()) as u64;
            if received > upload.size {
                // Nothing of this frame is kept; what came before is.
                cut_off = Some(UploadError::TusPastLength {
                    length: upload.size,
                });
                break;
            }
            pending.push(frame);
            while next <= upload.total_chunks && pending.len as u64 >= upload.chunk_len(next) {
                let len = upload.chunk_len(next);
                let part = pending.take(usize::try_from(len).unwrap_or(usize::MAX));
                let put = ChunkPut {
                    number: ChunkNumber::parse(&next.to_string())
                        .map_err(|e| UploadError::Backend(format!("chunk number {e}")))?,
                    content_length: Some(len),
                    sha256: None,
                };
                let frames =
                    futures_util::stream::iter(part.into_iter().map(Ok::<_, std::io::Error>));
                self.put_chunk(owner, id, put, Box::pin(frames)).await?;
                next += 1;
            }
        }
        let buffer = pending.concat();
        // The tail is the head of part `next`: once that part is recorded,
        // it no longer counts, whatever happens between the two writes.
        if !self
            .backends
            .tus
            .tus_set_tail(id, token, &buffer, next)
            .await?
        {
            return Err(UploadError::TusLocked);
        }
        if let Some(e) = cut_off {
            return Err(e);
        }
        if next > upload.total_chunks && !partial {
            return Ok(Received::Completed(self.complete(owner, id).await?));
        }
        Ok(Received::At(
            in_parts_of(upload, next) + buffer.len() as u64,
        ))
    }
}

/// What a tus upload holds.
struct Held {
    /// Parts recorded in order from the first.
    parts: u32,
    /// Their bytes.
    in_parts: u64,
    /// The bytes after them, not a part yet.
    tail: Vec<u8>,
}

/// Bytes as the frames they arrived in.
#[derive(Default)]
struct Frames {
    frames: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Frames {
    fn push(&mut self, frame: Bytes) {
        self.len += frame.len();
        self.frames.push_back(frame);
    }

    /// The first `n` bytes (at most `len`), splitting a frame that
    /// straddles the boundary without copying it.
    fn take(&mut self, mut n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while n > 0 {
            let Some(mut frame) = self.frames.pop_front() else {
                break;
            };
            if frame.len() > n {
                let rest = frame.split_off(n);
                self.frames.push_front(rest);
            }
            n -= frame.len();
            self.len -= frame.len();
            out.push(frame);
        }
        out
    }

    /// All of them in one piece (the tail kept between PATCHes).
    fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for frame in &self.frames {
            out.extend_from_slice(frame);
        }
        out
    }
}

/// Where a PATCH's bytes go.
struct Receiving<'a> {
    /// The lock this PATCH holds.
    token: &'a str,
    /// Where the client says they start.
    offset: u64,
    /// How many it says there are.
    content_length: Option<u64>,
    /// A partial upload's last byte completes nothing.
    partial: bool,
}

/// How a PATCH's bytes ended.
enum Received {
    /// The last byte is in: the session completed.
    Completed(Completion),
    /// The upload's offset now.
    At(u64),
}

/// The objects' bytes, one after the other.
fn read_in_order(
    blobs: std::sync::Arc<dyn BlobStore>,
    keys: Vec<BlobKey>,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, String>> {
    futures_util::stream::iter(keys)
        .then(move |key| {
            let blobs = blobs.clone();
            futures_util::FutureExt::boxed(async move {
                match blobs.get(&key, None).await {
                    Ok(b) => Ok(b.stream.map_err(|e| e.to_string())),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .try_flatten()
        .boxed()
}

/// The bytes of the chunks before `next`.
fn in_parts_of(upload: &UploadRecord, next: u32) -> u64 {
    (1..next).map(|n| upload.chunk_len(n)).sum()
}
