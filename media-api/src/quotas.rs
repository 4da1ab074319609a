//! What one user may store and do: the stored-bytes quota and open sessions
//! (counted from the metadata store, the truth), and the rates (uploads and
//! upload bytes per hour, messages per minute) counted on the progress bus
//! so that every API node charges the same counter (Redis; in-process on
//! the embedded default).
//!
//! A rate the bus cannot count (Redis unreachable) lets the request through:
//! losing Redis must not stop uploads or messages, and the counters come
//! back with it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Quotas;
use crate::ids::UserId;
use crate::metadata_store::{MediaStore, MetadataError, Usage};
use crate::progress_bus::ProgressBus;

/// A rate one user's actions are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Upload sessions opened, one-request uploads, instant dedups.
    Media,
    /// Bytes of chunks and one-request bodies.
    UploadBytes,
    /// Messages posted.
    Messages,
}

impl Rate {
    /// The quota's name, as `GET /v1/me` and a refusal name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Media => "media_per_hour",
            Self::UploadBytes => "upload_bytes_per_hour",
            Self::Messages => "messages_per_minute",
        }
    }

    fn window(self) -> Duration {
        match self {
            Self::Media | Self::UploadBytes => Duration::from_secs(3600),
            Self::Messages => Duration::from_secs(60),
        }
    }

    fn limit(self, quotas: &Quotas) -> u64 {
        match self {
            Self::Media => quotas.media_per_hour,
            Self::UploadBytes => quotas.upload_bytes_per_hour.0,
            Self::Messages => quotas.messages_per_minute,
        }
    }
}

/// A refusal: a rate spent (`429` with `Retry-After`), or a quota full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The rate is spent for now.
    #[error("{name} is {limit}; try again in {} s", retry_after.as_secs().max(1))]
    Rate {
        /// Which rate.
        name: &'static str,
        /// Its limit per window.
        limit: u64,
        /// When the cost would fit.
        retry_after: Duration,
    },
    /// Storing this much more would pass the stored-bytes quota.
    #[error("storing {wanted} more bytes would pass the {limit}-byte quota ({used} in use)")]
    Stored {
        /// The quota.
        limit: u64,
        /// Bytes held and reserved by open sessions.
        used: u64,
        /// What the request would add.
        wanted: u64,
    },
    /// Too many sessions open.
    #[error("{limit} upload sessions are open; complete or abort one first")]
    OpenUploads {
        /// The limit.
        limit: u64,
    },
}

/// One user's use and limits, as `GET /v1/me` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// What they use now.
    pub usage: serde_json::Value,
    /// What they may use.
    pub limits: serde_json::Value,
}

/// The quotas over the metadata store and the progress bus.
#[derive(Clone)]
pub struct QuotaBook {
    media: Arc<dyn MediaStore>,
    bus: Arc<dyn ProgressBus>,
    quotas: Quotas,
}

impl std::fmt::Debug for QuotaBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaBook")
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

impl QuotaBook {
    /// Quotas counted over these seams.
    pub fn new(media: Arc<dyn MediaStore>, bus: Arc<dyn ProgressBus>, quotas: Quotas) -> Self {
        Self { media, bus, quotas }
    }

    fn key(rate: Rate, user: &UserId) -> String {
        format!("{}:{}", rate.name(), user.as_str())
    }

    /// Charges `cost` to `user`'s `rate`; refused when it does not fit.
    pub async fn charge(&self, user: &UserId, rate: Rate, cost: u64) -> Result<(), Refused> {
        let limit = rate.limit(&self.quotas);
        match self
            .bus
            .charge(&Self::key(rate, user), cost, limit, rate.window())
            .await
        {
            Ok(c) if c.allowed => Ok(()),
            Ok(c) => {
                metrics::counter!("quota_refusals_total", "quota" => rate.name()).increment(1);
                Err(Refused::Rate {
                    name: rate.name(),
                    limit,
                    retry_after: c.retry_after,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, rate = rate.name(), "could not count a rate; letting it through");
                Ok(())
            }
        }
    }

    /// What `user` holds now, read once for the checks below.
    pub async fn usage(&self, user: &UserId) -> Result<Usage, MetadataError> {
        self.media.usage_of(user).await
    }

    /// Refuses `size` more bytes past the stored-bytes quota.
    pub fn check_stored(&self, usage: &Usage, size: u64) -> Result<(), Refused> {
        let used = usage.media_bytes + usage.open_upload_bytes;
        if used.saturating_add(size) > self.quotas.stored_bytes.0 {
            metrics::counter!("quota_refusals_total", "quota" => "stored_bytes").increment(1);
            return Err(Refused::Stored {
                limit: self.quotas.stored_bytes.0,
                used,
                wanted: size,
            });
        }
        Ok(())
    }

    /// Refuses one more open session past the limit.
    pub fn check_sessions(&self, usage: &Usage) -> Result<(), Refused> {
        if usage.open_uploads >= self.quotas.open_uploads {
            metrics::counter!("quota_refusals_total", "quota" => "open_uploads").increment(1);
            return Err(Refused::OpenUploads {
                limit: self.quotas.open_uploads,
            });
        }
        Ok(())
    }

    /// What `user` uses and may use.
    pub async fn account(&self, user: &UserId) -> Result<Account, MetadataError> {
        let Usage {
            media,
            media_bytes,
            open_uploads,
            open_upload_bytes,
        } = self.usage(user).await?;
        let mut rates = serde_json::Map::new();
        for rate in [Rate::Media, Rate::UploadBytes, Rate::Messages] {
            let used = self
                .bus
                .charge(
                    &Self::key(rate, user),
                    0,
                    rate.limit(&self.quotas),
                    rate.window(),
                )
                .await
                .map(|c| serde_json::Value::from(c.used))
                .unwrap_or(serde_json::Value::Null);
            rates.insert(rate.name().to_owned(), used);
        }
        let q = &self.quotas;
        let mut usage = serde_json::json!({
            "stored_bytes": media_bytes + open_upload_bytes,
            "media": media,
            "open_uploads": open_uploads,
            "open_upload_bytes": open_upload_bytes,
        });
        if let serde_json::Value::Object(u) = &mut usage {
            u.extend(rates);
        }
        Ok(Account {
            usage,
            limits: serde_json::json!({
                "stored_bytes": q.stored_bytes.0,
                "open_uploads": q.open_uploads,
                "media_per_hour": q.media_per_hour,
                "upload_bytes_per_hour": q.upload_bytes_per_hour.0,
                "messages_per_minute": q.messages_per_minute,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::progress_bus::gcra;

    #[test]
    fn the_cell_rate_takes_a_burst_of_the_limit_then_one_per_interval() {
        let window = 60_000.0;
        let mut tat = None;
        let mut now = 1_000_000.0;
        for i in 0..100 {
            let (c, next) = gcra(tat, now, 1, 100, window);
            assert!(c.allowed, "message {i}");
            assert_eq!(c.used, i + 1);
            tat = next;
        }
        let (c, next) = gcra(tat, now, 1, 100, window);
        assert!(!c.allowed && next.is_none());
        assert_eq!(c.used, 100);
        assert_eq!(c.retry_after.as_millis(), 600, "one interval");
        // One interval later, one more fits.
        now += 600.0;
        let (c, _) = gcra(tat, now, 1, 100, window);
        assert!(c.allowed);
        // A cost over the limit never fits.
        let (c, _) = gcra(None, now, 101, 100, window);
        assert!(!c.allowed);
        // Reading costs nothing and moves nothing.
        let (c, next) = gcra(tat, now, 0, 100, window);
        assert!(c.allowed && next.is_none());
        assert_eq!(c.used, 99);
    }
}
