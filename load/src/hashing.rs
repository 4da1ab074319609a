//! The chunk hashing pipeline (SHA-256 and BLAKE3 of every chunk, in one
//! pass, as the service does it) against `b3sum` and `sha256sum` on the same
//! bytes, one core each.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::http::noise;

/// Options of `load hash`.
#[derive(Debug, clap::Args)]
pub(crate) struct HashOptions {
    /// Bytes hashed, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Chunk size, in MiB.
    #[arg(long, default_value_t = 8)]
    chunk_mib: usize,
}

/// GB/s of each way of hashing the same bytes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HashReport {
    pub(crate) bytes: u64,
    pub(crate) rows: Vec<(String, f64)>,
}

impl HashReport {
    pub(crate) fn table(&self) -> String {
        let mut out = format!("== hash ({} MiB, one core)\n", self.bytes >> 20);
        for (name, gbps) in &self.rows {
            out.push_str(&format!("  {name:<44} {gbps:>7.3} GB/s\n"));
        }
        out
    }
}

fn gbps(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / 1e9 / seconds
}

/// Best of three wall-clock runs of a command, in seconds.
fn best_of_three(cmd: &mut Command) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        if !out.status.success() {
            bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn best_of_three_in_process(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

pub(crate) fn run(o: &HashOptions) -> anyhow::Result<HashReport> {
    let size = o.size_mib << 20;
    let chunk = o.chunk_mib << 20;
    let data = noise(size, 42);
    let total = size.div_ceil(chunk) as u32;
    let mut rows = Vec::new();
    let both = best_of_three_in_process(|| {
        for (i, piece) in data.chunks(chunk).enumerate() {
            let mut h =
                media_api::uploads::chunk_hash::ChunkHasher::new(i as u32 + 1, chunk as u64, total);
            // As the service feeds it: the pieces a request body arrives in.
            for part in piece.chunks(64 << 10) {
                h.update(part);
            }
            std::hint::black_box(h.finish());
        }
    });
    rows.push((
        "ours: SHA-256 + BLAKE3 per chunk, one pass".to_owned(),
        gbps(size, both),
    ));
    let blake = best_of_three_in_process(|| {
        std::hint::black_box(blake3::hash(&data));
    });
    rows.push((
        "blake3 crate alone (one thread)".to_owned(),
        gbps(size, blake),
    ));
    let sha = best_of_three_in_process(|| {
        use sha2::Digest;
        std::hint::black_box(sha2::Sha256::digest(&data));
    });
    rows.push(("sha2 crate alone".to_owned(), gbps(size, sha)));

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("data");
    std::fs::write(&file, &data)?;
    // Warm the page cache, so the tools hash memory as we do.
    std::fs::read(&file)?;
    let b3sum = best_of_three(
        Command::new("b3sum")
            .args(["--num-threads", "1"])
            .arg(&file),
    )?;
    rows.push(("b3sum --num-threads 1".to_owned(), gbps(size, b3sum)));
    let sha256sum = best_of_three(Command::new("sha256sum").arg(&file))?;
    rows.push(("sha256sum".to_owned(), gbps(size, sha256sum)));
    rows.push((
        "b3sum then sha256sum (two passes)".to_owned(),
        gbps(size, b3sum + sha256sum),
    ));
    Ok(HashReport {
        bytes: size as u64,
        rows,
    })
}
