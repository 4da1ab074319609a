//! `load chat`: the messaging core. Concurrent senders each posting into a
//! direct conversation of their own (the baseline), into a group of their
//! own with `--group-size` members, and all into one shared group; rounds
//! interleaved. Then history pages and sync pages read back by many clients.
//!
//! The group against the direct conversation is the check that a message's
//! cost does not grow with its conversation's members (no row per member is
//! written per message); the shared group shows one conversation's lock under
//! every sender at once.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::*;
use crate::proc_stats::Watch;

/// `load chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChatOptions {
    #[command(flatten)]
    common: Common,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Messages each sender posts per phase.
    #[arg(long, default_value_t = 50)]
    messages: usize,
    /// Members of each group, its owner included.
    #[arg(long, default_value_t = 1024)]
    group_size: usize,
    /// Rounds of (direct, own group, shared group).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// History and sync pages read, in all.
    #[arg(long, default_value_t = 2000)]
    reads: usize,
}

fn user_name(run: u64, role: &str, i: usize) -> String {
    format!("chat-{run:x}-{role}-{i}")
}

/// POSTs JSON as `token`; the body on success.
async fn post_json(
    target: &Target,
    endpoint: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> Option<Value> {
    let request = target
        .client
        .post(target.url(path))
        .bearer_auth(token)
        .json(body);
    match target.send(endpoint, request).await {
        Some((200 | 201, _, bytes)) => serde_json::from_slice(&bytes).ok(),
        _ => None,
    }
}

async fn get_json(target: &Target, endpoint: &str, token: &str, path: &str) -> Option<Value> {
    let request = target.client.get(target.url(path)).bearer_auth(token);
    match target.send(endpoint, request).await {
        Some((200, _, bytes)) => serde_json::from_slice(&bytes).ok(),
        _ => None,
    }
}

fn id_of(doc: Option<Value>) -> anyhow::Result<String> {
    doc.and_then(|d| d["conversation_id"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("could not create a conversation"))
}

/// Every sender posts `messages` texts into `conversations[sender]`, all
/// senders at once; answers the messages per second.
async fn phase(
    target: &Target,
    endpoint: &str,
    tokens: &[String],
    conversations: &[String],
    messages: usize,
) -> f64 {
    let started = Instant::now();
    futures_util::stream::iter(tokens.iter().zip(conversations))
        .for_each_concurrent(tokens.len(), |(token, conversation)| async move {
            for i in 0..messages {
                let body = json!({
                    "client_message_id": media_api::ids::ClientMessageId::generate().to_string(),
                    "text": format!("message {i}: a line of chat, about as long as most are"),
                });
                post_json(
                    target,
                    endpoint,
                    token,
                    &format!("/v1/conversations/{conversation}/messages"),
                    &body,
                )
                .await;
            }
        })
        .await;
    (tokens.len() * messages) as f64 / started.elapsed().as_secs_f64()
}

pub(crate) async fn chat(o: &ChatOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let run = run_seed();
    let tokens: Vec<String> = (0..o.senders)
        .map(|i| target.token(&user_name(run, "sender", i)))
        .collect::<anyhow::Result<_>>()?;

    // Set-up, not measured: a direct conversation and a full group per
    // sender, and one shared group holding every sender.
    let mut directs = Vec::new();
    let mut groups = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let peer = user_name(run, "peer", i);
        directs.push(id_of(
            post_json(
                &target,
                "setup",
                token,
                "/v1/conversations",
                &json!({"kind": "direct", "members": [peer]}),
            )
            .await,
        )?);
        let members: Vec<String> = (1..o.group_size)
            .map(|m| user_name(run, &format!("member{i}"), m))
            .collect();
        groups.push(id_of(
            post_json(
                &target,
                "setup",
                token,
                "/v1/conversations",
                &json!({"kind": "group", "title": format!("group {i}"), "members": members}),
            )
            .await,
        )?);
    }
    let mut shared_members: Vec<String> = (1..o.senders)
        .map(|i| user_name(run, "sender", i))
        .collect();
    shared_members.extend((o.senders..o.group_size).map(|m| user_name(run, "member-shared", m)));
    let shared = id_of(
        post_json(
            &target,
            "setup",
            &tokens[0],
            "/v1/conversations",
            &json!({"kind": "group", "title": "everyone", "members": shared_members}),
        )
        .await,
    )?;
    let shared_all = vec![shared.clone(); tokens.len()];
    target.recorder.reset();

    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    let mut rates: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let group_label = format!("POST message: own group of {}", o.group_size);
    let shared_label = format!("POST message: one shared group of {}", o.group_size);
    for _ in 0..o.rounds {
        let r = phase(
            &target,
            "POST message: own direct",
            &tokens,
            &directs,
            o.messages,
        )
        .await;
        rates.entry("direct messages/s".into()).or_default().push(r);
        let r = phase(&target, &group_label, &tokens, &groups, o.messages).await;
        rates.entry("group messages/s".into()).or_default().push(r);
        let r = phase(&target, &shared_label, &tokens, &shared_all, o.messages).await;
        rates
            .entry("shared group messages/s".into())
            .or_default()
            .push(r);
    }

    // Reads: the latest page of the shared group's history, and each
    // sender's sync log from its start, page after page.
    let history = format!("/v1/conversations/{shared}/messages?limit=50");
    let cursors: Vec<std::sync::Mutex<Option<String>>> =
        tokens.iter().map(|_| std::sync::Mutex::new(None)).collect();
    futures_util::stream::iter(0..o.reads)
        .for_each_concurrent(o.senders, |i| {
            let (target, history, tokens, cursors) = (&target, &history, &tokens, &cursors);
            async move {
                let who = i % tokens.len();
                if i % 2 == 0 {
                    get_json(target, "GET history page (50)", &tokens[who], history).await;
                    return;
                }
                let since = cursors[who]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let path = match since {
                    Some(c) => format!("/v1/sync?since={c}&limit=100"),
                    None => "/v1/sync?limit=100".to_owned(),
                };
                if let Some(page) =
                    get_json(target, "GET sync page (100)", &tokens[who], &path).await
                {
                    let next = page["next_cursor"].as_str().map(str::to_owned);
                    let more = page["has_more"] == true;
                    // Start over at the end, so every read has a page to give.
                    *cursors[who].lock().unwrap_or_else(|e| e.into_inner()) =
                        if more { next } else { None };
                }
            }
        })
        .await;

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut report = finish(
        "chat",
        json!({
            "senders": o.senders, "messages_per_sender_per_phase": o.messages,
            "group_size": o.group_size, "rounds": o.rounds, "reads": o.reads,
        }),
        &target,
        started,
        watch,
        rates.iter().map(|(k, v)| (k.clone(), mean(v))).collect(),
    );
    for (k, v) in &rates {
        for (round, r) in v.iter().enumerate() {
            report
                .derived
                .insert(format!("{k}, round {}", round + 1), *r);
        }
    }
    let direct = mean(&rates["direct messages/s"]);
    report.derived.insert(
        "group / direct (messages/s)".into(),
        mean(&rates["group messages/s"]) / direct,
    );
    report.derived.insert(
        "shared group / direct (messages/s)".into(),
        mean(&rates["shared group messages/s"]) / direct,
    );
    if let (Some(g), Some(d)) = (
        report.p99(&group_label),
        report.p99("POST message: own direct"),
    ) {
        report
            .derived
            .insert("group / direct (send p99)".into(), g / d);
    }
    Ok(report)
}
