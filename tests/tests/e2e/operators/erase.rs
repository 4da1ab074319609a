//! Erasure: a user's media, sessions and sent attachments go now; what no
//! one else holds leaves the store at once; what others hold stays.

use media_e2e::both_sets;
use media_e2e::{BackendSet, group, json_of, problem_of, random_bytes, raw_column, say};
use serde_json::json;

use super::{admin, admin_call};
use crate::chat::{client_id, history, post_message};
use crate::processing::{good_png, post, settled, spawn};

both_sets!(erasing_a_user_deletes_what_only_they_held_at_once_and_keeps_what_others_hold);
async fn erasing_a_user_deletes_what_only_they_held_at_once_and_keeps_what_others_hold(
    set: BackendSet,
) {
    let app = spawn(set).await;
    let (eve, frank, gina) = (app.user("eve"), app.user("frank"), app.user("gina"));
    // Shared with frank, and eve's alone (an image, so it has variants).
    let shared = random_bytes(120_000, 5);
    eve.post_media("shared.bin", &shared).await;
    let franks = frank.post_media("shared.bin", &shared).await;
    let png = good_png(61);
    let own = post(&eve, "own.png", "image/png", png.clone()).await;
    let own_id = own["media_id"].as_str().expect("id").to_owned();
    settled(&eve, &own_id).await;
    let own_hash = blake3::hash(&png).to_hex().to_string();
    let own_keys = raw_column(
        &app,
        &format!(
            "select storage_key from blobs where blake3 = '{own_hash}' \
             union all select storage_key from variants where blake3 = '{own_hash}'"
        ),
    )
    .await;
    assert!(own_keys.len() >= 3, "{own_keys:?}");
    // A session left halfway: one chunk of two sent.
    let big = random_bytes(12 * 1024 * 1024, 6);
    let session = eve.open("big.bin", big.len()).await;
    let session_id = session["upload_id"].as_str().expect("id").to_owned();
    let chunk = session["chunk_size"].as_u64().expect("chunk") as usize;
    eve.send_chunks(&session_id, &big, chunk, &[1], 1).await;
    let session_key = raw_column(
        &app,
        &format!("select storage_key from uploads where upload_id = '{session_id}'"),
    )
    .await;
    let pending = app
        .state
        .backends
        .blobs
        .list_multipart()
        .await
        .expect("list");
    assert!(
        pending.iter().any(|p| p.key == session_key[0]),
        "{pending:?}"
    );
    // In a group: a photo, and a text.
    let trip = group(&eve, &["frank", "gina"]).await;
    let photo = json_of(
        post_message(
            &eve,
            &trip,
            &json!({"client_message_id": client_id(), "attachments": [{"media_id": own_id}]}),
        )
        .await,
        201,
    )
    .await;
    let attachment = photo["attachments"][0]["media_id"]
        .as_str()
        .expect("id")
        .to_owned();
    say(&eve, &trip, "see you there").await;
    frank
        .download(&format!("/v1/media/{attachment}/content"))
        .await;

    let report = admin(&app, "POST", "/v1/admin/users/eve/erase", None, 200).await;
    assert_eq!(report["user"], "eve", "{set:?}: {report}");
    assert_eq!(report["media_deleted"], 2, "{report}");
    assert_eq!(report["messages_deleted"], 1, "{report}");
    assert_eq!(report["attachments_deleted"], 1, "{report}");
    assert_eq!(report["sessions_deleted"], 1, "{report}");
    assert_eq!(report["sessions_aborted"], 1, "{report}");
    assert_eq!(report["contents_deleted"], 1, "{report}");
    assert_eq!(report["contents_kept"], 1, "{report}");
    assert!(
        report["bytes_freed"].as_u64().expect("bytes") > png.len() as u64,
        "{report}"
    );

    // Eve's own content is gone from the store now, variants and all.
    for key in &own_keys {
        let key = media_api::blob_store::BlobKey::parse(key).expect("key");
        assert_eq!(
            app.state.backends.blobs.head(&key).await.expect("head"),
            None,
            "{set:?}: {key}"
        );
    }
    problem_of(
        admin_call(&app, "GET", &format!("/v1/admin/content/{own_hash}"), None).await,
        404,
        "content-not-found",
    )
    .await;
    // The shared one stays, for frank only.
    let (_, bytes) = frank
        .download(&format!(
            "/v1/media/{}/content",
            franks["media_id"].as_str().expect("id")
        ))
        .await;
    assert!(bytes == shared, "{set:?}");
    let shared_hash = blake3::hash(&shared).to_hex().to_string();
    let content = admin(
        &app,
        "GET",
        &format!("/v1/admin/content/{shared_hash}"),
        None,
        200,
    )
    .await;
    assert_eq!(
        content["media"],
        json!([{"owner": "frank", "count": 1}]),
        "{content}"
    );
    // Eve has nothing; her session is gone with its parts.
    assert_eq!(
        json_of(eve.get("/v1/media").await, 200).await["items"],
        json!([])
    );
    problem_of(
        eve.get(&format!("/v1/uploads/{session_id}")).await,
        404,
        "upload-not-found",
    )
    .await;
    let pending = app
        .state
        .backends
        .blobs
        .list_multipart()
        .await
        .expect("list");
    assert!(
        !pending.iter().any(|p| p.key == session_key[0]),
        "{set:?}: the multipart upload is still open: {pending:?}"
    );
    // The photo is gone from the conversation for everyone; the text stays.
    let seen = history(&gina, &trip, 0).await;
    let photo_seq = photo["seq"].as_u64().expect("seq");
    let deleted = seen
        .iter()
        .find(|m| m["seq"] == photo_seq)
        .expect("the photo message");
    assert_eq!(deleted["deleted"], true, "{set:?}: {deleted}");
    assert_eq!(deleted["attachments"], json!([]), "{deleted}");
    assert!(
        seen.iter().any(|m| m["text"] == "see you there"),
        "{seen:?}"
    );
    problem_of(
        frank.get(&format!("/v1/media/{attachment}/content")).await,
        404,
        "media-not-found",
    )
    .await;

    // Again: nothing left to erase.
    let again = admin(&app, "POST", "/v1/admin/users/eve/erase", None, 200).await;
    for field in [
        "media_deleted",
        "messages_deleted",
        "sessions_deleted",
        "contents_deleted",
        "bytes_freed",
    ] {
        assert_eq!(again[field], 0, "{set:?}: {again}");
    }
    problem_of(
        admin_call(&app, "POST", "/v1/admin/users/a%01b/erase", None).await,
        400,
        "invalid-user-id",
    )
    .await;
    app.stop().await;
}
