//! The individually acknowledged positions above a cursor's mark-delete
//! position.
//!
//! Held per ledger as a bitmap over the span of acked entry ids, so memory is
//! one bit per entry of the span however scattered the acks are (a ledger holds
//! at most `max_entries_per_ledger` entries, which bounds every bitmap). The
//! persisted form picks, per ledger, the smaller of a run-length list of ranges
//! and the raw bitmap: sparse acks encode as ranges, dense scattered acks as
//! bits.

use std::collections::{BTreeMap, VecDeque};

use crate::codec::{Reader, Writer};
use crate::position::Position;

/// Acked entry ids of one ledger. Bit `i` of word `w` is entry
/// `base + 64*w + i`; `base` is a multiple of 64.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerAcks {
    base: i64,
    words: VecDeque<u64>,
    count: u64,
}

impl LedgerAcks {
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn slot(&self, entry: i64) -> Option<(usize, u32)> {
        if entry < self.base {
            return None;
        }
        let off = (entry - self.base) as u64;
        let w = (off / 64) as usize;
        (w < self.words.len()).then_some((w, (off % 64) as u32))
    }

    pub fn contains(&self, entry: i64) -> bool {
        self.slot(entry)
            .is_some_and(|(w, b)| self.words[w] & (1u64 << b) != 0)
    }

    /// Adds `entry` (>= 0); false if it was already there.
    pub fn insert(&mut self, entry: i64) -> bool {
        debug_assert!(entry >= 0);
        let aligned = entry & !63;
        if self.words.is_empty() {
            self.base = aligned;
        }
        while aligned < self.base {
            self.words.push_front(0);
            self.base -= 64;
        }
        let w = ((entry - self.base) / 64) as usize;
        while self.words.len() <= w {
            self.words.push_back(0);
        }
        let bit = 1u64 << ((entry - self.base) % 64);
        if self.words[w] & bit != 0 {
            return false;
        }
        self.words[w] |= bit;
        self.count += 1;
        true
    }

    /// Drops every entry <= `through`.
    pub fn remove_through(&mut self, through: i64) {
        while let Some(&front) = self.words.front() {
            if self.base + 63 <= through {
                self.count -= u64::from(front.count_ones());
                self.words.pop_front();
                self.base += 64;
            } else {
                break;
            }
        }
        if let Some(front) = self.words.front_mut() {
            if through >= self.base {
                let keep_from = (through - self.base + 1) as u32;
                let mask = !0u64 << keep_from;
                self.count -= u64::from((*front & !mask).count_ones());
                *front &= mask;
            }
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.words.front() == Some(&0) {
            self.words.pop_front();
            self.base += 64;
        }
        while self.words.back() == Some(&0) {
            self.words.pop_back();
        }
        if self.words.is_empty() {
            self.base = 0;
        }
    }

    /// If `entry` is acked, the last entry of the run of consecutive acked
    /// entries that starts at it.
    pub fn run_end(&self, entry: i64) -> Option<i64> {
        let (mut w, b) = self.slot(entry)?;
        let word = self.words[w] >> b;
        if word & 1 == 0 {
            return None;
        }
        let ones = word.trailing_ones();
        if ones < 64 - b {
            return Some(entry + i64::from(ones) - 1);
        }
        let mut end = self.base + 64 * w as i64 + 63;
        w += 1;
        while w < self.words.len() {
            let ones = self.words[w].trailing_ones();
            end += i64::from(ones);
            if ones < 64 {
                break;
            }
            w += 1;
        }
        Some(end)
    }

    /// The acked entries as inclusive ranges, in order.
    pub fn ranges(&self) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for (w, &word) in self.words.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = bits.trailing_zeros();
                let e = self.base + 64 * w as i64 + i64::from(b);
                match out.last_mut() {
                    Some(last) if last.1 + 1 == e => last.1 = e,
                    _ => out.push((e, e)),
                }
                bits &= bits - 1;
            }
        }
        out
    }

    /// Bytes of memory held by the bitmap.
    pub fn memory_bytes(&self) -> usize {
        self.words.len() * 8
    }

    const RANGES: u8 = 0;
    const BITMAP: u8 = 1;

    pub fn encode(&self, out: &mut Writer) {
        let ranges = self.ranges();
        let mut as_ranges = Writer::default();
        let mut prev_end = -1i64;
        as_ranges.varint(ranges.len() as u64);
        for &(a, b) in &ranges {
            as_ranges.varint((a - prev_end - 1) as u64);
            as_ranges.varint((b - a) as u64);
            prev_end = b;
        }
        let bitmap_len = 8 * self.words.len() + 10;
        if as_ranges.len() <= bitmap_len {
            out.u8(Self::RANGES);
            out.bytes(as_ranges.as_slice());
        } else {
            out.u8(Self::BITMAP);
            out.varint((self.base / 64) as u64);
            out.varint(self.words.len() as u64);
            for w in &self.words {
                out.u64(*w);
            }
        }
    }

    /// Decodes what `encode` wrote; `max_entry` bounds the entry ids accepted
    /// so a corrupt snapshot cannot make a huge bitmap.
    pub fn decode(r: &mut Reader<'_>, max_entry: i64) -> Result<Self, String> {
        let mut acks = LedgerAcks::default();
        match r.u8()? {
            Self::RANGES => {
                let n = r.varint()?;
                let mut prev_end = -1i64;
                for _ in 0..n {
                    let a = prev_end
                        .checked_add(1)
                        .and_then(|v| v.checked_add(r.varint().ok()? as i64))
                        .ok_or("range start overflows")?;
                    let b = a
                        .checked_add(r.varint()? as i64)
                        .ok_or("range end overflows")?;
                    if b > max_entry || a < 0 {
                        return Err(format!("acked entry {b} beyond limit {max_entry}"));
                    }
                    for e in a..=b {
                        acks.insert(e);
                    }
                    prev_end = b;
                }
            }
            Self::BITMAP => {
                let base_words = r.varint()?;
                let n = r.varint()?;
                let end = base_words
                    .checked_add(n)
                    .and_then(|w| w.checked_mul(64))
                    .ok_or("bitmap overflows")?;
                if end > (max_entry as u64).saturating_add(64) {
                    return Err(format!("bitmap ends at {end}, beyond limit {max_entry}"));
                }
                acks.base = (base_words * 64) as i64;
                for _ in 0..n {
                    let w = r.u64()?;
                    acks.count += u64::from(w.count_ones());
                    acks.words.push_back(w);
                }
                acks.trim();
            }
            k => return Err(format!("unknown ack set encoding {k}")),
        }
        Ok(acks)
    }
}

/// Acked positions across ledgers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndividualAcks {
    ledgers: BTreeMap<u64, LedgerAcks>,
    count: u64,
}

impl IndividualAcks {
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn contains(&self, p: Position) -> bool {
        self.ledgers
            .get(&p.ledger_id)
            .is_some_and(|l| l.contains(p.entry_id))
    }

    pub fn insert(&mut self, p: Position) -> bool {
        if p.entry_id < 0 {
            return false;
        }
        let added = self
            .ledgers
            .entry(p.ledger_id)
            .or_default()
            .insert(p.entry_id);
        self.count += u64::from(added);
        added
    }

    /// Drops every position <= `through`.
    pub fn remove_through(&mut self, through: Position) {
        let below: Vec<u64> = self
            .ledgers
            .range(..through.ledger_id)
            .map(|(l, _)| *l)
            .collect();
        for l in below {
            if let Some(acks) = self.ledgers.remove(&l) {
                self.count -= acks.len();
            }
        }
        if let Some(acks) = self.ledgers.get_mut(&through.ledger_id) {
            let before = acks.len();
            acks.remove_through(through.entry_id);
            self.count -= before - acks.len();
            if acks.is_empty() {
                self.ledgers.remove(&through.ledger_id);
            }
        }
    }

    /// The end of the run of acked positions starting at `p` (same ledger).
    pub fn run_end(&self, p: Position) -> Option<Position> {
        let end = self.ledgers.get(&p.ledger_id)?.run_end(p.entry_id)?;
        Some(Position::new(p.ledger_id, end))
    }

    /// Inclusive ranges, in order.
    pub fn ranges(&self) -> Vec<(Position, Position)> {
        self.ledgers
            .iter()
            .flat_map(|(&l, acks)| {
                acks.ranges()
                    .into_iter()
                    .map(move |(a, b)| (Position::new(l, a), Position::new(l, b)))
            })
            .collect()
    }

    pub fn memory_bytes(&self) -> usize {
        self.ledgers.values().map(|a| a.memory_bytes() + 48).sum()
    }

    pub fn encode(&self, out: &mut Writer) {
        out.varint(self.ledgers.len() as u64);
        for (l, acks) in &self.ledgers {
            out.u64(*l);
            acks.encode(out);
        }
    }

    pub fn decode(r: &mut Reader<'_>, max_entry: i64) -> Result<Self, String> {
        let mut me = IndividualAcks::default();
        let n = r.varint()?;
        for _ in 0..n {
            let l = r.u64()?;
            let acks = LedgerAcks::decode(r, max_entry)?;
            me.count += acks.len();
            if !acks.is_empty() {
                me.ledgers.insert(l, acks);
            }
        }
        Ok(me)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn model_ranges(set: &BTreeSet<i64>) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for &e in set {
            match out.last_mut() {
                Some(last) if last.1 + 1 == e => last.1 = e,
                _ => out.push((e, e)),
            }
        }
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64),
        RemoveThrough(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0i64..2000).prop_map(Op::Insert),
            1 => (-1i64..2000).prop_map(Op::RemoveThrough),
        ]
    }

    proptest! {
        #[test]
        fn bitmap_matches_a_set(ops in proptest::collection::vec(op(), 0..300), probe in 0i64..2000) {
            let mut acks = LedgerAcks::default();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(e) => prop_assert_eq!(acks.insert(e), model.insert(e)),
                    Op::RemoveThrough(t) => {
                        acks.remove_through(t);
                        model.retain(|&e| e > t);
                    }
                }
            }
            prop_assert_eq!(acks.len(), model.len() as u64);
            prop_assert_eq!(acks.contains(probe), model.contains(&probe));
            prop_assert_eq!(acks.ranges(), model_ranges(&model));
            let expected_end = model.contains(&probe).then(|| {
                let mut e = probe;
                while model.contains(&(e + 1)) { e += 1; }
                e
            });
            prop_assert_eq!(acks.run_end(probe), expected_end);

            let mut w = Writer::default();
            acks.encode(&mut w);
            let bytes = w.into_vec();
            let decoded = LedgerAcks::decode(&mut Reader::new(&bytes), 1 << 20).unwrap();
            prop_assert_eq!(decoded.ranges(), acks.ranges());
            prop_assert_eq!(decoded.len(), acks.len());
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = IndividualAcks::decode(&mut Reader::new(&bytes), 100_000);
        }
    }

    #[test]
    fn scattered_acks_stay_small() {
        // Every other entry of 1M acked: 500k ranges as a list, 125 KB as bits.
        let mut acks = IndividualAcks::default();
        for e in (0..1_000_000).step_by(2) {
            acks.insert(Position::new(7, e));
        }
        assert_eq!(acks.len(), 500_000);
        assert!(acks.memory_bytes() < 130_000, "{}", acks.memory_bytes());
        let mut w = Writer::default();
        acks.encode(&mut w);
        assert!(w.len() < 130_000, "encoded {} bytes", w.len());
        // A few sparse acks encode as ranges, a few bytes each.
        let mut sparse = IndividualAcks::default();
        for e in [5, 900_000, 900_001] {
            sparse.insert(Position::new(3, e));
        }
        let mut w = Writer::default();
        sparse.encode(&mut w);
        assert!(w.len() < 30, "encoded {} bytes", w.len());
    }

    #[test]
    fn remove_through_spans_ledgers() {
        let mut acks = IndividualAcks::default();
        for p in [(1, 3), (1, 9), (2, 0), (2, 5), (4, 1)] {
            acks.insert(Position::new(p.0, p.1));
        }
        acks.remove_through(Position::new(2, 0));
        assert_eq!(acks.len(), 2);
        assert!(acks.contains(Position::new(2, 5)));
        assert!(!acks.contains(Position::new(1, 9)));
        assert_eq!(acks.run_end(Position::new(4, 1)), Some(Position::new(4, 1)));
    }
}
