//! The socket's frames: what a client may send (parsed here, answered by
//! the HTTP layer) and what the server sends (built here, once per frame
//! however many sockets it goes to).

use chat_core::sync::SyncCursor;
use serde::Deserialize;
use serde_json::{Value, json};

use super::outbox::Frame;
use crate::chat::EventDoc;
use crate::ids::{UserId, rfc3339};
use crate::progress_bus::Presence;

/// A frame a client sends.
#[derive(Debug, Clone, Deserialize)]
// Fields a frame does not know are ignored: a newer client may send more.
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send every durable event after `cursor` from the log, then live ones.
    Resume {
        /// A cursor from an `event` frame or a sync page.
        cursor: String,
    },
    /// The sender is typing in a conversation.
    Typing {
        /// Where.
        conversation_id: String,
    },
    /// Moves the sender's receipt marks (as `POST …/receipts`).
    Receipt {
        /// Where.
        conversation_id: String,
        /// Delivered up to.
        delivered_seq: Option<u64>,
        /// Read up to.
        read_seq: Option<u64>,
    },
    /// Follow these users' presence.
    SubscribePresence {
        /// Users who share a conversation with the sender.
        users: Vec<String>,
    },
    /// Answered with `pong`.
    Ping,
}

/// Why a client frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The stable code.
    pub code: &'static str,
    /// What was wrong.
    pub detail: String,
}

impl ClientFrame {
    /// Reads a text frame.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
            code: "malformed-frame",
            detail: format!("a frame is one JSON object: {e}"),
        })?;
        let Some(kind) = value.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return Err(FrameError {
                code: "malformed-frame",
                detail: "a frame is a JSON object with a string `type`".into(),
            });
        };
        const KNOWN: [&str; 5] = ["resume", "typing", "receipt", "subscribe_presence", "ping"];
        if !KNOWN.contains(&kind.as_str()) {
            return Err(FrameError {
                code: "unknown-frame-type",
                detail: format!(
                    "no frame of type {kind:?}; a client sends one of {}",
                    KNOWN.join(", ")
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| FrameError {
            code: "malformed-frame",
            detail: format!("a {kind:?} frame: {e}"),
        })
    }
}

fn frame(value: &Value) -> Frame {
    Frame::from(value.to_string())
}

/// A durable event of the sync log, at its position.
pub fn event(cursor: SyncCursor, event: &EventDoc) -> Frame {
    frame(&json!({"type": "event", "cursor": cursor.encode(), "event": event}))
}

/// A member is typing.
pub fn typing(conversation_id: &str, user: &str) -> Frame {
    frame(&json!({"type": "typing", "conversation_id": conversation_id, "user": user}))
}

/// A user's presence.
pub fn presence(user: &UserId, presence: Presence) -> Frame {
    let mut v = json!({"type": "presence", "user": user, "online": presence.online});
    if let Some(seen) = presence.last_seen {
        v["last_seen"] = rfc3339(seen).into();
    }
    frame(&v)
}

/// One event of one of the caller's uploads (as its SSE stream has it).
pub fn upload(upload_id: &str, event: &str, data: Value) -> Frame {
    frame(&json!({"type": "upload", "upload_id": upload_id, "event": event, "data": data}))
}

/// An attachment's processing finished.
pub fn media_ready(data: &Value) -> Frame {
    let mut v = json!({"type": "media_ready"});
    if let (Some(out), Some(fields)) = (v.as_object_mut(), data.as_object()) {
        for key in ["media_id", "conversation_id", "seq", "status", "variants"] {
            if let Some(value) = fields.get(key).filter(|v| !v.is_null()) {
                out.insert(key.into(), value.clone());
            }
        }
    }
    frame(&v)
}

/// The answer to `ping`.
pub fn pong() -> Frame {
    frame(&json!({"type": "pong"}))
}

/// A frame that could not be taken; the connection stays open.
pub fn error(code: &str, detail: &str) -> Frame {
    frame(&json!({"type": "error", "code": code, "detail": detail}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_or_named_wrong() {
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"receipt","conversation_id":"c","read_seq":3}"#),
            Ok(ClientFrame::Receipt {
                read_seq: Some(3),
                delivered_seq: None,
                ..
            })
        ));
        let code = |text| ClientFrame::parse(text).err().map(|e| e.code);
        assert_eq!(code("not json"), Some("malformed-frame"));
        assert_eq!(code("[1]"), Some("malformed-frame"));
        assert_eq!(code(r#"{"type":"dance"}"#), Some("unknown-frame-type"));
        assert_eq!(code(r#"{"type":"resume"}"#), Some("malformed-frame"));
        assert_eq!(code(r#"{"type":"ping","extra":1}"#), None);
    }
}
