//! Namespace bundles: a namespace's 32-bit topic-hash space cut into ranges.
//! A bundle is the unit of ownership — a broker owns whole bundles and
//! serves exactly the topics whose hash falls into them.
//!
//! Boundaries are kept as Pulsar writes them (`"0x00000000"`, …,
//! `"0xffffffff"`); bundle `i` is `[b[i], b[i+1])`, except that the last one
//! also holds `0xffffffff`. A bundle is named `"{start}_{end}"`, e.g.
//! `0x00000000_0x40000000`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// The whole hash space ends here (inclusive).
pub const MAX_HASH: u32 = u32::MAX;

/// Bundles a namespace can be split into at most.
pub const MAX_BUNDLES: usize = 4096;

/// The hash that places a topic in a bundle. CRC-32C of the full topic name
/// (`persistent://tenant/ns/topic`, a partition by its own name).
pub fn topic_hash(topic: &str) -> u32 {
    crc32c::crc32c(topic.as_bytes())
}

/// One hash range `[start, end)` (`end` inclusive when it is `MAX_HASH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleRange {
    pub start: u32,
    pub end: u32,
}

impl BundleRange {
    pub fn contains(&self, hash: u32) -> bool {
        hash >= self.start && (hash < self.end || (self.end == MAX_HASH && hash == MAX_HASH))
    }

    /// Parses `0x00000000_0x40000000`.
    pub fn parse(s: &str) -> Result<BundleRange> {
        let bad = || BrokerError::BadRequest(format!("invalid bundle range {s:?}"));
        let (a, b) = s.split_once('_').ok_or_else(bad)?;
        let start = parse_hex(a).ok_or_else(bad)?;
        let end = parse_hex(b).ok_or_else(bad)?;
        if start >= end {
            return Err(bad());
        }
        Ok(BundleRange { start, end })
    }
}

impl fmt::Display for BundleRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}_0x{:08x}", self.start, self.end)
    }
}

fn parse_hex(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// A namespace's bundle boundaries, as stored in its policies (Pulsar's
/// `BundlesData`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundlesData {
    #[serde(default)]
    pub boundaries: Vec<String>,
    #[serde(default)]
    pub num_bundles: usize,
}

/// Parsed, validated boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundles {
    bounds: Vec<u32>,
}

impl Bundles {
    /// `n` equal ranges over the whole hash space.
    pub fn equal(n: usize) -> Result<Bundles> {
        if !(1..=MAX_BUNDLES).contains(&n) {
            return Err(BrokerError::BadRequest(format!(
                "number of bundles must be between 1 and {MAX_BUNDLES}, not {n}"
            )));
        }
        let span = 1u64 << 32;
        let mut bounds: Vec<u32> = (0..n as u64)
            .map(|i| (i * span / n as u64) as u32)
            .collect();
        bounds.push(MAX_HASH);
        Ok(Bundles { bounds })
    }

    /// From stored data: explicit boundaries win; otherwise `num_bundles`
    /// equal ranges (how a namespace is created with `--bundles N`).
    pub fn from_data(d: &BundlesData) -> Result<Bundles> {
        if d.boundaries.is_empty() {
            return Bundles::equal(d.num_bundles);
        }
        let bad = |why: &str| BrokerError::BadRequest(format!("invalid bundle boundaries: {why}"));
        let bounds = d
            .boundaries
            .iter()
            .map(|s| parse_hex(s).ok_or_else(|| bad(s)))
            .collect::<Result<Vec<u32>>>()?;
        if bounds.len() < 2 || bounds.len() > MAX_BUNDLES + 1 {
            return Err(bad("need between 2 and 4097 boundaries"));
        }
        if bounds[0] != 0 || bounds[bounds.len() - 1] != MAX_HASH {
            return Err(bad("must start at 0x00000000 and end at 0xffffffff"));
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("must be strictly increasing"));
        }
        Ok(Bundles { bounds })
    }

    pub fn to_data(&self) -> BundlesData {
        BundlesData {
            boundaries: self.bounds.iter().map(|b| format!("0x{b:08x}")).collect(),
            num_bundles: self.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    pub fn ranges(&self) -> impl Iterator<Item = BundleRange> + '_ {
        self.bounds.windows(2).map(|w| BundleRange {
            start: w[0],
            end: w[1],
        })
    }

    /// The bundle holding `hash`.
    pub fn find(&self, hash: u32) -> BundleRange {
        // The index of the first boundary greater than `hash`, minus one, is
        // the range's start; `MAX_HASH` belongs to the last range.
        let i = self.bounds.partition_point(|&b| b <= hash);
        let i = i.clamp(1, self.bounds.len() - 1);
        BundleRange {
            start: self.bounds[i - 1],
            end: self.bounds[i],
        }
    }

    pub fn for_topic(&self, topic: &str) -> BundleRange {
        self.find(topic_hash(topic))
    }

    pub fn contains(&self, range: &BundleRange) -> bool {
        self.ranges().any(|r| r == *range)
    }

    /// Splits `range` into two equal halves.
    pub fn split(&self, range: &BundleRange) -> Result<Bundles> {
        if !self.contains(range) {
            return Err(BrokerError::NotFound(format!(
                "bundle {range} is not a bundle of this namespace"
            )));
        }
        if self.len() >= MAX_BUNDLES {
            return Err(BrokerError::Precondition(format!(
                "the namespace already has {MAX_BUNDLES} bundles"
            )));
        }
        if range.end - range.start < 2 {
            return Err(BrokerError::Precondition(format!(
                "bundle {range} is too small to split"
            )));
        }
        let mid = range.start + (range.end - range.start) / 2;
        let mut bounds = self.bounds.clone();
        let at = bounds.partition_point(|&b| b < mid);
        bounds.insert(at, mid);
        Ok(Bundles { bounds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn four_bundles_are_pulsars_boundaries() {
        let b = Bundles::equal(4).unwrap();
        assert_eq!(
            b.to_data().boundaries,
            [
                "0x00000000",
                "0x40000000",
                "0x80000000",
                "0xc0000000",
                "0xffffffff"
            ]
        );
        let names: Vec<String> = b.ranges().map(|r| r.to_string()).collect();
        assert_eq!(names[0], "0x00000000_0x40000000");
        assert_eq!(names[3], "0xc0000000_0xffffffff");
    }

    #[test]
    fn ends_of_the_hash_space() {
        let b = Bundles::equal(4).unwrap();
        assert_eq!(b.find(0).start, 0);
        assert_eq!(b.find(MAX_HASH).start, 0xc000_0000);
        assert_eq!(b.find(0x4000_0000).start, 0x4000_0000);
        assert_eq!(b.find(0x3fff_ffff).start, 0);
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in [
            "",
            "0x1",
            "0x10_0x05",
            "10_20",
            "0x_0x1",
            "0x123456789_0xffffffff",
        ] {
            assert!(BundleRange::parse(s).is_err(), "{s}");
        }
        let r = BundleRange::parse("0x40000000_0x80000000").unwrap();
        assert_eq!((r.start, r.end), (0x4000_0000, 0x8000_0000));
    }

    #[test]
    fn bad_boundaries_are_rejected() {
        let d = |b: &[&str]| BundlesData {
            boundaries: b.iter().map(|s| s.to_string()).collect(),
            num_bundles: 0,
        };
        assert!(Bundles::from_data(&d(&["0x00000000"])).is_err());
        assert!(Bundles::from_data(&d(&["0x00000001", "0xffffffff"])).is_err());
        assert!(Bundles::from_data(&d(&[
            "0x00000000",
            "0x80000000",
            "0x80000000",
            "0xffffffff"
        ]))
        .is_err());
        assert!(Bundles::from_data(&d(&["0x00000000", "zz", "0xffffffff"])).is_err());
        assert!(Bundles::from_data(&BundlesData {
            boundaries: vec![],
            num_bundles: 0
        })
        .is_err());
        assert_eq!(
            Bundles::from_data(&BundlesData {
                boundaries: vec![],
                num_bundles: 8
            })
            .unwrap()
            .len(),
            8
        );
    }

    proptest! {
        /// Every hash lands in exactly one bundle, before and after splits.
        #[test]
        fn every_hash_in_exactly_one_bundle(n in 1usize..64, splits in proptest::collection::vec(any::<u32>(), 0..8), hashes in proptest::collection::vec(any::<u32>(), 1..64)) {
            let mut b = Bundles::equal(n).unwrap();
            for s in splits {
                let r = b.find(s);
                if let Ok(next) = b.split(&r) {
                    prop_assert_eq!(next.len(), b.len() + 1);
                    b = next;
                }
            }
            let again = Bundles::from_data(&b.to_data()).unwrap();
            prop_assert_eq!(&again, &b);
            for h in hashes.into_iter().chain([0, MAX_HASH]) {
                let found = b.find(h);
                prop_assert!(found.contains(h));
                prop_assert_eq!(b.ranges().filter(|r| r.contains(h)).count(), 1);
                prop_assert_eq!(BundleRange::parse(&found.to_string()).unwrap(), found);
            }
        }
    }
}
