//! Load-balancing decisions, as pure functions of what brokers report:
//! where an unowned bundle goes, which bundles to move off a loaded broker,
//! which bundles to split. `cluster` gathers the inputs and acts.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ownership::BundleId;

/// Traffic of one bundle over the last report interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleLoad {
    pub msg_rate_in: f64,
    pub msg_rate_out: f64,
    pub msg_throughput_in: f64,
    pub msg_throughput_out: f64,
    pub topics: u64,
}

impl BundleLoad {
    pub fn throughput(&self) -> f64 {
        self.msg_throughput_in + self.msg_throughput_out
    }
    pub fn msg_rate(&self) -> f64 {
        self.msg_rate_in + self.msg_rate_out
    }
}

/// A live broker as a placement candidate.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    /// Bundles it owns now (from the ownership records, not its report, so
    /// that placements made a moment ago count).
    pub bundles: usize,
    /// Its highest resource usage (CPU or memory), percent.
    pub usage_pct: f64,
}

/// Picks the broker for an unowned bundle: not overloaded if possible, then
/// the fewest bundles; ties go by a hash of bundle and broker, so brokers
/// placing many bundles at once from the same view still spread them.
pub fn choose<'a>(cands: &'a [Candidate], bundle: &str, overload_pct: f64) -> Option<&'a str> {
    cands
        .iter()
        .min_by_key(|c| {
            (
                c.usage_pct > overload_pct,
                c.bundles,
                crc32c::crc32c(format!("{bundle}@{}", c.id).as_bytes()),
            )
        })
        .map(|c| c.id.as_str())
}

/// One broker as the balancer sees it.
#[derive(Clone, Debug)]
pub struct BrokerView {
    pub id: String,
    pub usage_pct: f64,
    pub bundles: BTreeMap<BundleId, BundleLoad>,
}

impl BrokerView {
    fn throughput(&self) -> f64 {
        self.bundles.values().map(BundleLoad::throughput).sum()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SheddingConfig {
    /// CPU or memory usage (percent) above which a broker sheds its busiest
    /// bundle.
    pub overload_pct: f64,
    /// A broker whose throughput exceeds the mean by this fraction sheds a
    /// bundle to even it out.
    pub imbalance: f64,
    /// Below this total throughput (bytes/s) traffic is too low to balance
    /// by; bundle counts are evened out instead.
    pub min_throughput: f64,
}

/// At most one bundle to move this round (moving one at a time lets the next
/// round see the effect, so the balancer does not overshoot). Bundles in
/// `cooling` moved recently and stay put.
pub fn plan_shedding(
    brokers: &[BrokerView],
    cooling: &HashSet<BundleId>,
    cfg: &SheddingConfig,
) -> Option<BundleId> {
    if brokers.len() < 2 {
        return None;
    }
    let movable = |b: &BrokerView| -> Vec<(BundleId, BundleLoad)> {
        b.bundles
            .iter()
            .filter(|(id, _)| !cooling.contains(id))
            .map(|(id, l)| (id.clone(), *l))
            .collect()
    };
    // 1. Overload: the busiest bundle leaves, if someone can take it.
    let healthy = brokers.iter().any(|b| b.usage_pct <= cfg.overload_pct);
    if healthy {
        let mut hot: Vec<&BrokerView> = brokers
            .iter()
            .filter(|b| b.usage_pct > cfg.overload_pct && b.bundles.len() > 1)
            .collect();
        hot.sort_by(|a, b| b.usage_pct.total_cmp(&a.usage_pct));
        for b in hot {
            if let Some((id, _)) = movable(b)
                .into_iter()
                .max_by(|x, y| x.1.throughput().total_cmp(&y.1.throughput()))
            {
                return Some(id);
            }
        }
    }
    let by_throughput =
        |a: &&BrokerView, b: &&BrokerView| a.throughput().total_cmp(&b.throughput());
    let total: f64 = brokers.iter().map(BrokerView::throughput).sum();
    if total >= cfg.min_throughput {
        // 2. Traffic: move the bundle that best halves the gap between the
        // busiest and the idlest broker.
        let max = brokers.iter().max_by(by_throughput)?;
        let min = brokers.iter().min_by(by_throughput)?;
        let mean = total / brokers.len() as f64;
        if max.throughput() > mean * (1.0 + cfg.imbalance) && max.bundles.len() > 1 {
            let half_gap = (max.throughput() - min.throughput()) / 2.0;
            return movable(max)
                .into_iter()
                .filter(|(_, l)| l.throughput() <= half_gap)
                .max_by(|x, y| x.1.throughput().total_cmp(&y.1.throughput()))
                .map(|(id, _)| id);
        }
        return None;
    }
    // 3. Quiet cluster: even out bundle counts (a new broker gets its share).
    let max = brokers.iter().max_by_key(|b| b.bundles.len())?;
    let min = brokers.iter().min_by_key(|b| b.bundles.len())?;
    if max.bundles.len() >= min.bundles.len() + 2 {
        return movable(max)
            .into_iter()
            .min_by(|x, y| x.1.throughput().total_cmp(&y.1.throughput()))
            .map(|(id, _)| id);
    }
    None
}

#[derive(Clone, Copy, Debug)]
pub struct SplitConfig {
    pub max_topics: u64,
    pub max_msg_rate: f64,
    /// Bytes/s in + out.
    pub max_throughput: f64,
    pub max_bundles_per_namespace: usize,
}

/// Bundles past a split threshold, in namespaces that may still grow.
pub fn plan_splits(
    bundles: &BTreeMap<BundleId, BundleLoad>,
    bundles_in_namespace: impl Fn(&BundleId) -> usize,
    cfg: &SplitConfig,
) -> Vec<BundleId> {
    bundles
        .iter()
        .filter(|(id, l)| {
            (l.topics > cfg.max_topics
                || l.msg_rate() > cfg.max_msg_rate
                || l.throughput() > cfg.max_throughput)
                && bundles_in_namespace(id) < cfg.max_bundles_per_namespace
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Bundles;
    use magnetar_common::names::NamespaceName;

    fn bundles(n: usize) -> Vec<BundleId> {
        let ns = NamespaceName::new("t", "ns").unwrap();
        Bundles::equal(n)
            .unwrap()
            .ranges()
            .map(|range| BundleId {
                namespace: ns.clone(),
                range,
            })
            .collect()
    }

    fn view(id: &str, usage: f64, owned: &[(BundleId, f64)]) -> BrokerView {
        BrokerView {
            id: id.into(),
            usage_pct: usage,
            bundles: owned
                .iter()
                .map(|(b, t)| {
                    (
                        b.clone(),
                        BundleLoad {
                            msg_throughput_in: *t,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    const CFG: SheddingConfig = SheddingConfig {
        overload_pct: 85.0,
        imbalance: 0.3,
        min_throughput: 1e6,
    };

    #[test]
    fn choose_prefers_fewest_bundles_and_avoids_overload() {
        let c = |id: &str, bundles, usage| Candidate {
            id: id.into(),
            bundles,
            usage_pct: usage,
        };
        let cands = [c("a", 3, 10.0), c("b", 1, 95.0), c("c", 2, 10.0)];
        assert_eq!(choose(&cands, "x", 85.0), Some("c"));
        assert_eq!(choose(&[], "x", 85.0), None);
        // Equal brokers: different bundles spread over them.
        let even = [c("a", 0, 0.0), c("b", 0, 0.0), c("c", 0, 0.0)];
        let picked: HashSet<&str> = (0..32)
            .filter_map(|i| choose(&even, &format!("bundle-{i}"), 85.0))
            .collect();
        assert_eq!(picked.len(), 3);
    }

    #[test]
    fn a_new_broker_gets_bundles_in_a_quiet_cluster() {
        let b = bundles(8);
        let old: Vec<(BundleId, f64)> = b.iter().map(|x| (x.clone(), 0.0)).collect();
        let brokers = [view("old", 5.0, &old), view("new", 1.0, &[])];
        let moved = plan_shedding(&brokers, &HashSet::new(), &CFG).unwrap();
        assert!(b.contains(&moved));
        // Balanced counts: nothing moves.
        let brokers = [view("a", 5.0, &old[..4]), view("b", 1.0, &old[4..])];
        assert_eq!(plan_shedding(&brokers, &HashSet::new(), &CFG), None);
    }

    #[test]
    fn overload_sheds_the_busiest_bundle_unless_cooling() {
        let b = bundles(4);
        let brokers = [
            view("hot", 95.0, &[(b[0].clone(), 10.0), (b[1].clone(), 500.0)]),
            view("cool", 10.0, &[(b[2].clone(), 10.0)]),
        ];
        assert_eq!(
            plan_shedding(&brokers, &HashSet::new(), &CFG),
            Some(b[1].clone())
        );
        let cooling: HashSet<BundleId> = [b[1].clone()].into();
        assert_eq!(plan_shedding(&brokers, &cooling, &CFG), Some(b[0].clone()));
    }

    #[test]
    fn traffic_imbalance_moves_a_bundle_that_narrows_the_gap() {
        let b = bundles(4);
        let brokers = [
            view(
                "busy",
                20.0,
                &[
                    (b[0].clone(), 4e6),
                    (b[1].clone(), 1e6),
                    (b[2].clone(), 2e6),
                ],
            ),
            view("idle", 20.0, &[(b[3].clone(), 1e6)]),
        ];
        // Gap 6 MB/s: the 2 MB/s bundle (≤ 3) is the largest that narrows it.
        assert_eq!(
            plan_shedding(&brokers, &HashSet::new(), &CFG),
            Some(b[2].clone())
        );
    }

    #[test]
    fn splits_only_past_thresholds_and_below_the_bundle_cap() {
        let b = bundles(2);
        let mut loads = BTreeMap::new();
        loads.insert(
            b[0].clone(),
            BundleLoad {
                topics: 5,
                ..Default::default()
            },
        );
        loads.insert(
            b[1].clone(),
            BundleLoad {
                topics: 50,
                ..Default::default()
            },
        );
        let cfg = SplitConfig {
            max_topics: 10,
            max_msg_rate: 1e9,
            max_throughput: 1e12,
            max_bundles_per_namespace: 4,
        };
        assert_eq!(plan_splits(&loads, |_| 2, &cfg), vec![b[1].clone()]);
        assert!(plan_splits(&loads, |_| 4, &cfg).is_empty());
    }
}
