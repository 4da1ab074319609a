//! Frames never stored: typing (throttled), presence, the caller's upload
//! events, and an attachment's `media_ready`.

use super::*;
use media_e2e::{both_sets, test_image};

both_sets!(typing_reaches_the_other_members_at_most_once_per_interval);
async fn typing_reaches_the_other_members_at_most_once_per_interval(set: BackendSet) {
    let app = spawn(set, |s| {
        s.realtime.typing_interval = Duration::from_millis(800)
    })
    .await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let room = group(&alice, &["bob"]).await;
    let mut typist = app.socket(&alice.token).await;
    let mut reader = app.socket(&bob.token).await;
    let mut outsider = app.socket(&app.token("carol")).await;
    for s in [&mut typist, &mut reader, &mut outsider] {
        ready(s).await;
    }
    for _ in 0..5 {
        typist
            .send(json!({"type": "typing", "conversation_id": room}))
            .await;
    }
    let got = reader.all_of("typing", QUIET).await;
    assert_eq!(
        got,
        vec![json!({"type": "typing", "conversation_id": room, "user": "alice"})],
        "five in a burst arrive once"
    );
    assert!(typist.all_of("typing", Duration::ZERO).await.is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    typist
        .send(json!({"type": "typing", "conversation_id": room}))
        .await;
    assert_eq!(
        reader.all_of("typing", QUIET).await.len(),
        1,
        "a new interval lets one more through"
    );
    assert!(outsider.all_of("typing", Duration::ZERO).await.is_empty());
    // Not a member: refused, and the socket stays open.
    outsider
        .send(json!({"type": "typing", "conversation_id": room}))
        .await;
    let e = outsider.next_of("error", SOON).await.expect("error frame");
    assert_eq!(e["code"], "conversation-not-found", "{e}");
    ready(&mut outsider).await;
    app.stop().await;
}

both_sets!(presence_follows_connections_and_only_for_people_one_talks_with);
async fn presence_follows_connections_and_only_for_people_one_talks_with(set: BackendSet) {
    let app = spawn(set, |s| s.realtime.max_presence_users = 3).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    group(&alice, &["bob"]).await;
    let mut watcher = app.socket(&alice.token).await;
    ready(&mut watcher).await;
    watcher
        .send(json!({"type": "subscribe_presence", "users": ["bob", "mallory"]}))
        .await;
    let first = watcher
        .next_of("presence", SOON)
        .await
        .expect("bob's presence now");
    assert_eq!(
        first,
        json!({"type": "presence", "user": "bob", "online": false})
    );
    let e = watcher
        .next_of("error", SOON)
        .await
        .expect("mallory refused");
    assert_eq!(e["code"], "presence-not-shared");
    assert!(
        e["detail"].as_str().unwrap_or("").contains("mallory"),
        "{e}"
    );

    // Two devices: online with the first, offline after the last.
    let phone = app.socket(&bob.token).await;
    let online = watcher.next_of("presence", SOON).await.expect("online");
    assert_eq!(online["online"], true, "{online}");
    let laptop = app.socket(&bob.token).await;
    assert!(
        watcher.all_of("presence", QUIET).await.is_empty(),
        "still online"
    );
    phone.close().await;
    assert!(
        watcher.all_of("presence", QUIET).await.is_empty(),
        "still online"
    );
    laptop.close().await;
    let offline = watcher.next_of("presence", SOON).await.expect("offline");
    assert_eq!(offline["online"], false, "{offline}");
    assert!(offline["last_seen"].is_string(), "{offline}");

    watcher
        .send(json!({"type": "subscribe_presence", "users": ["a", "b", "c", "d"]}))
        .await;
    let e = watcher.next_of("error", SOON).await.expect("too many");
    assert_eq!(e["code"], "too-many-presence-users");
    app.stop().await;
}

both_sets!(the_callers_uploads_and_attachments_ready_reach_their_sockets);
async fn the_callers_uploads_and_attachments_ready_reach_their_sockets(set: BackendSet) {
    // No workers until the message is posted, so processing ends after it.
    let app = spawn(set, |s| s.jobs.serve_workers = Some(0)).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let room = group(&alice, &["bob"]).await;
    let mut uploader = app.socket(&alice.token).await;
    let mut member = app.socket(&bob.token).await;
    let mut outsider = app.socket(&app.token("carol")).await;
    for s in [&mut uploader, &mut member, &mut outsider] {
        ready(s).await;
    }
    let photo = test_image(image::ImageFormat::Png, 320, 200, 7);
    let item = alice.upload("photo.png", &photo).await;
    let upload_events = uploader.all_of("upload", QUIET).await;
    let names: Vec<&str> = upload_events
        .iter()
        .map(|f| f["event"].as_str().unwrap_or(""))
        .collect();
    assert!(names.contains(&"chunk"), "{names:?}");
    assert!(names.contains(&"completed"), "{names:?}");
    let id = &upload_events[0]["upload_id"];
    assert!(id.is_string(), "{upload_events:?}");
    assert!(upload_events.iter().all(|f| &f["upload_id"] == id));
    let completed = upload_events
        .iter()
        .find(|f| f["event"] == "completed")
        .expect("completed");
    assert_eq!(
        completed["data"]["media_id"], item["media_id"],
        "{completed}"
    );
    assert!(member.all_of("upload", Duration::ZERO).await.is_empty());

    let sent = json_of(
        alice
            .send_json(
                Method::POST,
                &format!("/v1/conversations/{room}/messages"),
                &json!({
                    "client_message_id": uuid::Uuid::now_v7().to_string(),
                    "attachments": [{"media_id": item["media_id"]}],
                }),
            )
            .await,
        201,
    )
    .await;
    let attachment = sent["attachments"][0]["media_id"].clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let pool = tokio::spawn(media_api::processing::run(
        app.state.backends.clone(),
        app.state.settings.clone(),
        1,
        stop.clone(),
    ));
    let ready_frame = member
        .next_of("media_ready", Duration::from_secs(30))
        .await
        .expect("media_ready");
    assert_eq!(ready_frame["media_id"], attachment);
    assert_eq!(ready_frame["conversation_id"], room.as_str());
    assert_eq!(ready_frame["status"], "ready");
    assert!(outsider.all_of("media_ready", QUIET).await.is_empty());
    stop.cancel();
    let _ = pool.await;
    app.stop().await;
}

both_sets!(a_socket_follows_at_most_max_followed_uploads);
async fn a_socket_follows_at_most_max_followed_uploads(set: BackendSet) {
    let app = spawn(set, |s| s.realtime.max_followed_uploads = 2).await;
    let alice = app.user("alice");
    let mut socket = app.socket(&alice.token).await;
    ready(&mut socket).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let session = alice.open(&format!("part-{n}.bin"), 1000).await;
        ids.push(session["upload_id"].as_str().expect("upload_id").to_owned());
    }
    for (n, id) in ids.iter().enumerate() {
        let put = alice.put_chunk(id, 1, vec![n as u8; 1000]).await;
        assert!(put.status().is_success(), "chunk of {id}: {}", put.status());
    }
    let frames = socket.all_of("upload", QUIET).await;
    let followed: std::collections::BTreeSet<&str> = frames
        .iter()
        .filter(|f| f["event"] == "chunk")
        .filter_map(|f| f["upload_id"].as_str())
        .collect();
    let first_two: std::collections::BTreeSet<&str> = ids[..2].iter().map(String::as_str).collect();
    assert_eq!(
        followed, first_two,
        "the first two uploads are followed, the third is not: {frames:?}"
    );
    app.stop().await;
}
