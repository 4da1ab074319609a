//! The socket's limits and how it ends: bad frames answered and survived,
//! an oversized frame (1009), an expired token (4001), a reader too slow
//! (4008) without the node's memory growing, and shutdown (1012).

use super::*;
use media_e2e::{Ended, ServiceProcess, Socket, both_sets, free_port};
use tokio_tungstenite::tungstenite::Message;

both_sets!(bad_frames_get_error_frames_and_the_socket_stays_open);
async fn bad_frames_get_error_frames_and_the_socket_stays_open(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let alice = app.user("alice");
    let mut socket = app.socket(&alice.token).await;
    let cases: [(&str, &str); 7] = [
        ("not json at all", "malformed-frame"),
        ("[1, 2]", "malformed-frame"),
        (r#"{"type": "dance"}"#, "unknown-frame-type"),
        (r#"{"type": "resume"}"#, "malformed-frame"),
        (
            r#"{"type": "typing", "conversation_id": 7}"#,
            "malformed-frame",
        ),
        (
            r#"{"type": "receipt", "conversation_id": "nope", "read_seq": 1}"#,
            "conversation-not-found",
        ),
        (
            r#"{"type": "subscribe_presence", "users": ["ok", ""]}"#,
            "invalid-user-id",
        ),
    ];
    for (text, code) in cases {
        socket
            .send_raw(Message::Text(text.into()))
            .await
            .expect("send");
        let e = socket.next_of("error", SOON).await.expect("an error frame");
        assert_eq!(e["code"], code, "{text}: {e}");
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    socket
        .send_raw(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    let e = socket.next_of("error", SOON).await.expect("an error frame");
    assert_eq!(e["code"], "malformed-frame");
    ready(&mut socket).await;
    app.stop().await;
}

both_sets!(a_frame_over_the_limit_closes_the_socket_with_1009);
async fn a_frame_over_the_limit_closes_the_socket_with_1009(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let mut socket = app.socket(&app.token("alice")).await;
    ready(&mut socket).await;
    let big = format!(r#"{{"type": "ping", "pad": "{}"}}"#, "x".repeat(64 * 1024));
    let _ = socket.send_raw(Message::Text(big.into())).await;
    assert_eq!(
        socket.ending(Duration::from_secs(5)).await,
        Ended::Closed(1009, "frame-too-large".into())
    );
    app.stop().await;
}

both_sets!(an_expired_token_closes_the_socket_with_4001);
async fn an_expired_token_closes_the_socket_with_4001(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let token = app.token_expiring("alice", 2);
    let mut socket = app.socket(&token).await;
    ready(&mut socket).await;
    assert_eq!(
        socket.ending(Duration::from_secs(6)).await,
        Ended::Closed(4001, "token-expired".into())
    );
    app.stop().await;
}

/// A process's resident memory, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

const SLOW_READERS: usize = 4;
const BIG_MESSAGES: usize = 300;

both_sets!(a_reader_too_slow_is_closed_with_4008_and_the_node_holds_no_more);
async fn a_reader_too_slow_is_closed_with_4008_and_the_node_holds_no_more(set: BackendSet) {
    // Its own process, so its memory is its own.
    const SECRET: &str = "realtime-slow-reader-secret-0123456789abc";
    let (settings, _dir) = test_settings(set).await;
    let rate = (BIG_MESSAGES * 2).to_string();
    let node = ServiceProcess::start_with(
        &settings,
        free_port(),
        SECRET,
        &[("MEDIA_QUOTAS__MESSAGES_PER_MINUTE", rate.as_str())],
    )
    .await;
    let http = reqwest::Client::new();
    let call = |method: Method, path: &str, user: &str, body: Value| {
        http.request(method, format!("{}{path}", node.base))
            .bearer_auth(node.token(user))
            .json(&body)
            .send()
    };
    let readers: Vec<String> = (0..SLOW_READERS).map(|i| format!("slow-{i}")).collect();
    let created = call(
        Method::POST,
        "/v1/conversations",
        "alice",
        json!({"kind": "group", "title": "Big", "members": readers}),
    )
    .await
    .expect("create");
    let room = json_of(created, 201).await["conversation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let url = format!("{}/v1/realtime", node.base.replace("http://", "ws://"));
    let mut sockets = Vec::new();
    for name in &readers {
        let mut s = Socket::connect(&url, &node.token(name)).await;
        ready(&mut s).await;
        sockets.push(s);
    }
    // None of them reads from here on. Each message is ~60 KB; unbounded,
    // the node would hold every one of them for every reader.
    let before = rss_bytes(node.pid());
    let text = "x".repeat(60 * 1000);
    let path = format!("/v1/conversations/{room}/messages");
    for _ in 0..BIG_MESSAGES {
        let body = json!({"client_message_id": uuid::Uuid::now_v7().to_string(), "text": text});
        let r = call(Method::POST, &path, "alice", body)
            .await
            .expect("post");
        assert_eq!(r.status(), 201);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_bytes(node.pid()).saturating_sub(before);
    let unbounded = (SLOW_READERS * BIG_MESSAGES * 60_000) as u64;
    assert!(
        grown < unbounded / 3,
        "the node grew by {grown} bytes for {unbounded} bytes not read"
    );
    for mut s in sockets {
        assert_eq!(
            s.ending(Duration::from_secs(20)).await,
            Ended::Closed(4008, "lagging".into())
        );
    }
    // A reader that keeps up is not affected.
    let mut fine = Socket::connect(&url, &node.token("slow-0")).await;
    ready(&mut fine).await;
    let body = json!({"client_message_id": uuid::Uuid::now_v7().to_string(), "text": "small"});
    call(Method::POST, &path, "alice", body)
        .await
        .expect("post");
    assert!(next_text(&mut fine, SOON).await.is_some());
    node.kill().await;
}

both_sets!(shutdown_closes_every_socket_with_1012);
async fn shutdown_closes_every_socket_with_1012(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let mut a = app.socket(&app.token("alice")).await;
    let mut b = app.socket(&app.token("bob")).await;
    ready(&mut a).await;
    ready(&mut b).await;
    let stopping = tokio::spawn(app.stop());
    for mut s in [a, b] {
        assert_eq!(
            s.ending(Duration::from_secs(10)).await,
            Ended::Closed(1012, "service-restart".into())
        );
    }
    stopping.await.expect("stopped");
}
