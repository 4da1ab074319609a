//! A WebSocket client of `/v1/realtime`, as an app would hold one.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::TestApp;

/// A request for `url` with `Authorization: Bearer token`.
fn bearer_request(
    url: &str,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    request
}

/// One open socket.
#[derive(Debug)]
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a socket ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code and reason.
    Closed(u16, String),
    /// The connection went without a close frame.
    Dropped,
    /// Still open when the wait ended.
    Open,
}

impl TestApp {
    /// The `ws://` URL of `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Opens `/v1/realtime` with a bearer header.
    pub async fn socket(&self, token: &str) -> Socket {
        Socket::connect(&self.ws_url("/v1/realtime"), token).await
    }

    /// Opens `/v1/realtime?access_token=…`, as a browser does.
    pub async fn socket_with_query(&self, token: &str) -> Socket {
        let url = self.ws_url(&format!("/v1/realtime?access_token={token}"));
        Socket::open(url.into_client_request().expect("request"))
            .await
            .expect("the socket opens")
    }
}

impl Socket {
    /// Opens the socket at `url` (`ws://…/v1/realtime`) with a bearer header.
    pub async fn connect(url: &str, token: &str) -> Self {
        Self::open(bearer_request(url, token))
            .await
            .expect("the socket opens")
    }

    /// [`Socket::connect`] over a connection whose receive buffer is `bytes`:
    /// once the client stops reading, the server's writes soon stop too.
    pub async fn connect_with_receive_buffer(url: &str, token: &str, bytes: u32) -> Self {
        let request = bearer_request(url, token);
        let addr: std::net::SocketAddr = request
            .uri()
            .authority()
            .expect("host")
            .as_str()
            .parse()
            .expect("an address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("receive buffer");
        let stream = socket.connect(addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("the socket opens");
        Self { ws }
    }

    /// Opens a socket; the error is the refusal (an HTTP response before the upgrade).
    pub async fn open(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws })
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send a frame");
    }

    /// Sends a raw message.
    pub async fn send_raw(&mut self, message: Message) -> Result<(), String> {
        self.ws.send(message).await.map_err(|e| e.to_string())
    }

    /// The next JSON frame within `limit`, or `None` (timeout or end).
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    return Some(serde_json::from_str(text.as_str()).expect("frames are JSON"));
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// The next frame of `kind` within `limit`, skipping others.
    pub async fn next_of(&mut self, kind: &str, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left).await?;
            if frame["type"] == kind {
                return Some(frame);
            }
        }
    }

    /// Every frame of `kind` that arrives within `limit`.
    pub async fn all_of(&mut self, kind: &str, limit: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(f) if f["type"] == kind => got.push(f),
                Some(_) => {}
                None => return got,
            }
        }
    }

    /// Reads (and drops) frames until the socket ends or `limit` passes.
    pub async fn ending(&mut self, limit: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ended::Open,
                Ok(None) | Ok(Some(Err(_))) => return Ended::Dropped,
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return Ended::Closed(frame.code.into(), frame.reason.to_string());
                }
                Ok(Some(Ok(Message::Close(None)))) => return Ended::Closed(1005, String::new()),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Closes it as a client does.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
