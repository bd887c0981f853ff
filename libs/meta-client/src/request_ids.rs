//! Request ids for writes, and the mark that lets the service forget answers.
//!
//! Every write carries `(client_id, seq)` so that a retry is applied at most
//! once: the service remembers the answer to each id. It may forget an
//! answer once this client will not ask again, so each request also carries
//! `answered_below`: the lowest seq still in flight here. Everything below it
//! has had its answer, or was given up, and is never retried.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use magnetar_proto::meta as pb;

/// The seqs of one client: the next one to hand out and those in flight.
#[derive(Debug)]
pub(crate) struct RequestIds {
    client_id: u64,
    state: Arc<Mutex<Seqs>>,
}

#[derive(Debug, Default)]
struct Seqs {
    last: u64,
    in_flight: BTreeSet<u64>,
}

/// Keeps a seq in flight until the write it names has finished (answered,
/// failed for good, or dropped by its caller): then it will not be retried.
#[derive(Debug)]
pub(crate) struct InFlight {
    seq: u64,
    state: Arc<Mutex<Seqs>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.state).in_flight.remove(&self.seq);
    }
}

fn lock(state: &Mutex<Seqs>) -> std::sync::MutexGuard<'_, Seqs> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl RequestIds {
    pub(crate) fn new(client_id: u64) -> Self {
        Self {
            client_id,
            state: Arc::default(),
        }
    }

    /// A fresh id, in flight until the returned guard is dropped.
    pub(crate) fn next(&self) -> (pb::RequestId, InFlight) {
        let mut s = lock(&self.state);
        s.last += 1;
        let seq = s.last;
        s.in_flight.insert(seq);
        let answered_below = s.in_flight.first().copied().unwrap_or(seq);
        let id = pb::RequestId {
            client_id: self.client_id,
            seq,
            answered_below,
        };
        let guard = InFlight {
            seq,
            state: self.state.clone(),
        };
        (id, guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_the_lowest_seq_still_in_flight() {
        let ids = RequestIds::new(9);
        let (a, ga) = ids.next();
        let (b, gb) = ids.next();
        assert_eq!((a.client_id, a.seq, a.answered_below), (9, 1, 1));
        assert_eq!((b.seq, b.answered_below), (2, 1));
        // The later one finishing first moves nothing: 1 may still be retried.
        drop(gb);
        let (c, gc) = ids.next();
        assert_eq!((c.seq, c.answered_below), (3, 1));
        drop(ga);
        let (d, gd) = ids.next();
        assert_eq!((d.seq, d.answered_below), (4, 3));
        drop(gc);
        drop(gd);
        let (e, _ge) = ids.next();
        assert_eq!((e.seq, e.answered_below), (5, 5));
    }
}
