//! Receipts and a message's status, edits and deletes with their windows,
//! membership and its roles, the sync log's retention, and every bad input
//! answered with its problem code and nothing stored.

use super::*;
use media_e2e::{both_sets, problem_of};

async fn receipt(user: &User<'_>, conversation: &str, body: Value) -> reqwest::Response {
    user.send_json(
        Method::POST,
        &format!("/v1/conversations/{conversation}/receipts"),
        &body,
    )
    .await
}

async fn status_of(user: &User<'_>, conversation: &str, seq: u64) -> String {
    let seen = history(user, conversation, seq - 1).await;
    seen[0]["status"].as_str().expect("status").to_owned()
}

both_sets!(receipts_only_advance_and_drive_the_senders_status);
async fn receipts_only_advance_and_drive_the_senders_status(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, bob, carol) = (app.user("alice"), app.user("bob"), app.user("carol"));
    let room = group(&alice, &["bob", "carol"]).await;
    for text in ["one", "two", "three"] {
        say(&alice, &room, text).await;
    }
    assert_eq!(status_of(&alice, &room, 3).await, "sent");
    json_of(receipt(&bob, &room, json!({"delivered_seq": 3})).await, 200).await;
    assert_eq!(
        status_of(&alice, &room, 3).await,
        "sent",
        "Carol has not got it"
    );
    json_of(
        receipt(&carol, &room, json!({"delivered_seq": 3})).await,
        200,
    )
    .await;
    assert_eq!(status_of(&alice, &room, 3).await, "delivered");
    let marks = json_of(receipt(&bob, &room, json!({"read_seq": 3})).await, 200).await;
    assert_eq!(marks, json!({"delivered_seq": 3, "read_seq": 3}));
    json_of(receipt(&carol, &room, json!({"read_seq": 2})).await, 200).await;
    assert_eq!(status_of(&alice, &room, 2).await, "read");
    assert_eq!(status_of(&alice, &room, 3).await, "delivered");
    // Lower marks are ignored, not errors; marks never go back.
    let marks = json_of(
        receipt(&bob, &room, json!({"delivered_seq": 1, "read_seq": 1})).await,
        200,
    )
    .await;
    assert_eq!(marks, json!({"delivered_seq": 3, "read_seq": 3}));
    problem_of(
        receipt(&bob, &room, json!({"read_seq": 4})).await,
        400,
        "receipt-past-last-seq",
    )
    .await;
    problem_of(receipt(&bob, &room, json!({})).await, 400, "empty-receipt").await;
    problem_of(
        receipt(&app.user("dave"), &room, json!({"read_seq": 1})).await,
        404,
        "conversation-not-found",
    )
    .await;
    json_of(receipt(&carol, &room, json!({"read_seq": 3})).await, 200).await;
    assert_eq!(status_of(&alice, &room, 3).await, "read");
    let bob_view = json_of(bob.get(&format!("/v1/conversations/{room}")).await, 200).await;
    assert_eq!(bob_view["my_read_seq"], 3);
    assert_eq!(bob_view["unread"], 0);
    assert!(
        history(&bob, &room, 0).await[0].get("status").is_none(),
        "not his message"
    );

    // Who has message 2: for its sender (and admins), not for others.
    let who = json_of(
        alice
            .get(&format!("/v1/conversations/{room}/messages/2/receipts"))
            .await,
        200,
    )
    .await;
    let items = who.as_array().expect("an array");
    assert_eq!(items.len(), 2, "{who}");
    assert!(
        items
            .iter()
            .all(|r| r["read_at"].is_string() && r["delivered_at"].is_string())
    );
    problem_of(
        carol
            .get(&format!("/v1/conversations/{room}/messages/2/receipts"))
            .await,
        403,
        "not-message-sender",
    )
    .await;

    // Answering is reading: Bob replies to message 4 without a receipt.
    say(&alice, &room, "four").await;
    say(&bob, &room, "ok").await;
    let who = json_of(
        alice
            .get(&format!("/v1/conversations/{room}/messages/4/receipts"))
            .await,
        200,
    )
    .await;
    assert_eq!(who[0]["user"], "bob");
    assert!(who[0]["read_at"].is_string(), "{who}");
    assert_eq!(who[1]["user"], "carol");
    assert!(who[1].get("read_at").is_none(), "{who}");
    assert_eq!(status_of(&alice, &room, 4).await, "sent");

    // Every device catches up with the receipts too.
    let (events, _) = sync_all(&alice, None).await;
    let last = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "receipt")
        .expect("a receipt event");
    assert_eq!(
        last["receipt"],
        json!({"user": "carol", "delivered_seq": 3, "read_seq": 3})
    );
    app.stop().await;
}

both_sets!(edits_and_deletes_keep_their_windows_and_owners);
async fn edits_and_deletes_keep_their_windows_and_owners(set: BackendSet) {
    let app = spawn(set, |s| {
        s.chat.edit_window = Duration::from_millis(1500);
    })
    .await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let room = group(&alice, &["bob"]).await;
    let m = say(&bob, &room, "typo").await;
    let path = format!("/v1/conversations/{room}/messages/{}", m["seq"]);
    problem_of(
        alice
            .send_json(Method::PATCH, &path, &json!({"text": "mine now"}))
            .await,
        403,
        "not-message-sender",
    )
    .await;
    let edited = json_of(
        bob.send_json(Method::PATCH, &path, &json!({"text": "fixed"}))
            .await,
        200,
    )
    .await;
    assert_eq!(edited["text"], "fixed");
    assert!(edited["edited_at"].is_string());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    problem_of(
        bob.send_json(Method::PATCH, &path, &json!({"text": "late"}))
            .await,
        409,
        "edit-window-passed",
    )
    .await;
    // A member may not delete someone else's; the group's owner may.
    let carol_msg = say(&alice, &room, "from alice").await;
    problem_of(
        bob.delete(&format!(
            "/v1/conversations/{room}/messages/{}",
            carol_msg["seq"]
        ))
        .await,
        403,
        "not-message-sender",
    )
    .await;
    let gone = json_of(alice.delete(&path).await, 200).await;
    assert_eq!(gone["deleted"], true);
    problem_of(alice.delete(&path).await, 409, "message-deleted").await;
    problem_of(
        alice
            .delete(&format!("/v1/conversations/{room}/messages/99"))
            .await,
        404,
        "message-not-found",
    )
    .await;
    let (events, _) = sync_all(&bob, None).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"message_edited") && kinds.contains(&"message_deleted"),
        "{kinds:?}"
    );
    let deleted = events
        .iter()
        .find(|e| e["kind"] == "message_created" && e["message"]["seq"] == m["seq"])
        .expect("created");
    assert!(
        deleted["message"].get("text").is_none(),
        "the log shows the message as it is now: deleted, no text"
    );
    app.stop().await;
}

both_sets!(membership_follows_the_roles);
async fn membership_follows_the_roles(set: BackendSet) {
    let app = spawn(set, |s| s.chat.max_group_members = 4).await;
    let (alice, bob, carol) = (app.user("alice"), app.user("bob"), app.user("carol"));
    let room = group(&alice, &["bob"]).await;
    let members = format!("/v1/conversations/{room}/members");
    problem_of(
        bob.send_json(Method::POST, &members, &json!({"user": "carol"}))
            .await,
        403,
        "not-conversation-admin",
    )
    .await;
    let doc = json_of(
        alice
            .send_json(
                Method::PATCH,
                &format!("{members}/bob"),
                &json!({"role": "admin"}),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(
        doc["members"][1],
        json!({"user": "bob", "role": "admin", "joined_seq": 0})
    );
    json_of(
        bob.send_json(Method::POST, &members, &json!({"user": "carol"}))
            .await,
        200,
    )
    .await;
    problem_of(
        bob.send_json(Method::POST, &members, &json!({"user": "carol"}))
            .await,
        409,
        "already-a-member",
    )
    .await;
    json_of(
        bob.send_json(Method::POST, &members, &json!({"user": "dave"}))
            .await,
        200,
    )
    .await;
    problem_of(
        bob.send_json(Method::POST, &members, &json!({"user": "erin"}))
            .await,
        409,
        "group-full",
    )
    .await;
    problem_of(
        carol.delete(&format!("{members}/bob")).await,
        403,
        "not-conversation-admin",
    )
    .await;
    problem_of(
        alice.delete(&format!("{members}/alice")).await,
        409,
        "owner-must-hand-over",
    )
    .await;
    // Carol leaves on her own; the owner hands over, then may leave.
    json_of(carol.delete(&format!("{members}/carol")).await, 200).await;
    json_of(
        alice
            .send_json(
                Method::PATCH,
                &format!("{members}/bob"),
                &json!({"role": "owner"}),
            )
            .await,
        200,
    )
    .await;
    json_of(alice.delete(&format!("{members}/alice")).await, 200).await;
    let seen = history(&bob, &room, 0).await;
    let kinds: Vec<&str> = seen.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "role_changed",
            "member_added",
            "member_added",
            "member_left",
            "role_changed",
            "member_left"
        ]
    );
    let doc = json_of(bob.get(&format!("/v1/conversations/{room}")).await, 200).await;
    assert_eq!(
        doc["members"][0],
        json!({"user": "bob", "role": "owner", "joined_seq": 0})
    );
    problem_of(
        alice.get(&format!("/v1/conversations/{room}")).await,
        404,
        "conversation-not-found",
    )
    .await;
    // A direct conversation's members do not change.
    let pair = direct(&alice, "bob").await;
    problem_of(
        alice
            .send_json(
                Method::POST,
                &format!("/v1/conversations/{pair}/members"),
                &json!({"user": "carol"}),
            )
            .await,
        409,
        "not-a-group",
    )
    .await;
    app.stop().await;
}

both_sets!(small_sync_pages_read_the_same_log_as_one_page);
async fn small_sync_pages_read_the_same_log_as_one_page(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, bob, carol, dave) = (
        app.user("alice"),
        app.user("bob"),
        app.user("carol"),
        app.user("dave"),
    );
    // A busy group, a quiet direct conversation, and a group Alice joins
    // late (she must not see what came before her).
    let busy = group(&alice, &["bob"]).await;
    let quiet = direct(&carol, "alice").await;
    let late = group(&dave, &[]).await;
    for i in 0..6 {
        say(&dave, &late, &format!("before alice {i}")).await;
    }
    for i in 0..24 {
        say(&bob, &busy, &format!("busy {i}")).await;
        if i % 8 == 0 {
            say(&carol, &quiet, &format!("quiet {i}")).await;
        }
        if i == 12 {
            json_of(
                dave.send_json(
                    Method::POST,
                    &format!("/v1/conversations/{late}/members"),
                    &json!({"user": "alice"}),
                )
                .await,
                200,
            )
            .await;
        }
        if i > 12 && i % 4 == 0 {
            say(&dave, &late, &format!("after alice {i}")).await;
        }
    }
    let (whole, _) = sync_paged(&alice, None, 1000).await;
    let texts: Vec<&str> = whole
        .iter()
        .filter_map(|e| e["message"]["text"].as_str())
        .collect();
    assert_eq!(texts.iter().filter(|t| t.starts_with("busy")).count(), 24);
    assert_eq!(texts.iter().filter(|t| t.starts_with("quiet")).count(), 3);
    assert_eq!(texts.iter().filter(|t| t.starts_with("after")).count(), 2);
    assert!(!texts.iter().any(|t| t.starts_with("before")), "{texts:?}");
    for limit in [1, 2, 5, 7] {
        let (paged, _) = sync_paged(&alice, None, limit).await;
        assert_eq!(paged, whole, "pages of {limit}");
    }
    app.stop().await;
}

both_sets!(an_expired_sync_cursor_is_gone);
async fn an_expired_sync_cursor_is_gone(set: BackendSet) {
    let app = spawn(set, |s| s.chat.sync_retention = Duration::from_millis(1)).await;
    let alice = app.user("alice");
    let chat = direct(&alice, "bob").await;
    let (_, old) = sync_all(&alice, None).await;
    say(&alice, &chat, "soon gone").await;
    say(&alice, &chat, "also").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(app.state.chat.purge_old_events().await.expect("purge") >= 2);
    problem_of(
        alice.get(&format!("/v1/sync?since={old}")).await,
        410,
        "sync-cursor-expired",
    )
    .await;
    // Starting over reads from the oldest event kept.
    let (events, _) = sync_all(&alice, None).await;
    assert!(events.is_empty(), "{events:?}");
    app.stop().await;
}

both_sets!(bad_chat_input_is_refused_and_nothing_is_stored);
async fn bad_chat_input_is_refused_and_nothing_is_stored(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, dave) = (app.user("alice"), app.user("dave"));
    let create = |body: Value| {
        let alice = alice.clone();
        async move {
            alice
                .send_json(Method::POST, "/v1/conversations", &body)
                .await
        }
    };
    let cases = [
        (
            json!({"kind": "channel", "members": ["bob"]}),
            "invalid-conversation-kind",
        ),
        (json!({"kind": "direct", "members": []}), "invalid-members"),
        (
            json!({"kind": "direct", "members": ["bob", "carol"]}),
            "invalid-members",
        ),
        (
            json!({"kind": "direct", "members": ["alice"]}),
            "invalid-members",
        ),
        (
            json!({"kind": "group", "title": "x", "members": ["bob", "bob"]}),
            "invalid-members",
        ),
        (
            json!({"kind": "group", "title": "x", "members": [""]}),
            "invalid-user-id",
        ),
        (
            json!({"kind": "group", "title": "x", "members": ["a\u{7}b"]}),
            "invalid-user-id",
        ),
        (
            json!({"kind": "group", "title": "é".repeat(101), "members": []}),
            "invalid-title",
        ),
        (
            json!({"kind": "group", "members": ["bob"]}),
            "invalid-title",
        ),
    ];
    for (body, code) in cases {
        problem_of(create(body.clone()).await, 400, code).await;
    }
    let listed = json_of(alice.get("/v1/conversations").await, 200).await;
    assert_eq!(listed["items"], json!([]), "nothing stored");

    let room = group(&alice, &["bob"]).await;
    let long = "x".repeat(64 * 1024 + 1);
    let many: Vec<Value> = (0..31)
        .map(|_| json!({"media_id": uuid::Uuid::now_v7().to_string()}))
        .collect();
    let messages = [
        (
            json!({"client_message_id": client_id()}),
            400,
            "empty-message",
        ),
        (
            json!({"client_message_id": client_id(), "text": ""}),
            400,
            "empty-message",
        ),
        (
            json!({"client_message_id": client_id(), "text": long}),
            400,
            "text-too-long",
        ),
        (
            json!({"client_message_id": client_id(), "attachments": many}),
            400,
            "too-many-attachments",
        ),
        (
            json!({"client_message_id": "42", "text": "hi"}),
            400,
            "invalid-client-message-id",
        ),
        (
            json!({"client_message_id": client_id(), "text": "hi", "reply_to_seq": 7}),
            400,
            "reply-not-found",
        ),
        (json!({"text": "hi"}), 422, "invalid-json-fields"),
    ];
    for (body, status, code) in messages {
        problem_of(post_message(&alice, &room, &body).await, status, code).await;
    }
    problem_of(
        post_message(
            &dave,
            &room,
            &json!({"client_message_id": client_id(), "text": "hi"}),
        )
        .await,
        404,
        "conversation-not-found",
    )
    .await;
    assert!(history(&alice, &room, 0).await.is_empty(), "nothing stored");

    // Forwarding: from a message one sees, to conversations one is in, within the limit.
    let m = say(&alice, &room, "fwd me").await;
    let seq = m["seq"].as_u64().expect("seq");
    let forward = |to: Vec<String>| {
        let alice = alice.clone();
        let room = room.clone();
        async move {
            alice
                .send_json(
                    Method::POST,
                    "/v1/messages/forward",
                    &json!({
                        "from": {"conversation_id": room, "seq": seq},
                        "to": to,
                        "client_message_id": client_id(),
                    }),
                )
                .await
        }
    };
    let dave_room = group(&dave, &["erin"]).await;
    problem_of(
        forward(vec![dave_room.clone()]).await,
        404,
        "conversation-not-found",
    )
    .await;
    let mut targets = Vec::new();
    for i in 0..6 {
        targets.push(direct(&alice, &format!("friend-{i}")).await);
    }
    problem_of(
        forward(targets.clone()).await,
        400,
        "invalid-forward-targets",
    )
    .await;
    problem_of(forward(Vec::new()).await, 400, "invalid-forward-targets").await;
    for target in &targets {
        assert!(
            history(&alice, target, 0).await.is_empty(),
            "nothing forwarded"
        );
    }
    let r = dave
        .send_json(
            Method::POST,
            "/v1/messages/forward",
            &json!({
                "from": {"conversation_id": room, "seq": m["seq"]},
                "to": [dave_room],
                "client_message_id": client_id(),
            }),
        )
        .await;
    problem_of(r, 404, "conversation-not-found").await;

    // Paging and cursors.
    problem_of(
        alice
            .get(&format!("/v1/conversations/{room}/messages?limit=201"))
            .await,
        400,
        "invalid-limit",
    )
    .await;
    problem_of(
        alice.get("/v1/sync?since=nope").await,
        400,
        "invalid-cursor",
    )
    .await;
    problem_of(alice.get("/v1/sync?limit=1001").await, 400, "invalid-limit").await;
    problem_of(
        alice.get("/v1/conversations/not-a-conversation").await,
        404,
        "conversation-not-found",
    )
    .await;
    app.stop().await;
}
