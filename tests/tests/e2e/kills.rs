//! The service SIGKILLed under load, ten times over: every upload completes
//! once its client resumes, with the right BLAKE3, and the store keeps no
//! multipart upload that no session names (the janitor aborts the ones a
//! kill left between starting a multipart upload and recording its session).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use media_e2e::both_sets;
use media_e2e::{BackendSet, ServiceProcess, TestApp, eventually, free_port, test_settings};
use serde_json::{Value, json};

const SECRET: &str = "kills-test-secret-long-enough-0123456789abc";
const MIB: usize = 1024 * 1024;
const UPLOADS: usize = 100;
const KILLS: usize = 10;

/// One upload as a client on a bad network makes it: after any failure (a
/// refused or cut connection, a 5xx, a completion still in progress) it
/// waits a moment, asks what the service holds, sends what is missing and
/// completes. A session whose creation got no answer is opened again.
struct Resuming {
    client: reqwest::Client,
    base: String,
    token: String,
    data: Vec<u8>,
    /// `chunk_size` to ask for (the store's smallest, for several chunks).
    chunk_size: Option<usize>,
    /// `(upload_id, chunk_size)` once a creation was answered.
    session: Option<(String, usize)>,
    /// Failed attempts, each followed by a resume.
    resumed: usize,
}

impl Resuming {
    /// Goes on until the upload completes; its BLAKE3 as the service said it.
    async fn run(mut self) -> (String, usize) {
        let started = Instant::now();
        loop {
            match self.attempt().await {
                Ok(blake3) => return (blake3, self.resumed),
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(300),
                        "an upload did not complete in 5 minutes; last: {e}"
                    );
                    self.resumed += 1;
                    let pause = 100 + (self.resumed * 37 % 200) as u64;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    async fn attempt(&mut self) -> Result<String, String> {
        let (base, token) = (&self.base, &self.token);
        let (id, chunk) = match &self.session {
            Some(session) => session.clone(),
            None => {
                let mut body = json!({ "file_name": "k.bin", "size": self.data.len() });
                if let Some(size) = self.chunk_size {
                    body["chunk_size"] = json!(size);
                }
                let r = self
                    .client
                    .post(format!("{base}/v1/uploads"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("create: {e}"))?;
                let v = answer(r, 201, "create").await?;
                let id = v["upload_id"].as_str().ok_or("no id")?.to_owned();
                let chunk = v["chunk_size"].as_u64().ok_or("no chunk size")? as usize;
                self.session = Some((id.clone(), chunk));
                (id, chunk)
            }
        };
        let r = self
            .client
            .get(format!("{base}/v1/uploads/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("progress: {e}"))?;
        let progress = answer(r, 200, "progress").await?;
        let missing: Vec<usize> = progress["missing_chunks"]
            .as_array()
            .ok_or_else(|| format!("no missing_chunks: {progress}"))?
            .iter()
            .filter_map(|n| n.as_u64().map(|n| n as usize))
            .collect();
        for n in missing {
            let end = (n * chunk).min(self.data.len());
            let r = self
                .client
                .put(format!("{base}/v1/uploads/{id}/chunks/{n}"))
                .bearer_auth(token)
                .body(self.data[(n - 1) * chunk..end].to_vec())
                .send()
                .await
                .map_err(|e| format!("chunk {n}: {e}"))?;
            answer(r, 200, "chunk").await?;
        }
        let r = self
            .client
            .post(format!("{base}/v1/uploads/{id}/complete"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("complete: {e}"))?;
        let done = answer(r, 200, "complete").await?;
        done["blake3"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no blake3: {done}"))
    }
}

/// The JSON of an answer with the `expected` status, or what came instead.
async fn answer(r: reqwest::Response, expected: u16, what: &str) -> Result<Value, String> {
    let status = r.status().as_u16();
    let body = r.text().await.map_err(|e| format!("{what}: {e}"))?;
    if status != expected {
        return Err(format!("{what}: {status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{what}: {e}"))
}

/// The multipart uploads the store holds that no session row names, read
/// from the store and the database directly.
async fn unnamed_multiparts(settings: &media_api::Settings) -> Vec<String> {
    let (store, _) = media_api::blob_store::from_settings(settings)
        .await
        .expect("the store");
    let pending = store.list_multipart().await.expect("list multipart");
    let mut db = media_e2e::connect_to(settings).await;
    let named: HashSet<String> = sqlx::query_scalar("select multipart_id from uploads")
        .fetch_all(&mut db)
        .await
        .expect("sessions")
        .into_iter()
        .collect();
    pending
        .into_iter()
        .filter(|p| !named.contains(&p.id.0))
        .map(|p| p.key)
        .collect()
}

both_sets!(a_hundred_uploads_through_ten_sigkills_all_complete_and_leave_no_orphan_multipart);
async fn a_hundred_uploads_through_ten_sigkills_all_complete_and_leave_no_orphan_multipart(
    set: BackendSet,
) {
    let (settings, _dir) = test_settings(set).await;
    let port = free_port();
    // A completion a kill cut off is taken over after
    // `abandoned_completion` (60 s by default; a few seconds here).
    let env = [
        ("MEDIA_JANITOR_INTERVAL", "500ms"),
        ("MEDIA_GC_GRACE", "2s"),
        ("MEDIA_LIMITS__ABANDONED_COMPLETION", "3s"),
    ];
    let mut service = ServiceProcess::start_with(&settings, port, SECRET, &env).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    // The store's smallest chunk: several chunks a file on the filesystem
    // store (64 KiB parts), one or two on S3 (5 MiB parts → 8 MiB chunks).
    let chunk_size = (set == BackendSet::Embedded).then_some(MIB);
    let completed = Arc::new(AtomicUsize::new(0));
    let start = |i: usize, base: String, token: String| {
        let data = media_e2e::random_bytes(2 * MIB + i * 41_000, 7000 + i as u64);
        let expected = blake3::hash(&data).to_hex().to_string();
        let upload = Resuming {
            client: client.clone(),
            base,
            token,
            data,
            chunk_size,
            session: None,
            resumed: 0,
        };
        let completed = completed.clone();
        tokio::spawn(async move {
            let (blake3, resumed) = upload.run().await;
            completed.fetch_add(1, Ordering::SeqCst);
            (expected, blake3, resumed)
        })
    };
    // A tenth of the uploads starts after each restart (so sessions open,
    // chunks arrive and completions run across every kill), and the next
    // kill comes a moment later, mid-traffic.
    let mut uploads = Vec::new();
    let mut unfinished_at_kill = Vec::new();
    for k in 1..=KILLS {
        for i in (k - 1) * UPLOADS / KILLS..k * UPLOADS / KILLS {
            uploads.push(start(
                i,
                service.base.clone(),
                service.token(&format!("k{}", i % 10)),
            ));
        }
        // After a pause, or sooner once half of what was in flight has
        // completed: a fast machine finishes a round within the pause.
        let in_flight = uploads.len() - completed.load(Ordering::SeqCst);
        let pause_over = Instant::now() + Duration::from_millis(100 + 97 * k as u64 % 200);
        while Instant::now() < pause_over
            && uploads.len() - completed.load(Ordering::SeqCst) > in_flight / 2
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        unfinished_at_kill.push(uploads.len() - completed.load(Ordering::SeqCst));
        service.kill().await;
        service = ServiceProcess::start_with(&settings, port, SECRET, &env).await;
    }
    let mut resumes = 0;
    for upload in uploads {
        let (expected, blake3, resumed) = upload.await.expect("an upload task");
        assert_eq!(blake3, expected, "{set:?}: a completed upload's BLAKE3");
        resumes += resumed;
    }
    assert!(
        unfinished_at_kill.iter().all(|n| *n > 0),
        "{set:?}: a kill found no upload in flight: {unfinished_at_kill:?}"
    );
    // Nothing left in the store that no session names (past the grace the
    // janitor keeps for a session still on its way to the database).
    let deadline = Instant::now() + Duration::from_secs(20);
    let at_end = unnamed_multiparts(&settings).await.len();
    let left = loop {
        let left = unnamed_multiparts(&settings).await;
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "{set:?}: {UPLOADS} uploads through {KILLS} SIGKILLs; in flight at each kill \
         {unfinished_at_kill:?}; {resumes} resumes; {at_end} unnamed multipart uploads \
         when the last completed"
    );
    assert!(
        left.is_empty(),
        "{set:?}: multipart uploads no session names: {left:?}"
    );
    assert!(!service.log().contains("panicked"), "{set:?}");
    service.kill().await;
}

both_sets!(a_multipart_upload_no_session_names_is_aborted_after_the_grace);
async fn a_multipart_upload_no_session_names_is_aborted_after_the_grace(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.janitor_interval = Duration::from_millis(200);
    settings.gc_grace = Duration::from_secs(3);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let settings = app.state.settings.clone();
    // What a node killed between the store's answer and the session's row
    // leaves behind, beside a session of a client that is still uploading.
    let key = media_api::ids::BlobKey::generate();
    app.state
        .backends
        .blobs
        .create_multipart(&key)
        .await
        .expect("a multipart upload");
    let alice = app.user("alice");
    let data = media_e2e::random_bytes(MIB + 5, 3);
    let session = alice.open("kept.bin", data.len()).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let chunk = session["chunk_size"].as_u64().expect("chunk") as usize;
    // Within the grace it stays: its session may be on its way.
    assert_eq!(unnamed_multiparts(&settings).await, vec![key.to_string()]);
    let aborted = eventually(Duration::from_secs(15), || async {
        unnamed_multiparts(&settings).await.is_empty()
    })
    .await;
    assert!(
        aborted,
        "{set:?}: the orphan multipart upload is still there"
    );
    // The session's own is untouched: the upload completes.
    let chunks: Vec<usize> = (1..=data.len().div_ceil(chunk)).collect();
    alice.send_chunks(&id, &data, chunk, &chunks, 2).await;
    let done = media_e2e::json_of(alice.complete(&id).await, 200).await;
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    app.stop().await;
}
