//! Long-lived streams (the upload event streams, the realtime WebSocket)
//! each user holds open on this node, bounded: one token cannot pin the
//! node's tasks, buffers and descriptors with thousands of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use super::problem::ApiError;
use crate::ids::UserId;

/// How many streams each user holds open here.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    held: Arc<Mutex<HashMap<UserId, usize>>>,
    limit: usize,
}

/// One open stream's slot, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: StreamSlots,
    user: UserId,
}

impl StreamSlots {
    /// At most `limit` streams per user.
    pub fn new(limit: usize) -> Self {
        Self {
            held: Arc::default(),
            limit,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more of `user`'s streams, or `429 too-many-streams`.
    pub fn take(&self, user: &UserId) -> Result<StreamSlot, ApiError> {
        let mut held = self.held();
        let count = held.entry(user.clone()).or_default();
        if *count >= self.limit {
            metrics::counter!("stream_refusals_total").increment(1);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-streams",
                format!(
                    "{} event streams and sockets are open for this user on this node; close one",
                    self.limit
                ),
            )
            .with("limit", self.limit));
        }
        *count += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held();
        if let Some(count) = held.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}
