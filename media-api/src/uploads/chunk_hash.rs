//! Hashing chunks as they stream in, and merging their BLAKE3 chaining values
//! into the whole file's hash without reading a byte again.
//!
//! Chunks have a power-of-two size of at least BLAKE3's 1 KiB chunk, so each
//! upload chunk is a complete, aligned subtree of the file's BLAKE3 tree: its
//! chaining value can be computed alone (`set_input_offset` +
//! `finalize_non_root`), and the root is the same binary merge BLAKE3 itself
//! does, whatever order the chunks arrived in. A one-chunk file has no parent
//! node, so its "chaining value" is the root hash itself.

use base64::Engine;
use blake3::hazmat::{ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root};
use sha2::{Digest, Sha256};

/// Hashes one chunk's bytes with SHA-256 and BLAKE3 at once.
pub struct ChunkHasher {
    sha256: Sha256,
    blake3: blake3::Hasher,
    only_chunk: bool,
}

impl std::fmt::Debug for ChunkHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkHasher").finish_non_exhaustive()
    }
}

/// What a chunk hashed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkDigests {
    /// SHA-256 of the chunk.
    pub sha256: [u8; 32],
    /// The chunk's BLAKE3 chaining value (the root hash for a one-chunk file).
    pub chaining_value: [u8; 32],
}

impl ChunkHasher {
    /// A hasher for chunk `number` (1-based) of a file cut in `chunk_size` pieces.
    pub fn new(number: u32, chunk_size: u64, total_chunks: u32) -> Self {
        let mut blake3 = blake3::Hasher::new();
        if number > 1 {
            blake3.set_input_offset(u64::from(number - 1) * chunk_size);
        }
        Self {
            sha256: Sha256::new(),
            blake3,
            only_chunk: total_chunks == 1,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.blake3.update(bytes);
    }

    /// The digests of everything fed.
    pub fn finish(self) -> ChunkDigests {
        let chaining_value = if self.only_chunk {
            *self.blake3.finalize().as_bytes()
        } else {
            self.blake3.finalize_non_root()
        };
        ChunkDigests {
            sha256: self.sha256.finalize().into(),
            chaining_value,
        }
    }
}

/// The file's BLAKE3 from its chunks' chaining values, in chunk order.
/// `size` is the file size; every chunk but the last is `chunk_size` bytes.
pub fn merge_root(chaining_values: &[[u8; 32]], chunk_size: u64, size: u64) -> blake3::Hash {
    fn subtree(
        cvs: &[ChainingValue],
        first_chunk: usize,
        chunk_size: u64,
        size: u64,
    ) -> ChainingValue {
        if cvs.len() == 1 {
            return cvs[0];
        }
        let (left, right) = split(cvs, first_chunk, chunk_size, size);
        merge_subtrees_non_root(
            &subtree(left, first_chunk, chunk_size, size),
            &subtree(right, first_chunk + left.len(), chunk_size, size),
            Mode::Hash,
        )
    }
    // BLAKE3's left subtree holds the largest power of two of 1 KiB chunks
    // that leaves at least one byte on the right; with aligned power-of-two
    // upload chunks that boundary always falls between two of them.
    fn split(
        cvs: &[ChainingValue],
        first_chunk: usize,
        chunk_size: u64,
        size: u64,
    ) -> (&[ChainingValue], &[ChainingValue]) {
        let start = first_chunk as u64 * chunk_size;
        let end = (start + cvs.len() as u64 * chunk_size).min(size);
        let left_chunks = (left_subtree_len(end - start) / chunk_size) as usize;
        cvs.split_at(left_chunks)
    }
    match chaining_values {
        [] => blake3::hash(b""),
        [only] => blake3::Hash::from_bytes(*only),
        cvs => {
            let (left, right) = split(cvs, 0, chunk_size, size);
            blake3::hazmat::merge_subtrees_root(
                &subtree(left, 0, chunk_size, size),
                &subtree(right, left.len(), chunk_size, size),
                Mode::Hash,
            )
        }
    }
}

/// The SHA-256 a `Content-Digest` header (RFC 9530) declares.
///
/// `Ok(None)` when the header lists no `sha-256` (other algorithms are
/// ignored, as the RFC asks); `Err` when the header is malformed.
pub fn parse_content_digest(header: &str) -> Result<Option<[u8; 32]>, String> {
    let mut found = None;
    for member in header.split(',') {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        let (algorithm, value) = member
            .split_once('=')
            .ok_or_else(|| format!("{member:?} is not algorithm=:base64:"))?;
        let value = value.trim();
        let bytes = value
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'))
            .ok_or_else(|| format!("the {algorithm} digest must be a byte sequence, :base64:"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bytes)
            .map_err(|_| format!("the {algorithm} digest is not valid base64"))?;
        if algorithm.trim().eq_ignore_ascii_case("sha-256") {
            let digest: [u8; 32] = decoded
                .try_into()
                .map_err(|_| "a sha-256 digest is 32 bytes".to_owned())?;
            found = Some(digest);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn root_by_chunks(bytes: &[u8], chunk_size: usize) -> blake3::Hash {
        let total = bytes.len().div_ceil(chunk_size).max(1) as u32;
        let cvs: Vec<[u8; 32]> = bytes
            .chunks(chunk_size)
            .enumerate()
            .map(|(i, c)| {
                let mut h = ChunkHasher::new(i as u32 + 1, chunk_size as u64, total);
                // Feed in uneven pieces, as a network would.
                for piece in c.chunks(777) {
                    h.update(piece);
                }
                h.finish().chaining_value
            })
            .collect();
        merge_root(&cvs, chunk_size as u64, bytes.len() as u64)
    }

    #[test]
    fn merged_root_equals_blake3_of_the_whole() {
        for chunk_size in [1024usize, 4096, 65536] {
            for len in [
                1,
                1023,
                1024,
                1025,
                3 * chunk_size,
                3 * chunk_size + 1,
                5 * chunk_size - 1,
                7 * chunk_size + 513,
                8 * chunk_size,
                13 * chunk_size + 5,
            ] {
                let bytes = data(len);
                assert_eq!(
                    root_by_chunks(&bytes, chunk_size),
                    blake3::hash(&bytes),
                    "chunk_size {chunk_size}, len {len}"
                );
            }
        }
    }

    #[test]
    fn sha256_matches_the_whole_chunk() {
        let bytes = data(10_000);
        let mut h = ChunkHasher::new(1, 16384, 1);
        h.update(&bytes[..3]);
        h.update(&bytes[3..]);
        let d = h.finish();
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(d.chaining_value, *blake3::hash(&bytes).as_bytes());
    }

    #[test]
    fn content_digest_headers() {
        let sha = Sha256::digest(b"hello");
        let b64 = base64::engine::general_purpose::STANDARD.encode(sha);
        assert_eq!(
            parse_content_digest(&format!("sha-256=:{b64}:")),
            Ok(Some(sha.into()))
        );
        assert_eq!(
            parse_content_digest(&format!("sha-512=:AAAA:, sha-256=:{b64}:")),
            Ok(Some(sha.into()))
        );
        assert_eq!(parse_content_digest("sha-512=:AAAA:"), Ok(None));
        assert!(parse_content_digest("sha-256=abc").is_err());
        assert!(parse_content_digest("sha-256=:!!!:").is_err());
        assert!(parse_content_digest("sha-256=:AAAA:").is_err());
        assert!(parse_content_digest("garbage").is_err());
    }
}
