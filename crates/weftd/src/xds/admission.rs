//! Admission control for full syncs. A stream's first response of a type (its whole view: 1.5 MiB
//! per proxy at 1,000 services, also after a reconnect when the client holds nothing) waits for
//! one of [`MAX_FULL_SYNCS`] permits and keeps it until the client has answered it (ACK or NACK),
//! until the stream ends, or until [`HOLD`] has passed without an answer. So in a connection storm
//! the responses weftd has queued at once, and the memory they take, depend on the cap rather than
//! on the number of proxies; the others wait without having generated anything.
//!
//! Streams that were admitted before (Envoy asks for endpoints right after it ACKs clusters, then
//! for listeners, then routes) go before streams asking for the first time, so proxies finish
//! their sync in the order they came instead of every proxy getting its clusters before any gets
//! its endpoints. A stream holds at most one permit (its full responses share it), so no stream
//! waits for a permit while holding one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub const MAX_FULL_SYNCS: usize = 64;
/// Longest a stream keeps its permit waiting for the client's answer.
pub const HOLD: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Admission {
    queue: Arc<Mutex<Queue>>,
}

struct Queue {
    free: usize,
    /// Waiting streams: those admitted before, then the others. A sender whose receiver is gone
    /// (the stream ended while waiting) is skipped.
    continuing: VecDeque<oneshot::Sender<()>>,
    first: VecDeque<oneshot::Sender<()>>,
}

/// One admitted full sync; the permit returns when this is dropped.
pub struct FullSync {
    admission: Admission,
    pub deadline: Instant,
}

impl FullSync {
    fn new(admission: Admission) -> FullSync {
        FullSync {
            admission,
            deadline: Instant::now() + HOLD,
        }
    }

    /// Another full response under the same permit: the hold starts again.
    pub fn extend(&mut self) {
        self.deadline = Instant::now() + HOLD;
    }
}

impl Drop for FullSync {
    fn drop(&mut self) {
        self.admission.release();
    }
}

/// A stream waiting for a permit; if it goes away after being handed one, it gives it back.
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    admission: Admission,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.admission.release();
            }
        }
    }
}

impl Admission {
    pub fn new(permits: usize) -> Admission {
        Admission {
            queue: Arc::new(Mutex::new(Queue {
                free: permits,
                continuing: VecDeque::new(),
                first: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a permit; `continuing`: the stream was admitted before (goes first).
    pub async fn enter(&self, continuing: bool) -> FullSync {
        let rx = {
            let mut q = self.lock();
            if q.free > 0 {
                q.free -= 1;
                return FullSync::new(self.clone());
            }
            let (tx, rx) = oneshot::channel();
            if continuing {
                q.continuing.push_back(tx);
            } else {
                q.first.push_back(tx);
            }
            rx
        };
        let mut waiting = Waiting {
            rx: Some(rx),
            admission: self.clone(),
        };
        if let Some(rx) = waiting.rx.as_mut() {
            // The sender is only dropped unsent if the queue itself is dropped, which needs
            // every Admission clone, ours included, gone: either way the permit is ours.
            let _ = rx.await;
        }
        waiting.rx = None;
        FullSync::new(self.clone())
    }

    /// A permit comes back: to the first stream still waiting, continuing ones first.
    fn release(&self) {
        let mut q = self.lock();
        while let Some(tx) = q.continuing.pop_front().or_else(|| q.first.pop_front()) {
            if tx.send(()).is_ok() {
                return;
            }
        }
        q.free += 1;
    }

    /// Permits free now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.lock().free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(a: &Admission, continuing: bool) -> tokio::task::JoinHandle<FullSync> {
        let a = a.clone();
        tokio::spawn(async move { a.enter(continuing).await })
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_and_continuing_streams_go_first() {
        let a = Admission::new(2);
        let first = a.enter(false).await;
        let mut second = a.enter(false).await;
        assert_eq!(a.available(), 0);
        let newcomer = waiter(&a, false);
        settle().await;
        let returning = waiter(&a, true);
        settle().await;
        assert!(
            !newcomer.is_finished() && !returning.is_finished(),
            "both wait"
        );
        drop(first);
        settle().await;
        assert!(returning.is_finished(), "admitted before: goes first");
        assert!(!newcomer.is_finished());
        let before = second.deadline;
        tokio::time::sleep(Duration::from_secs(1)).await;
        second.extend();
        assert!(second.deadline >= before + Duration::from_secs(1));
        drop(second);
        let third = newcomer.await.unwrap();
        let fourth = returning.await.unwrap();
        assert_eq!(a.available(), 0);
        drop((third, fourth));
        assert_eq!(a.available(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_gone_while_waiting_loses_nothing() {
        let a = Admission::new(1);
        let held = a.enter(false).await;
        // Gone before its turn: skipped.
        let gone = waiter(&a, false);
        settle().await;
        gone.abort();
        let _ = gone.await;
        let next = waiter(&a, false);
        settle().await;
        drop(held);
        let next = next.await.unwrap();
        assert_eq!(a.available(), 0);
        // Handed the permit, then gone before it ran: the permit comes back.
        let late = waiter(&a, false);
        settle().await;
        drop(next); // hands the permit to `late` ...
        late.abort(); // ... which never runs again
        let _ = late.await;
        assert_eq!(a.available(), 1);
    }
}
