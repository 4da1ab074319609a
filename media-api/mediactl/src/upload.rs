//! `mediactl upload`: hash first (a file its owner already has is not sent
//! again), then a chunked session, chunks sent several at once. The
//! session's id is kept in a small state file keyed by the service, the
//! file's path, size and modification time, so a run cut off by Ctrl-C or a
//! dead network is resumed by running the same command again: it asks the
//! service which chunks it has and sends only the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use clap::Args;
use futures_util::TryStreamExt;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::{Api, Failure};
use crate::output::{self, Bars};

/// `mediactl upload`.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Chunks in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Wait until processing is done and show the variants.
    #[arg(long)]
    wait: bool,
    /// Send at most this many bytes per second (`500K`, `20M`, `1G`), to
    /// leave a slow or shared link room.
    #[arg(long, value_parser = parse_rate)]
    limit_rate: Option<u64>,
}

/// `20M` → 20 MiB; plain digits are bytes.
fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a rate: {text:?}"))?;
    let scale = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("not a rate: {text:?} (say 500K, 20M or 1G)")),
    };
    n.checked_mul(scale)
        .filter(|r| *r > 0)
        .ok_or_else(|| format!("not a rate: {text:?}"))
}

/// Spaces chunks out to a byte rate: each reserves its share of time.
#[derive(Debug)]
struct Pace {
    rate: u64,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self, len: u64) {
        let at = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            *next = at + Duration::from_secs_f64(len as f64 / self.rate as f64);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What is remembered of an upload under way.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    upload_id: String,
    blake3: String,
}

/// The state file: uploads under way, by service, path, size and mtime.
#[derive(Debug)]
struct StateFile {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Remembered>,
}

impl StateFile {
    fn load() -> Self {
        let path = crate::state_dir().map(|d| d.join("uploads.json"));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self { path, entries }
    }

    fn save(&self) -> Result<(), Failure> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fail = |e: std::io::Error| {
            Failure::Local(format!(
                "cannot write the state file {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.entries).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

/// One file to send.
#[derive(Debug)]
struct Local {
    path: PathBuf,
    name: String,
    size: u64,
    key: String,
}

impl Local {
    fn open(api: &Api, path: &Path) -> Result<Self, Failure> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Failure::Local(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(Failure::Usage(format!("{} is not a file", path.display())));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Failure::Usage(format!("{} has no file name", path.display())))?;
        let full = std::fs::canonicalize(path)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            key: format!("{}|{}|{}|{mtime}", api.url("/"), full.display(), meta.len()),
            path: path.to_owned(),
            name,
            size: meta.len(),
        })
    }
}

/// Runs `mediactl upload`.
pub(crate) async fn run(api: &Api, args: UploadArgs) -> Result<(), Failure> {
    let files = args
        .files
        .iter()
        .map(|p| Local::open(api, p))
        .collect::<Result<Vec<_>, _>>()?;
    let bars = Bars::new();
    let total = (files.len() > 1).then(|| {
        bars.bytes(
            &format!("total ({} files)", files.len()),
            files.iter().map(|f| f.size).sum(),
        )
    });
    let mut state = StateFile::load();
    let pace = args.limit_rate.map(Pace::new);
    let work = async {
        for file in &files {
            let sending = Sending {
                parallel: args.parallel,
                pace: pace.as_ref(),
                total: total.as_ref(),
            };
            let media = upload_one(api, &bars, &sending, &mut state, file).await?;
            if args.wait {
                wait_for_processing(api, &bars, &media).await?;
            }
        }
        Ok::<(), Failure>(())
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = tokio::signal::ctrl_c() => Err(Failure::Interrupted(
            "interrupted: run the same command again to send only what is missing".into(),
        )),
    };
    if let Some(total) = total {
        total.finish_and_clear();
    }
    outcome
}

/// The file's BLAKE3, read once in 1 MiB pieces.
async fn hash_file(path: &Path, bar: &ProgressBar) -> Result<String, Failure> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bar.inc(n as u64);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// How chunks go out.
#[derive(Debug, Clone, Copy)]
struct Sending<'a> {
    parallel: u16,
    pace: Option<&'a Pace>,
    total: Option<&'a ProgressBar>,
}

async fn upload_one(
    api: &Api,
    bars: &Bars,
    sending: &Sending<'_>,
    state: &mut StateFile,
    file: &Local,
) -> Result<Value, Failure> {
    let total = sending.total;
    let bar = bars.bytes(&file.name, file.size);
    let remembered = state.entries.get(&file.key).cloned();
    let blake3 = match &remembered {
        Some(r) => r.blake3.clone(),
        None => {
            bar.set_message("hashing");
            let hash = hash_file(&file.path, &bar).await?;
            bar.set_position(0);
            hash
        }
    };
    // A session left by an earlier run, if the service still has it open.
    let mut session = None;
    if let Some(r) = &remembered {
        match api
            .json(api.get(&format!("/v1/uploads/{}", r.upload_id)))
            .await
        {
            Ok(s) if s["state"] == "receiving" || s["state"] == "completing" => session = Some(s),
            Ok(s) if s["state"] == "completed" => {
                session = Some(s);
            }
            Ok(_) => {}
            Err(f) if f.code().is_some() => {}
            Err(f) => return Err(f),
        }
    }
    let session = match session {
        Some(s) => s,
        None => {
            let created = api
                .send(api.post("/v1/uploads").json(&json!({
                    "file_name": file.name,
                    "size": file.size,
                    "blake3": blake3,
                })))
                .await?;
            let instant = created.status() == reqwest::StatusCode::OK;
            let body: Value = created
                .json()
                .await
                .map_err(|e| Failure::Unavailable(e.to_string()))?;
            if instant {
                // Already theirs: a new media item, no byte sent.
                bar.finish_and_clear();
                if let Some(t) = total {
                    t.inc(file.size);
                }
                bars.println(&format!(
                    "{}  {}  blake3 {}  (already yours: nothing sent)",
                    file.name,
                    output::text(&body["media_id"]),
                    output::text(&body["blake3"])
                ));
                return Ok(body);
            }
            state.entries.insert(
                file.key.clone(),
                Remembered {
                    upload_id: output::text(&body["upload_id"]),
                    blake3: blake3.clone(),
                },
            );
            state.save()?;
            body
        }
    };
    let id = output::text(&session["upload_id"]);
    let chunk_size = session["chunk_size"].as_u64().unwrap_or(0).max(1);
    let mut answer = None;
    let mut counted = false;
    // Send what is missing, complete; a completion that finds chunks
    // missing (lost in flight) sends those and completes again.
    for _ in 0..3 {
        let progress = api.json(api.get(&format!("/v1/uploads/{id}"))).await?;
        if progress["state"] != "completed" {
            let missing: Vec<u64> = progress["missing_chunks"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let missing_bytes: u64 = missing
                .iter()
                .map(|n| chunk_len(file.size, chunk_size, *n))
                .sum();
            bar.set_position(file.size - missing_bytes);
            if let Some(t) = total.filter(|_| !counted) {
                t.inc(file.size - missing_bytes);
            }
            counted = true;
            let have = progress["total_chunks"].as_u64().unwrap_or(0) - missing.len() as u64;
            bar.set_message("");
            if !bars.drawn() || have > 0 {
                bars.println(&format!(
                    "{}: sending {} of {} chunks ({} already there)",
                    file.name,
                    missing.len(),
                    progress["total_chunks"],
                    have
                ));
            }
            send_chunks(api, &id, file, chunk_size, &missing, sending, &bar).await?;
        }
        bar.set_message("completing");
        match api
            .json(api.post(&format!("/v1/uploads/{id}/complete")))
            .await
        {
            Ok(done) => {
                answer = Some(done);
                break;
            }
            Err(f) if f.code() == Some("chunks-missing") => continue,
            Err(f) => return Err(f),
        }
    }
    let done = answer.ok_or_else(|| {
        Failure::Unavailable("the service kept finding chunks missing; run again".into())
    })?;
    state.entries.remove(&file.key);
    state.save()?;
    bar.finish_and_clear();
    if done["blake3"] != blake3.as_str() {
        return Err(Failure::Local(format!(
            "{}: the service computed BLAKE3 {} but the file hashes to {blake3}; was it changed while uploading?",
            file.name, done["blake3"]
        )));
    }
    bars.println(&format!(
        "{}  {}  blake3 {}",
        file.name,
        output::text(&done["media_id"]),
        output::text(&done["blake3"])
    ));
    Ok(done)
}

/// The length of chunk `n` (1-based).
fn chunk_len(size: u64, chunk_size: u64, n: u64) -> u64 {
    let start = (n - 1) * chunk_size;
    chunk_size.min(size.saturating_sub(start))
}

async fn send_chunks(
    api: &Api,
    id: &str,
    file: &Local,
    chunk_size: u64,
    missing: &[u64],
    sending: &Sending<'_>,
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let path = Arc::new(file.path.clone());
    let total = sending.total;
    futures_util::stream::iter(missing.iter().copied().map(Ok))
        .try_for_each_concurrent(usize::from(sending.parallel), |n| {
            let path = path.clone();
            async move {
                let len = chunk_len(file.size, chunk_size, n);
                if let Some(pace) = sending.pace {
                    pace.wait(len).await;
                }
                let data = read_chunk(&path, (n - 1) * chunk_size, len).await?;
                send_chunk(api, id, n, data).await?;
                bar.inc(len);
                if let Some(t) = total {
                    t.inc(len);
                }
                Ok::<(), Failure>(())
            }
        })
        .await
}

async fn read_chunk(path: &Path, offset: u64, len: u64) -> Result<bytes::Bytes, Failure> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact(&mut data).await?;
    Ok(bytes::Bytes::from(data))
}

/// One chunk, tried again on a network failure or the service's.
async fn send_chunk(api: &Api, id: &str, n: u64, data: bytes::Bytes) -> Result<(), Failure> {
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&data));
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let request = api
            .request(
                reqwest::Method::PUT,
                &format!("/v1/uploads/{id}/chunks/{n}"),
            )
            .header("content-digest", format!("sha-256=:{digest}:"))
            .body(data.clone());
        match api.send(request).await {
            Ok(_) => return Ok(()),
            Err(f) if f.retryable() && attempt < 6 => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(15));
                attempt += 1;
            }
            Err(f) => return Err(f),
        }
    }
}

/// Waits until the media's processing ends, then shows its variants.
async fn wait_for_processing(api: &Api, bars: &Bars, media: &Value) -> Result<(), Failure> {
    let id = output::text(&media["media_id"]);
    let spinner = bars.bytes(
        &format!("{} processing", output::text(&media["file_name"])),
        0,
    );
    let view = loop {
        let view = api.json(api.get(&format!("/v1/media/{id}"))).await?;
        if view["status"] != "processing" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    spinner.finish_and_clear();
    bars.println(&format!("{id}: {}", output::text(&view["status"])));
    if let Some(reason) = view["failure_reason"].as_str() {
        bars.println(&format!("  {reason}"));
    }
    let rows = output::rows(&view["variants"], |v| {
        vec![
            output::text(&v["name"]),
            output::text(&v["content_type"]),
            output::bytes(v["size"].as_u64().unwrap_or(0)),
            match (v["width"].as_u64(), v["height"].as_u64()) {
                (Some(w), Some(h)) => format!("{w}×{h}"),
                _ => "-".into(),
            },
        ]
    });
    if !rows.is_empty() {
        output::table(&["VARIANT", "TYPE", "SIZE", "PIXELS"], &rows);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::chunk_len;

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(super::parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(super::parse_rate("20M"), Ok(20 << 20));
        assert_eq!(super::parse_rate("1GiB"), Ok(1 << 30));
        assert_eq!(super::parse_rate("4096"), Ok(4096));
        assert!(super::parse_rate("0").is_err());
        assert!(super::parse_rate("fast").is_err());
        assert!(super::parse_rate("5X").is_err());
    }

    #[test]
    fn the_last_chunk_is_the_rest() {
        assert_eq!(chunk_len(10, 4, 1), 4);
        assert_eq!(chunk_len(10, 4, 3), 2);
        assert_eq!(chunk_len(8, 4, 2), 4);
    }
}
