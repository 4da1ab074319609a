//! `GET /v1/realtime`: the WebSocket. The bearer token comes from the
//! `Authorization` header or, for browsers that cannot set one on a
//! WebSocket, from `?access_token=`; a bad one is refused before the
//! upgrade. Each client frame is parsed here and handed to the gateway or
//! the chat; what it answers (or why it refused) goes back as a frame. The
//! connection closes with 4001 when the token expires, 4008 when the
//! client lags, 1009 for a frame over the limit and 1012 on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::oneshot;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::bearer;
use super::openapi::problems;
use super::problem::ApiError;
use crate::auth::{AuthError, Caller};
use crate::chat::ChatError;
use crate::ids::{ConversationId, UserId};
use crate::realtime::frames::{self, ClientFrame};
use crate::realtime::outbox::{Inbox, Outbox};
use crate::realtime::{Connection, RealtimeError};

/// The socket's read buffer: most frames fit in one read.
const READ_BUFFER: usize = 2 * 1024;
/// How long the closing frame may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The routes.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// The token, for a browser that cannot set a header on a WebSocket.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The bearer token, when there is no `Authorization` header.
    access_token: Option<String>,
}

problems!(
    /// What opening the socket may answer.
    SocketProblems {
        426 => ["websocket-required"],
        429 => ["too-many-streams"],
    }
);

/// The caller of a WebSocket request: header first, else the query.
struct SocketCaller(Caller);

impl FromRequestParts<AppState> for SocketCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let query = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .map(|q| q.0.access_token)
            .unwrap_or(None);
        let token = match bearer(&parts.headers)? {
            Some(t) => t.to_owned(),
            None => query.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?,
        };
        Ok(Self(state.tokens.verify(&token)?))
    }
}

/// The realtime WebSocket: messages, receipts, typing and presence of the
/// caller's conversations, and their uploads' progress, live; frames are
/// JSON (`{"type": …}`), described in the README.
#[utoipa::path(get, path = "/v1/realtime", tag = "realtime",
    params(TokenQuery),
    responses((status = 101, description = "switching to the WebSocket protocol"), SocketProblems))]
async fn upgrade(
    State(state): State<AppState>,
    SocketCaller(caller): SocketCaller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket-required",
            format!("GET /v1/realtime upgrades to a WebSocket: {e}"),
        )
    })?;
    let slot = state.streams.take(&caller.user)?;
    let max = usize::try_from(state.settings.realtime.max_frame_bytes.0).unwrap_or(usize::MAX);
    // Small buffers: an idle socket costs the node little (tungstenite's
    // default is 128 KiB each way); a frame is written as it comes.
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            session(state, caller, socket).await;
            drop(slot);
        }))
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// The client closed it or went away: nothing to send.
    Gone,
    /// We close it, with this code and reason.
    Close(u16, &'static str),
}

async fn session(state: AppState, caller: Caller, socket: WebSocket) {
    let gateway = state.realtime.clone();
    let (mut sink, mut stream) = socket.split();
    // The long-lived futures here stay small while idle: the big ones
    // (connecting, answering a frame) are boxed for as long as they run.
    let (conn, inbox) = match Box::pin(gateway.connect(caller.user.clone())).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not open a realtime connection");
            let _ = close(&mut sink, 1011, "internal-error").await;
            return;
        }
    };
    let (closing, closed) = oneshot::channel();
    let mut writer = tokio::spawn(write(
        sink,
        inbox,
        Arc::clone(&conn.outbox),
        closed,
        state.settings.realtime.write_timeout,
    ));
    let expiry = tokio::time::sleep(crate::ids::millis_until(caller.expires_at));
    tokio::pin!(expiry);
    let ending = loop {
        tokio::select! {
            message = stream.next() => match message {
                None | Some(Ok(Message::Close(_))) => break Ending::Gone,
                Some(Err(e)) => {
                    // The limit is tungstenite's: the message names it.
                    break if e.to_string().contains("Space limit exceeded") {
                        Ending::Close(1009, "frame-too-large")
                    } else {
                        Ending::Gone
                    };
                }
                Some(Ok(Message::Text(text))) => {
                    Box::pin(answer(&state, &conn, text.as_str())).await;
                }
                Some(Ok(Message::Binary(_))) => {
                    conn.send(frames::error("malformed-frame", "frames are JSON text, not binary"));
                }
                Some(Ok(_)) => {}
            },
            () = conn.outbox.lagging() => break Ending::Close(4008, "lagging"),
            () = &mut expiry => break Ending::Close(4001, "token-expired"),
            () = state.shutdown.cancelled() => break Ending::Close(1012, "service-restart"),
            _ = &mut writer => break Ending::Gone,
        }
    };
    Box::pin(gateway.disconnect(&conn)).await;
    if let Ending::Close(code, reason) = ending {
        let _ = closing.send((code, reason));
    } else {
        drop(closing);
    }
    // A writer that has ended is not awaited again (a JoinHandle must not
    // be polled after it has given its output).
    if !writer.is_finished() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, writer).await;
    }
}

/// Writes queued frames until told to close (then says why) or the
/// client is gone.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut inbox: Inbox,
    outbox: Arc<Outbox>,
    mut closed: oneshot::Receiver<(u16, &'static str)>,
    write_timeout: Duration,
) {
    loop {
        tokio::select! {
            biased;
            why = &mut closed => {
                if let Ok((code, reason)) = why {
                    let _ = close(&mut sink, code, reason).await;
                }
                return;
            }
            frame = inbox.next() => {
                let Some(frame) = frame else { return };
                let sent = tokio::time::timeout(
                    write_timeout,
                    sink.send(Message::Text(frame.as_ref().into())),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
                outbox.written(&frame);
            }
        }
    }
}

async fn close(
    sink: &mut SplitSink<WebSocket, Message>,
    code: u16,
    reason: &'static str,
) -> Result<(), ()> {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    match tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Takes one client frame; anything wrong with it is an `error` frame and
/// the connection stays open.
async fn answer(state: &AppState, conn: &Arc<Connection>, text: &str) {
    let refused = match ClientFrame::parse(text) {
        Err(e) => Some((e.code, e.detail)),
        Ok(frame) => take(state, conn, frame).await.err(),
    };
    if let Some((code, detail)) = refused {
        conn.send(frames::error(code, &detail));
    }
    // Only now: a `resume` has moved the cursor before the reader starts.
    state.realtime.heard(conn);
}

type Refused = (&'static str, String);

fn refused(e: impl Into<ApiError>) -> Refused {
    let e = e.into();
    (e.code(), e.detail().to_owned())
}

fn from_realtime(e: RealtimeError) -> Refused {
    match e {
        RealtimeError::NotMember => refused(ChatError::ConversationNotFound),
        RealtimeError::TooManyPresenceUsers(_) => ("too-many-presence-users", e.to_string()),
        RealtimeError::Chat(e) => refused(e),
        RealtimeError::Bus(e) => refused(ApiError::unavailable(
            "progress-unavailable",
            format!("the event bus is unreachable: {e}"),
        )),
    }
}

fn conversation(id: &str) -> Result<ConversationId, Refused> {
    ConversationId::parse(id).ok_or_else(|| refused(ChatError::ConversationNotFound))
}

async fn take(state: &AppState, conn: &Arc<Connection>, frame: ClientFrame) -> Result<(), Refused> {
    let gateway = &state.realtime;
    match frame {
        ClientFrame::Ping => {
            conn.send(frames::pong());
        }
        ClientFrame::Resume { cursor } => {
            let cursor = state.chat.resume_from(&cursor).await.map_err(refused)?;
            gateway.resume(conn, cursor);
        }
        ClientFrame::Typing { conversation_id } => {
            let id = conversation(&conversation_id)?;
            gateway.typing(conn, id).await.map_err(from_realtime)?;
        }
        ClientFrame::Receipt {
            conversation_id,
            delivered_seq,
            read_seq,
        } => {
            let id = conversation(&conversation_id)?;
            state
                .chat
                .receipt(&conn.user, id, delivered_seq, read_seq)
                .await
                .map_err(refused)?;
        }
        ClientFrame::SubscribePresence { users } => {
            let max = gateway.settings().max_presence_users;
            if users.len() > max {
                return Err(from_realtime(RealtimeError::TooManyPresenceUsers(max)));
            }
            let users = users
                .iter()
                .map(|u| UserId::parse(u).map_err(|e| ("invalid-user-id", e)))
                .collect::<Result<Vec<_>, _>>()?;
            let refused_users = gateway
                .follow_presence(conn, users)
                .await
                .map_err(from_realtime)?;
            if !refused_users.is_empty() {
                let names: Vec<&str> = refused_users.iter().map(UserId::as_str).collect();
                return Err((
                    "presence-not-shared",
                    format!(
                        "share no conversation with the caller, so their presence is not \
                         given: {}",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}
