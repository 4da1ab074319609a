//! Reads shared by the callers that want them at the same moment: a caller
//! gets the answer of a read that *began after it asked* (so it sees every
//! write committed before it asked, as a read of its own would), and while
//! one such read runs, every later caller of the same key waits for the
//! next one instead of starting its own. When a message wakes the sockets
//! of a 256-member group, their readers share a handful of reads of the
//! visibility bound and of the message instead of one each.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Shared reads by key.
#[derive(Debug)]
pub(super) struct Flights<K, V> {
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

#[derive(Debug)]
struct Slot<V> {
    /// Reads begun so far.
    begun: AtomicU64,
    /// One read at a time.
    turn: tokio::sync::Mutex<()>,
    /// The last answer, and which read (by `begun`) gave it.
    last: Mutex<Option<(u64, V)>>,
}

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Self {
            begun: AtomicU64::new(0),
            turn: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// The answer of a read of `key` that began after this call: `read`'s
    /// own, or another caller's that began after this one asked.
    pub(super) async fn get<E, F>(&self, key: K, read: impl FnOnce() -> F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let slot = Arc::clone(locked(&self.slots).entry(key.clone()).or_default());
        let asked = slot.begun.load(Ordering::SeqCst);
        let answer = async {
            let fresh = |slot: &Slot<V>| {
                locked(&slot.last)
                    .as_ref()
                    .filter(|(read, _)| *read > asked)
                    .map(|(_, v)| v.clone())
            };
            let _turn = slot.turn.lock().await;
            if let Some(v) = fresh(&slot) {
                return Ok(v);
            }
            let this = slot.begun.fetch_add(1, Ordering::SeqCst) + 1;
            let v = read().await?;
            *locked(&slot.last) = Some((this, v.clone()));
            Ok(v)
        }
        .await;
        // The last caller of a key takes its slot away.
        let mut slots = locked(&self.slots);
        if Arc::strong_count(&slot) == 2 {
            slots.remove(&key);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn callers_at_once_share_reads_that_began_after_they_asked() {
        let flights: Arc<Flights<(), usize>> = Arc::default();
        let reads = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|_| {
            let (flights, reads) = (flights.clone(), reads.clone());
            tokio::spawn(async move {
                flights
                    .get((), || async {
                        let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(n)
                    })
                    .await
            })
        });
        let answers: Vec<usize> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("task").expect("read"))
            .collect();
        let done = reads.load(Ordering::SeqCst);
        assert!(done <= 3, "50 callers at once made {done} reads");
        assert!(answers.iter().all(|&a| a >= 1 && a <= done));
        // A caller after they all finished gets a read of its own.
        let later = flights
            .get((), || async {
                Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .expect("read");
        assert_eq!(later, done + 1);
        assert!(locked(&flights.slots).is_empty(), "no slot is kept");
    }
}
