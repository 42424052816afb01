//! The push side: a debounced stream of immutable push states. A config change becomes a new
//! [`PushState`] once changes have been quiet for 100 ms (or 10 s have passed since the first
//! unpushed change), and every connection then sends its proxy only what differs.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_xds::PushContext;

/// Istio's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX.
pub const DEBOUNCE_AFTER: Duration = Duration::from_millis(100);
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(10);

/// What every connection generates from: one version of the whole configuration.
pub struct PushState {
    pub version: u64,
    pub context: Arc<PushContext>,
}

/// Watches `input`; after each burst of changes calls `build` on the latest value and publishes the
/// result. The first value is built at once. `build` may keep what it built last (each context is
/// built from its predecessor).
pub fn debounced<T, F>(
    mut input: watch::Receiver<T>,
    quiet: Duration,
    max: Duration,
    mut build: F,
) -> watch::Receiver<Arc<PushState>>
where
    T: Clone + Send + Sync + 'static,
    F: FnMut(&T, u64) -> PushState + Send + 'static,
{
    let mut version = 1u64;
    let first = input.borrow_and_update().clone();
    let (tx, rx) = watch::channel(Arc::new(build(&first, version)));
    tokio::spawn(async move {
        loop {
            if input.changed().await.is_err() {
                return;
            }
            let burst_start = Instant::now();
            loop {
                let deadline = (Instant::now() + quiet).min(burst_start + max);
                match tokio::time::timeout_at(deadline, input.changed()).await {
                    Ok(Ok(())) if Instant::now() < burst_start + max => continue,
                    Ok(Err(_)) => return,
                    _ => break,
                }
            }
            version += 1;
            let latest = input.borrow_and_update().clone();
            let state = build(&latest, version);
            if tx.send(Arc::new(state)).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::snapshot::Snapshot;
    use weft_xds::{Allocations, MeshConfig};

    fn empty() -> Arc<PushContext> {
        Arc::new(PushContext::new(
            Arc::new(Snapshot::default()),
            &Allocations::new(),
            &MeshConfig::default(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_become_one_push() {
        let (tx, rx) = watch::channel(0u32);
        let mut out = debounced(rx, DEBOUNCE_AFTER, DEBOUNCE_MAX, |_v: &u32, version| {
            PushState {
                version,
                context: empty(),
            }
        });
        assert_eq!(out.borrow_and_update().version, 1);
        for i in 1..=5 {
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out.changed().await.unwrap();
        assert_eq!(
            out.borrow_and_update().version,
            2,
            "five quick changes, one push"
        );
        // A steady trickle is still pushed by the max delay.
        let start = Instant::now();
        let trickle = tokio::spawn(async move {
            for i in 0..1000 {
                let _ = tx.send(100 + i);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        out.changed().await.unwrap();
        assert!(
            start.elapsed() >= DEBOUNCE_MAX
                && start.elapsed() < DEBOUNCE_MAX + Duration::from_millis(200)
        );
        trickle.abort();
    }
}
