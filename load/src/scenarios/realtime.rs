//! `load realtime`: the WebSocket gateway. End-to-end delivery latency,
//! from the start of the send request to the frame on a receiving socket:
//! direct messages at a steady rate (the baseline: each reaches one
//! socket), then a group whose every member is connected, sockets spread
//! over two nodes when `--other-base` names a second one; frames delivered
//! per second and the nodes' CPU; then what an idle socket costs the node
//! in resident memory, against an idle SSE stream measured the same way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::proc_stats::{Watch, rss_kib};

/// `load realtime`.
#[derive(Debug, clap::Args)]
pub(crate) struct RealtimeOptions {
    #[command(flatten)]
    common: Common,
    /// A second API node on the same backends: every other socket connects there.
    #[arg(long)]
    other_base: Option<String>,
    /// The second node's pid, for its CPU and memory.
    #[arg(long)]
    other_pid: Option<u32>,
    /// Direct conversations, each with its receiver connected.
    #[arg(long, default_value_t = 32)]
    pairs: usize,
    /// Direct messages per second, steady.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Direct messages in all.
    #[arg(long, default_value_t = 500)]
    messages: usize,
    /// Members of the group, every one connected.
    #[arg(long, default_value_t = 256)]
    group_size: usize,
    /// Group messages per second, steady.
    #[arg(long, default_value_t = 5.0)]
    group_rate: f64,
    /// Group messages in all.
    #[arg(long, default_value_t = 100)]
    group_messages: usize,
    /// Idle sockets (and idle SSE streams) opened to measure memory per connection.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The realtime socket's URL on the node at `base`.
pub(super) fn ws_url(base: &str) -> String {
    format!(
        "{}/v1/realtime",
        base.replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    )
}

/// Opens a socket and waits for its `pong`: it is registered and reading.
async fn open_socket(base: &str, token: &str) -> anyhow::Result<Ws> {
    let mut request = ws_url(base).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m?
            && t.as_str().contains("pong")
        {
            return Ok(ws);
        }
    }
    anyhow::bail!("the socket closed before its pong")
}

/// When each message's send began, by its number.
type Sent = Arc<Mutex<Vec<Option<Instant>>>>;

/// Reads a socket until `stop`, recording under `endpoint` how long each
/// numbered message took from its send's start; counts the frames.
fn read_socket(
    mut ws: Ws,
    target: Target,
    endpoint: Arc<str>,
    sent: Sent,
    frames: Arc<AtomicUsize>,
    stop: stopping::Stop,
) -> tokio::task::JoinHandle<Ws> {
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                m = ws.next() => m,
                () = stop.wait() => return ws,
            };
            let Some(Ok(Message::Text(text))) = message else {
                if message.is_none() {
                    return ws;
                }
                continue;
            };
            let arrived = Instant::now();
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let Some(n) = frame["event"]["message"]["text"]
                .as_str()
                .and_then(|t| t.strip_prefix("rt "))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            frames.fetch_add(1, Ordering::Relaxed);
            let start = sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(n)
                .copied()
                .flatten();
            if let Some(start) = start {
                target.recorder.latency(&endpoint, arrived - start);
            }
        }
    })
}

/// A stop signal every reader waits on.
mod stopping {
    use std::sync::Arc;

    #[derive(Debug, Clone, Default)]
    pub(super) struct Stop(Arc<tokio::sync::Notify>, Arc<std::sync::atomic::AtomicBool>);

    impl Stop {
        pub(super) fn stop(&self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            self.0.notify_waiters();
        }

        pub(super) async fn wait(&self) {
            loop {
                let notified = self.0.notified();
                if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        }
    }
}

/// Posts `count` numbered messages at `rate` per second, each from
/// `senders[n % len]` into `conversations[n % len]`, without waiting for
/// one to finish before the next is due.
async fn send_steadily(
    target: &Target,
    endpoint: &Arc<str>,
    senders: &[String],
    conversations: &[String],
    count: usize,
    rate: f64,
    sent: &Sent,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(count);
    for n in 0..count {
        tick.tick().await;
        let (target, sent, endpoint) = (target.clone(), sent.clone(), Arc::clone(endpoint));
        let token = senders[n % senders.len()].clone();
        let path = format!(
            "/v1/conversations/{}/messages",
            conversations[n % conversations.len()]
        );
        posts.push(tokio::spawn(async move {
            let body = json!({
                "client_message_id": media_api::ids::ClientMessageId::generate().to_string(),
                "text": format!("rt {n}"),
            });
            sent.lock().unwrap_or_else(|p| p.into_inner())[n] = Some(Instant::now());
            let request = target
                .client
                .post(target.url(&path))
                .bearer_auth(&token)
                .json(&body);
            target.send(&endpoint, request).await;
        }));
    }
    for p in posts {
        let _ = p.await;
    }
}

/// Numbered messages sent at a steady rate while every socket reads.
struct Phase<'a> {
    name: &'static str,
    sockets: Vec<Ws>,
    senders: &'a [String],
    conversations: &'a [String],
    count: usize,
    rate: f64,
    /// How long the last frames may take after the last send.
    settle: Duration,
}

/// The frames a phase delivered.
struct Delivered {
    count: usize,
    per_second: f64,
}

impl Phase<'_> {
    /// Runs it: delivery latency is recorded as `delivery: NAME`, each send
    /// as `POST message: NAME`; answers the frames and each node's usage.
    async fn run(
        self,
        target: &Target,
        pids: &[u32],
    ) -> (Delivered, Vec<crate::proc_stats::ServiceUsage>) {
        let sent: Sent = Arc::new(Mutex::new(vec![None; self.count]));
        let frames = Arc::new(AtomicUsize::new(0));
        let stop = stopping::Stop::default();
        let endpoint: Arc<str> = Arc::from(format!("delivery: {}", self.name));
        let readers: Vec<_> = self
            .sockets
            .into_iter()
            .map(|ws| {
                read_socket(
                    ws,
                    target.clone(),
                    Arc::clone(&endpoint),
                    sent.clone(),
                    frames.clone(),
                    stop.clone(),
                )
            })
            .collect();
        let watches: Vec<Watch> = pids.iter().map(|p| Watch::start(*p)).collect();
        let started = Instant::now();
        let posting: Arc<str> = Arc::from(format!("POST message: {}", self.name));
        send_steadily(
            target,
            &posting,
            self.senders,
            self.conversations,
            self.count,
            self.rate,
            &sent,
        )
        .await;
        tokio::time::sleep(self.settle).await;
        stop.stop();
        for r in readers {
            let _ = r.await;
        }
        let count = frames.load(Ordering::Relaxed);
        let delivered = Delivered {
            count,
            per_second: count as f64 / started.elapsed().as_secs_f64(),
        };
        (delivered, watches.into_iter().map(Watch::finish).collect())
    }
}

async fn create(target: &Target, token: &str, body: Value) -> anyhow::Result<String> {
    let request = target
        .client
        .post(target.url("/v1/conversations"))
        .bearer_auth(token)
        .json(&body);
    match target.send("setup", request).await {
        Some((200 | 201, _, bytes)) => serde_json::from_slice::<Value>(&bytes)?["conversation_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no conversation id")),
        other => anyhow::bail!("could not create a conversation: {:?}", other.map(|o| o.0)),
    }
}

/// Resident memory a node spends per idle connection: `open` opens one.
/// The connections are answered too: the caller holds them while it
/// measures something else, so that second measure takes fresh memory
/// (freed memory is reused without growing the resident set).
async fn per_connection_kib<F, Fut, C>(
    pid: u32,
    count: usize,
    open: F,
) -> anyhow::Result<(f64, Vec<C>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<C>>,
{
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).unwrap_or(0);
    let mut held = Vec::with_capacity(count);
    let mut opening = futures_util::stream::iter(0..count)
        .map(open)
        .buffer_unordered(32);
    while let Some(c) = opening.next().await {
        held.push(c?);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = rss_kib(pid).unwrap_or(0);
    Ok((after.saturating_sub(before) as f64 / count as f64, held))
}

pub(crate) async fn realtime(o: &RealtimeOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let bases: Vec<String> = std::iter::once(target.base.clone())
        .chain(
            o.other_base
                .iter()
                .map(|b| b.trim_end_matches('/').to_owned()),
        )
        .collect();
    let run = run_seed();
    let name = |role: &str, i: usize| format!("rt-{run:x}-{role}-{i}");
    let token = |user: &str| target.token(user);

    // Set-up: the direct pairs, the group, every receiver's socket.
    let senders: Vec<String> = (0..o.pairs)
        .map(|i| token(&name("sender", i)))
        .collect::<anyhow::Result<_>>()?;
    let mut directs = Vec::new();
    let mut direct_sockets = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        let receiver = name("receiver", i);
        directs.push(
            create(
                &target,
                sender,
                json!({"kind": "direct", "members": [receiver]}),
            )
            .await?,
        );
        direct_sockets.push(open_socket(&bases[i % bases.len()], &token(&receiver)?).await?);
    }
    let owner = name("member", 0);
    let members: Vec<String> = (1..o.group_size).map(|i| name("member", i)).collect();
    let group = create(
        &target,
        &token(&owner)?,
        json!({"kind": "group", "title": "everyone connected", "members": members}),
    )
    .await?;
    let group_tokens: Vec<String> = std::iter::once(owner)
        .chain(members)
        .map(|m| token(&m))
        .collect::<anyhow::Result<_>>()?;
    let group_sockets: Vec<Ws> = futures_util::stream::iter(group_tokens.iter().enumerate())
        .map(|(i, t)| open_socket(&bases[i % bases.len()], t))
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    target.recorder.reset();

    let pids: Vec<u32> = o
        .common
        .service_pid
        .into_iter()
        .chain(o.other_pid)
        .collect();
    let started = Instant::now();
    let mut rates = BTreeMap::new();
    let mut derived = BTreeMap::new();

    // Direct messages at a steady rate, then a group with every member
    // connected.
    let direct = Phase {
        name: "direct",
        sockets: direct_sockets,
        senders: &senders,
        conversations: &directs,
        count: o.messages,
        rate: o.rate,
        settle: Duration::from_secs(1),
    };
    let (frames, usage) = direct.run(&target, &pids).await;
    rates.insert("direct frames/s delivered".into(), frames.per_second);
    derived.insert(
        "direct frames delivered / sent".into(),
        frames.count as f64 / o.messages as f64,
    );
    for (i, u) in usage.iter().enumerate() {
        derived.insert(format!("node {} cpu s, direct", i + 1), u.cpu_seconds);
    }
    let fan_out = Phase {
        name: "group fan-out",
        sockets: group_sockets,
        senders: &group_tokens[..1],
        conversations: std::slice::from_ref(&group),
        count: o.group_messages,
        rate: o.group_rate,
        settle: Duration::from_secs(2),
    };
    let (frames, usage) = fan_out.run(&target, &pids).await;
    rates.insert("group frames/s delivered".into(), frames.per_second);
    derived.insert(
        "group frames delivered / expected".into(),
        frames.count as f64 / (o.group_messages * o.group_size) as f64,
    );
    for (i, u) in usage.iter().enumerate() {
        derived.insert(format!("node {} cpu s, group", i + 1), u.cpu_seconds);
        derived.insert(
            format!("node {} peak RSS MiB, group", i + 1),
            u.peak_rss_mib,
        );
    }

    // Memory per idle connection on the first node: sockets, then SSE streams.
    if let Some(pid) = o.common.service_pid {
        let base = bases[0].clone();
        let idle_tokens: Vec<String> = (0..o.idle)
            .map(|i| token(&name("idle", i)))
            .collect::<anyhow::Result<_>>()?;
        // Sockets first, on a node that holds nothing else yet; then the
        // baseline, while the sockets stay open (so it takes fresh memory
        // instead of what the sockets would free).
        let (socket_kib, sockets) =
            per_connection_kib(pid, o.idle, |i| open_socket(&base, &idle_tokens[i])).await?;
        let owner_token = token(&name("idle", 0))?;
        let session = target
            .client
            .post(target.url("/v1/uploads"))
            .bearer_auth(&owner_token)
            .json(&json!({"file_name": "idle.bin", "size": 1 << 20}))
            .send()
            .await?
            .json::<Value>()
            .await?;
        let id = session["upload_id"].as_str().unwrap_or_default().to_owned();
        let (sse_kib, streams) = per_connection_kib(pid, o.idle, |_| {
            let request = target
                .client
                .get(target.url(&format!("/v1/uploads/{id}/events")))
                .bearer_auth(&owner_token);
            async move {
                let response = request.send().await?;
                anyhow::ensure!(response.status() == 200, "events: {}", response.status());
                Ok(response.bytes_stream())
            }
        })
        .await?;
        drop((streams, sockets));
        derived.insert("RSS per idle socket KiB".into(), socket_kib);
        derived.insert("RSS per idle SSE stream KiB (baseline)".into(), sse_kib);
        derived.insert(
            "idle socket / idle SSE stream (RSS)".into(),
            socket_kib / sse_kib.max(0.001),
        );
    }

    let mut report = finish(
        "realtime",
        json!({
            "nodes": bases.len(), "pairs": o.pairs, "rate": o.rate, "messages": o.messages,
            "group_size": o.group_size, "group_rate": o.group_rate,
            "group_messages": o.group_messages, "idle": o.idle,
        }),
        &target,
        started,
        None,
        rates,
    );
    report.derived.extend(derived);
    if let (Some(d), Some(s)) = (
        report.p99("delivery: direct"),
        report.p99("POST message: direct"),
    ) {
        report
            .derived
            .insert("direct delivery p99 / send p99".into(), d / s);
    }
    if let (Some(g), Some(d)) = (
        report.p99("delivery: group fan-out"),
        report.p99("delivery: direct"),
    ) {
        report
            .derived
            .insert("group fan-out p99 / direct p99".into(), g / d);
    }
    Ok(report)
}
