//! The operators' tools: batch reprocessing, erasure, consistency checks
//! and moderation, through the admin API.

mod erase;
mod fsck;
mod moderation;
mod reprocess;

use media_e2e::{TestApp, json_of};
use reqwest::Method;
use serde_json::Value;

/// An admin call with a JSON body (or none), answered with `status`.
pub(crate) async fn admin(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    json_of(admin_call(app, method, path, body).await, status).await
}

/// An admin call, as answered.
pub(crate) async fn admin_call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(app.admin_token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("admin call")
}
