//! Fan-out of applied changes to prefix watchers.
//!
//! The hub keeps a bounded in-memory history of recent events so a watcher can
//! start from a past revision. Revisions older than the history (or from before
//! this process started, or before an installed snapshot) are *compacted*: such a
//! watcher gets `WatchError::Compacted` and must re-list, as with etcd.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::types::KvEvent;

#[derive(Clone, Debug)]
pub enum WatchBatch {
    /// Events of one applied command, all with the same revision.
    Events(Arc<Vec<KvEvent>>),
    /// The state machine was replaced by a snapshot; watchers must re-list.
    Reset { revision: i64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("revision {requested} is compacted (history starts after {compacted}); re-list and watch from the listed revision")]
    Compacted { requested: i64, compacted: i64 },
    #[error("too many watchers on this node (limit {0})")]
    TooManyWatchers(usize),
}

struct History {
    events: VecDeque<KvEvent>,
    bytes: usize,
    /// Events with revision <= compacted are no longer available.
    compacted: i64,
    /// Revision of the newest published event (or of the state at start).
    last_revision: i64,
}

pub struct WatchHub {
    history: Mutex<History>,
    tx: broadcast::Sender<WatchBatch>,
    max_events: usize,
    max_bytes: usize,
    active: AtomicUsize,
    max_watchers: usize,
}

/// A registered watcher: events it missed from history, then the live feed.
/// Dropping it releases its slot.
pub struct Subscription {
    pub backlog: Vec<KvEvent>,
    pub live: broadcast::Receiver<WatchBatch>,
    /// First revision the watcher wants.
    pub start_revision: i64,
    hub: Arc<WatchHub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn event_size(e: &KvEvent) -> usize {
    64 + e.key.len() + e.value.as_ref().map_or(0, |v| v.value.len())
}

impl WatchHub {
    pub fn new(
        current_revision: i64,
        max_events: usize,
        max_bytes: usize,
        max_watchers: usize,
    ) -> Arc<Self> {
        // The broadcast buffer bounds how far a slow watcher may lag before it is cut off.
        let (tx, _) = broadcast::channel(4096);
        Arc::new(Self {
            history: Mutex::new(History {
                events: VecDeque::new(),
                bytes: 0,
                compacted: current_revision,
                last_revision: current_revision,
            }),
            tx,
            max_events: max_events.max(1),
            max_bytes,
            active: AtomicUsize::new(0),
            max_watchers,
        })
    }

    pub fn active_watchers(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Publishes the events of one applied command (all of one revision).
    pub fn publish(&self, events: Vec<KvEvent>) {
        let Some(revision) = events.first().map(|e| e.revision) else {
            return;
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        for e in &events {
            h.bytes += event_size(e);
            h.events.push_back(e.clone());
        }
        h.last_revision = revision;
        // Trim whole revisions so a watcher never sees half of a transaction.
        while h.events.len() > self.max_events || h.bytes > self.max_bytes {
            let Some(oldest) = h.events.front().map(|e| e.revision) else {
                break;
            };
            if oldest == revision {
                break; // never drop the batch being published
            }
            while h.events.front().is_some_and(|e| e.revision == oldest) {
                if let Some(e) = h.events.pop_front() {
                    h.bytes -= event_size(&e);
                }
            }
            h.compacted = oldest;
        }
        // Sent under the lock so that subscribe() sees history and feed consistently.
        let _ = self.tx.send(WatchBatch::Events(Arc::new(events)));
    }

    /// The whole state was replaced (snapshot install): history is void.
    pub fn reset(&self, revision: i64) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.events.clear();
        h.bytes = 0;
        h.compacted = revision;
        h.last_revision = revision;
        let _ = self.tx.send(WatchBatch::Reset { revision });
    }

    /// Registers a watcher. `start_revision == 0` means "changes after now".
    pub fn subscribe(
        self: &Arc<Self>,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<Subscription, WatchError> {
        if self.active.fetch_add(1, Ordering::Relaxed) >= self.max_watchers {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return Err(WatchError::TooManyWatchers(self.max_watchers));
        }
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let start = if start_revision <= 0 {
            h.last_revision + 1
        } else {
            start_revision
        };
        if start <= h.compacted {
            let compacted = h.compacted;
            drop(h);
            self.active.fetch_sub(1, Ordering::Relaxed);
            return Err(WatchError::Compacted {
                requested: start,
                compacted,
            });
        }
        let backlog = h
            .events
            .iter()
            .filter(|e| e.revision >= start && e.key.starts_with(prefix))
            .cloned()
            .collect();
        let live = self.tx.subscribe();
        drop(h);
        Ok(Subscription {
            backlog,
            live,
            start_revision: start,
            hub: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StoredValue;

    fn put(rev: i64, key: &str) -> KvEvent {
        KvEvent {
            revision: rev,
            key: key.as_bytes().to_vec(),
            value: Some(StoredValue {
                value: b"v".to_vec(),
                version: 1,
                create_revision: rev,
                mod_revision: rev,
                lease: 0,
            }),
        }
    }

    #[test]
    fn backlog_is_filtered_by_prefix_and_revision() {
        let hub = WatchHub::new(0, 100, 1 << 20, 10);
        hub.publish(vec![put(1, "a/1")]);
        hub.publish(vec![put(2, "b/1")]);
        hub.publish(vec![put(3, "a/2")]);
        let sub = hub.subscribe(b"a/", 2).unwrap();
        assert_eq!(sub.backlog, vec![put(3, "a/2")]);
        assert_eq!(hub.active_watchers(), 1);
        drop(sub);
        assert_eq!(hub.active_watchers(), 0);
    }

    #[test]
    fn trimming_compacts_whole_revisions() {
        let hub = WatchHub::new(0, 2, 1 << 20, 10);
        hub.publish(vec![put(1, "a"), put(1, "b")]);
        hub.publish(vec![put(2, "c")]);
        // Revision 1 had to go entirely.
        let err = hub.subscribe(b"", 1).err().unwrap();
        assert_eq!(
            err,
            WatchError::Compacted {
                requested: 1,
                compacted: 1
            }
        );
        assert_eq!(hub.subscribe(b"", 2).unwrap().backlog, vec![put(2, "c")]);
    }

    #[test]
    fn start_zero_means_after_now_and_limit_applies() {
        let hub = WatchHub::new(5, 10, 1 << 20, 1);
        let sub = hub.subscribe(b"", 0).unwrap();
        assert_eq!(sub.start_revision, 6);
        assert!(matches!(
            hub.subscribe(b"", 0),
            Err(WatchError::TooManyWatchers(1))
        ));
        // Revisions from before the process started are compacted.
        drop(sub);
        assert!(matches!(
            hub.subscribe(b"", 5),
            Err(WatchError::Compacted { .. })
        ));
    }
}
