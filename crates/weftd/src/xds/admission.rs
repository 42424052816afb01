//! Admission control for full syncs. A stream's first response of a type (its whole view: 1.5 MiB
//! per proxy at 1,000 services, also after a reconnect when the client holds nothing) waits for
//! one of [`MAX_FULL_SYNCS`] permits and keeps it until the client has answered it (ACK or NACK)
//! and [`GRACE`] has passed without another full response, until the stream ends, or until
//! [`HOLD`] has passed without an answer. So in a connection storm the responses weftd has
//! queued at once, and the memory they take, depend on the cap rather than on the number of
//! proxies; the others wait without having generated anything. The grace lets an admitted stream
//! go on to its next type (Envoy asks for endpoints right after it ACKs clusters) instead of
//! queueing again behind every other stream's first type. A stream holds at most one permit
//! (its full responses share it), so no stream waits for a permit while holding one.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub const MAX_FULL_SYNCS: usize = 64;
/// Longest a stream keeps its permit waiting for the client's answer.
pub const HOLD: Duration = Duration::from_secs(10);
/// How long a stream keeps its permit after its full responses were answered.
pub const GRACE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
}

/// One admitted full sync.
#[derive(Debug)]
pub struct FullSync {
    _permit: OwnedSemaphorePermit,
    pub deadline: Instant,
}

impl FullSync {
    /// Another full response under the same permit: the hold starts again.
    pub fn extend(&mut self) {
        self.deadline = Instant::now() + HOLD;
    }

    /// Every full response was answered: the permit goes after [`GRACE`].
    pub fn answered(&mut self) {
        self.deadline = Instant::now() + GRACE;
    }
}

impl Admission {
    pub fn new(permits: usize) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Waits for a permit. `None` only if the semaphore was closed (it never is).
    pub async fn enter(&self) -> Option<FullSync> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        Some(FullSync {
            _permit: permit,
            deadline: Instant::now() + HOLD,
        })
    }

    /// Permits free now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_until_a_permit_is_returned() {
        let a = Admission::new(2);
        let first = a.enter().await.unwrap();
        let mut second = a.enter().await.unwrap();
        assert_eq!(a.available(), 0);
        let third = tokio::spawn({
            let a = a.clone();
            async move { a.enter().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a third full sync waits");
        let before = second.deadline;
        tokio::time::sleep(Duration::from_secs(1)).await;
        second.extend();
        assert!(second.deadline >= before + Duration::from_secs(1));
        second.answered();
        assert!(second.deadline <= Instant::now() + GRACE);
        drop(first);
        let third = third.await.unwrap().unwrap();
        assert_eq!(a.available(), 0);
        drop((second, third));
        assert_eq!(a.available(), 2);
    }
}
