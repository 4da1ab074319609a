//! One behaviour suite per seam, run against both implementations: what the
//! filesystem store does, S3 (Garage) does; what in-process events do, Redis
//! does; what SQLite stores, PostgreSQL stores.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use media_api::blob_store::{
    self, BlobKey, BlobStore, BlobStoreError, ByteRange, CompletedPart, PartBody,
};
use media_api::metadata_store::{self, MetadataStore};
use media_api::progress_bus::{self, Event, ProgressBus};
use media_e2e::both_sets;
use media_e2e::{BackendSet, test_settings};

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn blob_store(set: BackendSet) -> (Arc<dyn BlobStore>, tempfile::TempDir) {
    let (settings, dir) = test_settings(set).await;
    let (store, _) = blob_store::from_settings(&settings)
        .await
        .expect("blob store");
    (store, dir)
}

both_sets!(blob_store_objects_and_ranges);
async fn blob_store_objects_and_ranges(set: BackendSet) {
    let (store, _dir) = blob_store(set).await;
    store
        .ping()
        .await
        .unwrap_or_else(|e| panic!("{set:?}: {e}"));
    let key = BlobKey::generate();
    let data = pattern(100_000, 7);
    assert_eq!(store.head(&key).await.expect("head"), None, "{set:?}");
    assert!(
        matches!(store.get(&key, None).await, Err(BlobStoreError::NotFound)),
        "{set:?}"
    );

    store
        .put(&key, Bytes::from(data.clone()))
        .await
        .expect("put");
    assert_eq!(
        store.head(&key).await.expect("head"),
        Some(100_000),
        "{set:?}"
    );
    let whole = store.get(&key, None).await.expect("get");
    assert_eq!((whole.len, whole.total), (100_000, 100_000), "{set:?}");
    assert_eq!(whole.collect().await.expect("read"), data, "{set:?}");

    let range = ByteRange {
        start: 1000,
        end: Some(1999),
    };
    let part = store.get(&key, Some(range)).await.expect("range");
    assert_eq!((part.len, part.total), (1000, 100_000), "{set:?}");
    assert_eq!(
        part.collect().await.expect("read"),
        &data[1000..2000],
        "{set:?}"
    );

    let tail = store
        .get(
            &key,
            Some(ByteRange {
                start: 99_990,
                end: None,
            }),
        )
        .await
        .expect("open range");
    assert_eq!(
        tail.collect().await.expect("read"),
        &data[99_990..],
        "{set:?}"
    );

    let past = store
        .get(
            &key,
            Some(ByteRange {
                start: 100_000,
                end: None,
            }),
        )
        .await;
    assert!(
        matches!(
            past,
            Err(BlobStoreError::RangeNotSatisfiable { size: 100_000 })
        ),
        "{set:?}: {past:?}"
    );

    let other = BlobKey::generate();
    store
        .put(&other, Bytes::from_static(b"x"))
        .await
        .expect("put");
    let mut listed = store.list("o/").await.expect("list");
    listed.sort();
    let mut expected = vec![key.as_str().to_owned(), other.as_str().to_owned()];
    expected.sort();
    assert_eq!(listed, expected, "{set:?}");

    store.delete(&key).await.expect("delete");
    store
        .delete(&key)
        .await
        .expect("deleting a missing object succeeds");
    assert_eq!(store.head(&key).await.expect("head"), None, "{set:?}");
    assert_eq!(
        store.list("o/").await.expect("list"),
        vec![other.as_str().to_owned()]
    );
}

both_sets!(blob_store_multipart_out_of_order_with_checksums);
async fn blob_store_multipart_out_of_order_with_checksums(set: BackendSet) {
    let (store, _dir) = blob_store(set).await;
    let key = BlobKey::generate();
    let upload = store.create_multipart(&key).await.expect("create");
    // S3 wants every part but the last to be at least 5 MiB.
    let parts = [
        pattern(5 * MIB, 1),
        pattern(5 * MIB, 2),
        pattern(123_457, 3),
    ];
    let mut completed = Vec::new();
    for n in [3u32, 1, 2] {
        let data = &parts[n as usize - 1];
        let sha = sha256(data);
        // In uneven frames, the way a request body arrives.
        let mut body = PartBody::default();
        for frame in data.chunks(700_001) {
            body.push(Bytes::copy_from_slice(frame));
        }
        let etag = store
            .upload_part(&key, &upload, n, body, sha)
            .await
            .unwrap_or_else(|e| panic!("{set:?}: part {n}: {e}"));
        completed.push(CompletedPart {
            number: n,
            etag,
            sha256: sha,
        });
    }
    // Sending a part again with the same bytes is harmless.
    let again = store
        .upload_part(&key, &upload, 2, parts[1].clone().into(), sha256(&parts[1]))
        .await
        .expect("resend");
    assert_eq!(again, completed[2].etag, "{set:?}: same bytes, same etag");

    // A part whose bytes do not match the declared SHA-256 is refused by
    // the store; sending it right again makes the upload whole again.
    let wrong = store
        .upload_part(&key, &upload, 1, parts[0].clone().into(), [0u8; 32])
        .await;
    assert!(
        matches!(wrong, Err(BlobStoreError::InvalidPart { .. })),
        "{set:?}: a bad checksum must be refused: {wrong:?}"
    );
    let resent = store
        .upload_part(&key, &upload, 1, parts[0].clone().into(), sha256(&parts[0]))
        .await
        .expect("resend part 1");
    assert_eq!(resent, completed[1].etag, "{set:?}");

    let pending = store.list_multipart().await.expect("list");
    assert!(
        pending
            .iter()
            .any(|p| p.id == upload && p.key == key.as_str()),
        "{set:?}"
    );

    completed.sort_by_key(|p| p.number);
    store
        .complete_multipart(&key, &upload, &completed)
        .await
        .expect("complete");
    let whole: Vec<u8> = parts.concat();
    let got = read_all(store.as_ref(), &key).await;
    assert_eq!(got.len(), whole.len(), "{set:?}");
    assert!(got == whole, "{set:?}: object is not the parts in order");
    assert!(
        !is_pending(store.as_ref(), &upload).await,
        "{set:?}: completed upload still listed"
    );
    // The object reads like any other: its size, ranges within one part,
    // across a part boundary, and through every part to the end.
    assert_eq!(
        store.head(&key).await.expect("head"),
        Some(whole.len() as u64),
        "{set:?}"
    );
    let boundary = 5 * MIB as u64;
    for (start, end) in [
        (10, Some(20)),
        (boundary - 3, Some(boundary + 2)),
        (boundary - 1, Some(boundary)),
        (2 * boundary - 7, None),
        (1, Some(whole.len() as u64 + 100)),
    ] {
        let body = store
            .get(&key, Some(ByteRange { start, end }))
            .await
            .expect("range");
        let last = end.map_or(whole.len() as u64 - 1, |e| e.min(whole.len() as u64 - 1));
        let expected = &whole[start as usize..=last as usize];
        assert_eq!(body.len, expected.len() as u64, "{set:?} {start}-{end:?}");
        assert_eq!(body.total, whole.len() as u64, "{set:?}");
        let got = body.collect().await.expect("read range");
        assert!(got == expected, "{set:?}: range {start}-{end:?} differs");
    }
    let listed = store.list(key.as_str()).await.expect("list");
    assert_eq!(listed, vec![key.as_str().to_owned()], "{set:?}");
    store.delete(&key).await.expect("delete");
    assert_eq!(store.head(&key).await.expect("head"), None, "{set:?}");
    assert!(
        matches!(store.get(&key, None).await, Err(BlobStoreError::NotFound)),
        "{set:?}: a deleted object still reads"
    );
    assert!(store.list(key.as_str()).await.expect("list").is_empty());
}

both_sets!(blob_store_a_replaced_part_cannot_complete_under_its_old_checksum);
async fn blob_store_a_replaced_part_cannot_complete_under_its_old_checksum(set: BackendSet) {
    let (store, _dir) = blob_store(set).await;
    let key = BlobKey::generate();
    let upload = store.create_multipart(&key).await.expect("create");
    let first = pattern(1000, 1);
    let sha_first = sha256(&first);
    let etag_first = store
        .upload_part(&key, &upload, 1, first.into(), sha_first)
        .await
        .expect("part");
    let second = pattern(1000, 2);
    store
        .upload_part(&key, &upload, 1, second.clone().into(), sha256(&second))
        .await
        .expect("replace");
    let stale = [CompletedPart {
        number: 1,
        etag: etag_first,
        sha256: sha_first,
    }];
    let outcome = store.complete_multipart(&key, &upload, &stale).await;
    assert!(
        matches!(outcome, Err(BlobStoreError::InvalidPart { .. })),
        "{set:?}: completing with a replaced part must fail as an invalid part: {outcome:?}"
    );
    store.abort_multipart(&key, &upload).await.expect("abort");
    assert_eq!(store.head(&key).await.expect("head"), None, "{set:?}");
}

both_sets!(blob_store_abort_is_final_and_idempotent);
async fn blob_store_abort_is_final_and_idempotent(set: BackendSet) {
    let (store, _dir) = blob_store(set).await;
    let key = BlobKey::generate();
    let upload = store.create_multipart(&key).await.expect("create");
    let data = pattern(2000, 9);
    store
        .upload_part(&key, &upload, 1, data.clone().into(), sha256(&data))
        .await
        .expect("part");
    store.abort_multipart(&key, &upload).await.expect("abort");
    store
        .abort_multipart(&key, &upload)
        .await
        .expect("abort again");
    assert!(
        !store
            .list_multipart()
            .await
            .expect("list")
            .iter()
            .any(|p| p.id == upload)
    );
    let late = store
        .upload_part(&key, &upload, 2, data.clone().into(), sha256(&data))
        .await;
    assert!(
        matches!(late, Err(BlobStoreError::NoSuchUpload)),
        "{set:?}: a part after abort must find no upload: {late:?}"
    );
    assert_eq!(store.head(&key).await.expect("head"), None, "{set:?}");
}

async fn progress_bus(set: BackendSet) -> Arc<dyn ProgressBus> {
    let (settings, _dir) = test_settings(set).await;
    progress_bus::from_settings(&settings).await.expect("bus")
}

both_sets!(progress_bus_fans_out_to_every_subscriber_of_a_topic_only);
async fn progress_bus_fans_out_to_every_subscriber_of_a_topic_only(set: BackendSet) {
    let bus = progress_bus(set).await;
    bus.ping().await.unwrap_or_else(|e| panic!("{set:?}: {e}"));
    let mut a = bus.subscribe("upload-1").await.expect("subscribe");
    let mut b = bus.subscribe("upload-1").await.expect("subscribe");
    let mut other = bus.subscribe("upload-2").await.expect("subscribe");
    let event = Event {
        kind: media_api::progress_bus::EventKind::Chunk,
        data: serde_json::json!({"chunk": 3, "received_bytes": 42}),
    };
    bus.publish("upload-1", &event).await.expect("publish");
    for sub in [&mut a, &mut b] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{set:?}: no event within 5 s"));
        assert_eq!(got, Some(event.clone()), "{set:?}");
    }
    let nothing = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
    assert!(
        nothing.is_err(),
        "{set:?}: another topic's subscriber got {nothing:?}"
    );
    // Publishing with nobody listening is fine.
    bus.publish("nobody", &event)
        .await
        .expect("publish to no one");
}

both_sets!(metadata_store_connects_and_migrates_on_both_databases);
async fn metadata_store_connects_and_migrates_on_both_databases(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let store: Arc<dyn MetadataStore> = metadata_store::from_settings(&settings)
        .await
        .expect("connect")
        .metadata;
    assert_eq!(
        store.kind(),
        match set {
            BackendSet::Embedded => "sqlite",
            BackendSet::Real => "postgres",
        }
    );
    store.ping().await.expect("ping");
    let applied = store.applied_migrations().await.expect("migrations");
    assert!(applied.contains(&20261123000001), "{set:?}: {applied:?}");
    // Connecting again finds the schema in place and changes nothing.
    let again = metadata_store::from_settings(&settings)
        .await
        .expect("reconnect")
        .metadata;
    assert_eq!(
        again.applied_migrations().await.expect("migrations"),
        applied
    );
}

#[tokio::test]
async fn the_bucket_drops_abandoned_multipart_uploads_by_itself() {
    let location = media_api::config::S3Location::parse(&media_e2e::real_env("MEDIA_BLOB_STORE"))
        .expect("s3 location");
    let store = media_api::blob_store::s3::S3BlobStore::from_env(location.clone(), true)
        .await
        .expect("s3");
    let rules = store
        .client()
        .get_bucket_lifecycle_configuration()
        .bucket(&location.bucket)
        .send()
        .await
        .expect("infra/up.sh sets a lifecycle configuration");
    let abort_days: Vec<i32> = rules
        .rules()
        .iter()
        .filter_map(|r| r.abort_incomplete_multipart_upload())
        .filter_map(|a| a.days_after_initiation())
        .collect();
    assert!(
        !abort_days.is_empty(),
        "no AbortIncompleteMultipartUpload rule: {rules:?}"
    );
}

/// The filesystem store publishes a multipart object by renaming its parts'
/// directory into place and then clears the upload away. A process that dies
/// between the two leaves the upload behind; completing it again must finish
/// the job, not fail or ask for the parts (which are in the object now).
#[tokio::test]
async fn filesystem_completion_interrupted_after_publishing_completes_again() {
    let (settings, dir) = test_settings(BackendSet::Embedded).await;
    let (store, _) = blob_store::from_settings(&settings)
        .await
        .expect("blob store");
    let key = BlobKey::generate();
    let upload = store.create_multipart(&key).await.expect("create");
    let parts = [pattern(5 * MIB, 1), pattern(4000, 2)];
    let mut completed = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let number = i as u32 + 1;
        let etag = store
            .upload_part(&key, &upload, number, data.clone().into(), sha256(data))
            .await
            .expect("part");
        completed.push(CompletedPart {
            number,
            etag,
            sha256: sha256(data),
        });
    }
    store
        .complete_multipart(&key, &upload, &completed)
        .await
        .expect("complete");
    // What a crash between publishing and clearing away leaves behind.
    let leftover = dir.path().join("blobs").join("multipart").join(&upload.0);
    std::fs::create_dir_all(&leftover).expect("mkdir");
    std::fs::write(leftover.join("key"), key.as_str()).expect("key");
    assert!(
        is_pending(store.as_ref(), &upload).await,
        "the simulated leftover is not an upload"
    );

    store
        .complete_multipart(&key, &upload, &completed)
        .await
        .expect("completing again finishes the clean-up");
    assert!(
        !is_pending(store.as_ref(), &upload).await,
        "the upload is still there"
    );
    let got = read_all(store.as_ref(), &key).await;
    assert!(got == parts.concat(), "the object changed");
}

/// A whole object's bytes.
async fn read_all(store: &dyn BlobStore, key: &BlobKey) -> Vec<u8> {
    store
        .get(key, None)
        .await
        .expect("get")
        .collect()
        .await
        .expect("read")
}

/// Whether the store still lists `upload` as a multipart upload in progress.
async fn is_pending(store: &dyn BlobStore, upload: &blob_store::MultipartId) -> bool {
    store
        .list_multipart()
        .await
        .expect("list")
        .iter()
        .any(|p| &p.id == upload)
}

/// Temporary files a dead process left in the filesystem store (a part half
/// written, parts half assembled) are removed when the store opens again,
/// once they are an hour old; anything younger may be a live write.
#[tokio::test]
async fn filesystem_store_sweeps_abandoned_temporary_files_at_start() {
    let (settings, dir) = test_settings(BackendSet::Embedded).await;
    blob_store::from_settings(&settings)
        .await
        .expect("blob store");
    let tmp = dir.path().join("blobs").join("tmp");
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::write(tmp.join("old-part"), b"half a part").expect("write");
    std::fs::File::options()
        .write(true)
        .open(tmp.join("old-part"))
        .and_then(|f| f.set_modified(two_hours_ago))
        .expect("age the file");
    std::fs::create_dir(tmp.join("old-assembly")).expect("mkdir");
    std::fs::write(tmp.join("old-assembly").join("00000"), b"a part").expect("write");
    std::fs::File::open(tmp.join("old-assembly"))
        .and_then(|f| f.set_modified(two_hours_ago))
        .expect("age the directory");
    std::fs::write(tmp.join("live-write"), b"in progress").expect("write");

    blob_store::from_settings(&settings)
        .await
        .expect("blob store opens again");
    assert!(!tmp.join("old-part").exists(), "an abandoned file stayed");
    assert!(
        !tmp.join("old-assembly").exists(),
        "an abandoned directory stayed"
    );
    assert!(tmp.join("live-write").exists(), "a fresh write was removed");
}

/// Descriptors this process holds open on files under `dir`.
fn open_files_under(dir: &std::path::Path) -> usize {
    let dir = dir.canonicalize().expect("dir");
    std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// An object of 10,000 parts (S3's most) reads with one part file open at a
/// time: a download opens each part as it reaches it, so neither the
/// descriptor limit nor the number of parts bounds what can be served.
#[tokio::test]
async fn filesystem_store_reads_ten_thousand_parts_one_descriptor_at_a_time() {
    const PARTS: usize = 10_000;
    const PART: usize = 100;
    let (settings, dir) = test_settings(BackendSet::Embedded).await;
    let (store, _) = blob_store::from_settings(&settings)
        .await
        .expect("blob store");
    let key = BlobKey::generate();
    let upload = store.create_multipart(&key).await.expect("create");
    let data = pattern(PARTS * PART, 9);
    let completed: Vec<CompletedPart> = futures_util::stream::iter(0..PARTS)
        .map(|i| {
            let (store, key, upload) = (store.clone(), key.clone(), upload.clone());
            let bytes = data[i * PART..(i + 1) * PART].to_vec();
            async move {
                let number = i as u32 + 1;
                let sha = sha256(&bytes);
                let etag = store
                    .upload_part(&key, &upload, number, bytes.into(), sha)
                    .await
                    .expect("part");
                CompletedPart {
                    number,
                    etag,
                    sha256: sha,
                }
            }
        })
        .buffered(32)
        .collect()
        .await;
    store
        .complete_multipart(&key, &upload, &completed)
        .await
        .expect("complete");

    let mut body = store.get(&key, None).await.expect("get").stream;
    let mut got = Vec::with_capacity(data.len());
    let mut most_open = 0;
    while let Some(frame) = body.next().await {
        got.extend_from_slice(&frame.expect("frame"));
        most_open = most_open.max(open_files_under(dir.path()));
    }
    assert!(got == data, "the object's bytes differ");
    assert!(
        most_open <= 1,
        "{most_open} files were open at once reading {PARTS} parts"
    );
    // A range across part boundaries, from the middle.
    let range = ByteRange {
        start: 123_456,
        end: Some(234_567),
    };
    let part = store
        .get(&key, Some(range))
        .await
        .expect("range")
        .collect()
        .await
        .expect("read");
    assert!(part == data[123_456..=234_567], "the range's bytes differ");
    assert_eq!(
        store.head(&key).await.expect("head"),
        Some(data.len() as u64)
    );
}

both_sets!(blob_store_stores_a_file_part_by_part);
async fn blob_store_stores_a_file_part_by_part(set: BackendSet) {
    let (store, dir) = blob_store(set).await;
    // One over the part size (multipart on both stores' paths), and a small one.
    for (len, seed) in [(17 * MIB + 5, 3u8), (1000, 4)] {
        let data = pattern(len, seed);
        let path = dir.path().join(format!("file-{seed}"));
        std::fs::write(&path, &data).expect("write");
        let key = BlobKey::generate();
        store.put_file(&key, &path).await.expect("put_file");
        assert!(
            read_all(store.as_ref(), &key).await == data,
            "{set:?}: {len} bytes differ"
        );
        assert_eq!(store.head(&key).await.expect("head"), Some(len as u64));
    }
    assert!(
        store.list_multipart().await.expect("list").is_empty(),
        "{set:?}: a multipart upload was left behind"
    );
}

both_sets!(blob_store_lists_in_pages_in_key_order_and_renames);
async fn blob_store_lists_in_pages_in_key_order_and_renames(set: BackendSet) {
    use sha2::Digest;
    let (store, _dir) = blob_store(set).await;
    // Keys whose byte order differs from a naive directory walk's ('-' and
    // '.' sort before '/'), a multipart object, and other prefixes.
    let names = [
        "o/ab/x", "o/ab-c", "o/ab.d", "o/ab/y/z", "o/a", "o/b", "v/1", "o/ab/x2", "o/abc",
    ];
    for name in names {
        let key = BlobKey::parse(name).expect("key");
        store
            .put(&key, Bytes::from_static(b"1"))
            .await
            .expect("put");
    }
    let big = BlobKey::parse("o/ab/m").expect("key");
    let upload = store.create_multipart(&big).await.expect("create");
    let data = Bytes::from_static(b"parts");
    let sha256: [u8; 32] = sha2::Sha256::digest(&data).into();
    let etag = store
        .upload_part(&big, &upload, 1, PartBody::from(data), sha256)
        .await
        .expect("part");
    store
        .complete_multipart(
            &big,
            &upload,
            &[CompletedPart {
                number: 1,
                etag,
                sha256,
            }],
        )
        .await
        .expect("complete");
    let mut expected: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("o/"))
        .map(|n| (*n).to_owned())
        .chain(["o/ab/m".to_owned()])
        .collect();
    expected.sort();
    let mut paged = Vec::new();
    loop {
        let page = store
            .list_page("o/", paged.last().map(String::as_str), 3)
            .await
            .expect("page");
        assert!(page.len() <= 3, "{set:?}: {page:?}");
        let full = page.len() == 3;
        for object in &page {
            let size = if object.key == "o/ab/m" { 5 } else { 1 };
            assert_eq!(object.size, size, "{set:?}: {object:?}");
            assert!(
                object.modified_ms > 1_700_000_000_000,
                "{set:?}: {object:?}"
            );
        }
        paged.extend(page.into_iter().map(|o| o.key));
        if !full {
            break;
        }
    }
    assert_eq!(paged, expected, "{set:?}");
    assert_eq!(
        store.list("o/ab").await.expect("list"),
        expected[1..8].to_vec(),
        "{set:?}"
    );

    // Renamed, whole objects and multipart ones alike.
    for (from, to) in [("o/ab/x", "q/o/ab/x"), ("o/ab/m", "q/o/ab/m")] {
        let (from, to) = (
            BlobKey::parse(from).expect("key"),
            BlobKey::parse(to).expect("key"),
        );
        let before = store
            .get(&from, None)
            .await
            .expect("get")
            .collect()
            .await
            .expect("bytes");
        store.rename(&from, &to).await.expect("rename");
        assert_eq!(store.head(&from).await.expect("head"), None, "{set:?}");
        let after = store
            .get(&to, None)
            .await
            .expect("get")
            .collect()
            .await
            .expect("bytes");
        assert_eq!(after, before, "{set:?}");
    }
    let missing = BlobKey::parse("o/none").expect("key");
    assert!(matches!(
        store
            .rename(&missing, &BlobKey::parse("q/none").expect("key"))
            .await,
        Err(BlobStoreError::NotFound)
    ));
}
