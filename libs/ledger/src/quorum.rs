//! Quorum arithmetic, kept pure so it can be tested exhaustively.
//!
//! Entries are striped over the ensemble: entry `e` goes to the `Qw` bookies at
//! ensemble positions `e mod E, e+1 mod E, …` and is confirmed once `Qa` of
//! them have acknowledged it. The LAC (last add confirmed) only advances over
//! a contiguous prefix of confirmed entries.

use std::collections::BTreeMap;

/// Ensemble positions that store entry `entry`.
pub fn write_set(entry: i64, ensemble_size: usize, write_quorum: usize) -> Vec<usize> {
    let e = ensemble_size.max(1);
    let start = (entry.rem_euclid(e as i64)) as usize;
    (0..write_quorum.min(e)).map(|i| (start + i) % e).collect()
}

/// How many bookies of an ensemble must be fenced so that no write set keeps
/// `ack_quorum` unfenced members: at most `Qa - 1` may stay unfenced.
pub fn fence_quorum(ensemble_size: usize, ack_quorum: usize) -> usize {
    ensemble_size + 1 - ack_quorum.clamp(1, ensemble_size.max(1))
}

/// How many members of a write set must answer "no such entry" before recovery
/// may conclude the entry was never confirmed: with fewer than that, `Qa`
/// bookies could still hold it.
pub fn missing_quorum(write_quorum: usize, ack_quorum: usize) -> usize {
    write_quorum + 1 - ack_quorum.clamp(1, write_quorum.max(1))
}

/// Tracks acknowledgements of in-flight entries and advances the LAC.
#[derive(Debug, Clone)]
pub struct AckTracker {
    ack_quorum: usize,
    lac: i64,
    /// entry id -> ensemble positions that acknowledged it
    pending: BTreeMap<i64, Vec<usize>>,
}

impl AckTracker {
    pub fn new(ack_quorum: usize, lac: i64) -> Self {
        Self {
            ack_quorum,
            lac,
            pending: BTreeMap::new(),
        }
    }

    pub fn lac(&self) -> i64 {
        self.lac
    }

    pub fn track(&mut self, entry: i64) {
        self.pending.entry(entry).or_default();
    }

    /// Records an ack; returns the entries newly confirmed, in id order.
    pub fn ack(&mut self, entry: i64, position: usize) -> Vec<i64> {
        if let Some(acks) = self.pending.get_mut(&entry) {
            if !acks.contains(&position) {
                acks.push(position);
            }
        }
        let mut confirmed = Vec::new();
        while let Some((&first, acks)) = self.pending.first_key_value() {
            if first != self.lac + 1 || acks.len() < self.ack_quorum {
                break;
            }
            self.pending.pop_first();
            self.lac = first;
            confirmed.push(first);
        }
        confirmed
    }

    /// Forgets acks from `position` for entries still pending (its bookie was
    /// replaced and the entries are being resent).
    pub fn forget_position(&mut self, position: usize) {
        for acks in self.pending.values_mut() {
            acks.retain(|p| *p != position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn write_sets_stripe_over_the_ensemble() {
        assert_eq!(write_set(0, 3, 2), vec![0, 1]);
        assert_eq!(write_set(1, 3, 2), vec![1, 2]);
        assert_eq!(write_set(2, 3, 2), vec![2, 0]);
        assert_eq!(write_set(7, 5, 3), vec![2, 3, 4]);
        assert_eq!(write_set(4, 1, 1), vec![0]);
    }

    #[test]
    fn quorums_for_common_configs() {
        assert_eq!(fence_quorum(3, 2), 2);
        assert_eq!(fence_quorum(1, 1), 1);
        assert_eq!(fence_quorum(5, 3), 3);
        assert_eq!(missing_quorum(2, 2), 1);
        assert_eq!(missing_quorum(3, 2), 2);
    }

    proptest! {
        /// Every write set has Qw distinct members, and every position is used
        /// equally over E consecutive entries.
        #[test]
        fn write_sets_are_distinct_and_balanced(e in 1usize..8, qw_off in 0usize..8, start in 0i64..1000) {
            let qw = 1 + qw_off % e;
            let mut uses = vec![0usize; e];
            for entry in start..start + e as i64 {
                let ws = write_set(entry, e, qw);
                let mut sorted = ws.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), qw);
                for p in ws { uses[p] += 1; }
            }
            prop_assert!(uses.iter().all(|u| *u == qw));
        }

        /// Fencing `fence_quorum` bookies leaves every write set short of Qa.
        #[test]
        fn fencing_blocks_every_write_set(e in 1usize..7, qw_off in 0usize..7, qa_off in 0usize..7, fenced_seed in any::<u64>()) {
            let qw = 1 + qw_off % e;
            let qa = 1 + qa_off % qw;
            let need = fence_quorum(e, qa);
            // Any choice of `need` fenced positions.
            let mut positions: Vec<usize> = (0..e).collect();
            let mut s = fenced_seed;
            for i in (1..positions.len()).rev() { s = s.wrapping_mul(6364136223846793005).wrapping_add(1); positions.swap(i, (s >> 33) as usize % (i + 1)); }
            let fenced: Vec<usize> = positions[..need].to_vec();
            for entry in 0..e as i64 {
                let unfenced = write_set(entry, e, qw).iter().filter(|p| !fenced.contains(p)).count();
                prop_assert!(unfenced < qa);
            }
        }

        /// LAC advances exactly over the contiguous prefix with >= Qa acks,
        /// whatever order acks arrive in.
        #[test]
        fn lac_advances_in_order(acks in prop::collection::vec((0i64..20, 0usize..3), 0..120)) {
            let mut t = AckTracker::new(2, -1);
            for e in 0..20 { t.track(e); }
            let mut seen = std::collections::HashMap::<i64, std::collections::HashSet<usize>>::new();
            let mut confirmed_all = Vec::new();
            for (e, p) in acks {
                seen.entry(e).or_default().insert(p);
                confirmed_all.extend(t.ack(e, p));
            }
            let mut expect = -1;
            while seen.get(&(expect + 1)).is_some_and(|s| s.len() >= 2) { expect += 1; }
            prop_assert_eq!(t.lac(), expect);
            prop_assert_eq!(confirmed_all, (0..=expect).collect::<Vec<_>>());
        }
    }
}
