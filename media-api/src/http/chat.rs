//! `/v1/conversations`, `/v1/messages/forward` and `/v1/sync`: the
//! messaging core over HTTP.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems;
use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::chat::{
    ChatError, ConversationDoc, ConversationPage, MarksDoc, MessageDoc, MessageReceiptDoc,
    MessageRequest, NewConversationRequest, SyncPage,
};
use crate::ids::ConversationId;

/// The chat routes; `body_limit` bounds a request body (room for a message
/// of the largest text, escaped).
pub(crate) fn router(body_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one))
        .routes(routes!(add_member))
        .routes(routes!(set_role, remove_member))
        .routes(routes!(send, history))
        .routes(routes!(edit, delete))
        .routes(routes!(message_receipts))
        .routes(routes!(receipt))
        .routes(routes!(forward))
        .routes(routes!(sync))
        .layer(DefaultBodyLimit::max(body_limit))
}

const CONVERSATION: &str = "the conversation's id (a UUID)";
const MEMBER: &str = "the member's user id";
const SEQ: &str = "the message's place in its conversation, from 1";

problems!(
    /// A conversation that is not there for the caller.
    ConversationProblems { 404 => ["conversation-not-found"] }
);
problems!(
    /// A page that cannot be read.
    PageProblems { 400 => ["invalid-limit", "invalid-cursor"] }
);
problems!(
    /// What making a conversation may answer.
    CreateProblems {
        400 => ["invalid-conversation-kind", "invalid-members", "invalid-user-id", "invalid-title"],
        409 => ["group-full"],
    }
);
problems!(
    /// What changing a group's members may answer.
    MemberProblems {
        400 => ["invalid-user-id", "invalid-role"],
        403 => ["not-conversation-admin", "not-conversation-owner", "outranked"],
        404 => ["conversation-not-found", "member-not-found"],
        409 => ["already-a-member", "group-full", "not-a-group", "owner-must-hand-over", "conversation-changed"],
    }
);
problems!(
    /// What sending a message may answer.
    SendProblems {
        400 => ["empty-message", "text-too-long", "too-many-attachments", "invalid-client-message-id", "reply-not-found", "invalid-caption"],
        404 => ["conversation-not-found", "media-not-found"],
        409 => ["conversation-changed"],
        429 => ["rate-limited"],
        451 => ["content-blocked"],
    }
);
problems!(
    /// What reading history may answer.
    HistoryProblems {
        400 => ["invalid-limit", "invalid-range"],
        404 => ["conversation-not-found"],
    }
);
problems!(
    /// What editing or deleting a message may answer.
    ChangeProblems {
        400 => ["empty-message", "text-too-long"],
        403 => ["not-message-sender"],
        404 => ["conversation-not-found", "message-not-found"],
        409 => ["edit-window-passed", "delete-window-passed", "message-deleted", "system-message", "conversation-changed"],
    }
);
problems!(
    /// What moving one's marks may answer.
    ReceiptProblems {
        400 => ["empty-receipt", "receipt-past-last-seq"],
        404 => ["conversation-not-found"],
        409 => ["conversation-changed"],
    }
);
problems!(
    /// What reading a message's receipts may answer.
    MessageReceiptProblems {
        403 => ["not-message-sender"],
        404 => ["conversation-not-found", "message-not-found"],
    }
);
problems!(
    /// What forwarding may answer.
    ForwardProblems {
        400 => ["invalid-forward-targets", "invalid-client-message-id"],
        404 => ["conversation-not-found", "message-not-found"],
        409 => ["system-message", "message-deleted", "conversation-changed"],
        429 => ["rate-limited"],
        451 => ["content-blocked"],
    }
);
problems!(
    /// What reading the sync log may answer.
    SyncProblems {
        400 => ["invalid-limit", "invalid-cursor"],
        410 => ["sync-cursor-expired"],
    }
);

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

/// Messages, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Items {
    /// Ascending `seq`.
    items: Vec<MessageDoc>,
}

/// Makes a conversation: a direct one with one other user (the pair's
/// existing one is answered `200`), or a group the caller owns.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations",
    request_body = NewConversationRequest,
    responses(
        (status = 201, body = ConversationDoc, headers(("Location" = String))),
        (status = 200, body = ConversationDoc, description = "the pair's direct conversation, which existed", headers(("Location" = String))),
        CreateProblems))]
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

/// The caller's conversations, latest activity first, with unread counts
/// and the last message.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations",
    params(super::media::ListQuery),
    responses((status = 200, body = ConversationPage), PageProblems))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<super::media::ListQuery>,
) -> Result<Response, ApiError> {
    let page = state
        .chat
        .conversations(&caller.user, query.limit, query.cursor.as_deref())
        .await?;
    Ok(Json(page).into_response())
}

/// One conversation, as the caller sees it.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION)),
    responses((status = 200, body = ConversationDoc), ConversationProblems))]
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

/// Who to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AddMember {
    /// Their user id.
    user: String,
}

/// Adds a member to a group (its admins and owner may); they read the
/// messages from now on.
#[utoipa::path(post, path = "/v1/conversations/{id}/members", tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION)),
    request_body = AddMember,
    responses((status = 200, body = ConversationDoc), MemberProblems))]
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

/// Removes a member from a group, or leaves it (the caller themselves).
#[utoipa::path(delete, path = "/v1/conversations/{id}/members/{user}", tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION), ("user" = String, Path, description = MEMBER)),
    responses((status = 200, body = ConversationDoc), MemberProblems))]
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

/// A member's new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SetRole {
    /// `owner` (a hand-over), `admin` or `member`.
    role: String,
}

/// Changes a member's role.
#[utoipa::path(patch, path = "/v1/conversations/{id}/members/{user}", tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION), ("user" = String, Path, description = MEMBER)),
    request_body = SetRole,
    responses((status = 200, body = ConversationDoc), MemberProblems))]
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

/// Sends a message: text, attachments (media the sender may read), a
/// reply. `client_message_id` makes a retry answer the same message (`200`).
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = CONVERSATION)),
    request_body = MessageRequest,
    responses(
        (status = 201, body = MessageDoc),
        (status = 200, body = MessageDoc, description = "a retry: the message sent before"),
        SendProblems))]
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

/// Which messages.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Messages after this `seq` (forward).
    after_seq: Option<u64>,
    /// Messages before this `seq` (scrolling back); the latest without either.
    before_seq: Option<u64>,
    /// Most messages (default 50, at most `limits.max_page_size`).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// A conversation's messages the caller may see, ascending.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = CONVERSATION), HistoryQuery),
    responses((status = 200, body = Items), HistoryProblems))]
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

/// A message's new text.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Edit {
    /// The text.
    text: String,
}

/// Edits one's own message within the edit window.
#[utoipa::path(patch, path = "/v1/conversations/{id}/messages/{seq}", tag = "messages",
    params(("id" = String, Path, description = CONVERSATION), ("seq" = u64, Path, description = SEQ)),
    request_body = Edit,
    responses((status = 200, body = MessageDoc), ChangeProblems))]
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

/// Deletes one's own message for everyone, within the delete window.
#[utoipa::path(delete, path = "/v1/conversations/{id}/messages/{seq}", tag = "messages",
    params(("id" = String, Path, description = CONVERSATION), ("seq" = u64, Path, description = SEQ)),
    responses((status = 200, body = MessageDoc), ChangeProblems))]
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

/// The caller's new marks (each only moves forward).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Receipt {
    /// Delivered up to this `seq`.
    delivered_seq: Option<u64>,
    /// Read up to this `seq` (delivered too).
    read_seq: Option<u64>,
}

/// Moves the caller's delivered and read marks in a conversation.
#[utoipa::path(post, path = "/v1/conversations/{id}/receipts", tag = "messages",
    params(("id" = String, Path, description = CONVERSATION)),
    request_body = Receipt,
    responses((status = 200, body = MarksDoc), ReceiptProblems))]
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

/// Each other member's receipt for one of the caller's messages.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages/{seq}/receipts", tag = "messages",
    params(("id" = String, Path, description = CONVERSATION), ("seq" = u64, Path, description = SEQ)),
    responses((status = 200, body = Vec<MessageReceiptDoc>), MessageReceiptProblems))]
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

/// The message forwarded.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ForwardFrom {
    /// Its conversation.
    conversation_id: String,
    /// Its `seq`.
    seq: u64,
}

/// A forward.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Forward {
    /// The message.
    from: ForwardFrom,
    /// The conversations it goes to.
    to: Vec<String>,
    /// The client's UUID for it (a retry answers the same messages).
    client_message_id: String,
}

/// Forwards a message to other conversations of the caller's, attachments
/// and all.
#[utoipa::path(post, path = "/v1/messages/forward", tag = "messages",
    request_body = Forward,
    responses(
        (status = 201, body = Items),
        (status = 200, body = Items, description = "a retry: the messages posted before"),
        ForwardProblems))]
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

/// Where to read the log from.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SyncQuery {
    /// `next_cursor` of the page before; from the start of what the log
    /// keeps without it.
    since: Option<String>,
    /// Most events (default 100).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// The caller's sync log: every event of their conversations since a
/// cursor, in order, with the documents they are about (a device that was
/// offline catches up from one log).
#[utoipa::path(get, path = "/v1/sync", tag = "messages",
    params(SyncQuery),
    responses((status = 200, body = SyncPage), SyncProblems))]
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
