//! The consistency check: finds what was done to the store behind the
//! service's back, repairs what it can, and the next run reports clean.

use std::time::Duration;

use bytes::Bytes;
use media_api::blob_store::BlobKey;
use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, eventually, json_of, random_bytes, raw_column, raw_sql, test_settings,
};
use serde_json::{Value, json};

use super::admin;
use crate::processing::{good_png, post, settled};

/// Runs an fsck to its end; answers its report.
async fn fsck(app: &TestApp, repair: bool) -> Value {
    let started = admin(
        app,
        "POST",
        "/v1/admin/fsck",
        Some(json!({"repair": repair})),
        202,
    )
    .await;
    assert_eq!(started["kind"], "fsck", "{started}");
    let id = started["batch_id"].as_str().expect("id").to_owned();
    let path = format!("/v1/admin/batches/{id}");
    let done = eventually(Duration::from_secs(60), || async {
        admin(app, "GET", &path, None, 200).await["state"] == "done"
    })
    .await;
    let batch = admin(app, "GET", &path, None, 200).await;
    assert!(done, "the fsck did not finish: {batch}");
    batch["report"].clone()
}

/// The storage keys a table's rows of a content name.
async fn stored_key(app: &TestApp, table: &str, blake3: &str, and: &str) -> Vec<String> {
    raw_column(
        app,
        &format!("select storage_key from {table} where blake3 = '{blake3}'{and}"),
    )
    .await
}

fn key(text: &str) -> BlobKey {
    BlobKey::parse(text).expect("key")
}

both_sets!(fsck_finds_what_was_done_behind_the_services_back_and_repairs_it);
async fn fsck_finds_what_was_done_behind_the_services_back_and_repairs_it(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(2);
    settings.jobs.poll_interval = Duration::from_millis(200);
    settings.gc_grace = Duration::from_secs(1);
    settings.janitor_interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let blobs = app.state.backends.blobs.clone();
    let png = good_png(90);
    let image = post(&alice, "a.png", "image/png", png.clone()).await;
    let image_id = image["media_id"].as_str().expect("id").to_owned();
    settled(&alice, &image_id).await;
    let plain = random_bytes(40_000, 91);
    let plain_media = alice.post_media("b.bin", &plain).await;
    // A blocked content (its objects under quarantine/) and an open
    // session (its multipart upload owned) are no findings.
    let held = random_bytes(30_000, 92);
    alice.post_media("c.bin", &held).await;
    let held_hash = blake3::hash(&held).to_hex().to_string();
    admin(
        &app,
        "POST",
        &format!("/v1/admin/content/{held_hash}/block"),
        Some(json!({"reason": "r"})),
        200,
    )
    .await;
    let open = alice.open("open.bin", 12 * 1024 * 1024).await;
    let _ = open;

    let first = fsck(&app, false).await;
    assert_eq!(first["clean"], true, "{set:?}: {first}");
    assert!(
        first["scanned"]["objects"].as_u64().expect("objects") >= 5,
        "{first}"
    );

    // Behind the service's back.
    let hash = blake3::hash(&png).to_hex().to_string();
    let thumb = stored_key(&app, "variants", &hash, " and preset = 'thumb'").await;
    blobs.delete(&key(&thumb[0])).await.expect("delete");
    let plain_hash = blake3::hash(&plain).to_hex().to_string();
    let original = stored_key(&app, "blobs", &plain_hash, "").await;
    blobs.delete(&key(&original[0])).await.expect("delete");
    blobs
        .put(&key("o/zz/orphan-by-hand"), Bytes::from(vec![7u8; 1234]))
        .await
        .expect("put");
    let stray = blobs
        .create_multipart(&key("o/zz/stray"))
        .await
        .expect("multipart");
    let stuck = alice.open("stuck.bin", 1000).await;
    let stuck_id = stuck["upload_id"].as_str().expect("id").to_owned();
    raw_sql(
        &app,
        &format!(
            "update uploads set state = 'completing', updated_at = 0 where upload_id = '{stuck_id}'"
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let found = fsck(&app, false).await;
    assert_eq!(found["clean"], false, "{set:?}: {found}");
    assert_eq!(
        found["orphan_objects"]["sample"],
        json!(["o/zz/orphan-by-hand"]),
        "{found}"
    );
    assert_eq!(found["orphan_objects"]["bytes"], 1234, "{found}");
    assert_eq!(
        found["missing_originals"]["sample"],
        json!([plain_hash]),
        "{found}"
    );
    assert_eq!(
        found["missing_variants"]["sample"],
        json!([format!("{hash}/thumb")]),
        "{found}"
    );
    assert_eq!(
        found["orphan_multipart"]["sample"],
        json!(["o/zz/stray"]),
        "{found}"
    );
    assert_eq!(
        found["stuck_completing"]["sample"],
        json!([stuck_id]),
        "{found}"
    );
    for finding in [
        "orphan_objects",
        "missing_originals",
        "missing_variants",
        "orphan_multipart",
        "stuck_completing",
    ] {
        assert_eq!(found[finding]["count"], 1, "{set:?} {finding}: {found}");
        assert_eq!(found[finding]["repaired"], 0, "{finding}: {found}");
    }
    // Without repair, nothing was touched.
    assert!(
        blobs
            .head(&key("o/zz/orphan-by-hand"))
            .await
            .expect("head")
            .is_some()
    );

    let repaired = fsck(&app, true).await;
    for finding in [
        "orphan_objects",
        "missing_originals",
        "missing_variants",
        "orphan_multipart",
        "stuck_completing",
    ] {
        assert_eq!(
            repaired[finding]["repaired"], 1,
            "{set:?} {finding}: {repaired}"
        );
    }
    assert!(
        blobs
            .head(&key("o/zz/orphan-by-hand"))
            .await
            .expect("head")
            .is_none()
    );
    let pending = blobs.list_multipart().await.expect("list");
    assert!(
        !pending.iter().any(|p| p.id == stray),
        "{set:?}: {pending:?}"
    );
    let media = json_of(
        alice
            .get(&format!(
                "/v1/media/{}",
                plain_media["media_id"].as_str().expect("id")
            ))
            .await,
        200,
    )
    .await;
    assert_eq!(media["status"], "failed", "{set:?}: {media}");
    assert_eq!(
        media["failure_reason"], "the original is missing from the store",
        "{media}"
    );
    let session = json_of(alice.get(&format!("/v1/uploads/{stuck_id}")).await, 200).await;
    assert_ne!(session["state"], "completing", "{set:?}: {session}");
    // The thumbnail is made again.
    let remade = eventually(Duration::from_secs(60), || async {
        match stored_key(&app, "variants", &hash, " and preset = 'thumb'")
            .await
            .first()
        {
            Some(k) => blobs.head(&key(k)).await.expect("head").is_some(),
            None => false,
        }
    })
    .await;
    assert!(remade, "{set:?}: the missing thumbnail was not made again");

    let last = fsck(&app, false).await;
    assert_eq!(last["clean"], true, "{set:?}: {last}");
    assert_eq!(last["originals_marked_missing"], 1, "{last}");
    app.stop().await;
}
