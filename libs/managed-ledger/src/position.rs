//! Positions and the position arithmetic of a ledger list.
//!
//! A position is (ledger id, entry id). Ledger ids grow with time, so positions
//! order lexicographically. `(L, -1)` is the position just before ledger L's
//! first entry; a mark-delete position may sit there.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    pub ledger_id: u64,
    pub entry_id: i64,
}

impl Position {
    pub const fn new(ledger_id: u64, entry_id: i64) -> Self {
        Self {
            ledger_id,
            entry_id,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ledger_id, self.entry_id)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    /// Parses `L:E`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (l, e) = s
            .split_once(':')
            .ok_or_else(|| format!("position {s:?} is not LEDGER:ENTRY"))?;
        Ok(Position::new(
            l.parse().map_err(|_| format!("bad ledger id in {s:?}"))?,
            e.parse().map_err(|_| format!("bad entry id in {s:?}"))?,
        ))
    }
}

/// One ledger as position arithmetic sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub ledger_id: u64,
    /// Confirmed entries (for the ledger being written: confirmed so far).
    pub entries: i64,
    pub size: u64,
}

/// The ledgers of a managed ledger, oldest first; the last one is the ledger
/// being written (or the last closed one when none is open).
#[derive(Clone, Debug, Default)]
pub struct LedgerList {
    pub segments: Vec<Segment>,
}

impl LedgerList {
    fn index(&self, ledger: u64) -> Result<usize, usize> {
        self.segments.binary_search_by_key(&ledger, |s| s.ledger_id)
    }

    /// The last confirmed position; `(current, -1)` when nothing is written
    /// since the list's last ledger was created, `(0, -1)` for an empty list.
    pub fn last_confirmed(&self) -> Position {
        for s in self.segments.iter().rev() {
            if s.entries > 0 {
                return Position::new(s.ledger_id, s.entries - 1);
            }
        }
        match self.segments.last() {
            Some(s) => Position::new(s.ledger_id, -1),
            None => Position::new(0, -1),
        }
    }

    /// The position before the oldest entry still stored.
    pub fn before_first(&self) -> Position {
        match self.segments.first() {
            Some(s) => Position::new(s.ledger_id, -1),
            None => Position::new(0, -1),
        }
    }

    /// The first position after `pos` that holds, or will hold, an entry: the
    /// next entry of its ledger, else the first entry of the next non-empty
    /// ledger, else the next entry to be written.
    pub fn next_valid(&self, pos: Position) -> Position {
        let i = match self.index(pos.ledger_id) {
            Ok(i) => {
                if pos.entry_id + 1 < self.segments[i].entries {
                    return Position::new(pos.ledger_id, pos.entry_id + 1);
                }
                i + 1
            }
            Err(i) => i,
        };
        for s in &self.segments[i..] {
            if s.entries > 0 {
                return Position::new(s.ledger_id, 0);
            }
        }
        // Past the end: the next entry of the last ledger.
        match self.segments.last() {
            Some(s) if s.ledger_id >= pos.ledger_id => Position::new(s.ledger_id, s.entries),
            _ => Position::new(pos.ledger_id, pos.entry_id + 1),
        }
    }

    /// The entry before `pos` (possibly `(L, -1)` of its ledger).
    pub fn previous(&self, pos: Position) -> Position {
        if pos.entry_id > 0 {
            return Position::new(pos.ledger_id, pos.entry_id - 1);
        }
        let i = match self.index(pos.ledger_id) {
            Ok(i) | Err(i) => i,
        };
        for s in self.segments[..i].iter().rev() {
            if s.entries > 0 {
                return Position::new(s.ledger_id, s.entries - 1);
            }
        }
        Position::new(pos.ledger_id, -1)
    }

    /// Whether `pos` names a stored, confirmed entry.
    pub fn contains(&self, pos: Position) -> bool {
        self.index(pos.ledger_id)
            .is_ok_and(|i| pos.entry_id >= 0 && pos.entry_id < self.segments[i].entries)
    }

    /// Entries and (estimated within a partly covered ledger) bytes in
    /// `(after, through]`, from ledger sizes alone.
    pub fn span(&self, after: Position, through: Position) -> (u64, u64) {
        let mut entries = 0u64;
        let mut bytes = 0u64;
        for s in &self.segments {
            if s.ledger_id < after.ledger_id || s.ledger_id > through.ledger_id || s.entries == 0 {
                continue;
            }
            let first = if s.ledger_id == after.ledger_id {
                after.entry_id + 1
            } else {
                0
            };
            let last = if s.ledger_id == through.ledger_id {
                through.entry_id.min(s.entries - 1)
            } else {
                s.entries - 1
            };
            if last < first {
                continue;
            }
            let n = (last - first + 1) as u64;
            entries += n;
            bytes += if n == s.entries as u64 {
                s.size
            } else {
                s.size / s.entries as u64 * n
            };
        }
        (entries, bytes)
    }

    /// Total entries stored.
    pub fn total_entries(&self) -> u64 {
        self.segments.iter().map(|s| s.entries.max(0) as u64).sum()
    }

    pub fn total_size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn entries_of(&self, ledger: u64) -> Option<i64> {
        self.index(ledger).ok().map(|i| self.segments[i].entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(spec: &[(u64, i64)]) -> LedgerList {
        LedgerList {
            segments: spec
                .iter()
                .map(|&(ledger_id, entries)| Segment {
                    ledger_id,
                    entries,
                    size: entries as u64 * 10,
                })
                .collect(),
        }
    }

    #[test]
    fn next_valid_crosses_ledgers_and_skips_empty_ones() {
        let l = list(&[(3, 2), (5, 0), (7, 3), (9, 0)]);
        assert_eq!(l.next_valid(Position::new(3, -1)), Position::new(3, 0));
        assert_eq!(l.next_valid(Position::new(3, 0)), Position::new(3, 1));
        assert_eq!(l.next_valid(Position::new(3, 1)), Position::new(7, 0));
        assert_eq!(l.next_valid(Position::new(5, -1)), Position::new(7, 0));
        assert_eq!(l.next_valid(Position::new(7, 2)), Position::new(9, 0));
        // A deleted ledger before the first one.
        assert_eq!(l.next_valid(Position::new(1, 40)), Position::new(3, 0));
        assert_eq!(l.last_confirmed(), Position::new(7, 2));
    }

    #[test]
    fn previous_is_the_inverse_of_next_valid() {
        let l = list(&[(3, 2), (5, 0), (7, 3)]);
        assert_eq!(l.previous(Position::new(7, 0)), Position::new(3, 1));
        assert_eq!(l.previous(Position::new(7, 2)), Position::new(7, 1));
        assert_eq!(l.previous(Position::new(3, 0)), Position::new(3, -1));
        let mut p = l.before_first();
        let mut seen = vec![];
        while l.contains(l.next_valid(p)) {
            let n = l.next_valid(p);
            assert_eq!(l.previous(n), p);
            seen.push(n);
            p = n;
        }
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn span_counts_entries_and_bytes() {
        let l = list(&[(3, 2), (5, 0), (7, 3)]);
        assert_eq!(l.span(l.before_first(), l.last_confirmed()), (5, 50));
        assert_eq!(l.span(Position::new(3, 0), Position::new(7, 0)), (2, 20));
        assert_eq!(l.span(l.last_confirmed(), l.last_confirmed()), (0, 0));
    }

    #[test]
    fn parses_and_prints() {
        let p: Position = "12:-1".parse().unwrap();
        assert_eq!(p, Position::new(12, -1));
        assert_eq!(p.to_string(), "12:-1");
        assert!("12".parse::<Position>().is_err());
        assert!("x:1".parse::<Position>().is_err());
    }
}
