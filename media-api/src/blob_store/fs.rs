//! The filesystem blob store: the embedded default.
//!
//! Layout under its root:
//! - `objects/<key>`: whole objects.
//! - `multipart/<id>/key`: the key an upload completes to.
//! - `multipart/<id>/<part:05>-<sha256>`: one file per part *version*. Completion
//!   picks the version whose digest it names, so a part re-sent with other
//!   bytes can never be joined in place of the one the caller recorded.
//! - `tmp/`: files being written; every write lands by an atomic rename.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::signed_url::{SignedParams, UrlSigner};
use super::{
    BlobBody, BlobKey, BlobStore, BlobStoreError, ByteRange, CompletedPart, MultipartId, PartBody,
    PendingMultipart, PresignRequest,
};

/// Objects as files in a directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    signer: UrlSigner,
    /// Held while a part version lands and its older versions go, so two
    /// concurrent sends of one part leave exactly the last one (as on S3).
    /// The filesystem store serves one process, so a process lock suffices.
    part_swap: Arc<Mutex<()>>,
}

impl FsBlobStore {
    /// Opens (creating) a store rooted at `root`.
    pub async fn open(root: PathBuf, signer: UrlSigner) -> anyhow::Result<Self> {
        for sub in ["objects", "multipart", "tmp"] {
            tokio::fs::create_dir_all(root.join(sub))
                .await
                .map_err(|e| anyhow::anyhow!("while creating {}: {e}", root.join(sub).display()))?;
        }
        let tmp = root.join("tmp");
        let swept =
            tokio::task::spawn_blocking(move || sweep_abandoned(&tmp, TMP_ABANDONED_AFTER)).await?;
        if swept > 0 {
            tracing::info!(
                swept,
                "removed abandoned temporary files of the filesystem store"
            );
        }
        Ok(Self {
            root,
            signer,
            part_swap: Arc::default(),
        })
    }

    fn object_path(&self, key: &BlobKey) -> PathBuf {
        self.root.join("objects").join(key.as_str())
    }

    /// Where an object made by a multipart upload keeps its parts (a name no
    /// key can have: `~` is not a key character).
    fn parts_path(&self, key: &BlobKey) -> PathBuf {
        self.root
            .join("objects")
            .join(format!("{}{PARTS_SUFFIX}", key.as_str()))
    }

    /// The files an object is made of, with their sizes, in order: the
    /// object's own file, or the parts its multipart upload completed with.
    fn segments(&self, key: &BlobKey) -> Result<Vec<(PathBuf, u64)>, BlobStoreError> {
        match std::fs::metadata(self.object_path(key)) {
            Ok(m) => return Ok(vec![(self.object_path(key), m.len())]),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let entries = match std::fs::read_dir(self.parts_path(key)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobStoreError::NotFound);
            }
            Err(e) => return Err(io_err(e)),
        };
        let mut parts = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err)?;
            parts.push((entry.path(), entry.metadata().map_err(io_err)?.len()));
        }
        // Named by their zero-padded position.
        parts.sort();
        Ok(parts)
    }

    fn upload_dir(&self, upload: &MultipartId) -> Result<PathBuf, BlobStoreError> {
        // Ids are ours (uuids), but they come back from callers: check before use as a path.
        if upload.0.is_empty() || !upload.0.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobStoreError::NoSuchUpload);
        }
        Ok(self.root.join("multipart").join(&upload.0))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }
}

fn io_err(e: std::io::Error) -> BlobStoreError {
    BlobStoreError::Other(e.to_string())
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobStoreError> + Send + 'static,
) -> Result<T, BlobStoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobStoreError::Other(format!("blocking task failed: {e}")))?
}

/// Writes `data` to `tmp`, syncs it, and renames it to `dest`.
fn write_atomically(tmp: &Path, dest: &Path, data: &[u8]) -> Result<(), BlobStoreError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    let mut file = std::fs::File::create(tmp).map_err(io_err)?;
    file.write_all(data).map_err(io_err)?;
    file.sync_data().map_err(io_err)?;
    std::fs::rename(tmp, dest).map_err(io_err)
}

/// A temporary file (a part or object being written, parts being assembled)
/// this old was left by a process that died: no write takes this long.
const TMP_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the entries of `dir` last modified more than `age` ago; how many.
fn sweep_abandoned(dir: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if !old {
            continue;
        }
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove")
            }
        }
    }
    removed
}

/// The suffix of the directory holding a multipart object's parts.
const PARTS_SUFFIX: &str = "~parts";

fn swap_lock(swap: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    swap.lock().unwrap_or_else(|p| p.into_inner())
}

fn part_prefix(number: u32) -> String {
    format!("{number:05}-")
}

/// A part's file in its upload's directory: its number, then its SHA-256, so
/// a completion can only take the exact bytes it names.
fn part_name(number: u32, sha256: &[u8; 32]) -> String {
    format!("{}{}", part_prefix(number), hex::encode(sha256))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn ping(&self) -> Result<(), BlobStoreError> {
        let probe = self.root.join("tmp");
        match tokio::fs::metadata(&probe).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(BlobStoreError::Unavailable(format!(
                "{} is not a directory",
                probe.display()
            ))),
            Err(e) => Err(BlobStoreError::Unavailable(format!(
                "{}: {e}",
                probe.display()
            ))),
        }
    }

    fn min_part_size(&self) -> u64 {
        // Any size joins on a filesystem; S3's rule is what chunk sizing honours there.
        1
    }

    async fn list_parts(
        &self,
        _key: &BlobKey,
        upload: &MultipartId,
    ) -> Result<Vec<(u32, String)>, BlobStoreError> {
        let dir = self.upload_dir(upload)?;
        blocking(move || {
            if !dir.join("key").is_file() {
                return Err(BlobStoreError::NoSuchUpload);
            }
            let mut parts = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io_err)? {
                let name = entry
                    .map_err(io_err)?
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                if let Some((n, sha)) = name.split_once('-')
                    && let Ok(n) = n.parse::<u32>()
                {
                    parts.push((n, format!("\"{sha}\"")));
                }
            }
            parts.sort();
            Ok(parts)
        })
        .await
    }

    async fn put(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobStoreError> {
        let (tmp, dest) = (self.tmp_path(), self.object_path(key));
        blocking(move || write_atomically(&tmp, &dest, &data)).await
    }

    async fn get(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, BlobStoreError> {
        let store = self.clone();
        let key = key.clone();
        let (files, total, len) = blocking(move || {
            let segments = store.segments(&key)?;
            let total = segments.iter().map(|(_, len)| len).sum::<u64>();
            let (start, len) = match range {
                None => (0, total),
                Some(r) => {
                    if r.start >= total {
                        return Err(BlobStoreError::RangeNotSatisfiable { size: total });
                    }
                    let end = r.end.map_or(total - 1, |e| e.min(total - 1));
                    if end < r.start {
                        return Err(BlobStoreError::RangeNotSatisfiable { size: total });
                    }
                    (r.start, end - r.start + 1)
                }
            };
            // Open every file the range touches now, so a delete racing the
            // read cannot take a part away half way (open files stay readable).
            let (mut files, mut offset) = (Vec::new(), 0u64);
            for (path, size) in segments {
                let (from, to) = (start.max(offset), (start + len).min(offset + size));
                if from < to {
                    let mut file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => BlobStoreError::NotFound,
                        _ => io_err(e),
                    })?;
                    file.seek(SeekFrom::Start(from - offset)).map_err(io_err)?;
                    files.push((file, to - from));
                }
                offset += size;
            }
            Ok((files, total, len))
        })
        .await?;
        let stream = futures_util::stream::iter(files)
            .flat_map(|(file, len)| {
                let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
                tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
            })
            .boxed();
        Ok(BlobBody { len, total, stream })
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobStoreError> {
        let (store, key) = (self.clone(), key.clone());
        blocking(move || match store.segments(&key) {
            Ok(segments) => Ok(Some(segments.iter().map(|(_, len)| len).sum())),
            Err(BlobStoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobStoreError> {
        match tokio::fs::remove_file(self.object_path(key)).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        match tokio::fs::remove_dir_all(self.parts_path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobStoreError> {
        let objects = self.root.join("objects");
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![objects.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io_err)?;
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_dir = entry.file_type().map_err(io_err)?.is_dir();
                    if is_dir && !name.ends_with(PARTS_SUFFIX) {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&objects) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        let key = key.strip_suffix(PARTS_SUFFIX).unwrap_or(&key);
                        if key.starts_with(&prefix) {
                            keys.push(key.to_owned());
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn create_multipart(&self, key: &BlobKey) -> Result<MultipartId, BlobStoreError> {
        let id = MultipartId(uuid::Uuid::new_v4().simple().to_string());
        let dir = self.upload_dir(&id)?;
        let (tmp, key) = (self.tmp_path(), key.as_str().to_owned());
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(io_err)?;
            write_atomically(&tmp, &dir.join("key"), key.as_bytes())
        })
        .await?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &BlobKey,
        upload: &MultipartId,
        number: u32,
        data: PartBody,
        sha256: [u8; 32],
    ) -> Result<String, BlobStoreError> {
        let dir = self.upload_dir(upload)?;
        let tmp = self.tmp_path();
        let swap = self.part_swap.clone();
        blocking(move || {
            if !dir.join("key").is_file() {
                return Err(BlobStoreError::NoSuchUpload);
            }
            // Verify what we were told, as S3 does with x-amz-checksum-sha256,
            // unless these very bytes were hashed in this process already.
            if !data.known_to_hash_to(&sha256) {
                let mut hasher = Sha256::new();
                for frame in data.frames() {
                    hasher.update(frame);
                }
                if <[u8; 32]>::from(hasher.finalize()) != sha256 {
                    return Err(BlobStoreError::InvalidPart {
                        part: Some(number),
                        reason: "the bytes do not match the declared SHA-256".into(),
                    });
                }
            }
            let name = part_name(number, &sha256);
            let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
            for frame in data.frames() {
                file.write_all(frame).map_err(io_err)?;
            }
            file.sync_data().map_err(io_err)?;
            let _guard = swap_lock(&swap);
            std::fs::rename(&tmp, dir.join(&name)).map_err(io_err)?;
            // The part is replaced: older versions of it are gone, as on S3.
            for entry in std::fs::read_dir(&dir).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                let other = entry.file_name().to_string_lossy().into_owned();
                if other.starts_with(&part_prefix(number)) && other != name {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            Ok(format!("\"{}\"", hex::encode(sha256)))
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
        parts: &[CompletedPart],
    ) -> Result<(), BlobStoreError> {
        let dir = self.upload_dir(upload)?;
        let (tmp, dest) = (self.tmp_path(), self.parts_path(key));
        let parts = parts.to_vec();
        let swap = self.part_swap.clone();
        blocking(move || {
            if !dir.join("key").is_file() {
                return Err(BlobStoreError::NoSuchUpload);
            }
            if dest.is_dir() {
                // An earlier completion of this upload published the object
                // and stopped (crashed) before clearing the upload away: the
                // key is this upload's own, so only the clean-up is left.
                return std::fs::remove_dir_all(&dir).map_err(io_err);
            }
            let _guard = swap_lock(&swap);
            // The object is its parts, in order: they are moved (renamed), not
            // copied, and appear together when their directory is renamed in.
            let moves: Vec<(PathBuf, PathBuf)> = parts
                .iter()
                .enumerate()
                .map(|(position, part)| {
                    let from = dir.join(part_name(part.number, &part.sha256));
                    (from, tmp.join(format!("{position:05}")))
                })
                .collect();
            for (part, (from, _)) in parts.iter().zip(&moves) {
                if !from.is_file() {
                    return Err(BlobStoreError::InvalidPart {
                        part: Some(part.number),
                        reason: "no part with that number and SHA-256 was uploaded".into(),
                    });
                }
            }
            std::fs::create_dir_all(&tmp).map_err(io_err)?;
            let assembled = (|| {
                for (i, (from, to)) in moves.iter().enumerate() {
                    if let Err(e) = std::fs::rename(from, to) {
                        return Err((i, e));
                    }
                }
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| (moves.len(), e))?;
                }
                std::fs::rename(&tmp, &dest).map_err(|e| (moves.len(), e))
            })();
            if let Err((moved, e)) = assembled {
                // Put the parts back: the upload stays whole and can complete later.
                for (from, to) in moves[..moved].iter().rev() {
                    let _ = std::fs::rename(to, from);
                }
                let _ = std::fs::remove_dir(&tmp);
                return Err(io_err(e));
            }
            std::fs::remove_dir_all(&dir).map_err(io_err)
        })
        .await
    }

    async fn abort_multipart(
        &self,
        _key: &BlobKey,
        upload: &MultipartId,
    ) -> Result<(), BlobStoreError> {
        let Ok(dir) = self.upload_dir(upload) else {
            return Ok(());
        };
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn list_multipart(&self) -> Result<Vec<PendingMultipart>, BlobStoreError> {
        let root = self.root.join("multipart");
        blocking(move || {
            let mut pending = Vec::new();
            for entry in std::fs::read_dir(&root).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                let mut key = String::new();
                if std::fs::File::open(entry.path().join("key"))
                    .and_then(|mut f| f.read_to_string(&mut key))
                    .is_ok()
                {
                    pending.push(PendingMultipart {
                        key,
                        id: MultipartId(entry.file_name().to_string_lossy().into_owned()),
                    });
                }
            }
            Ok(pending)
        })
        .await
    }

    async fn presign_get(
        &self,
        key: &BlobKey,
        request: &PresignRequest<'_>,
    ) -> Result<String, BlobStoreError> {
        let expires = (request.start + request.expires_in)
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| BlobStoreError::Other(e.to_string()))?
            .as_secs();
        Ok(self.signer.sign(
            key.as_str(),
            &SignedParams {
                expires,
                content_type: request.content_type.to_owned(),
                disposition: request.content_disposition.to_owned(),
                etag: request.blake3.to_owned(),
            },
        ))
    }
}
