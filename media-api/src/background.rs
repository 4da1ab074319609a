//! The service's background work kept alive through a panic: the periodic
//! passes (upload janitor, GC, sync-log retention, presence heartbeat,
//! metrics upkeep, queue depth) and each processing job. A pass that panics
//! is logged and counted (`background_panics_total{task}`) and the next pass
//! runs on time; before this, one panic ended its loop silently until a
//! restart (the soak found the GC dead that way).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

/// When a periodic task's first pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// As soon as the task starts.
    Now,
    /// One interval after it starts.
    AfterInterval,
}

/// Runs `pass` every `interval` (counted from the end of the previous pass,
/// so a slow pass never runs back to back with the next) until `stop`. A
/// pass that panics is logged and counted; the loop goes on.
pub async fn every<F, Fut>(
    task: &'static str,
    first: First,
    interval: Duration,
    stop: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let wait = || async {
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(interval) => true,
        }
    };
    if first == First::AfterInterval && !wait().await {
        return;
    }
    loop {
        if stop.is_cancelled() {
            return;
        }
        // Called inside the caught future: a panic while the closure makes
        // its future is caught too.
        let _ = survive(task, async { pass().await }).await;
        if !wait().await {
            return;
        }
    }
}

/// Runs `work` to its end; if it panics, logs and counts the panic under
/// `task` and answers `None` instead of unwinding into the caller.
pub async fn survive<T>(task: &'static str, work: impl Future<Output = T>) -> Option<T> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(value) => Some(value),
        Err(panic) => {
            tracing::error!(
                task,
                panic = panic_message(panic.as_ref()),
                "background work panicked; it goes on with its next pass"
            );
            metrics::counter!("background_panics_total", "task" => task).increment(1);
            None
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_pass_that_panics_before_its_future_is_caught_too() {
        let passes = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let pass = {
            let passes = passes.clone();
            move || {
                if passes.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("the first pass fails while making its future");
                }
                async {}
            }
        };
        let interval = Duration::from_millis(20);
        let task = tokio::spawn(every("test", First::Now, interval, stop.clone(), pass));
        assert!(until_passes(&passes, 3).await >= 3);
        stop.cancel();
        task.await
            .expect("the loop ends when stopped, not by a panic");
    }

    /// Waits (up to 10 s) until `passes` reaches `n`.
    async fn until_passes(passes: &AtomicUsize, n: usize) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while passes.load(Ordering::SeqCst) < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        passes.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_pass_that_panics_does_not_end_its_loop() {
        let passes = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let pass = {
            let passes = passes.clone();
            move || {
                let n = passes.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n.is_multiple_of(2) {
                        panic!("pass {n} fails");
                    }
                }
            }
        };
        let interval = Duration::from_millis(20);
        let task = tokio::spawn(every("test", First::Now, interval, stop.clone(), pass));
        // Passes 0, 2 and 4 panic; the loop reaches a sixth pass all the same.
        assert!(until_passes(&passes, 6).await >= 6);
        assert!(!task.is_finished());
        stop.cancel();
        task.await
            .expect("the loop ends when stopped, not by a panic");
    }

    #[tokio::test]
    async fn the_first_pass_can_wait_an_interval_and_stop_ends_the_wait() {
        let passes = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let pass = {
            let passes = passes.clone();
            move || {
                passes.fetch_add(1, Ordering::SeqCst);
                async {}
            }
        };
        let interval = Duration::from_millis(300);
        let task = tokio::spawn(every(
            "test",
            First::AfterInterval,
            interval,
            stop.clone(),
            pass,
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            passes.load(Ordering::SeqCst),
            0,
            "no pass before an interval"
        );
        assert_eq!(until_passes(&passes, 1).await, 1);
        stop.cancel();
        // The loop was waiting out its next interval: stop ends the wait.
        tokio::time::timeout(Duration::from_millis(100), task)
            .await
            .expect("stop ends the wait at once")
            .expect("stopped, not panicked");
        assert_eq!(passes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn survive_hands_back_the_value_or_none_after_a_panic() {
        assert_eq!(survive("test", async { 7 }).await, Some(7));
        let failed: Option<u8> = survive("test", async { panic!("job fails") }).await;
        assert_eq!(failed, None);
    }
}
