//! Redis progress and events: shared by every API node.
//!
//! Commands go through a [`ConnectionManager`], which reconnects by itself, so a
//! Redis restart heals without restarting the service. Every key and channel is
//! prefixed with the configured namespace.

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Event, EventStream, INFLIGHT_STALE_MS, LiveProgress, ProgressBus, ProgressError};
use crate::ids::now_ms;

/// Progress and events in Redis.
#[derive(Clone)]
pub struct RedisProgressBus {
    client: redis::Client,
    manager: ConnectionManager,
    namespace: String,
}

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
        Ok(Self {
            client,
            manager,
            namespace: namespace.to_owned(),
        })
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}:events:{topic}", self.namespace)
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

    async fn subscribe(&self, topic: &str) -> Result<EventStream, ProgressError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub
            .subscribe(self.channel(topic))
            .await
            .map_err(unavailable)?;
        let stream = pubsub.into_on_message().filter_map(|msg| async move {
            let payload: String = msg.get_payload().ok()?;
            serde_json::from_str::<Event>(&payload).ok()
        });
        Ok(stream.boxed())
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
}

/// An event as it goes over the channel.
fn payload(event: &Event) -> Result<String, ProgressError> {
    serde_json::to_string(event)
        .map_err(|e| ProgressError::Unavailable(format!("unserialisable event: {e}")))
}
