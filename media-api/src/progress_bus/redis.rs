//! Redis progress and events: shared by every API node.
//!
//! Commands go through a [`ConnectionManager`], which reconnects by itself, so a
//! Redis restart heals without restarting the service. Every key and channel is
//! prefixed with the configured namespace.
//!
//! Subscriptions share one connection per node (the hub): a topic read by
//! any number of local streams and sockets is one `SUBSCRIBE`, and the
//! number of connections to Redis does not grow with readers. When that
//! connection is lost the hub reconnects, subscribes again to every topic
//! still read, and tells every reader it may have missed events (`Resync`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, PubSubSink};

use super::topics::{Topics, reader_stream};
use super::{
    Charge, Event, EventStream, INFLIGHT_STALE_MS, LiveProgress, Presence, ProgressBus,
    ProgressError,
};
use crate::ids::now_ms;

/// Progress and events in Redis.
#[derive(Clone)]
pub struct RedisProgressBus {
    manager: ConnectionManager,
    namespace: String,
    hub: Arc<Hub>,
}

/// The node's one subscriber connection and the topics read through it.
struct Hub {
    channel_prefix: String,
    topics: Topics,
    /// The connection's command half; `None` while reconnecting. Its lock
    /// also puts subscribing and unsubscribing in one order.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
}

/// A user comes online on a node: answers 1 when no node had them before.
/// [`super::gcra`] on the server's clock, so every node counts alike.
/// Answers whether the cost fit, the key's backlog (ms) after it, and when
/// refused the wait (ms); numbers go back as strings to keep their fractions.
const CHARGE: &str = r"
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = window / math.max(limit, 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + cost * interval
if cost > 0 and nxt - window > now then
  local wait = nxt - window - now
  if cost > limit then wait = window end
  return {0, tostring(tat - now), tostring(wait)}
end
if cost > 0 then
  redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil(nxt - now) + 1)
end
return {1, tostring(nxt - now), '0'}
";

const PRESENCE_JOIN: &str = r"
local live = 0
for _, t in ipairs(redis.call('HVALS', KEYS[1])) do
  if tonumber(t) > tonumber(ARGV[4]) then live = 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1 - live
";

/// A node drops a user: answers their last-seen time when no node has
/// them any more, else nothing.
const PRESENCE_LEAVE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
for _, t in ipairs(redis.call('HVALS', KEYS[1])) do
  if tonumber(t) > tonumber(ARGV[3]) then return false end
end
redis.call('SET', KEYS[3], ARGV[3])
return ARGV[3]
";

impl std::fmt::Debug for RedisProgressBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL, which may hold a password.
        f.debug_struct("RedisProgressBus")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> ProgressError {
    ProgressError::Unavailable(e.to_string())
}

impl RedisProgressBus {
    /// Connects to Redis. Start-up fails if Redis cannot be reached; after that
    /// the manager reconnects by itself whenever Redis comes back.
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("MEDIA_REDIS_URL is not a valid Redis URL: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)));
        let manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| anyhow::anyhow!("while connecting to Redis: {e}"))?;
        let hub = Arc::new(Hub {
            channel_prefix: format!("{namespace}:events:"),
            topics: Topics::default(),
            sink: tokio::sync::Mutex::new(None),
        });
        let (connected, first) = tokio::sync::oneshot::channel();
        tokio::spawn(Arc::clone(&hub).run(client, connected));
        // Start-up waits for the subscriber connection (or its first failure).
        let _ = first.await;
        Ok(Self {
            manager,
            namespace: namespace.to_owned(),
            hub,
        })
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.hub.channel_prefix)
    }

    fn presence_keys(&self, user: &str, node: &str) -> (String, String, String) {
        (
            format!("{}:presence:{user}", self.namespace),
            format!("{}:node:{node}", self.namespace),
            format!("{}:seen:{user}", self.namespace),
        )
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.namespace)
    }

    /// The keys of an upload's live view: the chunk bitmap (bit n is chunk
    /// n), the in-flight hash (chunk → `bytes:unix_ms`) and the seeded marker.
    fn keys(&self, upload: &str) -> [String; 3] {
        let base = format!("{}:up:{upload}", self.namespace);
        [
            format!("{base}:bits"),
            format!("{base}:inflight"),
            format!("{base}:seeded"),
        ]
    }

    /// The connection manager, for the progress operations built on it.
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }
}

#[async_trait]
impl ProgressBus for RedisProgressBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), ProgressError> {
        let mut conn = self.manager.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn publish(&self, topic: &str, event: &Event) -> Result<(), ProgressError> {
        let mut conn = self.manager.clone();
        conn.publish::<_, _, i64>(self.channel(topic), payload(event)?)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn publish_many(&self, events: &[(String, Event)]) -> Result<(), ProgressError> {
        let mut pipe = redis::pipe();
        for (topic, event) in events {
            pipe.publish(self.channel(topic), payload(event)?).ignore();
        }
        let mut conn = self.manager.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn subscribe(&self, topic: &str) -> Result<EventStream, ProgressError> {
        let mut sink = self.hub.sink.lock().await;
        let (receiver, new) = self.hub.topics.join(topic);
        if new {
            let subscribed = match sink.as_mut() {
                Some(sink) => sink
                    .subscribe(self.channel(topic))
                    .await
                    .map_err(unavailable),
                None => Err(ProgressError::Unavailable(
                    "the Redis subscriber connection is reconnecting".into(),
                )),
            };
            if let Err(e) = subscribed {
                drop(receiver);
                self.hub.topics.leave_if_unread(topic);
                return Err(e);
            }
        }
        drop(sink);
        let (hub, topic) = (Arc::clone(&self.hub), topic.to_owned());
        Ok(reader_stream(receiver, move || {
            tokio::spawn(async move { hub.unsubscribe(&topic).await });
        }))
    }

    async fn seed(
        &self,
        upload: &str,
        chunks: &[u32],
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let [bits, inflight, seeded] = self.keys(upload);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in chunks {
            pipe.setbit(&bits, *chunk as usize, true).ignore();
        }
        pipe.set(&seeded, 1).ignore();
        for key in [&bits, &inflight, &seeded] {
            pipe.cmd("PEXPIREAT").arg(key).arg(expires_at).ignore();
        }
        let mut conn = self.manager.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn mark_chunk(
        &self,
        upload: &str,
        chunk: u32,
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let [bits, inflight, _] = self.keys(upload);
        let mut conn = self.manager.clone();
        redis::pipe()
            .atomic()
            .setbit(&bits, chunk as usize, true)
            .ignore()
            .hdel(&inflight, chunk)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&bits)
            .arg(expires_at)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn unmark_chunk(&self, upload: &str, chunk: u32) -> Result<(), ProgressError> {
        let [bits, ..] = self.keys(upload);
        let mut conn = self.manager.clone();
        conn.setbit::<_, ()>(&bits, chunk as usize, false)
            .await
            .map_err(unavailable)
    }

    async fn report_inflight(
        &self,
        upload: &str,
        chunk: u32,
        bytes: u64,
        expires_at: i64,
        event: &Event,
    ) -> Result<(), ProgressError> {
        let [_, inflight, _] = self.keys(upload);
        let mut conn = self.manager.clone();
        redis::pipe()
            .hset(&inflight, chunk, format!("{bytes}:{}", now_ms()))
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&inflight)
            .arg(expires_at)
            .ignore()
            .publish(self.channel(upload), payload(event)?)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn clear_inflight(&self, upload: &str, chunk: u32) -> Result<(), ProgressError> {
        let [_, inflight, _] = self.keys(upload);
        let mut conn = self.manager.clone();
        conn.hdel::<_, _, ()>(&inflight, chunk)
            .await
            .map_err(unavailable)
    }

    async fn live(&self, upload: &str) -> Result<Option<LiveProgress>, ProgressError> {
        let [bits, inflight, seeded] = self.keys(upload);
        let mut conn = self.manager.clone();
        let (is_seeded, bitmap, reports): (bool, Option<Vec<u8>>, Vec<(u32, String)>) =
            redis::pipe()
                .exists(&seeded)
                .get(&bits)
                .hgetall(&inflight)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        if !is_seeded {
            return Ok(None);
        }
        // Redis numbers bits from the most significant bit of the first byte.
        let chunks = bitmap
            .unwrap_or_default()
            .iter()
            .enumerate()
            .flat_map(|(i, byte)| {
                (0..8u32).filter_map(move |bit| {
                    (byte & (0x80 >> bit) != 0).then_some(i as u32 * 8 + bit)
                })
            })
            .collect();
        let now = now_ms();
        let inflight = reports
            .into_iter()
            .filter_map(|(chunk, value)| {
                let (bytes, at) = value.split_once(':')?;
                let at: i64 = at.parse().ok()?;
                (now - at < INFLIGHT_STALE_MS).then_some((chunk, bytes.parse().ok()?))
            })
            .collect();
        Ok(Some(LiveProgress { chunks, inflight }))
    }

    async fn forget(&self, upload: &str) -> Result<(), ProgressError> {
        let keys = self.keys(upload);
        let mut conn = self.manager.clone();
        conn.del::<_, ()>(&keys[..]).await.map_err(unavailable)
    }

    async fn charge(
        &self,
        key: &str,
        cost: u64,
        limit: u64,
        window: Duration,
    ) -> Result<Charge, ProgressError> {
        let mut conn = self.manager.clone();
        let window_ms = window.as_secs_f64() * 1000.0;
        let (fit, backlog, wait): (i64, String, String) = redis::Script::new(CHARGE)
            .key(format!("{}:rate:{key}", self.namespace))
            .arg(cost)
            .arg(limit)
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let number = |s: &str| s.parse::<f64>().unwrap_or(0.0).max(0.0);
        let interval = window_ms / limit.max(1) as f64;
        Ok(Charge {
            allowed: fit == 1,
            used: (number(&backlog) / interval).ceil() as u64,
            retry_after: Duration::from_millis(number(&wait).ceil() as u64),
        })
    }

    async fn throttle(&self, key: &str, window: Duration) -> Result<bool, ProgressError> {
        let mut conn = self.manager.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:throttle:{key}", self.namespace))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn presence_join(
        &self,
        node: &str,
        user: &str,
        expires_at: i64,
    ) -> Result<bool, ProgressError> {
        let (presence, node_users, _) = self.presence_keys(user, node);
        let now = now_ms();
        // The keys outlive a beat by the same span, for a dead node's reaping.
        let keep_until = expires_at + (expires_at - now).max(0);
        let mut conn = self.manager.clone();
        let came: i64 = redis::Script::new(PRESENCE_JOIN)
            .key(presence)
            .key(node_users)
            .key(self.nodes_key())
            .arg(node)
            .arg(user)
            .arg(expires_at)
            .arg(now)
            .arg(keep_until)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(came == 1)
    }

    async fn presence_leave(&self, node: &str, user: &str) -> Result<Option<i64>, ProgressError> {
        let (presence, node_users, seen) = self.presence_keys(user, node);
        let mut conn = self.manager.clone();
        let gone: Option<i64> = redis::Script::new(PRESENCE_LEAVE)
            .key(presence)
            .key(node_users)
            .key(seen)
            .arg(node)
            .arg(user)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(gone)
    }

    async fn presence_beat(
        &self,
        node: &str,
        users: &[String],
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let keep_until = expires_at + (expires_at - now_ms()).max(0);
        let mut pipe = redis::pipe();
        pipe.zadd(self.nodes_key(), node, expires_at).ignore();
        let (_, node_users, _) = self.presence_keys("", node);
        for user in users {
            let (presence, _, _) = self.presence_keys(user, node);
            pipe.hset(&presence, node, expires_at).ignore();
            pipe.cmd("PEXPIREAT")
                .arg(&presence)
                .arg(keep_until)
                .ignore();
            pipe.sadd(&node_users, user).ignore();
        }
        pipe.cmd("PEXPIREAT")
            .arg(&node_users)
            .arg(keep_until)
            .ignore();
        let mut conn = self.manager.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn presence_of(&self, users: &[String]) -> Result<Vec<Presence>, ProgressError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for user in users {
            let (presence, _, seen) = self.presence_keys(user, "");
            pipe.hvals(presence).get(seen);
        }
        let mut conn = self.manager.clone();
        let answers: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let now = now_ms();
        Ok(answers
            .chunks(2)
            .map(|pair| {
                let untils: Vec<i64> = redis::from_redis_value_ref(&pair[0]).unwrap_or_default();
                let last_seen: Option<i64> = redis::from_redis_value_ref(&pair[1]).unwrap_or(None);
                Presence {
                    online: untils.iter().any(|&u| u > now),
                    last_seen,
                }
            })
            .collect())
    }

    async fn presence_reap(&self, now: i64) -> Result<Vec<(String, i64)>, ProgressError> {
        let mut conn = self.manager.clone();
        let dead: Vec<String> = conn
            .zrangebyscore(self.nodes_key(), "-inf", now)
            .await
            .map_err(unavailable)?;
        let mut offline = Vec::new();
        for node in dead {
            // One node takes each dead one.
            let taken: i64 = conn
                .zrem(self.nodes_key(), &node)
                .await
                .map_err(unavailable)?;
            if taken == 0 {
                continue;
            }
            let (_, node_users, _) = self.presence_keys("", &node);
            let users: Vec<String> = conn.smembers(&node_users).await.map_err(unavailable)?;
            for user in users {
                if let Some(seen) = self.presence_leave(&node, &user).await? {
                    offline.push((user, seen));
                }
            }
            let _: () = conn.del(&node_users).await.map_err(unavailable)?;
        }
        Ok(offline)
    }
}

impl Hub {
    /// Keeps the subscriber connection: connects, subscribes again to every
    /// topic read, delivers what arrives, and starts over when it is lost.
    async fn run(
        self: Arc<Self>,
        client: redis::Client,
        connected: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut connected = Some(connected);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.connect(&client).await {
                Ok(mut messages) => {
                    backoff = Duration::from_millis(100);
                    if let Some(c) = connected.take() {
                        let _ = c.send(());
                    }
                    // Whatever was published while the connection was down
                    // is lost: readers re-read their source of truth.
                    self.topics.resync_all();
                    while let Some(msg) = messages.next().await {
                        let channel = msg.get_channel_name();
                        let Some(topic) = channel.strip_prefix(&self.channel_prefix) else {
                            continue;
                        };
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if let Ok(event) = serde_json::from_str::<Event>(&payload) {
                            self.topics.deliver(topic, &event);
                        }
                    }
                    *self.sink.lock().await = None;
                    tracing::warn!("lost the Redis subscriber connection; reconnecting");
                }
                Err(e) => {
                    if let Some(c) = connected.take() {
                        let _ = c.send(());
                    }
                    tracing::warn!(error = %e, "could not open the Redis subscriber connection");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Opens the connection and subscribes to every topic read now.
    async fn connect(
        &self,
        client: &redis::Client,
    ) -> redis::RedisResult<redis::aio::PubSubStream> {
        let (mut sink, messages) = client.get_async_pubsub().await?.split();
        let mut slot = self.sink.lock().await;
        let channels: Vec<String> = self
            .topics
            .names()
            .into_iter()
            .map(|t| format!("{}{t}", self.channel_prefix))
            .collect();
        if !channels.is_empty() {
            sink.subscribe(&channels).await?;
        }
        *slot = Some(sink);
        Ok(messages)
    }

    /// Unsubscribes from `topic` if its last local reader has gone.
    async fn unsubscribe(&self, topic: &str) {
        let mut sink = self.sink.lock().await;
        if !self.topics.leave_if_unread(topic) {
            return;
        }
        if let Some(sink) = sink.as_mut()
            && let Err(e) = sink
                .unsubscribe(format!("{}{topic}", self.channel_prefix))
                .await
        {
            tracing::debug!(error = %e, "could not unsubscribe; the connection will be replaced");
        }
    }
}

/// An event as it goes over the channel.
fn payload(event: &Event) -> Result<String, ProgressError> {
    serde_json::to_string(event)
        .map_err(|e| ProgressError::Unavailable(format!("unserialisable event: {e}")))
}
