//! `GET /v1/me`: who the bearer token says the caller is. Lets a client check
//! its token before it starts a large upload.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::problem::Json;
use super::state::AppState;
use crate::auth::Caller;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/me", get(me))
}

async fn me(caller: Caller) -> Json<Value> {
    Json(json!({ "user": caller.user, "admin": caller.admin }))
}
