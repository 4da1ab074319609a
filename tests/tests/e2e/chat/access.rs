//! Attachments: new references to stored content, read by the members who
//! joined before them, forwarded without a byte moving, and collected only
//! when nothing references them.

use super::*;
use media_e2e::{both_sets, eventually, ffmpeg_fixture, problem_of};

/// A 2 s 720p H.264 + AAC clip, as a phone would send.
fn clip() -> Vec<u8> {
    let path = ffmpeg_fixture(
        "chat-clip.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=25:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    std::fs::read(path).expect("clip")
}

/// What `user` gets for an attachment's document, original and variant:
/// every status, in that order.
async fn reads(user: &User<'_>, media_id: &str, variant: &str) -> [u16; 3] {
    [
        user.get(&format!("/v1/media/{media_id}"))
            .await
            .status()
            .as_u16(),
        user.get(&format!("/v1/media/{media_id}/content"))
            .await
            .status()
            .as_u16(),
        user.get(&format!("/v1/media/{media_id}/content?variant={variant}"))
            .await
            .status()
            .as_u16(),
    ]
}

/// The bytes behind a download redirect.
async fn fetch(user: &User<'_>, path: &str) -> Vec<u8> {
    user.download(path).await.1
}

async fn blobs(app: &TestApp) -> u64 {
    app.state
        .backends
        .media
        .blob_totals()
        .await
        .expect("totals")
        .0
}

async fn jobs_run(app: &TestApp) -> u64 {
    app.state
        .backends
        .jobs
        .counts()
        .await
        .expect("counts")
        .iter()
        .map(|(_, n)| n)
        .sum()
}

both_sets!(attachments_are_read_by_the_members_who_joined_before_them);
async fn attachments_are_read_by_the_members_who_joined_before_them(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, bob, carol, dave, erin) = (
        app.user("alice"),
        app.user("bob"),
        app.user("carol"),
        app.user("dave"),
        app.user("erin"),
    );
    // A phone's photo: EXIF with GPS, shown turned a quarter.
    let photo = crate::processing::rotated_jpeg();
    let video = clip();
    let photo_item = alice.post_media("beach.jpg", &photo).await;
    let video_item = alice.post_media("waves.mp4", &video).await;
    let trip = group(&alice, &["bob", "carol"]).await;
    // The photo with a caption, then the video on its own.
    let sent = json_of(
        post_message(
            &alice,
            &trip,
            &json!({
                "client_message_id": client_id(),
                "text": "the beach",
                "attachments": [{"media_id": photo_item["media_id"], "caption": "sunset"}],
            }),
        )
        .await,
        201,
    )
    .await;
    let clip_message = json_of(
        post_message(
            &alice,
            &trip,
            &json!({
                "client_message_id": client_id(),
                "attachments": [{"media_id": video_item["media_id"]}],
            }),
        )
        .await,
        201,
    )
    .await;
    let attachments: Vec<&Value> = sent["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .chain(clip_message["attachments"].as_array().expect("attachments"))
        .collect();
    assert_eq!(attachments.len(), 2, "{sent} {clip_message}");
    let (photo_att, video_att) = (
        attachments[0]["media_id"].as_str().expect("id").to_owned(),
        attachments[1]["media_id"].as_str().expect("id").to_owned(),
    );
    assert_ne!(photo_att, photo_item["media_id"], "its own media id");
    assert_eq!(attachments[0]["caption"], "sunset");
    assert_eq!(attachments[0]["blake3"], photo_item["blake3"]);
    assert_eq!(attachments[1]["file_name"], "waves.mp4");

    // Processing of the content makes the attachments ready with it.
    for id in [&photo_att, &video_att] {
        let ready = eventually(Duration::from_secs(90), || async {
            json_of(bob.get(&format!("/v1/media/{id}")).await, 200).await["status"] == "ready"
        })
        .await;
        assert!(ready, "attachment {id} never became ready");
    }
    assert_eq!(reads(&bob, &photo_att, "thumb").await, [200, 302, 302]);
    assert_eq!(
        reads(&carol, &video_att, "h264_720p").await,
        [200, 302, 302]
    );
    assert_eq!(reads(&bob, &video_att, "thumb").await, [200, 302, 302]);
    assert!(fetch(&carol, &format!("/v1/media/{video_att}/content")).await == video);
    // Dave was never a member: the answer for media that does not exist.
    for (id, variant) in [(&photo_att, "thumb"), (&video_att, "h264_720p")] {
        assert_eq!(reads(&dave, id, variant).await, [404, 404, 404]);
        problem_of(
            dave.get(&format!("/v1/media/{id}")).await,
            404,
            "media-not-found",
        )
        .await;
    }

    // Carol, removed, reads nothing more; Erin, added after, not what came before.
    let r = alice
        .delete(&format!("/v1/conversations/{trip}/members/carol"))
        .await;
    json_of(r, 200).await;
    assert_eq!(
        reads(&carol, &video_att, "h264_720p").await,
        [404, 404, 404]
    );
    problem_of(
        carol
            .get(&format!("/v1/conversations/{trip}/messages"))
            .await,
        404,
        "conversation-not-found",
    )
    .await;
    let r = alice
        .send_json(
            Method::POST,
            &format!("/v1/conversations/{trip}/members"),
            &json!({"user": "erin"}),
        )
        .await;
    json_of(r, 200).await;
    assert_eq!(reads(&erin, &photo_att, "thumb").await, [404, 404, 404]);
    let seen = history(&erin, &trip, 0).await;
    assert_eq!(
        seen.len(),
        1,
        "only the message recording her joining: {seen:?}"
    );
    assert_eq!(seen[0]["type"], "member_added");
    assert_eq!(seen[0]["member"], "erin");

    // Bob forwards the video to Dave: no byte moves, no job runs.
    let (blobs_before, jobs_before) = (blobs(&app).await, jobs_run(&app).await);
    let bob_dave = direct(&bob, "dave").await;
    let forwarded = json_of(
        bob.send_json(
            Method::POST,
            "/v1/messages/forward",
            &json!({
                "from": {"conversation_id": trip, "seq": clip_message["seq"]},
                "to": [bob_dave],
                "client_message_id": client_id(),
            }),
        )
        .await,
        201,
    )
    .await;
    let copy = &forwarded["items"][0];
    assert_eq!(copy["forwarded"], true);
    assert_eq!(
        copy["attachments"].as_array().map(Vec::len),
        Some(1),
        "{copy}"
    );
    let dave_video = copy["attachments"][0]["media_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(copy["attachments"][0]["status"], "ready");
    assert_eq!(
        reads(&dave, &dave_video, "h264_720p").await,
        [200, 302, 302]
    );
    assert!(fetch(&dave, &format!("/v1/media/{dave_video}/content")).await == video);
    assert_eq!(
        blobs(&app).await,
        blobs_before,
        "one stored object per content"
    );
    assert_eq!(jobs_run(&app).await, jobs_before, "no new job");

    // Alice deletes her media items: what she sent stays readable.
    for item in [&photo_item, &video_item] {
        let id = item["media_id"].as_str().expect("id");
        assert_eq!(alice.delete(&format!("/v1/media/{id}")).await.status(), 204);
    }
    assert_eq!(reads(&bob, &photo_att, "thumb").await, [200, 302, 302]);
    media_api::media::gc::collect_garbage(&app.state.backends, Duration::ZERO)
        .await
        .expect("gc");
    assert_eq!(blobs(&app).await, blobs_before, "still referenced");

    // Deleted for everyone: the references go, and the photo (referenced
    // nowhere else) is collected; the video, forwarded, stays.
    for message in [&sent, &clip_message] {
        let tombstone = json_of(
            alice
                .delete(&format!(
                    "/v1/conversations/{trip}/messages/{}",
                    message["seq"]
                ))
                .await,
            200,
        )
        .await;
        assert_eq!(tombstone["deleted"], true);
        assert_eq!(tombstone["attachments"], json!([]));
        assert!(tombstone.get("text").is_none(), "{tombstone}");
    }
    assert_eq!(reads(&bob, &photo_att, "thumb").await, [404, 404, 404]);
    assert_eq!(reads(&bob, &video_att, "h264_720p").await, [404, 404, 404]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    media_api::media::gc::collect_garbage(&app.state.backends, Duration::ZERO)
        .await
        .expect("gc");
    assert_eq!(
        blobs(&app).await,
        blobs_before - 1,
        "the photo's content is gone"
    );
    assert_eq!(
        reads(&dave, &dave_video, "h264_720p").await,
        [200, 302, 302]
    );
    assert!(fetch(&dave, &format!("/v1/media/{dave_video}/content")).await == video);
    app.stop().await;
}

both_sets!(only_media_the_sender_may_read_can_be_attached);
async fn only_media_the_sender_may_read_can_be_attached(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let theirs = bob.post_media("b.txt", b"bob's").await;
    let chat = direct(&alice, "bob").await;
    for media_id in [
        theirs["media_id"].as_str().expect("id").to_owned(),
        uuid::Uuid::now_v7().to_string(),
        "not-an-id".to_owned(),
    ] {
        let r = post_message(
            &alice,
            &chat,
            &json!({"client_message_id": client_id(), "attachments": [{"media_id": media_id}]}),
        )
        .await;
        problem_of(r, 404, "media-not-found").await;
    }
    assert!(history(&alice, &chat, 0).await.is_empty(), "nothing stored");
    app.stop().await;
}
