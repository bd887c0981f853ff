//! Key_Shared routing: which consumer may receive a message with a given key.
//!
//! Keys hash (Murmur3 32-bit, as Pulsar does) into 65,536 slots. A slot
//! with messages delivered but not yet acked stays with the consumer that has
//! them, so a key never moves between live consumers while it has messages in
//! flight; a free slot goes to the consumer that wins rendezvous hashing among
//! the eligible ones. Rendezvous hashing moves only the slots of a departing
//! consumer and gives a new one only slots that are free, so a new consumer
//! gets a key only after everything earlier of that key was acked.

use std::collections::HashMap;

pub const SLOTS: u32 = 65_536;

/// Murmur3 x86 32-bit with seed 0.
pub fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k: u32 = 0;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The slot of a key (messages without a key share the empty key's slot).
pub fn slot_of(key: &[u8]) -> u32 {
    murmur3_32(key) % SLOTS
}

/// A consumer as the router sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: u64,
    pub name: String,
    /// Inclusive slot ranges the consumer asked for (Sticky mode); empty =
    /// any slot.
    pub ranges: Vec<(u32, u32)>,
}

impl Candidate {
    fn accepts(&self, slot: u32) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Slot ownership while messages of a slot are in flight.
#[derive(Default, Debug)]
pub struct SlotTable {
    owners: HashMap<u32, (u64, u64)>,
}

impl SlotTable {
    /// The consumer that must receive the next message of `slot`.
    pub fn route(&self, slot: u32, candidates: &[Candidate]) -> Option<u64> {
        if let Some(&(owner, _)) = self.owners.get(&slot) {
            return Some(owner);
        }
        candidates
            .iter()
            .filter(|c| c.accepts(slot))
            .max_by_key(|c| {
                let mut buf = Vec::with_capacity(c.name.len() + 12);
                buf.extend_from_slice(c.name.as_bytes());
                buf.extend_from_slice(&c.key.to_le_bytes());
                buf.extend_from_slice(&slot.to_le_bytes());
                (murmur3_32(&buf), c.key)
            })
            .map(|c| c.key)
    }

    /// A message of `slot` was delivered to `consumer`.
    pub fn delivered(&mut self, slot: u32, consumer: u64) {
        let e = self.owners.entry(slot).or_insert((consumer, 0));
        e.1 += 1;
    }

    /// A message of `slot` was acked (or taken back for redelivery).
    pub fn settled(&mut self, slot: u32) {
        if let Some(e) = self.owners.get_mut(&slot) {
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                self.owners.remove(&slot);
            }
        }
    }

    /// Forgets a consumer's slots (its messages go back for redelivery).
    pub fn remove_consumer(&mut self, consumer: u64) {
        self.owners.retain(|_, (c, _)| *c != consumer);
    }

    pub fn clear(&mut self) {
        self.owners.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(key: u64) -> Candidate {
        Candidate {
            key,
            name: format!("c{key}"),
            ranges: vec![],
        }
    }

    #[test]
    fn murmur3_matches_reference_vectors() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn a_slot_in_flight_stays_with_its_consumer_until_settled() {
        let mut t = SlotTable::default();
        let one = vec![cand(1)];
        let s = slot_of(b"k");
        assert_eq!(t.route(s, &one), Some(1));
        t.delivered(s, 1);
        t.delivered(s, 1);
        // A new consumer arrives that would win the slot by hashing.
        let many: Vec<Candidate> = (1..50).map(cand).collect();
        assert_eq!(t.route(s, &many), Some(1));
        t.settled(s);
        assert_eq!(t.route(s, &many), Some(1));
        t.settled(s);
        let free = t.route(s, &many);
        assert!(free.is_some());
    }

    #[test]
    fn rendezvous_moves_only_the_departed_consumers_slots() {
        let t = SlotTable::default();
        let all: Vec<Candidate> = (1..=4).map(cand).collect();
        let without3: Vec<Candidate> = all.iter().filter(|c| c.key != 3).cloned().collect();
        let mut used = [0u32; 5];
        for slot in 0..2000 {
            let before = t.route(slot, &all).unwrap();
            used[before as usize] += 1;
            let after = t.route(slot, &without3).unwrap();
            if before != 3 {
                assert_eq!(before, after);
            }
        }
        assert!(used[1..].iter().all(|&n| n > 300), "{used:?}");
    }

    #[test]
    fn sticky_ranges_are_respected() {
        let t = SlotTable::default();
        let mut a = cand(1);
        a.ranges = vec![(0, 32_767)];
        let mut b = cand(2);
        b.ranges = vec![(32_768, 65_535)];
        assert_eq!(t.route(5, &[a.clone(), b.clone()]), Some(1));
        assert_eq!(t.route(40_000, &[a.clone(), b]), Some(2));
        assert_eq!(t.route(40_000, &[a]), None);
    }
}
