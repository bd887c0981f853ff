use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Error, Lease, MetaClient};

/// Keeps a lease alive in the background (a keep-alive every third of the TTL)
/// until dropped. If the lease is found expired, `lost()` resolves: whatever was
/// attached to it is gone and the owner must react (e.g. stop serving).
pub struct LeaseKeeper {
    pub lease: Lease,
    lost: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    pub(crate) fn spawn(client: MetaClient, lease: Lease) -> Self {
        let (tx, lost) = watch::channel(None);
        let ttl = Duration::from_secs(lease.ttl_seconds.max(1) as u64);
        let task = tokio::spawn(async move {
            let period = ttl / 3;
            loop {
                tokio::time::sleep(period).await;
                match client.lease_keep_alive(lease.id).await {
                    Ok(_) => {}
                    Err(Error::NotFound(msg)) => {
                        let _ = tx.send(Some(msg));
                        return;
                    }
                    // Transient: keep trying; the server grants a fresh TTL to
                    // every lease after a leader change.
                    Err(e) => {
                        tracing::warn!(lease = lease.id, error = %e, "lease keep-alive failed")
                    }
                }
            }
        });
        Self { lease, lost, task }
    }

    /// Resolves with a reason once the lease is known to have expired.
    pub async fn lost(&mut self) -> String {
        loop {
            if let Some(reason) = self.lost.borrow().clone() {
                return reason;
            }
            if self.lost.changed().await.is_err() {
                return "keep-alive task ended".into();
            }
        }
    }

    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
