//! Choosing bookies for an ensemble: writable ones only, spread across racks
//! (one per rack in turn), random within a rack so load spreads.

use rand::seq::SliceRandom;
use serde::Deserialize;

use crate::error::LedgerError;

/// What a bookie publishes under `/bookies/available/{id}`.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BookieInfo {
    pub id: String,
    pub address: String,
    #[serde(default)]
    pub rack: String,
    #[serde(default)]
    pub free_bytes: u64,
    #[serde(default)]
    pub read_only: bool,
}

/// Picks `n` writable bookies not in `exclude` (addresses), spreading racks.
pub fn choose(
    available: &[BookieInfo],
    n: usize,
    exclude: &[String],
) -> Result<Vec<String>, LedgerError> {
    let mut by_rack: std::collections::BTreeMap<&str, Vec<&BookieInfo>> = Default::default();
    for b in available
        .iter()
        .filter(|b| !b.read_only && !exclude.contains(&b.address))
    {
        by_rack.entry(b.rack.as_str()).or_default().push(b);
    }
    let candidates: usize = by_rack.values().map(Vec::len).sum();
    if candidates < n {
        return Err(LedgerError::NotEnoughBookies {
            needed: n,
            available: candidates,
        });
    }
    let mut rng = rand::rng();
    let mut racks: Vec<Vec<&BookieInfo>> = by_rack.into_values().collect();
    for r in &mut racks {
        r.shuffle(&mut rng);
    }
    racks.shuffle(&mut rng);
    let mut chosen = Vec::with_capacity(n);
    while chosen.len() < n {
        for r in racks.iter_mut() {
            if chosen.len() == n {
                break;
            }
            if let Some(b) = r.pop() {
                chosen.push(b.address.clone());
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(addr: &str, rack: &str, read_only: bool) -> BookieInfo {
        BookieInfo {
            id: addr.into(),
            address: addr.into(),
            rack: rack.into(),
            free_bytes: 0,
            read_only,
        }
    }

    #[test]
    fn spreads_racks_and_skips_read_only_and_excluded() {
        let all = vec![
            b("a1", "A", false),
            b("a2", "A", false),
            b("b1", "B", false),
            b("c1", "C", true),
            b("b2", "B", false),
        ];
        for _ in 0..20 {
            let c = choose(&all, 2, &[]).unwrap();
            let racks: Vec<char> = c.iter().map(|a| a.chars().next().unwrap()).collect();
            assert_ne!(
                racks[0], racks[1],
                "two racks available, so both must be used: {c:?}"
            );
            assert!(!c.contains(&"c1".to_string()));
        }
        let c = choose(&all, 3, &["a1".into()]).unwrap();
        assert!(!c.contains(&"a1".to_string()));
        assert!(matches!(
            choose(&all, 5, &[]),
            Err(LedgerError::NotEnoughBookies {
                needed: 5,
                available: 4
            })
        ));
    }
}
