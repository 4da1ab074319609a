//! What one client can hold of a node: a connection that never finishes its
//! headers is closed, connections are capped, and each user's open event
//! streams and sockets are bounded.

use std::time::Duration;

use media_e2e::{BackendSet, TestApp, problem_of, test_settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the server closes the connection (true) or `limit` passes.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_connection_that_trickles_its_headers_is_closed() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    settings.header_read_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    // A request line and one header, then a byte now and then: never done.
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let trickle = async {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if slow.write_all(b"X").await.is_err() {
                return;
            }
        }
    };
    trickle.await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "a connection still sending its headers after 2.4 s was kept open"
    );
    // An ordinary request on a new connection is served.
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    // Kept alive and then idle, a connection is closed too, so idle
    // connections cannot hold the connection cap.
    let mut kept = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 512];
    let n = kept.read(&mut answer).await.expect("read");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(
        closed_within(&mut kept, Duration::from_secs(3)).await,
        "an idle kept-alive connection was kept open"
    );
    app.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    settings.max_connections = 3;
    settings.header_read_timeout = Duration::from_secs(30);
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(app.addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fourth is not served while three are held...
    let fresh = reqwest::Client::new();
    let waiting = fresh
        .get(app.url("/healthz"))
        .timeout(Duration::from_millis(800))
        .send()
        .await;
    assert!(
        waiting.is_err(),
        "a fourth connection was served: {waiting:?}"
    );
    // ...and is once one of them goes.
    drop(idle.pop());
    let r = fresh
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("served once a connection closed");
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn each_user_holds_a_bounded_number_of_streams_and_sockets() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    settings.limits.max_streams_per_user = 2;
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let session = alice.open("s.bin", 1000).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let events = format!("/v1/uploads/{id}/events");
    // One event stream and one socket: her two.
    let stream = alice.get(&events).await;
    assert_eq!(stream.status(), 200);
    let ws = app.url("/v1/realtime").replacen("http", "ws", 1);
    let socket = media_e2e::Socket::connect(&ws, &alice.token).await;
    // A third of either is refused.
    problem_of(alice.get(&events).await, 429, "too-many-streams").await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws.as_str())
            .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", alice.token).parse().expect("header"),
    );
    let refused = media_e2e::Socket::open(request).await;
    assert!(refused.is_err(), "a third stream was accepted");
    // Bob's are his own.
    let session = bob.open("b.bin", 1000).await;
    let bobs = bob
        .get(&format!(
            "/v1/uploads/{}/events",
            session["upload_id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(bobs.status(), 200);
    // Closing one gives its slot back.
    drop(stream);
    let again = media_e2e::eventually(Duration::from_secs(5), || async {
        alice.get(&events).await.status() == 200
    })
    .await;
    assert!(again, "the closed stream's slot never came back");
    drop(socket);
    app.stop().await;
}
