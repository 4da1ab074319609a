//! The in-flight memory budget: chunk and one-request bodies are held in
//! memory while they are hashed and sent to the store. The node's budget
//! (`limits.inflight_memory`) bounds them all, and each user's share
//! (`limits.inflight_memory_per_user`) bounds one user's, so one user's
//! parallel uploads cannot take the whole node's. A request reserves what
//! its body will hold before reading it (a request past the budget waits,
//! and TCP pushes back on its client); a reservation is never grown while
//! held, which would let requests that each hold part of the budget wait for
//! each other forever. What a slow client can hold this way is bounded by
//! its share and by the minimum body rate (`receive` in `chunks`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{UploadError, kib};
use crate::ids::UserId;

/// The node's budget and each user's share of it, in KiB.
#[derive(Debug)]
pub(super) struct MemoryBudget {
    node: Arc<Semaphore>,
    users: Mutex<HashMap<UserId, Arc<Semaphore>>>,
    share_kib: u32,
}

/// Part of the budget, given back on drop.
pub(super) struct MemoryReservation {
    /// `None` while the node's budget is still awaited.
    node: Option<OwnedSemaphorePermit>,
    user: Option<(UserId, OwnedSemaphorePermit)>,
    budget: Arc<MemoryBudget>,
}

impl MemoryBudget {
    pub(super) fn new(node_bytes: u64, share_bytes: u64) -> Self {
        Self {
            node: Arc::new(Semaphore::new(kib(node_bytes) as usize)),
            users: Mutex::default(),
            share_kib: kib(share_bytes),
        }
    }

    pub(super) fn free_kib(&self) -> usize {
        self.node.available_permits()
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Arc<Semaphore>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `bytes` of `user`'s share and of the node's budget until the
    /// reservation drops, waiting (share first, then node) while either is spent.
    pub(super) async fn reserve(
        self: &Arc<Self>,
        user: &UserId,
        bytes: u64,
    ) -> Result<MemoryReservation, UploadError> {
        let permits = kib(bytes);
        let share = Arc::clone(
            self.users()
                .entry(user.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.share_kib as usize))),
        );
        let user_permit = acquire(&share, permits.min(self.share_kib), "user").await;
        // Known to the reservation at once, so a wait cut short still gives
        // the share back (and forgets an idle user's entry).
        let mut reservation = MemoryReservation {
            node: None,
            user: Some((user.clone(), user_permit?)),
            budget: Arc::clone(self),
        };
        reservation.node = Some(acquire(&self.node, permits, "node").await?);
        metrics::gauge!("upload_memory_reserved_bytes").increment(f64::from(permits) * 1024.0);
        Ok(reservation)
    }
}

async fn acquire(
    semaphore: &Arc<Semaphore>,
    permits: u32,
    which: &'static str,
) -> Result<OwnedSemaphorePermit, UploadError> {
    match Arc::clone(semaphore).try_acquire_many_owned(permits) {
        Ok(p) => Ok(p),
        Err(_) => {
            metrics::counter!("upload_memory_waits_total", "budget" => which).increment(1);
            Arc::clone(semaphore)
                .acquire_many_owned(permits)
                .await
                .map_err(|_| UploadError::Backend("shutting down".into()))
        }
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            let kib = u32::try_from(node.num_permits()).unwrap_or(u32::MAX);
            metrics::gauge!("upload_memory_reserved_bytes").decrement(f64::from(kib) * 1024.0);
        }
        let Some((user, permit)) = self.user.take() else {
            return;
        };
        drop(permit);
        // The user's entry goes once nothing of their share is held or awaited.
        let mut users = self.budget.users();
        if let Some(share) = users.get(&user)
            && Arc::strong_count(share) == 1
            && share.available_permits() == self.budget.share_kib as usize
        {
            users.remove(&user);
        }
    }
}

/// A request body held to a least average rate: it may start within
/// `grace`, each frame buys `len / rate` more time, and no credit lasts past
/// `grace` from now (a body that stalls for `grace` is cut off, whatever it
/// sent before). Its frames come with their errors as [`UploadError`].
pub(super) struct Paced<S> {
    body: S,
    rate: f64,
    grace: std::time::Duration,
    allowed_until: tokio::time::Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<S> Paced<S> {
    pub(super) fn new(body: S, rate: u64, grace: std::time::Duration) -> Self {
        let allowed_until = tokio::time::Instant::now() + grace;
        Self {
            body,
            rate: rate.max(1) as f64,
            grace,
            allowed_until,
            timer: Box::pin(tokio::time::sleep_until(allowed_until)),
        }
    }
}

impl<S, E> futures_util::Stream for Paced<S>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<bytes::Bytes, UploadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = tokio::time::Instant::now();
                let bought = std::time::Duration::from_secs_f64(frame.len() as f64 / this.rate);
                this.allowed_until = (this.allowed_until + bought).min(now + this.grace);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(UploadError::ChunkIncomplete(e.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // The timer is moved only when it would fire early: not on
                // every frame of a fast body.
                if this.timer.deadline() < this.allowed_until {
                    let until = this.allowed_until;
                    this.timer.as_mut().reset(until);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(UploadError::BodyTooSlow {
                        rate: this.rate as u64,
                    }))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
