//! The metadata seam's contract, one suite per narrow trait, on PostgreSQL
//! and SQLite alike: chunk recording and its races, the upload state
//! machine, completion with dedup, and the job queue's claim, heartbeat,
//! failure, retry and dead letter. A check keeps the two schemas from
//! drifting apart.

use std::collections::BTreeSet;
use std::time::Duration;

use media_api::ids::{Blake3, BlobKey, FileName, MediaId, UploadId, UserId, now_ms};
use media_api::metadata_store::jobs::{JobState, Processed, ProcessingState};
use media_api::metadata_store::{
    self, ChunkRecord, MediaStatus, NewContent, Processing, RecordOutcome, Stores, UploadRecord,
    UploadState,
};
use media_e2e::both_sets;
use media_e2e::{BackendSet, test_settings};

async fn stores(set: BackendSet) -> (Stores, tempfile::TempDir) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.max_attempts = 2;
    let stores = metadata_store::from_settings(&settings)
        .await
        .expect("connect");
    (stores, dir)
}

fn name(name: &str) -> FileName {
    FileName::parse(name).expect("file name")
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

fn session(owner: &str, size: u64, chunk_size: u64) -> UploadRecord {
    let now = now_ms();
    UploadRecord {
        upload_id: UploadId::generate(),
        owner: user(owner),
        file_name: name("f.bin"),
        size,
        declared_type: None,
        declared_blake3: None,
        chunk_size,
        total_chunks: u32::try_from(size.div_ceil(chunk_size)).expect("chunks"),
        state: UploadState::Receiving,
        storage_key: BlobKey::generate(),
        multipart_id: "mp".into(),
        media_id: None,
        created_at: now,
        updated_at: now,
        expires_at: now + 3_600_000,
        deduplicated: false,
    }
}

fn chunk(number: u32, byte: u8) -> ChunkRecord {
    ChunkRecord {
        number,
        size: 10,
        sha256: [byte; 32],
        chaining_value: [byte ^ 0xff; 32],
        etag: format!("etag-{number}-{byte}"),
    }
}

fn content(blake3: [u8; 32], storage_key: &str, processing: Processing) -> NewContent {
    let storage_key = BlobKey::parse(storage_key).expect("key");
    NewContent {
        blake3: Blake3(blake3),
        size: 20,
        content_type: "image/png".into(),
        storage_key,
        origin: None,
        processing,
        probe: None,
    }
}

both_sets!(chunks_are_recorded_once_and_races_have_one_winner);
async fn chunks_are_recorded_once_and_races_have_one_winner(set: BackendSet) {
    let (s, _dir) = stores(set).await;
    let up = session("alice", 20, 10);
    s.uploads.create_upload(&up).await.expect("create");
    assert_eq!(
        s.uploads.upload(up.upload_id).await.expect("read"),
        Some(up.clone()),
        "{set:?}: a session reads back as written"
    );
    // Eight concurrent recorders of chunk 1, four with one content and four
    // with another: exactly one records, the others see its record.
    let outcomes = futures_util::future::join_all((0..8u8).map(|i| {
        let uploads = s.uploads.clone();
        let id = up.upload_id;
        async move { uploads.record_chunk(id, &chunk(1, i % 2)).await }
    }))
    .await;
    let outcomes: Vec<RecordOutcome> = outcomes.into_iter().map(|o| o.expect("record")).collect();
    let recorded = outcomes
        .iter()
        .filter(|o| matches!(o, RecordOutcome::Recorded))
        .count();
    assert_eq!(recorded, 1, "{set:?}: {outcomes:?}");
    let winner = s
        .uploads
        .chunk(up.upload_id, 1)
        .await
        .expect("chunk")
        .expect("recorded");
    for o in &outcomes {
        if let RecordOutcome::AlreadyRecorded(existing) = o {
            assert_eq!(existing, &winner, "{set:?}: losers see the winner's record");
        }
    }
    // Forgetting needs the same SHA-256: a stale forget does nothing.
    let other = if winner.sha256 == [0; 32] { 1 } else { 0 };
    assert!(
        !s.uploads
            .forget_chunk(up.upload_id, 1, &[other; 32])
            .await
            .expect("forget")
    );
    assert!(
        s.uploads
            .forget_chunk(up.upload_id, 1, &winner.sha256)
            .await
            .expect("forget")
    );
    assert_eq!(s.uploads.chunk(up.upload_id, 1).await.expect("chunk"), None);
    // Chunks come back in chunk order, whatever order they were recorded in.
    for n in [2, 1] {
        s.uploads
            .record_chunk(up.upload_id, &chunk(n, 7))
            .await
            .expect("record");
    }
    let numbers: Vec<u32> = s
        .uploads
        .chunks(up.upload_id)
        .await
        .expect("chunks")
        .iter()
        .map(|c| c.number)
        .collect();
    assert_eq!(numbers, [1, 2], "{set:?}");
    s.uploads.drop_chunks(up.upload_id).await.expect("drop");
    assert!(
        s.uploads
            .chunks(up.upload_id)
            .await
            .expect("chunks")
            .is_empty()
    );
}

both_sets!(the_upload_state_machine_moves_once_per_transition);
async fn the_upload_state_machine_moves_once_per_transition(set: BackendSet) {
    let (s, _dir) = stores(set).await;
    let up = session("bob", 10, 10);
    s.uploads.create_upload(&up).await.expect("create");
    // Two racing completions: one moves the session.
    let moves = futures_util::future::join_all((0..4).map(|_| {
        s.uploads.transition(
            up.upload_id,
            &[UploadState::Receiving],
            UploadState::Completing,
            None,
        )
    }))
    .await;
    let moved = moves
        .into_iter()
        .filter(|m| *m.as_ref().expect("move"))
        .count();
    assert_eq!(moved, 1, "{set:?}");
    // A session no longer receiving takes no chunk, and says why.
    assert_eq!(
        s.uploads
            .record_chunk(up.upload_id, &chunk(1, 1))
            .await
            .expect("record"),
        RecordOutcome::NotReceiving(UploadState::Completing),
        "{set:?}"
    );
    // A takeover needs the completion to be stale: a recent one is not.
    assert!(
        !s.uploads
            .transition(
                up.upload_id,
                &[UploadState::Completing],
                UploadState::Completing,
                Some(now_ms() - 60_000),
            )
            .await
            .expect("takeover")
    );
    assert!(
        s.uploads
            .transition(
                up.upload_id,
                &[UploadState::Completing],
                UploadState::Completing,
                Some(now_ms() + 1_000),
            )
            .await
            .expect("takeover")
    );
    // From a state not listed, nothing moves.
    assert!(
        !s.uploads
            .transition(
                up.upload_id,
                &[UploadState::Receiving],
                UploadState::Aborted,
                None
            )
            .await
            .expect("move")
    );
    // Expiry: only receiving sessions past their expiry are due.
    let mut late = session("bob", 10, 10);
    late.expires_at = now_ms() - 1;
    s.uploads.create_upload(&late).await.expect("create");
    let due: Vec<UploadId> = s
        .uploads
        .expired_uploads(now_ms(), 100)
        .await
        .expect("due")
        .iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(due, [late.upload_id], "{set:?}");
}

both_sets!(completions_of_one_content_share_one_blob_and_one_job);
async fn completions_of_one_content_share_one_blob_and_one_job(set: BackendSet) {
    let (s, _dir) = stores(set).await;
    let hash = [42; 32];
    let mut media = BTreeSet::new();
    let mut deduplicated = 0;
    // Three users finish uploads of the same content, concurrently.
    let sessions: Vec<UploadRecord> = ["ann", "ben", "cat"]
        .iter()
        .map(|u| session(u, 20, 10))
        .collect();
    for up in &sessions {
        s.uploads.create_upload(up).await.expect("create");
        s.uploads
            .transition(
                up.upload_id,
                &[UploadState::Receiving],
                UploadState::Completing,
                None,
            )
            .await
            .expect("move");
    }
    let finished = futures_util::future::join_all(sessions.iter().map(|up| {
        let c = content(hash, up.storage_key.as_str(), Processing::Pending);
        let uploads = s.uploads.clone();
        async move {
            uploads
                .finish_upload(up.upload_id, &c, MediaId::generate())
                .await
        }
    }))
    .await;
    let mut keys = BTreeSet::new();
    for f in finished {
        let created = f.expect("finish").expect("was completing");
        deduplicated += usize::from(created.deduplicated);
        keys.insert(created.media.storage_key.clone());
        media.insert(created.media.media_id);
    }
    assert_eq!(media.len(), 3, "{set:?}: one media each");
    assert_eq!(deduplicated, 2, "{set:?}: the content is new once");
    assert_eq!(keys.len(), 1, "{set:?}: every media points at one object");
    assert_eq!(s.media.blob_totals().await.expect("totals"), (1, 20));
    for up in &sessions {
        let after = s
            .uploads
            .upload(up.upload_id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(after.state, UploadState::Completed, "{set:?}");
        assert!(after.media_id.is_some_and(|m| media.contains(&m)));
    }
    // Finishing again (a takeover that lost) changes nothing.
    let again = s
        .uploads
        .finish_upload(
            sessions[0].upload_id,
            &content(hash, sessions[0].storage_key.as_str(), Processing::Pending),
            MediaId::generate(),
        )
        .await
        .expect("finish");
    assert!(again.is_none(), "{set:?}");
    // One job for the content, however many completions.
    let job = s
        .jobs
        .claim("w1", Duration::from_secs(30), true)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(job.blake3, Blake3(hash));
    assert!(
        s.jobs
            .claim("w2", Duration::from_secs(30), true)
            .await
            .expect("claim")
            .is_none(),
        "{set:?}: one job"
    );
    // Instant dedup finds only the owner's own content.
    assert!(
        s.media
            .create_media_if_owned(
                &user("ann"),
                &name("again.bin"),
                &Blake3(hash),
                20,
                MediaId::generate()
            )
            .await
            .expect("dedup")
            .is_some()
    );
    assert!(
        s.media
            .create_media_if_owned(
                &user("dan"),
                &name("again.bin"),
                &Blake3(hash),
                20,
                MediaId::generate()
            )
            .await
            .expect("dedup")
            .is_none(),
        "{set:?}: someone else's content is not instant"
    );
    // Content that is not processed gets no job.
    s.media
        .create_media(
            &user("dan"),
            &name("notes.txt"),
            &content([7; 32], "o/notes", Processing::Skipped),
            MediaId::generate(),
        )
        .await
        .expect("create");
    assert!(
        s.jobs
            .claim("w3", Duration::from_secs(30), true)
            .await
            .expect("claim")
            .is_none()
    );
}

both_sets!(jobs_are_leased_heartbeaten_retried_and_dead_after_their_attempts);
async fn jobs_are_leased_heartbeaten_retried_and_dead_after_their_attempts(set: BackendSet) {
    let (s, _dir) = stores(set).await;
    let created = s
        .media
        .create_media(
            &user("eve"),
            &name("p.png"),
            &content([9; 32], "o/p", Processing::Pending),
            MediaId::generate(),
        )
        .await
        .expect("create");
    let media_id = created.media.media_id;
    let lease = Duration::from_millis(400);
    let job = s
        .jobs
        .claim("w1", lease, true)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(job.attempts, 1, "{set:?}");
    // Leased: nobody else gets it, and its holder can keep it.
    assert!(
        s.jobs
            .claim("w2", lease, true)
            .await
            .expect("claim")
            .is_none()
    );
    assert!(s.jobs.heartbeat(&job, "w1", lease).await.expect("beat"));
    assert!(
        !s.jobs.heartbeat(&job, "w2", lease).await.expect("beat"),
        "{set:?}: only the holder extends a lease"
    );
    // A failure with a retry time: queued again, not before that time.
    s.jobs
        .fail(&job, "w1", "transient", "transient", Some(now_ms() + 300))
        .await
        .expect("fail");
    assert!(
        s.jobs
            .claim("w2", lease, true)
            .await
            .expect("claim")
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = s
        .jobs
        .claim("w2", lease, true)
        .await
        .expect("claim")
        .expect("retried");
    assert_eq!(second.attempts, 2, "{set:?}");
    // The first holder lost it: its completion is refused.
    let done = Processed {
        state: ProcessingState::Ready,
        variants: Vec::new(),
        probe: None,
    };
    assert!(
        s.jobs
            .complete(&job, "w1", &done)
            .await
            .expect("complete")
            .is_none()
    );
    // A lease that runs out lets another worker claim it (its worker died).
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let third = s
        .jobs
        .claim("w3", lease, true)
        .await
        .expect("claim")
        .expect("reclaimed");
    assert_eq!(third.attempts, 3, "{set:?}: each claim counts");
    // Dead letter: no retry time marks it dead and the media failed.
    s.jobs
        .fail(&third, "w3", "gave up", "gave up", None)
        .await
        .expect("fail");
    assert!(
        s.jobs
            .claim("w4", lease, true)
            .await
            .expect("claim")
            .is_none()
    );
    let counts = s.jobs.counts().await.expect("counts");
    assert!(
        counts
            .iter()
            .any(|(state, n)| *state == JobState::Dead && *n == 1),
        "{set:?}: {counts:?}"
    );
    let media = s.media.media(media_id).await.expect("media").expect("row");
    assert_eq!(media.status, MediaStatus::Failed, "{set:?}");
    assert_eq!(media.failure.as_deref(), Some("gave up"), "{set:?}");
}

both_sets!(concurrent_workers_never_claim_the_same_job);
async fn concurrent_workers_never_claim_the_same_job(set: BackendSet) {
    let (s, _dir) = stores(set).await;
    for i in 0..24u8 {
        s.media
            .create_media(
                &user("frank"),
                &name("f.png"),
                &content([i; 32], &format!("o/{i}"), Processing::Pending),
                MediaId::generate(),
            )
            .await
            .expect("create");
    }
    // Eight workers claim as fast as they can until the queue is empty.
    let claims = futures_util::future::join_all((0..8).map(|w| {
        let jobs = s.jobs.clone();
        async move {
            let mut mine = Vec::new();
            while let Some(job) = jobs
                .claim(&format!("w{w}"), Duration::from_secs(60), true)
                .await
                .expect("claim")
            {
                mine.push(job.job_id);
            }
            mine
        }
    }))
    .await;
    let all: Vec<String> = claims.into_iter().flatten().collect();
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 24, "{set:?}: every job claimed once");
    assert_eq!(distinct.len(), 24, "{set:?}: no job claimed twice");
}

/// The columns of every table of the schema, as `table.column nullability`,
/// read from the database itself.
async fn schema_of(set: BackendSet) -> BTreeSet<String> {
    use sqlx::Row;
    let (settings, _dir) = test_settings(set).await;
    metadata_store::from_settings(&settings)
        .await
        .expect("migrate");
    let mut columns = BTreeSet::new();
    match set {
        BackendSet::Real => {
            use secrecy::ExposeSecret;
            let url = settings.database_url.expect("url");
            let pool = sqlx::PgPool::connect(url.expose_secret())
                .await
                .expect("pg");
            let rows = sqlx::query(
                "select table_name::text, column_name::text, is_nullable::text \
                 from information_schema.columns where table_schema = 'public' \
                 and table_name not like '\\_sqlx%'",
            )
            .fetch_all(&pool)
            .await
            .expect("columns");
            for r in rows {
                let (t, c, n): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                columns.insert(format!(
                    "{t}.{c} {}",
                    if n == "YES" { "null" } else { "not null" }
                ));
            }
        }
        BackendSet::Embedded => {
            let path = settings.data_dir.join("media.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("sqlite");
            let tables: Vec<String> = sqlx::query_scalar(
                "select name from sqlite_master where type = 'table' \
                 and name not like '\\_sqlx%' escape '\\' and name not like 'sqlite%'",
            )
            .fetch_all(&pool)
            .await
            .expect("tables");
            for t in tables {
                let rows = sqlx::query(&format!(
                    "select name, \"notnull\", pk from pragma_table_info('{t}')"
                ))
                .fetch_all(&pool)
                .await
                .expect("columns");
                for r in rows {
                    let (c, notnull, pk): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
                    // SQLite lets a non-integer primary key be null; PostgreSQL does not.
                    let nullable = notnull == 0 && pk == 0;
                    columns.insert(format!(
                        "{t}.{c} {}",
                        if nullable { "null" } else { "not null" }
                    ));
                }
            }
        }
    }
    columns
}

#[tokio::test]
async fn the_postgres_and_sqlite_schemas_do_not_drift_apart() {
    let postgres = schema_of(BackendSet::Real).await;
    let sqlite = schema_of(BackendSet::Embedded).await;
    assert!(postgres.len() > 20, "{postgres:?}");
    let only_pg: Vec<_> = postgres.difference(&sqlite).collect();
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    assert!(
        only_pg.is_empty() && only_sqlite.is_empty(),
        "the migrations differ beyond the dialect:\n only PostgreSQL: {only_pg:?}\n only SQLite: {only_sqlite:?}"
    );
    // The same migrations, by name, in both folders.
    let names = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(format!(
            "{}/../migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("migrations")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
    };
    assert_eq!(names("postgres"), names("sqlite"));
}
