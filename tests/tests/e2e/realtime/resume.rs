//! A device that was away resumes from its cursor: it gets exactly what it
//! missed, then live events, with no gap and nothing twice at the seam,
//! while messages keep arriving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use media_e2e::both_sets;

const LIVE: usize = 40;

both_sets!(a_device_that_resumes_gets_what_it_missed_then_live_ones_exactly_once);
async fn a_device_that_resumes_gets_what_it_missed_then_live_ones_exactly_once(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let room = group(&alice, &["bob"]).await;
    let mut socket = app.socket(&bob.token).await;
    ready(&mut socket).await;
    say(&alice, &room, "before").await;
    let seen = next_text(&mut socket, SOON).await.expect("live");
    let cursor = seen["cursor"].as_str().expect("cursor").to_owned();
    socket.close().await;

    // Away: three messages go by.
    for i in 0..3 {
        say(&alice, &room, &format!("missed {i}")).await;
    }
    // Back, while Alice keeps writing.
    let writing = Arc::new(AtomicBool::new(true));
    let sender = {
        let (writing, alice, room) = (writing.clone(), alice.clone(), room.clone());
        async move {
            for i in 0..LIVE {
                say(&alice, &room, &format!("live {i}")).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            writing.store(false, Ordering::SeqCst);
        }
    };
    let reader = async {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let mut socket = app.socket(&bob.token).await;
        socket
            .send(json!({"type": "resume", "cursor": cursor}))
            .await;
        let mut texts = Vec::new();
        let mut cursors = Vec::new();
        while let Some(frame) = next_text(&mut socket, Duration::from_secs(3)).await {
            texts.push(text_of(&frame).expect("text").to_owned());
            cursors.push(frame["cursor"].as_str().expect("cursor").to_owned());
            if texts.len() == 3 + LIVE {
                break;
            }
        }
        (socket, texts, cursors)
    };
    let ((), (mut socket, texts, cursors)) = tokio::join!(sender, reader);
    assert!(!writing.load(Ordering::SeqCst));
    let mut expected: Vec<String> = (0..3).map(|i| format!("missed {i}")).collect();
    expected.extend((0..LIVE).map(|i| format!("live {i}")));
    assert_eq!(
        texts, expected,
        "what was missed, then live, once each, in order"
    );
    let mut sorted = cursors.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), cursors.len(), "no cursor twice");
    assert!(
        next_text(&mut socket, QUIET).await.is_none(),
        "and nothing after"
    );

    // A bad or expired cursor is an error frame; the socket stays open.
    socket
        .send(json!({"type": "resume", "cursor": "not-a-cursor"}))
        .await;
    let e = socket.next_of("error", SOON).await.expect("an error frame");
    assert_eq!(e["code"], "invalid-cursor", "{e}");
    socket.send(json!({"type": "ping"})).await;
    assert!(socket.next_of("pong", SOON).await.is_some());
    app.stop().await;
}
