//! Realtime under faults: a node SIGKILLed under open sockets (its devices
//! reconnect to the other node and resume from their cursors), and Redis
//! restarted under sockets on two nodes; either way every device gets every
//! message once, in order.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use media_e2e::{OwnRedis, ServiceProcess, Socket, free_port};

const SECRET: &str = "realtime-failover-secret-long-enough-012345";
/// Messages sent while the fault happens.
const MESSAGES: usize = 60;

/// What one device saw: the texts in order, and how often it reconnected.
struct Seen {
    texts: Vec<String>,
    cursors: Vec<String>,
    reconnects: usize,
}

/// Follows the conversation on `socket`, whose last event had `cursor`,
/// until `count` messages have come; when the socket ends (its node died)
/// or goes quiet, reconnects to `fallback` and resumes from the last
/// cursor, as a client does.
async fn follow(
    mut socket: Socket,
    cursor: String,
    fallback: &TestApp,
    token: &str,
    count: usize,
) -> Seen {
    let mut last = cursor;
    let mut seen = Seen {
        texts: Vec::new(),
        cursors: Vec::new(),
        reconnects: 0,
    };
    while seen.texts.len() < count {
        match next_text(&mut socket, Duration::from_secs(3)).await {
            Some(frame) => {
                seen.texts.push(text_of(&frame).expect("text").to_owned());
                last = frame["cursor"].as_str().expect("cursor").to_owned();
                seen.cursors.push(last.clone());
            }
            None => {
                assert!(seen.reconnects < 5, "still nothing after 5 reconnects");
                seen.reconnects += 1;
                socket = fallback.socket(token).await;
                socket.send(json!({"type": "resume", "cursor": last})).await;
            }
        }
    }
    // Nothing after the last one.
    assert!(
        next_text(&mut socket, QUIET).await.is_none(),
        "a message twice"
    );
    seen
}

/// Each device saw the `MESSAGES` sent during the fault, once each, in
/// order, with no cursor twice.
fn every_message_once(seen: &[Seen]) {
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    for (device, s) in seen.iter().enumerate() {
        assert_eq!(
            s.texts, expected,
            "device {device}: every message once, in order"
        );
        let mut cursors = s.cursors.clone();
        cursors.sort();
        cursors.dedup();
        assert_eq!(
            cursors.len(),
            s.cursors.len(),
            "device {device}: a cursor twice"
        );
    }
}

/// A first message through `app`, seen by every socket; then each device
/// (a socket with its user's token) following the conversation from the
/// cursor it has, resuming on `fallback` when its socket ends.
async fn following<'a>(
    app: &TestApp,
    room: &str,
    mut sockets: Vec<Socket>,
    tokens: &'a [String],
    fallback: &'a TestApp,
) -> impl std::future::Future<Output = Vec<Seen>> + 'a {
    say(&app.user("alice"), room, "first").await;
    let mut cursors = Vec::new();
    for socket in &mut sockets {
        let got = next_text(socket, SOON).await.expect("the first message");
        assert_eq!(text_of(&got), Some("first"));
        cursors.push(got["cursor"].as_str().expect("cursor").to_owned());
    }
    futures_util::future::join_all(
        sockets
            .into_iter()
            .zip(cursors)
            .zip(tokens)
            .map(|((socket, cursor), token)| follow(socket, cursor, fallback, token, MESSAGES)),
    )
}

/// Alice sends `MESSAGES` messages 20 ms apart through `app`, counting them.
async fn keep_sending(app: &TestApp, room: &str, sent: &AtomicUsize) {
    let alice = app.user("alice");
    for i in 0..MESSAGES {
        say(&alice, room, &format!("m{i}")).await;
        sent.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` messages have gone.
async fn after(sent: &AtomicUsize, n: usize) {
    while sent.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_node_killed_under_open_sockets_its_devices_resume_on_the_other_and_miss_nothing() {
    let app = spawn(BackendSet::Real, |s| {
        s.jwt_secret = Some(secrecy::SecretString::from(SECRET.to_owned()));
    })
    .await;
    let dying = ServiceProcess::start(&app.state.settings, free_port(), SECRET).await;
    let room = group(&app.user("alice"), &["bob", "carol"]).await;
    let url = format!("{}/v1/realtime", dying.base.replace("http://", "ws://"));
    // Bob's phone and laptop and Carol's phone, on the node that will die.
    let tokens = [app.token("bob"), app.token("bob"), app.token("carol")];
    let mut sockets = Vec::new();
    for token in &tokens {
        let mut socket = Socket::connect(&url, token).await;
        ready(&mut socket).await;
        sockets.push(socket);
    }
    let devices = following(&app, &room, sockets, &tokens, &app).await;
    let sent = AtomicUsize::new(0);
    let killer = async {
        after(&sent, MESSAGES / 3).await;
        dying.kill().await;
    };
    let (seen, (), ()) = tokio::join!(devices, keep_sending(&app, &room, &sent), killer);
    for s in &seen {
        assert!(s.reconnects >= 1, "a device never lost its node");
    }
    every_message_once(&seen);
    app.stop().await;
}

#[tokio::test]
async fn redis_restarted_under_sockets_on_two_nodes_loses_and_repeats_nothing() {
    let redis = OwnRedis::start().await;
    let url = redis.url();
    let a = spawn(BackendSet::Real, |s| {
        s.redis_url = Some(secrecy::SecretString::from(url));
    })
    .await;
    let b = a.another_node().await;
    let room = group(&a.user("alice"), &["bob", "carol"]).await;
    // Bob on both nodes, Carol on the node that does not send.
    let tokens = [a.token("bob"), a.token("bob"), a.token("carol")];
    let mut sockets = vec![
        a.socket(&tokens[0]).await,
        b.socket(&tokens[1]).await,
        b.socket(&tokens[2]).await,
    ];
    for socket in &mut sockets {
        ready(socket).await;
    }
    // A device whose socket ended would resume on node A.
    let devices = following(&a, &room, sockets, &tokens, &a).await;
    let sent = AtomicUsize::new(0);
    let restarter = async {
        after(&sent, MESSAGES / 3).await;
        let redis = redis.restart().await;
        after(&sent, 2 * MESSAGES / 3).await;
        redis.flushall().await;
        redis
    };
    let (seen, (), _redis) = tokio::join!(devices, keep_sending(&a, &room, &sent), restarter);
    every_message_once(&seen);
    b.stop().await;
    a.stop().await;
}

/// A client that stops reading (its network gone without a word): once a
/// frame has waited `realtime.write_timeout` to be written, the node gives
/// the socket up, frees what it held, and logs no panic (it once did, when
/// its writer ended before its reader: found by `load soak`).
#[tokio::test]
async fn a_socket_whose_client_stops_reading_is_given_up_after_the_write_timeout() {
    let (settings, _dir) = test_settings(BackendSet::Embedded).await;
    let node = ServiceProcess::start_with(
        &settings,
        free_port(),
        SECRET,
        &[
            ("MEDIA_REALTIME__WRITE_TIMEOUT", "1s"),
            // The queue never says lagging: only the write can end it.
            ("MEDIA_REALTIME__MAX_QUEUED_FRAMES", "1000000"),
            ("MEDIA_REALTIME__MAX_QUEUED_BYTES", "1GiB"),
            ("MEDIA_QUOTAS__MESSAGES_PER_MINUTE", "1000000"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let alice = node.token("alice");
    let created: Value = client
        .post(format!("{}/v1/conversations", node.base))
        .bearer_auth(&alice)
        .json(&json!({"kind": "group", "title": "busy", "members": ["bob"]}))
        .send()
        .await
        .expect("group")
        .json()
        .await
        .expect("json");
    let room = created["conversation_id"].as_str().expect("id").to_owned();
    let url = format!("{}/v1/realtime", node.base.replace("http://", "ws://"));
    let mut bob = Socket::connect_with_receive_buffer(&url, &node.token("bob"), 4096).await;
    ready(&mut bob).await;
    assert_eq!(node.metric("realtime_connections", &[]).await, 1.0);
    // Bob reads no more; Alice writes until the node has given him up.
    let text = "x".repeat(3000);
    let mut sent = 0;
    while node.metric("realtime_connections", &[]).await > 0.0 {
        assert!(sent < 20_000, "the node kept a socket that read nothing");
        let posts = (0..16).map(|_| {
            client
                .post(format!("{}/v1/conversations/{room}/messages", node.base))
                .bearer_auth(&alice)
                .json(&json!({
                    "client_message_id": uuid::Uuid::now_v7().to_string(),
                    "text": text,
                }))
                .send()
        });
        for r in futures_util::future::join_all(posts).await {
            assert_eq!(r.expect("post").status(), 201);
        }
        sent += 16;
    }
    // Bob's slot is free: he connects again and is served.
    let mut again = Socket::connect(&url, &node.token("bob")).await;
    ready(&mut again).await;
    drop(bob);
    let log = node.kill_and_log().await;
    assert!(!log.contains("panicked"), "{log}");
}
