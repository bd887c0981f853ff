//! Lease expiry. Deadlines live only in the leader's memory: keep-alives are not
//! replicated, so they cost no log writes. A node that becomes leader (or starts a
//! new term) gives every lease a fresh TTL, so a leader change can only extend a
//! lease, never expire a healthy one early. Expiry is a replicated revoke.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
// Tokio's clock, so that tests can pause and advance it (it is the system's
// monotonic clock otherwise).
use tokio::time::Instant;

use crate::kv;
use crate::state_machine::SmShared;
use crate::types::{Command, Raft};

#[derive(Default)]
struct Deadlines {
    /// Term in which these deadlines were set; None when not leader.
    term: Option<u64>,
    by_lease: HashMap<i64, Instant>,
}

#[derive(Default)]
pub struct LeaseExpirer {
    inner: Mutex<Deadlines>,
}

impl LeaseExpirer {
    /// Refreshes a lease's deadline (the caller has checked that this node leads
    /// and that the lease exists).
    pub fn keep_alive(&self, lease_id: i64, ttl: Duration) {
        let mut d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        d.by_lease.insert(lease_id, Instant::now() + ttl);
    }

    /// Seconds left for `lease_id`, if this leader tracks it.
    pub fn remaining(&self, lease_id: i64) -> Option<Duration> {
        let d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        d.by_lease
            .get(&lease_id)
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// One pass: returns the leases whose deadline has passed on this leader.
    fn expired(&self, leader_term: Option<u64>, leases: &[(i64, kv::LeaseRecord)]) -> Vec<i64> {
        let now = Instant::now();
        let mut d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if d.term != leader_term {
            // Lost leadership or a new term: forget every deadline; on a new
            // term every lease starts over with its full TTL.
            d.by_lease.clear();
            d.term = leader_term;
        }
        if leader_term.is_none() {
            return Vec::new();
        }
        let live: std::collections::HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
        d.by_lease.retain(|id, _| live.contains(id));
        let mut expired = Vec::new();
        for (id, rec) in leases {
            let ttl = Duration::from_secs(rec.ttl_seconds.max(1) as u64);
            let deadline = *d.by_lease.entry(*id).or_insert(now + ttl);
            if deadline <= now {
                expired.push(*id);
            }
        }
        expired
    }

    /// Runs until `shutdown` flips: every `tick`, revokes expired leases if leader.
    pub async fn run(
        self: Arc<Self>,
        raft: Raft,
        sm: Arc<SmShared>,
        tick: Duration,
        write_timeout: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let leader_term = {
                let m = raft.metrics();
                let m = m.borrow();
                (m.state == ServerState::Leader).then_some(m.current_term)
            };
            let leases = if leader_term.is_some() {
                match kv::lease_records(&*sm.db) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read leases");
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            for lease_id in self.expired(leader_term, &leases) {
                tracing::info!(lease_id, "lease expired; revoking");
                let cmd = Command::LeaseRevoke {
                    request_id: None,
                    lease_id,
                };
                match tokio::time::timeout(write_timeout, raft.client_write(cmd)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(lease_id, error = %e, "revoking expired lease failed")
                    }
                    Err(_) => tracing::warn!(lease_id, "revoking expired lease timed out"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_term_grants_fresh_ttl_and_followers_track_nothing() {
        let e = LeaseExpirer::default();
        let rec = kv::LeaseRecord { ttl_seconds: 1 };
        assert!(e.expired(Some(1), &[(7, rec)]).is_empty());
        // Force the deadline into the past.
        e.inner
            .lock()
            .unwrap()
            .by_lease
            .insert(7, Instant::now() - Duration::from_millis(1));
        assert_eq!(e.expired(Some(1), &[(7, rec)]), vec![7]);
        // Same lease under a new term: fresh TTL, not expired.
        assert!(e.expired(Some(2), &[(7, rec)]).is_empty());
        assert!(e.remaining(7).unwrap() > Duration::from_millis(500));
        // Not leader: nothing tracked, nothing expired.
        assert!(e.expired(None, &[(7, rec)]).is_empty());
        assert!(e.remaining(7).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_one_ttl_after_its_last_keep_alive() {
        let e = LeaseExpirer::default();
        let rec = kv::LeaseRecord { ttl_seconds: 10 };
        let leases = [(7, rec)];
        // First seen by this leader: a full TTL from now.
        assert!(e.expired(Some(1), &leases).is_empty());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(e.expired(Some(1), &leases).is_empty());
        assert_eq!(e.remaining(7), Some(Duration::from_secs(1)));
        // Kept alive just in time: another full TTL from now.
        e.keep_alive(7, Duration::from_secs(10));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(e.expired(Some(1), &leases).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(e.expired(Some(1), &leases), vec![7]);
        assert_eq!(e.remaining(7), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_term_restarts_every_ttl() {
        let e = LeaseExpirer::default();
        let leases = [(7, kv::LeaseRecord { ttl_seconds: 5 })];
        assert!(e.expired(Some(1), &leases).is_empty());
        tokio::time::advance(Duration::from_secs(4)).await;
        // Term 2 begins just before the lease would have expired in term 1.
        assert!(e.expired(Some(2), &leases).is_empty());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(e.expired(Some(2), &leases).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(e.expired(Some(2), &leases), vec![7]);
    }
}
