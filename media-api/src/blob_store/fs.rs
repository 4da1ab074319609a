//! The filesystem blob store: the embedded default.
//!
//! Layout under its root:
//! - `objects/<key>`: whole objects.
//! - `objects/<key>~parts/`: an object a multipart upload made: its parts,
//!   `00000`, `00001`, … in order, each with its 32-byte SHA-256 header, and
//!   `manifest`, their sizes, so a read opens the manifest and then each part
//!   as the read reaches it: no directory listing, one descriptor at a time.
//! - `multipart/<id>/key`: the key an upload completes to.
//! - `multipart/<id>/<part:05>`: a part: its SHA-256, then its bytes. A part
//!   sent again replaces it by one rename (the last one wins, as on S3), and
//!   completion checks the header against the digest it names, so a part
//!   re-sent with other bytes can never be joined in place of the one the
//!   caller recorded.
//! - `tmp/`: files being written; every write lands by an atomic rename.
//!
//! Objects a multipart upload made before the manifest existed (parts
//! without headers, no `manifest`) are still read, by listing their directory.

use std::io::{Read, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::signed_url::{SignedParams, UrlSigner};
use super::{
    BlobBody, BlobKey, BlobStore, BlobStoreError, ByteRange, CompletedPart, ListedObject,
    MultipartId, PartBody, PendingMultipart, PresignRequest,
};

/// Objects as files in a directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    signer: UrlSigner,
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
        Ok(Self { root, signer })
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

    /// The files an object is made of, in order: the object's own file, or
    /// the parts its multipart upload completed with (from its manifest).
    fn segments(&self, key: &BlobKey) -> Result<Vec<Segment>, BlobStoreError> {
        match std::fs::metadata(self.object_path(key)) {
            Ok(m) => {
                return Ok(vec![Segment {
                    path: self.object_path(key),
                    skip: 0,
                    len: m.len(),
                }]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let dir = self.parts_path(key);
        match std::fs::read_to_string(dir.join(MANIFEST)) {
            Ok(manifest) => parse_manifest(&dir, &manifest),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => legacy_segments(&dir),
            Err(e) => Err(io_err(e)),
        }
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

/// An object found by a listing: a file, or a directory of parts (whose
/// manifest says its size).
fn listed(
    store: &FsBlobStore,
    key: String,
    path: &std::path::Path,
) -> Result<ListedObject, BlobStoreError> {
    let modified_ms = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let size = match BlobKey::parse(&key) {
        Ok(k) => store.segments(&k)?.iter().map(|s| s.len).sum(),
        // Not a key this service makes (put there by hand): its file's size.
        Err(_) => std::fs::metadata(path).map_or(0, |m| m.len()),
    };
    Ok(ListedObject {
        key,
        size,
        modified_ms,
    })
}

/// One page of a listing: a walk of the object tree in key order that skips
/// every directory whose keys all sort before `after`, so a page costs the
/// depth of the tree, not the objects before it.
struct Page<'a> {
    store: &'a FsBlobStore,
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
    keys: Vec<ListedObject>,
}

impl Page<'_> {
    /// Walks `dir` (keys starting with `rel`); true once the page is full.
    fn walk(&mut self, dir: &std::path::Path, rel: &str) -> Result<bool, BlobStoreError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(e)),
        };
        // A directory sorts as its name and a slash, an object as its key:
        // the walk's order is the keys' byte order.
        let mut sorted = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().map_err(io_err)?.is_dir();
            let (sort, subtree) = match name.strip_suffix(PARTS_SUFFIX) {
                Some(key) if is_dir => (format!("{rel}{key}"), false),
                _ if is_dir => (format!("{rel}{name}/"), true),
                _ => (format!("{rel}{name}"), false),
            };
            sorted.push((sort, subtree, entry.path()));
        }
        sorted.sort();
        for (key, subtree, path) in sorted {
            if subtree {
                let overlaps = key.starts_with(self.prefix) || self.prefix.starts_with(&key);
                // Every key below sorts before `after` unless `after` is below too.
                let passed = self
                    .after
                    .is_some_and(|a| key.as_str() < a && !a.starts_with(&key));
                if overlaps && !passed && self.walk(&path, &key)? {
                    return Ok(true);
                }
            } else if key.starts_with(self.prefix) && self.after.is_none_or(|a| key.as_str() > a) {
                self.keys.push(listed(self.store, key, &path)?);
                if self.keys.len() == self.limit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
/// The file in a multipart object's directory listing its parts' sizes.
const MANIFEST: &str = "manifest";
/// The first line of a manifest.
const MANIFEST_HEADER: &str = "parts v1";
/// Bytes before a part's data: its SHA-256.
const PART_HEADER: u64 = 32;

/// A part's file in its upload's directory, and in its object's.
fn part_name(number: u32) -> String {
    format!("{number:05}")
}

/// Why assembling an object stopped.
enum Failure {
    Io(std::io::Error),
    /// The part there is not the one named.
    Part(u32),
}

/// One file of an object: where, how many header bytes to skip, how long.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    skip: u64,
    len: u64,
}

fn parse_manifest(dir: &Path, manifest: &str) -> Result<Vec<Segment>, BlobStoreError> {
    let mut lines = manifest.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        return Err(BlobStoreError::Other(format!(
            "{}: not a parts manifest",
            dir.display()
        )));
    }
    lines
        .enumerate()
        .map(|(position, line)| {
            let len = line.parse::<u64>().map_err(|_| {
                BlobStoreError::Other(format!("{}: bad manifest line", dir.display()))
            })?;
            Ok(Segment {
                path: dir.join(part_name(u32::try_from(position).unwrap_or(u32::MAX))),
                skip: PART_HEADER,
                len,
            })
        })
        .collect()
}

/// An object completed before manifests: its parts have no headers, and
/// their sizes come from listing the directory.
fn legacy_segments(dir: &Path) -> Result<Vec<Segment>, BlobStoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BlobStoreError::NotFound);
        }
        Err(e) => return Err(io_err(e)),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        parts.push(Segment {
            path: entry.path(),
            skip: 0,
            len: entry.metadata().map_err(io_err)?.len(),
        });
    }
    // Named by their zero-padded position.
    parts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(parts)
}

/// The SHA-256 header of a part file.
fn part_header(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut header = [0u8; 32];
    std::fs::File::open(path)?.read_exact(&mut header)?;
    Ok(header)
}

/// Opens a segment at `from` (an offset into its data), as the read reaches it.
async fn open_at(segment: &Segment, from: u64) -> std::io::Result<tokio::fs::File> {
    let mut file = tokio::fs::File::open(&segment.path).await?;
    tokio::io::AsyncSeekExt::seek(&mut file, SeekFrom::Start(segment.skip + from)).await?;
    Ok(file)
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
            // Only after a completion was refused: listing is fine here.
            let mut parts = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(n) = name.parse::<u32>()
                    && let Ok(sha) = part_header(&entry.path())
                {
                    parts.push((n, format!("\"{}\"", hex::encode(sha))));
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

    async fn put_file(&self, key: &BlobKey, path: &Path) -> Result<(), BlobStoreError> {
        // Copied by the kernel into a temporary file, synced, renamed in.
        let (tmp, dest, from) = (self.tmp_path(), self.object_path(key), path.to_owned());
        blocking(move || {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io_err)?;
            }
            std::fs::copy(&from, &tmp).map_err(io_err)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_data())
                .map_err(io_err)?;
            std::fs::rename(&tmp, &dest).map_err(io_err)
        })
        .await
    }

    async fn get(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, BlobStoreError> {
        let store = self.clone();
        let key = key.clone();
        let (pieces, total, len) = blocking(move || {
            let segments = store.segments(&key)?;
            let total = segments.iter().map(|s| s.len).sum::<u64>();
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
            // The pieces of the files the range touches: (segment, from, len).
            let (mut pieces, mut offset) = (Vec::new(), 0u64);
            for segment in segments {
                let size = segment.len;
                let (from, to) = (start.max(offset), (start + len).min(offset + size));
                if from < to {
                    pieces.push((segment, from - offset, to - from));
                }
                offset += size;
            }
            // The first file opens now, so a missing object answers here.
            if let Some((segment, _, _)) = pieces.first() {
                std::fs::metadata(&segment.path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => BlobStoreError::NotFound,
                    _ => io_err(e),
                })?;
            }
            Ok((pieces, total, len))
        })
        .await?;
        // Each file is opened when the read reaches it and closed when it
        // is done: one descriptor at a time, whatever the number of parts.
        // (An object deleted mid-read ends the read with an error; the GC
        // deletes only content unreferenced for `gc_grace`.)
        let stream = futures_util::stream::iter(pieces)
            .then(|(segment, from, len)| async move {
                let file = open_at(&segment, from).await?;
                let reader = tokio::io::AsyncReadExt::take(file, len);
                Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
                    reader,
                    256 * 1024,
                ))
            })
            .try_flatten()
            .boxed();
        Ok(BlobBody { len, total, stream })
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobStoreError> {
        let (store, key) = (self.clone(), key.clone());
        blocking(move || match store.segments(&key) {
            Ok(segments) => Ok(Some(segments.iter().map(|s| s.len).sum())),
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

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedObject>, BlobStoreError> {
        let objects = self.root.join("objects");
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        let store = self.clone();
        blocking(move || {
            let mut page = Page {
                store: &store,
                prefix: &prefix,
                after: after.as_deref(),
                limit: limit.max(1),
                keys: Vec::new(),
            };
            page.walk(&objects, "")?;
            Ok(page.keys)
        })
        .await
    }

    async fn rename(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobStoreError> {
        let moves = [
            (self.object_path(from), self.object_path(to)),
            (self.parts_path(from), self.parts_path(to)),
        ];
        blocking(move || {
            for (from, to) in moves {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err)?;
                }
                match std::fs::rename(&from, &to) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(BlobStoreError::NotFound)
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
            let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
            file.write_all(&sha256).map_err(io_err)?;
            for frame in data.frames() {
                file.write_all(frame).map_err(io_err)?;
            }
            file.sync_data().map_err(io_err)?;
            // One rename replaces an older version of the part, as on S3.
            std::fs::rename(&tmp, dir.join(part_name(number))).map_err(io_err)?;
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
            // The object is its parts, in order: they are moved (renamed), not
            // copied, and appear together when their directory is renamed in.
            let moves: Vec<(PathBuf, PathBuf)> = parts
                .iter()
                .enumerate()
                .map(|(position, part)| {
                    let from = dir.join(part_name(part.number));
                    let position = u32::try_from(position).unwrap_or(u32::MAX);
                    (from, tmp.join(part_name(position)))
                })
                .collect();
            std::fs::create_dir_all(&tmp).map_err(io_err)?;
            // Moved out first, then checked: a part sent again meanwhile
            // lands in the upload's directory, not in what is checked.
            let assembled = (|| {
                let mut manifest = format!("{MANIFEST_HEADER}\n");
                for (i, ((from, to), part)) in moves.iter().zip(&parts).enumerate() {
                    if let Err(e) = std::fs::rename(from, to) {
                        return Err((i, Failure::Io(e)));
                    }
                    let header = part_header(to);
                    let len = std::fs::metadata(to).map(|m| m.len());
                    match (header, len) {
                        (Ok(sha), Ok(len)) if sha == part.sha256 && len >= PART_HEADER => {
                            manifest.push_str(&format!("{}\n", len - PART_HEADER));
                        }
                        (Err(e), _) | (_, Err(e))
                            if e.kind() != std::io::ErrorKind::UnexpectedEof =>
                        {
                            return Err((i + 1, Failure::Io(e)));
                        }
                        _ => return Err((i + 1, Failure::Part(part.number))),
                    }
                }
                let done = moves.len();
                write_atomically(
                    &tmp.join(MANIFEST).with_extension("new"),
                    &tmp.join(MANIFEST),
                    manifest.as_bytes(),
                )
                .map_err(|e| (done, Failure::Io(std::io::Error::other(e.to_string()))))?;
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| (done, Failure::Io(e)))?;
                }
                std::fs::rename(&tmp, &dest).map_err(|e| (done, Failure::Io(e)))
            })();
            if let Err((moved, failure)) = assembled {
                // Put the parts back: the upload stays whole and can complete later.
                for (from, to) in moves[..moved].iter().rev() {
                    let _ = std::fs::rename(to, from);
                }
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(match failure {
                    Failure::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        BlobStoreError::InvalidPart {
                            part: parts.get(moved).map(|p| p.number),
                            reason: "no part with that number was uploaded".into(),
                        }
                    }
                    Failure::Io(e) => io_err(e),
                    Failure::Part(number) => BlobStoreError::InvalidPart {
                        part: Some(number),
                        reason: "no part with that number and SHA-256 was uploaded".into(),
                    },
                });
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
                    let initiated_ms = entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_millis()).ok());
                    pending.push(PendingMultipart {
                        key,
                        id: MultipartId(entry.file_name().to_string_lossy().into_owned()),
                        initiated_ms,
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
