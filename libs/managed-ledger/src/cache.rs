//! Recently written entries, so that tailing cursors never go to the bookies.
//!
//! Each managed ledger has its own cache; all caches of a factory draw from one
//! byte budget. Entries leave when every active cursor has read past them, or,
//! when the budget is spent, oldest first. An entry that does not fit is simply
//! not cached: readers then fetch it from the bookies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::entry::Entry;
use crate::position::Position;

/// The byte budget shared by all caches of a factory.
#[derive(Debug)]
pub struct CacheBudget {
    limit: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

pub struct EntryCache {
    budget: Arc<CacheBudget>,
    entries: Mutex<BTreeMap<Position, Entry>>,
}

impl EntryCache {
    pub fn new(budget: Arc<CacheBudget>) -> Self {
        Self {
            budget,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Position, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cost(e: &Entry) -> usize {
        e.data.len() + 64
    }

    pub fn insert(&self, entry: Entry) {
        let cost = Self::cost(&entry);
        let mut map = self.lock();
        while !self.budget.try_take(cost) {
            // Make room from our own oldest entries; if we hold none, skip.
            match map.pop_first() {
                Some((_, old)) => self.budget.give_back(Self::cost(&old)),
                None => return,
            }
        }
        if let Some(old) = map.insert(entry.position, entry) {
            self.budget.give_back(Self::cost(&old));
        }
    }

    pub fn get(&self, pos: Position) -> Option<Entry> {
        self.lock().get(&pos).cloned()
    }

    /// Drops entries before `pos`.
    pub fn evict_before(&self, pos: Position) {
        let mut map = self.lock();
        let keep = map.split_off(&pos);
        let freed: usize = map.values().map(Self::cost).sum();
        *map = keep;
        self.budget.give_back(freed);
    }

    pub fn clear(&self) {
        let mut map = self.lock();
        let freed: usize = map.values().map(Self::cost).sum();
        map.clear();
        self.budget.give_back(freed);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl Drop for EntryCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(l: u64, e: i64, len: usize) -> Entry {
        Entry {
            position: Position::new(l, e),
            publish_time_ms: 0,
            data: vec![0u8; len].into(),
        }
    }

    #[test]
    fn stays_within_the_shared_budget() {
        let budget = CacheBudget::new(1000);
        let a = EntryCache::new(budget.clone());
        let b = EntryCache::new(budget.clone());
        for i in 0..10 {
            a.insert(entry(1, i, 100));
        }
        assert!(budget.used() <= 1000);
        // `a` evicted its oldest entries to make room for its newest.
        assert!(a.get(Position::new(1, 9)).is_some());
        assert!(a.get(Position::new(1, 0)).is_none());
        // `b` cannot take `a`'s memory: its entry is not cached.
        b.insert(entry(2, 0, 900));
        assert!(b.is_empty());
        a.evict_before(Position::new(1, 9));
        assert_eq!(a.len(), 1);
        b.insert(entry(2, 0, 700));
        assert_eq!(b.len(), 1);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
