use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Error, Lease, MetaClient};

/// The share of a TTL the holder trusts its lease for after a renewal: room
/// for clocks that tick at slightly different rates.
const SAFETY: f64 = 0.9;

/// Keeps a lease alive in the background (a keep-alive every third of the TTL)
/// until dropped. If the lease is found expired, `lost()` resolves: whatever was
/// attached to it is gone and the owner must react (e.g. stop serving).
///
/// Made with `keep_alive_since`, the keeper also judges expiry locally,
/// without the server's word: a lease whose last renewal was *sent* more than
/// a TTL ago may already have expired at the server (which counts from when
/// it received the renewal, never earlier), so after that instant the holder
/// must assume it is gone. This is what makes a holder that was paused or cut
/// off from the metadata service stop acting on the lease before anyone else
/// can take what it held. The price: a metadata outage longer than the TTL
/// (e.g. a slow leader election under a short TTL) ends the lease for the
/// holder even if the server, which renews every lease after a leader change,
/// would have kept it.
pub struct LeaseKeeper {
    pub lease: Lease,
    lost: watch::Receiver<Option<String>>,
    validity: LeaseValidity,
    task: JoinHandle<()>,
}

/// The instant until which the holder may trust its lease, as the keeper
/// judges it. Checked on the spot, it needs no task to have run: a holder
/// resumed after a pause sees its lease expired before any timer fires.
#[derive(Clone, Debug)]
pub struct LeaseValidity(Arc<Mutex<Instant>>);

impl LeaseValidity {
    fn new(until: Instant) -> Self {
        Self(Arc::new(Mutex::new(until)))
    }

    fn set(&self, until: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// Whether the lease may still be relied on now.
    pub fn is_valid(&self) -> bool {
        Instant::now() < *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LeaseKeeper {
    /// `granted_at`: when the grant request was sent (the server's TTL runs
    /// from a moment after it), for local expiry; `None` trusts the server
    /// alone.
    pub(crate) fn spawn(client: MetaClient, lease: Lease, granted_at: Option<Instant>) -> Self {
        let (tx, lost) = watch::channel(None);
        let ttl = Duration::from_secs(lease.ttl_seconds.max(1) as u64);
        let local = granted_at.is_some();
        // Without local expiry the lease is trusted for a long time (a year)
        // and only the server's "not found" ends it.
        let trust = move |from: Instant, ttl: Duration| {
            if local {
                from + ttl.mul_f64(SAFETY)
            } else {
                from + Duration::from_secs(365 * 24 * 3600)
            }
        };
        let valid_until = trust(granted_at.unwrap_or_else(Instant::now), ttl);
        let validity = LeaseValidity::new(valid_until);
        let shared = validity.clone();
        let task = tokio::spawn(async move {
            let period = ttl / 3;
            let mut valid_until = valid_until;
            loop {
                tokio::time::sleep(period).await;
                let sent = Instant::now();
                if sent >= valid_until {
                    shared.set(sent);
                    let _ = tx.send(Some("not renewed within its TTL".into()));
                    return;
                }
                let answer =
                    tokio::time::timeout(valid_until - sent, client.lease_keep_alive(lease.id))
                        .await;
                match answer {
                    Ok(Ok(secs)) => {
                        valid_until = trust(sent, Duration::from_secs(secs.max(1) as u64));
                        shared.set(valid_until);
                    }
                    Ok(Err(Error::NotFound(msg))) => {
                        shared.set(Instant::now());
                        let _ = tx.send(Some(msg));
                        return;
                    }
                    // Transient: keep trying; the server grants a fresh TTL to
                    // every lease after a leader change.
                    Ok(Err(e)) => {
                        tracing::warn!(lease = lease.id, error = %e, "lease keep-alive failed")
                    }
                    Err(_) => {
                        shared.set(Instant::now());
                        let _ = tx.send(Some("not renewed within its TTL".into()));
                        return;
                    }
                }
            }
        });
        Self {
            lease,
            lost,
            validity,
            task,
        }
    }

    /// A handle that tells, at any moment, whether the lease is still valid.
    pub fn validity(&self) -> LeaseValidity {
        self.validity.clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_judged_on_the_spot() {
        let v = LeaseValidity::new(Instant::now() + Duration::from_secs(3600));
        assert!(v.is_valid());
        let seen_by_owner = v.clone();
        // The keeper's task moves the deadline; every handle sees it at once.
        v.set(Instant::now());
        assert!(!seen_by_owner.is_valid());
    }
}
