//! Moderation: a blocked content is served to no one and stored for no one,
//! presigned URLs already handed out stop working, and unblocking restores it.

use media_e2e::both_sets;
use media_e2e::{BackendSet, User, group, header, json_of, problem_of, random_bytes};
use serde_json::json;

use super::{admin, admin_call};
use crate::chat::{client_id, post_message};
use crate::processing::{good_png, post, settled, spawn};

/// Where `path` redirects `user` to.
async fn location(user: &User<'_>, path: &str) -> String {
    let r = user.get(path).await;
    assert_eq!(
        r.status(),
        302,
        "{path}: {}",
        r.text().await.unwrap_or_default()
    );
    user.app.absolute(&header(&r, "location"))
}

/// A one-request upload of `data`, refused as blocked.
async fn refused_upload(user: &User<'_>, data: &[u8]) {
    let r = user
        .app
        .client
        .post(user.app.url("/v1/media?file_name=again.bin"))
        .bearer_auth(&user.token)
        .body(data.to_vec())
        .send()
        .await
        .expect("post");
    problem_of(r, 451, "content-blocked").await;
}

both_sets!(a_blocked_content_is_refused_to_everyone_until_it_is_unblocked);
async fn a_blocked_content_is_refused_to_everyone_until_it_is_unblocked(set: BackendSet) {
    let app = spawn(set).await;
    let (alice, bob, carol, dave) = (
        app.user("alice"),
        app.user("bob"),
        app.user("carol"),
        app.user("dave"),
    );
    let png = good_png(77);
    let hash = blake3::hash(&png).to_hex().to_string();
    let mine = post(&alice, "a.png", "image/png", png.clone()).await;
    let mine = mine["media_id"].as_str().expect("id").to_owned();
    settled(&alice, &mine).await;
    let theirs = post(&bob, "b.png", "image/png", png.clone()).await;
    let theirs = theirs["media_id"].as_str().expect("id").to_owned();
    settled(&bob, &theirs).await;
    let trip = group(&alice, &["carol"]).await;
    let sent = json_of(
        post_message(
            &alice,
            &trip,
            &json!({"client_message_id": client_id(), "attachments": [{"media_id": mine}]}),
        )
        .await,
        201,
    )
    .await;
    let attachment = sent["attachments"][0]["media_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Handed out before the block, not fetched yet.
    let original_url = location(&alice, &format!("/v1/media/{mine}/content")).await;
    let thumb_url = location(&alice, &format!("/v1/media/{mine}/content?variant=thumb")).await;

    let blocked = admin(
        &app,
        "POST",
        &format!("/v1/admin/content/{hash}/block"),
        Some(json!({"reason": "reported: not allowed here"})),
        200,
    )
    .await;
    assert_eq!(blocked["newly_blocked"], true, "{set:?}: {blocked}");
    assert_eq!(blocked["stored"], true, "{blocked}");
    assert_eq!(blocked["blocked"]["reason"], "reported: not allowed here");
    assert_eq!(blocked["blocked"]["blocked_by"], "operator");
    let objects = blocked["objects"].as_u64().expect("objects");
    assert!(objects >= 3, "the original and its variants: {blocked}");

    // Refused to every owner and member, original and variants alike.
    for (user, id) in [(&alice, &mine), (&bob, &theirs), (&carol, &attachment)] {
        for query in ["", "?variant=thumb"] {
            problem_of(
                user.get(&format!("/v1/media/{id}/content{query}")).await,
                451,
                "content-blocked",
            )
            .await;
        }
        let view = json_of(user.get(&format!("/v1/media/{id}")).await, 200).await;
        assert_eq!(view["blocked"], true, "{set:?}: {view}");
    }
    // The URLs handed out before find nothing at the store.
    for url in [&original_url, &thumb_url] {
        let r = app.client.get(url).send().await.expect("fetch");
        assert!(
            r.status().is_client_error(),
            "{set:?}: a URL from before the block still serves: {}",
            r.status()
        );
    }
    let quarantined = app
        .state
        .backends
        .blobs
        .list("quarantine/")
        .await
        .expect("list");
    assert_eq!(quarantined.len() as u64, objects, "{quarantined:?}");
    // Uploaded again, in one request or in chunks: refused, nothing kept.
    refused_upload(&dave, &png).await;
    let session = dave.open("again.png", png.len()).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let chunk = session["chunk_size"].as_u64().expect("chunk") as usize;
    let total = session["total_chunks"].as_u64().expect("total") as usize;
    dave.send_chunks(&id, &png, chunk, &(1..=total).collect::<Vec<_>>(), 2)
        .await;
    problem_of(dave.complete(&id).await, 451, "content-blocked").await;
    let state = json_of(dave.get(&format!("/v1/uploads/{id}")).await, 200).await;
    assert_eq!(state["state"], "aborted", "{set:?}: {state}");
    let listed = json_of(dave.get("/v1/media").await, 200).await;
    assert_eq!(listed["items"], json!([]), "{set:?}: {listed}");
    // Nor attached anew.
    problem_of(
        post_message(
            &alice,
            &trip,
            &json!({"client_message_id": client_id(), "attachments": [{"media_id": mine}]}),
        )
        .await,
        451,
        "content-blocked",
    )
    .await;
    let content = admin(&app, "GET", &format!("/v1/admin/content/{hash}"), None, 200).await;
    assert_eq!(
        content["blocked"]["reason"], "reported: not allowed here",
        "{content}"
    );
    // Blocking again changes nothing.
    let again = admin(
        &app,
        "POST",
        &format!("/v1/admin/content/{hash}/block"),
        Some(json!({"reason": "twice"})),
        200,
    )
    .await;
    assert_eq!(again["newly_blocked"], false, "{again}");
    assert_eq!(again["blocked"]["reason"], "reported: not allowed here");

    // Unblocked: everything is back, the old URLs included.
    let lifted = admin(
        &app,
        "DELETE",
        &format!("/v1/admin/content/{hash}/block"),
        None,
        200,
    )
    .await;
    assert_eq!(lifted["was_blocked"], true, "{lifted}");
    for (user, id) in [(&alice, &mine), (&bob, &theirs), (&carol, &attachment)] {
        user.download(&format!("/v1/media/{id}/content")).await;
        user.download(&format!("/v1/media/{id}/content?variant=thumb"))
            .await;
    }
    let (_, bytes) = alice.download(&format!("/v1/media/{mine}/content")).await;
    assert!(bytes == png, "{set:?}: the original changed");
    let r = app.client.get(&original_url).send().await.expect("fetch");
    assert_eq!(r.status(), 200, "{set:?}");
    assert!(
        app.state
            .backends
            .blobs
            .list("quarantine/")
            .await
            .expect("list")
            .is_empty()
    );
    post(&dave, "again.png", "image/png", png).await;
    let content = admin(&app, "GET", &format!("/v1/admin/content/{hash}"), None, 200).await;
    assert_eq!(content["blocked"], serde_json::Value::Null, "{content}");
    app.stop().await;
}

both_sets!(a_hash_blocked_before_anyone_uploads_it_is_refused_at_upload);
async fn a_hash_blocked_before_anyone_uploads_it_is_refused_at_upload(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let data = random_bytes(70_000, 31);
    let hash = blake3::hash(&data).to_hex().to_string();
    let blocked = admin(
        &app,
        "POST",
        &format!("/v1/admin/content/{hash}/block"),
        Some(json!({"reason": "known bad"})),
        200,
    )
    .await;
    assert_eq!(blocked["stored"], false, "{set:?}: {blocked}");
    refused_upload(&alice, &data).await;
    assert!(
        app.state
            .backends
            .blobs
            .list("")
            .await
            .expect("list")
            .is_empty(),
        "{set:?}: a refused upload left an object"
    );
    for (path, body, status, code) in [
        (
            format!("/v1/admin/content/{hash}/block"),
            json!({"reason": ""}),
            400,
            "invalid-reason",
        ),
        (
            format!("/v1/admin/content/{hash}/block"),
            json!({"reason": "a\u{0}b"}),
            400,
            "invalid-reason",
        ),
        (
            "/v1/admin/content/xyz/block".to_owned(),
            json!({"reason": "r"}),
            400,
            "invalid-blake3",
        ),
    ] {
        problem_of(
            admin_call(&app, "POST", &path, Some(body)).await,
            status,
            code,
        )
        .await;
    }
    let lifted = admin(
        &app,
        "DELETE",
        &format!("/v1/admin/content/{hash}/block"),
        None,
        200,
    )
    .await;
    assert_eq!(lifted["was_blocked"], true);
    let again = admin(
        &app,
        "DELETE",
        &format!("/v1/admin/content/{hash}/block"),
        None,
        200,
    )
    .await;
    assert_eq!(again["was_blocked"], false);
    alice.post_media("x.bin", &data).await;
    app.stop().await;
}

/// Through the CDN edge: a URL handed out before the block and not cached
/// at the edge is refused at once (the store no longer has the object); a
/// copy the edge cached ages out within its cache lifetime (10 minutes,
/// under one signing window), which this test does not wait for.
#[tokio::test]
async fn a_blocked_content_is_refused_through_the_edge() {
    let (mut settings, dir) = media_e2e::test_settings(BackendSet::Real).await;
    settings.cdn_base_url = Some(media_e2e::real_env("MEDIA_CDN_BASE_URL"));
    let app = media_e2e::TestApp::spawn_with(BackendSet::Real, settings, dir).await;
    let alice = app.user("alice");
    let data = random_bytes(200_000, 99);
    let hash = blake3::hash(&data).to_hex().to_string();
    let media = alice.post_media("edge.bin", &data).await;
    let url = location(
        &alice,
        &format!(
            "/v1/media/{}/content",
            media["media_id"].as_str().expect("id")
        ),
    )
    .await;
    assert!(
        url.starts_with(&media_e2e::real_env("MEDIA_CDN_BASE_URL")),
        "{url}"
    );
    admin(
        &app,
        "POST",
        &format!("/v1/admin/content/{hash}/block"),
        Some(json!({"reason": "edge"})),
        200,
    )
    .await;
    let r = app.client.get(&url).send().await.expect("fetch");
    assert!(
        r.status().is_client_error(),
        "the edge served a blocked content: {}",
        r.status()
    );
    admin(
        &app,
        "DELETE",
        &format!("/v1/admin/content/{hash}/block"),
        None,
        200,
    )
    .await;
    let r = app.client.get(&url).send().await.expect("fetch");
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.expect("bytes") == data);
    app.stop().await;
}
