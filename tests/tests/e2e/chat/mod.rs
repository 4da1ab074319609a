//! The messaging core: attachments and who may read them (`access`),
//! concurrent senders and the sync log (`concurrency`), receipts, edits,
//! deletes, membership and every bad input (`rules`).

mod access;
mod concurrency;
mod contract;
mod rules;

use std::time::Duration;

use media_e2e::{BackendSet, TestApp, User, group, json_of, say, test_settings};
use reqwest::Method;
use serde_json::{Value, json};

/// The service with in-process workers that retry quickly.
async fn spawn(set: BackendSet, tune: impl FnOnce(&mut media_api::config::Settings)) -> TestApp {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(2);
    settings.jobs.backoff = Duration::from_millis(50);
    settings.jobs.poll_interval = Duration::from_millis(200);
    tune(&mut settings);
    TestApp::spawn_with(set, settings, dir).await
}

pub(crate) fn client_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The direct conversation of `from` and `to`; answers its id.
async fn direct(from: &User<'_>, to: &str) -> String {
    let r = from
        .send_json(
            Method::POST,
            "/v1/conversations",
            &json!({"kind": "direct", "members": [to]}),
        )
        .await;
    assert!(r.status() == 201 || r.status() == 200, "{}", r.status());
    r.json::<Value>().await.expect("json")["conversation_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Posts a message body; the raw response.
pub(crate) async fn post_message(
    user: &User<'_>,
    conversation: &str,
    body: &Value,
) -> reqwest::Response {
    user.send_json(
        Method::POST,
        &format!("/v1/conversations/{conversation}/messages"),
        body,
    )
    .await
}

/// The messages a user sees after `after_seq`.
pub(crate) async fn history(user: &User<'_>, conversation: &str, after_seq: u64) -> Vec<Value> {
    let r = user
        .get(&format!(
            "/v1/conversations/{conversation}/messages?after_seq={after_seq}&limit=200"
        ))
        .await;
    json_of(r, 200).await["items"]
        .as_array()
        .expect("items")
        .clone()
}

/// Reads the whole sync log from `since` for a user; answers the events
/// and the cursor to continue from.
async fn sync_all(user: &User<'_>, since: Option<String>) -> (Vec<Value>, String) {
    sync_paged(user, since, 1000).await
}

/// `sync_all` in pages of `limit` events, each checked to hold no more.
async fn sync_paged(
    user: &User<'_>,
    mut since: Option<String>,
    limit: usize,
) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    loop {
        let path = match &since {
            Some(c) => format!("/v1/sync?since={c}&limit={limit}"),
            None => format!("/v1/sync?limit={limit}"),
        };
        let page = json_of(user.get(&path).await, 200).await;
        let got = page["events"].as_array().expect("events");
        assert!(
            got.len() <= limit,
            "{} events in a page of {limit}",
            got.len()
        );
        events.extend(got.iter().cloned());
        since = Some(page["next_cursor"].as_str().expect("cursor").to_owned());
        if page["has_more"] == false {
            return (events, since.expect("cursor"));
        }
    }
}
