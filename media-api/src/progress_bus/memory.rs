//! In-process progress and events: the embedded default for one process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::topics::{Topics, reader_stream};
use super::{
    Charge, Event, EventStream, INFLIGHT_STALE_MS, LiveProgress, Presence, ProgressBus,
    ProgressError, gcra,
};
use crate::ids::now_ms;

/// Topics as broadcast channels in a map, live views in another.
#[derive(Debug, Clone, Default)]
pub struct MemoryProgressBus {
    topics: Topics,
    uploads: Arc<Mutex<HashMap<String, Live>>>,
    throttles: Arc<Mutex<HashMap<String, i64>>>,
    /// Each rate key's drain time ([`super::gcra`]), Unix ms.
    rates: Arc<Mutex<HashMap<String, f64>>>,
    presence: Arc<Mutex<HashMap<String, Seen>>>,
}

/// A user's presence on this process's nodes (one, embedded).
#[derive(Debug, Default)]
struct Seen {
    nodes: HashMap<String, i64>,
    last_seen: Option<i64>,
}

impl Seen {
    fn online(&self, now: i64) -> bool {
        self.nodes.values().any(|&until| until > now)
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave its map
    // inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
struct Live {
    seeded: bool,
    chunks: BTreeSet<u32>,
    inflight: HashMap<u32, (u64, i64)>,
    expires_at: i64,
}

impl MemoryProgressBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn uploads(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        locked(&self.uploads)
    }
}

#[async_trait]
impl ProgressBus for MemoryProgressBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), ProgressError> {
        Ok(())
    }

    async fn publish(&self, topic: &str, event: &Event) -> Result<(), ProgressError> {
        self.topics.deliver(topic, event);
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<EventStream, ProgressError> {
        let (receiver, _) = self.topics.join(topic);
        let (topics, topic) = (self.topics.clone(), topic.to_owned());
        Ok(reader_stream(receiver, move || {
            topics.leave_if_unread(&topic);
        }))
    }
    async fn seed(
        &self,
        upload: &str,
        chunks: &[u32],
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let mut uploads = self.uploads();
        // Expired views go whenever a new one comes, so the map stays bounded.
        let now = now_ms();
        uploads.retain(|_, live| live.expires_at >= now);
        let live = uploads.entry(upload.to_owned()).or_default();
        live.seeded = true;
        live.chunks.extend(chunks.iter().copied());
        live.expires_at = expires_at;
        Ok(())
    }

    async fn mark_chunk(
        &self,
        upload: &str,
        chunk: u32,
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let mut uploads = self.uploads();
        let live = uploads.entry(upload.to_owned()).or_default();
        live.chunks.insert(chunk);
        live.inflight.remove(&chunk);
        live.expires_at = expires_at;
        Ok(())
    }

    async fn unmark_chunk(&self, upload: &str, chunk: u32) -> Result<(), ProgressError> {
        if let Some(live) = self.uploads().get_mut(upload) {
            live.chunks.remove(&chunk);
        }
        Ok(())
    }

    async fn report_inflight(
        &self,
        upload: &str,
        chunk: u32,
        bytes: u64,
        expires_at: i64,
        event: &Event,
    ) -> Result<(), ProgressError> {
        {
            let mut uploads = self.uploads();
            let live = uploads.entry(upload.to_owned()).or_default();
            live.inflight.insert(chunk, (bytes, now_ms()));
            live.expires_at = expires_at;
        }
        self.publish(upload, event).await
    }

    async fn clear_inflight(&self, upload: &str, chunk: u32) -> Result<(), ProgressError> {
        if let Some(live) = self.uploads().get_mut(upload) {
            live.inflight.remove(&chunk);
        }
        Ok(())
    }

    async fn live(&self, upload: &str) -> Result<Option<LiveProgress>, ProgressError> {
        let uploads = self.uploads();
        let now = now_ms();
        Ok(uploads
            .get(upload)
            .filter(|live| live.seeded && live.expires_at >= now)
            .map(|live| LiveProgress {
                chunks: live.chunks.iter().copied().collect(),
                inflight: live
                    .inflight
                    .iter()
                    .filter(|(_, (_, at))| now - at < INFLIGHT_STALE_MS)
                    .map(|(n, (b, _))| (*n, *b))
                    .collect(),
            }))
    }

    async fn forget(&self, upload: &str) -> Result<(), ProgressError> {
        self.uploads().remove(upload);
        Ok(())
    }

    async fn charge(
        &self,
        key: &str,
        cost: u64,
        limit: u64,
        window: std::time::Duration,
    ) -> Result<Charge, ProgressError> {
        let now = now_ms() as f64;
        let mut rates = locked(&self.rates);
        // Drained keys are dropped once the map grows, so it holds only the
        // users active within a window.
        if rates.len() >= 4096 && rates.len().is_power_of_two() {
            rates.retain(|_, until| *until > now);
        }
        let window_ms = window.as_secs_f64() * 1000.0;
        let (charge, next) = gcra(rates.get(key).copied(), now, cost, limit, window_ms);
        if let Some(next) = next {
            rates.insert(key.to_owned(), next);
        }
        Ok(charge)
    }

    async fn throttle(
        &self,
        key: &str,
        window: std::time::Duration,
    ) -> Result<bool, ProgressError> {
        let now = now_ms();
        let mut throttles = locked(&self.throttles);
        throttles.retain(|_, until| *until > now);
        if throttles.contains_key(key) {
            return Ok(false);
        }
        let until = now.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        throttles.insert(key.to_owned(), until);
        Ok(true)
    }

    async fn presence_join(
        &self,
        node: &str,
        user: &str,
        expires_at: i64,
    ) -> Result<bool, ProgressError> {
        let mut presence = locked(&self.presence);
        let seen = presence.entry(user.to_owned()).or_default();
        let was_online = seen.online(now_ms());
        seen.nodes.insert(node.to_owned(), expires_at);
        Ok(!was_online)
    }

    async fn presence_leave(&self, node: &str, user: &str) -> Result<Option<i64>, ProgressError> {
        let mut presence = locked(&self.presence);
        let Some(seen) = presence.get_mut(user) else {
            return Ok(None);
        };
        seen.nodes.remove(node);
        let now = now_ms();
        if seen.online(now) {
            return Ok(None);
        }
        seen.last_seen = Some(now);
        Ok(Some(now))
    }

    async fn presence_beat(
        &self,
        node: &str,
        users: &[String],
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let mut presence = locked(&self.presence);
        for user in users {
            presence
                .entry(user.clone())
                .or_default()
                .nodes
                .insert(node.to_owned(), expires_at);
        }
        Ok(())
    }

    async fn presence_of(&self, users: &[String]) -> Result<Vec<Presence>, ProgressError> {
        let presence = locked(&self.presence);
        let now = now_ms();
        Ok(users
            .iter()
            .map(|u| {
                presence
                    .get(u)
                    .map_or(Presence::default(), |seen| Presence {
                        online: seen.online(now),
                        last_seen: seen.last_seen,
                    })
            })
            .collect())
    }

    async fn presence_reap(&self, _now: i64) -> Result<Vec<(String, i64)>, ProgressError> {
        // One process is one node: it never outlives itself.
        Ok(Vec::new())
    }
}
