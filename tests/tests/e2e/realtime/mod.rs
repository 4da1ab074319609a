//! The realtime gateway: live delivery to every device on any node
//! (`delivery`), resuming without gaps (`resume`), ephemeral frames
//! (`ephemeral`), the socket's limits and closes (`limits`), and the
//! connections a node holds to Redis (`fanout`).

mod delivery;
mod ephemeral;
mod failover;
mod fanout;
mod limits;
mod resume;

use std::time::Duration;

use media_e2e::{BackendSet, TestApp, group, json_of, say, test_settings};
use reqwest::Method;
use serde_json::{Value, json};

/// Long enough for a frame that should come; the contract's bound is 1 s.
const SOON: Duration = Duration::from_secs(1);
/// How long a frame that must not come is waited for.
const QUIET: Duration = Duration::from_millis(600);

async fn spawn(set: BackendSet, tune: impl FnOnce(&mut media_api::config::Settings)) -> TestApp {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(1);
    settings.jobs.backoff = Duration::from_millis(50);
    settings.jobs.poll_interval = Duration::from_millis(100);
    tune(&mut settings);
    TestApp::spawn_with(set, settings, dir).await
}

/// Pings and waits for the pong: the socket is registered and its
/// reader started.
async fn ready(socket: &mut media_e2e::Socket) {
    socket.send(json!({"type": "ping"})).await;
    socket.next_of("pong", SOON).await.expect("pong");
}

/// The text of an `event` frame's message, if it carries one.
fn text_of(frame: &Value) -> Option<&str> {
    frame["event"]["message"]["text"].as_str()
}

/// The next `event` frame carrying a message text, within `limit`.
async fn next_text(socket: &mut media_e2e::Socket, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = socket.next_of("event", left).await?;
        if text_of(&frame).is_some() {
            return Some(frame);
        }
    }
}
