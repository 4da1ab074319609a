//! Batch reprocessing: an operator bumps a preset's version, restarts, and
//! remakes the stale variants while live uploads keep going first.

use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{BackendSet, TestApp, User, eventually, problem_of, random_bytes, raw_column};
use serde_json::{Value, json};

use super::{admin, admin_call};
use crate::processing::{good_png, post, settled, spawn};

/// `preset:version:key` of each variant of a content, by preset.
async fn variant_rows(app: &TestApp, blake3: &str) -> Vec<String> {
    raw_column(
        app,
        &format!(
            "select preset || ':' || cast(version as text) || ':' || storage_key from variants \
             where blake3 = '{blake3}' order by preset, version"
        ),
    )
    .await
}

async fn batch(app: &TestApp, id: &str) -> Value {
    admin(app, "GET", &format!("/v1/admin/batches/{id}"), None, 200).await
}

async fn reprocess(app: &TestApp, body: Value, status: u16) -> Value {
    admin(app, "POST", "/v1/admin/reprocess", Some(body), status).await
}

async fn upload_images(alice: &User<'_>, seeds: std::ops::Range<u8>) -> Vec<Value> {
    let mut images = Vec::new();
    for seed in seeds {
        let m = post(alice, &format!("p{seed}.png"), "image/png", good_png(seed)).await;
        images.push(settled(alice, m["media_id"].as_str().expect("id")).await);
    }
    images
}

both_sets!(a_bumped_preset_is_remade_for_stale_content_in_a_batch_that_pauses_and_resumes);
async fn a_bumped_preset_is_remade_for_stale_content_in_a_batch_that_pauses_and_resumes(
    set: BackendSet,
) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let images = upload_images(&alice, 0..4).await;
    alice
        .post_media("notes.bin", &random_bytes(10_000, 9))
        .await;
    let mut hashes: Vec<String> = images
        .iter()
        .map(|m| m["blake3"].as_str().expect("blake3").to_owned())
        .collect();
    hashes.sort();
    let mut before = Vec::new();
    for h in &hashes {
        before.push(variant_rows(&app, h).await);
    }
    let stale_thumbs =
        json!({"selector": {"presets": ["thumb"], "stale_only": true}, "dry_run": true});
    assert_eq!(
        reprocess(&app, stale_thumbs.clone(), 200).await["matched"],
        0,
        "{set:?}"
    );

    // The operator bumps `thumb` to version 2 and restarts.
    let app = app
        .restart(|s| {
            let thumb = s.presets.image.iter_mut().find(|p| p.name == "thumb");
            thumb.expect("a thumb preset").version = 2;
        })
        .await;
    let alice = app.user("alice");
    let dry = reprocess(&app, stale_thumbs.clone(), 200).await;
    assert_eq!(dry["matched"], 4, "{set:?}: {dry}");
    let sizes: u64 = images
        .iter()
        .map(|m| m["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(dry["bytes"], sizes, "{dry}");
    let sample: Vec<&str> = dry["sample"]
        .as_array()
        .expect("sample")
        .iter()
        .map(|c| c["blake3"].as_str().expect("blake3"))
        .collect();
    assert_eq!(sample, hashes, "{dry}");
    assert!(dry["sample"][0]["content_type"] == "image/png", "{dry}");
    // A dry run enqueues nothing.
    assert!(
        raw_column(&app, "select job_id from jobs where batch_id is not null")
            .await
            .is_empty()
    );

    // Started, one job a second: a live upload meanwhile is made at once.
    let started = reprocess(
        &app,
        json!({"selector": {"presets": ["thumb"], "stale_only": true}, "rate": 1.0}),
        202,
    )
    .await;
    assert_eq!(started["matched"], 4, "{started}");
    let id = started["batch_id"].as_str().expect("batch id").to_owned();
    let live = post(&alice, "live.png", "image/png", good_png(40)).await;
    let live = settled(&alice, live["media_id"].as_str().expect("id")).await;
    assert_eq!(live["status"], "ready", "{live}");
    let running = batch(&app, &id).await;
    assert_eq!(
        running["state"], "running",
        "{set:?}: the live upload waited: {running}"
    );
    assert!(running["done"].as_u64().expect("done") < 4, "{running}");

    // Paused: nothing more runs.
    let paused = admin(
        &app,
        "POST",
        &format!("/v1/admin/batches/{id}/pause"),
        None,
        200,
    )
    .await;
    assert_eq!(paused["state"], "paused", "{paused}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = batch(&app, &id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = batch(&app, &id).await;
    assert_eq!(still["state"], "paused", "{still}");
    assert_eq!(
        still["done"], held["done"],
        "{set:?}: a paused batch ran: {still}"
    );
    assert!(still["done"].as_u64().expect("done") < 4, "{still}");
    // Pausing twice answers the same.
    admin(
        &app,
        "POST",
        &format!("/v1/admin/batches/{id}/pause"),
        None,
        200,
    )
    .await;

    let resumed = admin(
        &app,
        "POST",
        &format!("/v1/admin/batches/{id}/resume"),
        None,
        200,
    )
    .await;
    assert_eq!(resumed["state"], "running", "{resumed}");
    let finished = eventually(Duration::from_secs(60), || async {
        batch(&app, &id).await["state"] == "done"
    })
    .await;
    let done = batch(&app, &id).await;
    assert!(finished, "{set:?}: {done}");
    assert_eq!(done["done"], 4, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    assert_eq!(done["enqueued"], 4, "{done}");
    assert!(done["finished_at"].is_string(), "{done}");
    assert_eq!(
        done["selector"],
        json!({"presets": ["thumb"], "stale_only": true})
    );
    assert_eq!(done["created_by"], "operator");

    // Every thumb is version 2 now, in a new object; the old objects are
    // gone from the store; the other variants were not touched.
    for (h, old) in hashes.iter().zip(&before) {
        let now = variant_rows(&app, h).await;
        let old_thumb = old
            .iter()
            .find(|r| r.starts_with("thumb:1:"))
            .expect("a v1 thumb");
        let new_thumb = now
            .iter()
            .find(|r| r.starts_with("thumb:"))
            .expect("a thumb");
        assert!(new_thumb.starts_with("thumb:2:"), "{set:?}: {now:?}");
        assert_eq!(
            now.iter().filter(|r| r.starts_with("thumb:")).count(),
            1,
            "{now:?}"
        );
        let others = |rows: &[String]| -> Vec<String> {
            rows.iter()
                .filter(|r| !r.starts_with("thumb:"))
                .cloned()
                .collect()
        };
        assert_eq!(
            others(&now),
            others(old),
            "{set:?}: other presets were remade"
        );
        let old_key = old_thumb.splitn(3, ':').nth(2).expect("key");
        let key = media_api::blob_store::BlobKey::parse(old_key).expect("key");
        assert_eq!(
            app.state.backends.blobs.head(&key).await.expect("head"),
            None,
            "{set:?}: the replaced thumb is still stored"
        );
    }
    // The thumb downloads as the new one.
    let media_id = images[0]["media_id"].as_str().expect("id");
    let (content_type, thumb) = alice
        .download(&format!("/v1/media/{media_id}/content?variant=thumb"))
        .await;
    assert_eq!(content_type, "image/webp");
    assert!(thumb.starts_with(b"RIFF"), "not a WebP");
    // Nothing is stale any more.
    assert_eq!(reprocess(&app, stale_thumbs, 200).await["matched"], 0);
    app.stop().await;
}

both_sets!(a_cancelled_batch_keeps_its_finished_jobs_and_drops_the_rest);
async fn a_cancelled_batch_keeps_its_finished_jobs_and_drops_the_rest(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    upload_images(&alice, 10..15).await;
    // One job every 2 s: the first runs, then it is cancelled.
    let started = reprocess(
        &app,
        json!({"selector": {"content_types": ["image/*"], "owner": "alice"}, "rate": 0.5}),
        202,
    )
    .await;
    assert_eq!(started["matched"], 5, "{set:?}: {started}");
    let id = started["batch_id"].as_str().expect("id").to_owned();
    let first = eventually(Duration::from_secs(30), || async {
        batch(&app, &id).await["done"] == 1
    })
    .await;
    assert!(first, "{set:?}: the first job did not run");
    let cancelled = admin(
        &app,
        "POST",
        &format!("/v1/admin/batches/{id}/cancel"),
        None,
        200,
    )
    .await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = batch(&app, &id).await;
    assert_eq!(
        after["done"], 1,
        "{set:?}: a cancelled batch ran on: {after}"
    );
    assert_eq!(after["cancelled"], 4, "{after}");
    assert!(after["finished_at"].is_string(), "{after}");
    let queued = raw_column(
        &app,
        &format!("select job_id from jobs where batch_id = '{id}' and state <> 'done'"),
    )
    .await;
    assert!(queued.is_empty(), "{set:?}: {queued:?}");
    // Cancelled twice answers the same; it can be neither resumed nor paused.
    admin(
        &app,
        "POST",
        &format!("/v1/admin/batches/{id}/cancel"),
        None,
        200,
    )
    .await;
    for action in ["resume", "pause"] {
        problem_of(
            admin_call(
                &app,
                "POST",
                &format!("/v1/admin/batches/{id}/{action}"),
                None,
            )
            .await,
            409,
            "invalid-batch-state",
        )
        .await;
    }
    // Listed, newest first.
    let list = admin(&app, "GET", "/v1/admin/batches", None, 200).await;
    assert_eq!(list["items"][0]["batch_id"], id.as_str(), "{list}");
    let missing = "/v1/admin/batches/0190e0a0-0000-7000-8000-000000000000";
    problem_of(
        admin_call(&app, "GET", missing, None).await,
        404,
        "batch-not-found",
    )
    .await;
    problem_of(
        admin_call(&app, "POST", &format!("{missing}/cancel"), None).await,
        404,
        "batch-not-found",
    )
    .await;
    problem_of(
        admin_call(&app, "GET", "/v1/admin/batches/nope", None).await,
        404,
        "batch-not-found",
    )
    .await;
    app.stop().await;
}

both_sets!(a_selector_that_makes_no_sense_is_refused_and_nothing_is_enqueued);
async fn a_selector_that_makes_no_sense_is_refused_and_nothing_is_enqueued(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    for (body, code) in [
        (
            json!({"selector": {"presets": ["nope"]}}),
            "invalid-selector",
        ),
        (
            json!({"selector": {"content_types": ["text/*"]}}),
            "invalid-selector",
        ),
        (
            json!({"selector": {"content_types": ["image/png"], "presets": ["h264_720p"]}}),
            "invalid-selector",
        ),
        (json!({"selector": {"status": "done"}}), "invalid-selector"),
        (
            json!({"selector": {"created_after": "yesterday"}}),
            "invalid-selector",
        ),
        (json!({"selector": {"blake3": ["00"]}}), "invalid-selector"),
        (json!({"selector": {"owner": ""}}), "invalid-selector"),
        (json!({"selector": {}, "rate": 0}), "invalid-rate"),
        (json!({"selector": {}, "rate": -3}), "invalid-rate"),
    ] {
        problem_of(
            admin_call(&app, "POST", "/v1/admin/reprocess", Some(body.clone())).await,
            400,
            code,
        )
        .await;
    }
    problem_of(
        admin_call(
            &app,
            "POST",
            "/v1/admin/reprocess",
            Some(json!({"selector": {"colour": "red"}})),
        )
        .await,
        422,
        "invalid-json-fields",
    )
    .await;
    let hashes: Vec<String> = (0..501)
        .map(|i| {
            blake3::hash(&[i as u8, (i >> 8) as u8])
                .to_hex()
                .to_string()
        })
        .collect();
    problem_of(
        admin_call(
            &app,
            "POST",
            "/v1/admin/reprocess",
            Some(json!({"selector": {"blake3": hashes}})),
        )
        .await,
        400,
        "invalid-selector",
    )
    .await;
    assert!(
        raw_column(&app, "select batch_id from batches")
            .await
            .is_empty()
    );
    assert!(raw_column(&app, "select job_id from jobs").await.is_empty());
    app.stop().await;
}

both_sets!(a_batch_job_that_fails_leaves_its_content_serving_what_it_had);
async fn a_batch_job_that_fails_leaves_its_content_serving_what_it_had(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let image = upload_images(&alice, 30..31).await.remove(0);
    let hash = image["blake3"].as_str().expect("blake3").to_owned();
    // The original gone behind the service's back: the batch's job cannot
    // download it, and dies after its attempts.
    let key = raw_column(
        &app,
        &format!("select storage_key from blobs where blake3 = '{hash}'"),
    )
    .await;
    let key = media_api::blob_store::BlobKey::parse(&key[0]).expect("key");
    app.state.backends.blobs.delete(&key).await.expect("delete");
    let started = reprocess(&app, json!({"selector": {"blake3": [hash]}}), 202).await;
    let id = started["batch_id"].as_str().expect("id").to_owned();
    let ended = eventually(Duration::from_secs(60), || async {
        batch(&app, &id).await["state"] == "done"
    })
    .await;
    let done = batch(&app, &id).await;
    assert!(ended, "{set:?}: {done}");
    assert_eq!(done["failed"], 1, "{set:?}: {done}");
    let media_id = image["media_id"].as_str().expect("id");
    let view = media_e2e::json_of(alice.get(&format!("/v1/media/{media_id}")).await, 200).await;
    assert_eq!(
        view["status"], "ready",
        "{set:?}: a failed batch job failed the media: {view}"
    );
    assert!(
        view["variants"].as_array().is_some_and(|v| !v.is_empty()),
        "{view}"
    );
    alice
        .download(&format!("/v1/media/{media_id}/content?variant=thumb"))
        .await;
    app.stop().await;
}
