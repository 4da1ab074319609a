//! What a node costs Redis: one subscriber connection however many sockets
//! and event streams it serves; and a node that dies without closing its
//! sockets lets its users' presence expire.

use futures_util::StreamExt;

use super::*;
use media_e2e::{ServiceProcess, Socket, free_port, real_env};

const SOCKETS: usize = 2000;
const USERS: usize = 200;
const VIEWERS: usize = 2000;

/// Every client connection Redis has now.
async fn redis_clients() -> usize {
    let client = redis::Client::open(real_env("MEDIA_REDIS_URL")).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("client list");
    list.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Other tests come and go meanwhile: this is far below one per socket.
const SLACK: usize = 60;

#[tokio::test]
async fn a_node_holds_one_redis_subscriber_however_many_sockets_and_streams() {
    // One user watches one upload from many streams here.
    let app = spawn(BackendSet::Real, |s| {
        s.limits.max_streams_per_user = VIEWERS + 1;
    })
    .await;
    let alice = app.user("alice");
    let members: Vec<String> = (0..USERS).map(|i| format!("member-{i}")).collect();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let room = group(&alice, &names).await;
    let before = redis_clients().await;

    let tokens: Vec<String> = members.iter().map(|m| app.token(m)).collect();
    let url = app.ws_url("/v1/realtime");
    let mut sockets: Vec<Socket> = futures_util::stream::iter(0..SOCKETS)
        .map(|i| {
            let (url, token) = (url.clone(), tokens[i % USERS].clone());
            async move {
                let mut s = Socket::connect(&url, &token).await;
                s.send(json!({"type": "ping"})).await;
                s.next_of("pong", Duration::from_secs(30))
                    .await
                    .expect("pong");
                s
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(app.state.realtime.connections(), SOCKETS);
    let with_sockets = redis_clients().await;
    assert!(
        with_sockets < before + SLACK,
        "{SOCKETS} sockets took Redis from {before} to {with_sockets} connections"
    );
    // And every one of them is live.
    say(&alice, &room, "to all two thousand").await;
    let mut delivered = 0;
    for s in &mut sockets {
        if next_text(s, Duration::from_secs(10)).await.is_some() {
            delivered += 1;
        }
    }
    assert_eq!(delivered, SOCKETS);
    drop(sockets);

    // Server-sent event streams share the same connection.
    let session = alice.open("big.bin", 8 << 20).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let mut streams = Vec::with_capacity(VIEWERS);
    for _ in 0..VIEWERS {
        let r = app
            .client
            .get(app.url(&format!("/v1/uploads/{id}/events")))
            .bearer_auth(&alice.token)
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        streams.push(r.bytes_stream());
    }
    let with_streams = redis_clients().await;
    assert!(
        with_streams < before + SLACK,
        "{VIEWERS} event streams took Redis from {before} to {with_streams} connections"
    );
    drop(streams);
    app.stop().await;
}

#[tokio::test]
async fn a_dead_nodes_users_go_offline_after_the_expiry() {
    const SECRET: &str = "realtime-presence-test-secret-0123456789";
    let (mut settings, dir) = media_e2e::test_settings(BackendSet::Real).await;
    settings.jwt_secret = Some(secrecy::SecretString::from(SECRET.to_owned()));
    settings.realtime.heartbeat = Duration::from_millis(200);
    settings.realtime.presence_expiry = Duration::from_millis(800);
    let dying = ServiceProcess::start_with(
        &settings,
        free_port(),
        SECRET,
        &[
            ("MEDIA_REALTIME__HEARTBEAT", "200ms"),
            ("MEDIA_REALTIME__PRESENCE_EXPIRY", "800ms"),
        ],
    )
    .await;
    let app = TestApp::spawn_with(BackendSet::Real, settings, dir).await;
    let alice = app.user("alice");
    group(&alice, &["bob"]).await;
    let mut watcher = app.socket(&alice.token).await;
    watcher
        .send(json!({"type": "subscribe_presence", "users": ["bob"]}))
        .await;
    let first = watcher.next_of("presence", SOON).await.expect("presence");
    assert_eq!(first["online"], false);
    let bob = Socket::connect(
        &format!("{}/v1/realtime", dying.base.replace("http://", "ws://")),
        &dying.token("bob"),
    )
    .await;
    let online = watcher
        .next_of("presence", Duration::from_secs(3))
        .await
        .expect("online");
    assert_eq!(online["online"], true, "{online}");
    // Bob's node dies: no socket is closed, nothing says he left.
    dying.kill().await;
    let offline = watcher
        .next_of("presence", Duration::from_secs(5))
        .await
        .expect("offline once the dead node's beats expire");
    assert_eq!(offline["online"], false, "{offline}");
    assert!(offline["last_seen"].is_string(), "{offline}");
    drop(bob);
    app.stop().await;
}

#[tokio::test]
async fn redis_restarted_or_flushed_loses_no_event_and_presence_comes_back() {
    let redis = media_e2e::OwnRedis::start().await;
    let url = redis.url();
    let app = spawn(BackendSet::Real, |s| {
        s.redis_url = Some(secrecy::SecretString::from(url));
        s.realtime.heartbeat = Duration::from_millis(200);
        s.realtime.presence_expiry = Duration::from_millis(1000);
    })
    .await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let room = group(&alice, &["bob"]).await;
    let mut socket = app.socket(&bob.token).await;
    ready(&mut socket).await;
    say(&alice, &room, "before").await;
    assert!(next_text(&mut socket, SOON).await.is_some());

    // Redis goes down and comes back empty: the socket stays open, and a
    // message sent while its announcement could not be published still
    // arrives (the node re-reads every follower's log when it reconnects).
    let redis = redis.restart().await;
    say(&alice, &room, "during the outage").await;
    let got = next_text(&mut socket, Duration::from_secs(10))
        .await
        .expect("the message sent while Redis was away");
    assert_eq!(text_of(&got), Some("during the outage"));
    say(&alice, &room, "after").await;
    let got = next_text(&mut socket, Duration::from_secs(5))
        .await
        .expect("live again");
    assert_eq!(text_of(&got), Some("after"));

    // Presence comes back with the next heartbeat, after a flush too.
    redis.flushall().await;
    let bus = &app.state.backends.progress;
    let mut back = false;
    for _ in 0..50 {
        let p = bus
            .presence_of(&["bob".to_owned()])
            .await
            .expect("presence");
        if p[0].online {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "bob is online again after the next heartbeat");
    ready(&mut socket).await;
    app.stop().await;
}
