//! A message reaches every device of every member, live, wherever the
//! device is connected; the frames are the sync log's own events.

use std::time::Instant;

use super::*;
use media_e2e::{both_sets, problem_of};

both_sets!(a_message_reaches_every_device_of_every_member_and_no_one_else);
async fn a_message_reaches_every_device_of_every_member_and_no_one_else(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let room = group(&alice, &["bob"]).await;
    // Bob's phone authenticates by header, his browser by the query.
    let mut phone = app.socket(&bob.token).await;
    let mut browser = app.socket_with_query(&bob.token).await;
    let mut carol = app.socket(&app.token("carol")).await;
    for s in [&mut phone, &mut browser, &mut carol] {
        ready(s).await;
    }
    let sent = Instant::now();
    say(&alice, &room, "hello, all of you").await;
    let on_phone = next_text(&mut phone, SOON)
        .await
        .expect("the phone gets it");
    let on_browser = next_text(&mut browser, SOON)
        .await
        .expect("the browser gets it");
    assert!(sent.elapsed() < SOON, "{:?}", sent.elapsed());
    assert_eq!(text_of(&on_phone), Some("hello, all of you"));
    assert_eq!(on_phone, on_browser, "every device gets the same frame");
    assert!(
        carol.all_of("event", QUIET).await.is_empty(),
        "a non-member hears nothing"
    );

    // The frame is the sync log's event, with the cursor a sync page gives.
    let page = json_of(bob.get("/v1/sync?limit=1000").await, 200).await;
    let logged = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["message"]["text"] == "hello, all of you")
        .expect("in the log")
        .clone();
    assert_eq!(on_phone["event"], logged);
    let after = json_of(
        bob.get(&format!(
            "/v1/sync?since={}",
            on_phone["cursor"].as_str().expect("cursor")
        ))
        .await,
        200,
    )
    .await;
    assert!(
        after["events"].as_array().expect("events").is_empty(),
        "nothing of the message's comes after its cursor: {after}"
    );
    app.stop().await;
}

#[tokio::test]
async fn two_nodes_deliver_to_every_device_on_either() {
    let a = spawn(BackendSet::Real, |_| {}).await;
    let b = a.another_node().await;
    let (alice, bob) = (a.user("alice"), a.user("bob"));
    let room = group(&alice, &["bob"]).await;
    let mut on_b = b.socket(&bob.token).await;
    let mut on_a = a.socket(&bob.token).await;
    let mut carol = b.socket(&b.token("carol")).await;
    for s in [&mut on_a, &mut on_b, &mut carol] {
        ready(s).await;
    }
    for i in 0..3 {
        let text = format!("across nodes {i}");
        let sent = Instant::now();
        say(&alice, &room, &text).await;
        let got_b = next_text(&mut on_b, SOON)
            .await
            .expect("node B's socket gets it");
        let got_a = next_text(&mut on_a, SOON)
            .await
            .expect("node A's socket gets it");
        assert!(sent.elapsed() < SOON, "{:?}", sent.elapsed());
        assert_eq!(text_of(&got_b), Some(text.as_str()));
        assert_eq!(got_a, got_b);
    }
    assert!(carol.all_of("event", QUIET).await.is_empty());
    // A member added later follows the conversation from then on, on either node.
    let mut dave = b.socket(&b.token("dave")).await;
    ready(&mut dave).await;
    json_of(
        alice
            .send_json(
                Method::POST,
                &format!("/v1/conversations/{room}/members"),
                &json!({"user": "dave"}),
            )
            .await,
        200,
    )
    .await;
    say(&alice, &room, "welcome, dave").await;
    let got = next_text(&mut dave, SOON)
        .await
        .expect("the new member hears it");
    assert_eq!(text_of(&got), Some("welcome, dave"));
    b.stop().await;
    a.stop().await;
}

both_sets!(a_bad_token_is_refused_before_the_upgrade);
async fn a_bad_token_is_refused_before_the_upgrade(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    problem_of(
        app.client
            .get(app.url("/v1/realtime"))
            .send()
            .await
            .expect("get"),
        401,
        "token-missing",
    )
    .await;
    problem_of(
        app.client
            .get(app.url("/v1/realtime?access_token=not-a-jwt"))
            .send()
            .await
            .expect("get"),
        401,
        "token-malformed",
    )
    .await;
    // A good token without a WebSocket handshake.
    problem_of(
        app.client
            .get(app.url("/v1/realtime"))
            .bearer_auth(app.token("alice"))
            .send()
            .await
            .expect("get"),
        426,
        "websocket-required",
    )
    .await;
    let refused = media_e2e::Socket::open({
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        app.ws_url("/v1/realtime?access_token=nope")
            .into_client_request()
            .expect("request")
    })
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401 before the upgrade, got {other:?}"),
    }
    app.stop().await;
}
