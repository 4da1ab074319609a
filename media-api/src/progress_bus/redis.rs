//! Redis progress and events: shared by every API node.
//!
//! Commands go through a [`ConnectionManager`], which reconnects by itself, so a
//! Redis restart heals without restarting the service. Every key and channel is
//! prefixed with the configured namespace.

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Event, EventStream, ProgressBus, ProgressError};

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
        let payload = serde_json::to_string(event)
            .map_err(|e| ProgressError::Unavailable(format!("unserialisable event: {e}")))?;
        let mut conn = self.manager.clone();
        conn.publish::<_, _, i64>(self.channel(topic), payload)
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
}
