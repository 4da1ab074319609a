//! `/v1/conversations`, `/v1/messages/forward` and `/v1/sync`: the
//! messaging core over HTTP.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};

use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::chat::{ChatError, MessageRequest, NewConversationRequest};
use crate::ids::ConversationId;

/// The chat routes; `body_limit` bounds a request body (room for a message
/// of the largest text, escaped).
pub(crate) fn router(body_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", post(create).get(list))
        .route("/v1/conversations/{id}", get(one))
        .route("/v1/conversations/{id}/members", post(add_member))
        .route(
            "/v1/conversations/{id}/members/{user}",
            patch(set_role).delete(remove_member),
        )
        .route("/v1/conversations/{id}/messages", post(send).get(history))
        .route(
            "/v1/conversations/{id}/messages/{seq}",
            patch(edit).delete(delete),
        )
        .route(
            "/v1/conversations/{id}/messages/{seq}/receipts",
            get(message_receipts),
        )
        .route("/v1/conversations/{id}/receipts", post(receipt))
        .route("/v1/messages/forward", post(forward))
        .route("/v1/sync", get(sync))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// A conversation id from the path; one that cannot be one names no
/// conversation of the caller's.
fn conversation_id(id: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(id).ok_or_else(|| ChatError::ConversationNotFound.into())
}

fn seq(seq: &str) -> Result<u64, ApiError> {
    seq.parse().map_err(|_| ChatError::MessageNotFound.into())
}

/// `201` when made now, `200` when it existed (a retry, or the pair's
/// direct conversation).
fn made(created: bool, body: impl Serialize) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

#[derive(Debug, Serialize)]
struct Items<T> {
    items: Vec<T>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<NewConversationRequest>,
) -> Result<Response, ApiError> {
    let (doc, created) = state
        .chat
        .create_conversation(&caller.user, request)
        .await?;
    let location = format!("/v1/conversations/{}", doc.conversation_id);
    let mut response = made(created, doc);
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = state
        .chat
        .conversations(&caller.user, query.limit, query.cursor.as_deref())
        .await?;
    Ok(Json(page).into_response())
}

async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let doc = state
        .chat
        .conversation(&caller.user, conversation_id(&id)?)
        .await?;
    Ok(Json(doc).into_response())
}

#[derive(Debug, Deserialize)]
struct AddMember {
    user: String,
}

async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<AddMember>,
) -> Result<Response, ApiError> {
    let doc = state
        .chat
        .add_member(&caller.user, conversation_id(&id)?, &body.user)
        .await?;
    Ok(Json(doc).into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = state
        .chat
        .remove_member(&caller.user, conversation_id(&id)?, &user)
        .await?;
    Ok(Json(doc).into_response())
}

#[derive(Debug, Deserialize)]
struct SetRole {
    role: String,
}

async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
    Json(body): Json<SetRole>,
) -> Result<Response, ApiError> {
    let doc = state
        .chat
        .set_role(&caller.user, conversation_id(&id)?, &user, &body.role)
        .await?;
    Ok(Json(doc).into_response())
}

async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<MessageRequest>,
) -> Result<Response, ApiError> {
    let (doc, created) = state
        .chat
        .post(&caller.user, conversation_id(&id)?, request)
        .await?;
    Ok(made(created, doc))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    after_seq: Option<u64>,
    before_seq: Option<u64>,
    limit: Option<u32>,
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let items = state
        .chat
        .history(
            &caller.user,
            conversation_id(&id)?,
            query.after_seq,
            query.before_seq,
            query.limit,
        )
        .await?;
    Ok(Json(Items { items }).into_response())
}

#[derive(Debug, Deserialize)]
struct Edit {
    text: String,
}

async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, n)): Path<(String, String)>,
    Json(body): Json<Edit>,
) -> Result<Response, ApiError> {
    let doc = state
        .chat
        .edit(&caller.user, conversation_id(&id)?, seq(&n)?, &body.text)
        .await?;
    Ok(Json(doc).into_response())
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = state
        .chat
        .delete(&caller.user, conversation_id(&id)?, seq(&n)?)
        .await?;
    Ok(Json(doc).into_response())
}

#[derive(Debug, Deserialize)]
struct Receipt {
    delivered_seq: Option<u64>,
    read_seq: Option<u64>,
}

async fn receipt(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Receipt>,
) -> Result<Response, ApiError> {
    let marks = state
        .chat
        .receipt(
            &caller.user,
            conversation_id(&id)?,
            body.delivered_seq,
            body.read_seq,
        )
        .await?;
    Ok(Json(marks).into_response())
}

async fn message_receipts(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let items = state
        .chat
        .receipts(&caller.user, conversation_id(&id)?, seq(&n)?)
        .await?;
    // The contract's shape: a bare array of the members' receipts.
    Ok(Json(items).into_response())
}

#[derive(Debug, Deserialize)]
struct ForwardFrom {
    conversation_id: String,
    seq: u64,
}

#[derive(Debug, Deserialize)]
struct Forward {
    from: ForwardFrom,
    to: Vec<String>,
    client_message_id: String,
}

async fn forward(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Forward>,
) -> Result<Response, ApiError> {
    let from = conversation_id(&body.from.conversation_id)?;
    let targets = body
        .to
        .iter()
        .map(|t| conversation_id(t))
        .collect::<Result<Vec<_>, _>>()?;
    let (items, created) = state
        .chat
        .forward(
            &caller.user,
            (from, body.from.seq),
            &targets,
            &body.client_message_id,
        )
        .await?;
    Ok(made(created, Items { items }))
}

#[derive(Debug, Deserialize)]
struct SyncQuery {
    since: Option<String>,
    limit: Option<u32>,
}

async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SyncQuery>,
) -> Result<Response, ApiError> {
    let page = state
        .chat
        .sync(&caller.user, query.since.as_deref(), query.limit)
        .await?;
    Ok(Json(page).into_response())
}
