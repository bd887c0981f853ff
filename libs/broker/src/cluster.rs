//! A broker's life in the cluster, as background tasks:
//!
//! - the session: a metadata lease that holds this broker's load report
//!   (its "I am alive" key) and its bundles; when the lease is lost every
//!   bundle is dropped and a new session starts;
//! - the load report, refreshed every `load_report_interval`;
//! - leader election (a lease-bound key) and, on the leader, the balancer
//!   that moves bundles off loaded brokers and splits hot bundles by writing
//!   commands the owning broker carries out;
//! - watches: commands for bundles owned here, and namespace policy changes
//!   (retention, deduplication, bundle boundaries) for topics loaded here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use magnetar_common::names::NamespaceName;
use magnetar_meta_client::{EventType, MetaClient, PutOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bundle::topic_hash;
use crate::error::Result;
use crate::load::{LoadReport, ProcessSampler, BROKERS_PREFIX};
use crate::lookup::live_brokers;
use crate::ownership::{BundleId, OwnerData};
use crate::placement::{
    plan_shedding, plan_splits, BrokerView, BundleLoad, SheddingConfig, SplitConfig,
};
use crate::resources::Policies;
use crate::service::BrokerService;

pub const LEADER_KEY: &str = "/loadbalance/leader";
pub const COMMANDS_PREFIX: &str = "/loadbalance/commands/";
const POLICIES_PREFIX: &str = "/admin/policies/";

/// What the leader asks a bundle's owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    Unload,
    Split { unload: bool },
}

/// The leader's record (Pulsar's `LeaderBroker`: `serviceUrl`, `brokerId`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderBroker {
    pub broker_id: String,
    pub service_url: String,
}

pub fn start(svc: BrokerService, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(session_loop(svc.clone(), stop.clone())),
        tokio::spawn(forever(svc.clone(), stop.clone(), "bundle commands", |s| {
            Box::pin(command_watch(s))
        })),
        tokio::spawn(forever(svc, stop, "namespace policies", |s| {
            Box::pin(policy_watch(s))
        })),
    ]
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// Runs `task` again whenever it fails, until `stop`.
async fn forever(
    svc: BrokerService,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    task: impl Fn(BrokerService) -> Task,
) {
    loop {
        tokio::select! {
            r = task(svc.clone()) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "{what} watch failed; restarting it");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = stop.changed() => return,
        }
    }
}

fn meta(svc: &BrokerService) -> &MetaClient {
    svc.resources().meta()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---- session ---------------------------------------------------------------

async fn session_loop(svc: BrokerService, mut stop: watch::Receiver<bool>) {
    let mut sampler = ProcessSampler::default();
    loop {
        let asked = Instant::now();
        let lease = tokio::select! {
            r = meta(&svc).lease_grant(svc.cfg().lease_ttl_seconds) => r,
            _ = stop.changed() => return,
        };
        let lease = match lease {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a metadata session; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut keeper = meta(&svc).keep_alive_since(lease, asked);
        svc.ownership().session_started(lease.id, keeper.validity());
        tracing::info!(
            lease = lease.id,
            ttl = lease.ttl_seconds,
            "metadata session started"
        );
        if let Err(e) = publish_report(&svc, lease.id, &mut sampler).await {
            tracing::warn!(error = %e, "publishing the load report");
        }
        let leader = tokio::spawn(leader_loop(svc.clone(), lease.id));
        let mut tick = tokio::time::interval(svc.cfg().load_report_interval);
        tick.tick().await;
        // A lost lease comes first, always: after a pause (SIGSTOP, a long GC,
        // a VM stall) the lease, the report tick and the report's own RPC are
        // all due at once, and the bundles must be dropped before anything
        // else is done or answered on the lease's behalf.
        let stopping = loop {
            tokio::select! {
                biased;
                reason = keeper.lost() => {
                    tracing::warn!(reason = %reason, "metadata session lost: dropping every bundle");
                    break false;
                }
                _ = stop.changed() => break true,
                _ = tick.tick() => {}
            }
            tokio::select! {
                biased;
                reason = keeper.lost() => {
                    tracing::warn!(reason = %reason, "metadata session lost: dropping every bundle");
                    break false;
                }
                r = publish_report(&svc, lease.id, &mut sampler) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "publishing the load report");
                    }
                }
            }
        };
        leader.abort();
        if !stopping {
            svc.session_lost().await;
        }
        drop(keeper);
        // Frees whatever is left (e.g. the leader key) without waiting a TTL.
        let revoke = meta(&svc).lease_revoke(lease.id);
        let _ = tokio::time::timeout(Duration::from_secs(2), revoke).await;
        if stopping {
            return;
        }
    }
}

fn report_key(svc: &BrokerService) -> String {
    format!("{BROKERS_PREFIX}{}", svc.ownership().me.broker_id)
}

/// Stops offering this broker for new bundles (shutdown).
pub async fn withdraw(svc: &BrokerService) {
    let _ = meta(svc).delete(report_key(svc), None).await;
}

async fn publish_report(
    svc: &BrokerService,
    lease: i64,
    sampler: &mut ProcessSampler,
) -> Result<()> {
    if svc.is_draining() {
        return Ok(());
    }
    let report = build_report(svc, sampler).await;
    let value = serde_json::to_vec(&report).unwrap_or_default();
    meta(svc)
        .put_with(
            report_key(svc),
            value,
            PutOptions {
                expected_version: None,
                lease,
            },
        )
        .await?;
    Ok(())
}

async fn build_report(svc: &BrokerService, sampler: &mut ProcessSampler) -> LoadReport {
    let (cpu_pct, memory_mb, memory_limit_mb) = sampler.sample();
    let me: &OwnerData = &svc.ownership().me;
    let owned = svc.ownership().owned();
    let mut bundles: BTreeMap<String, BundleLoad> = owned
        .iter()
        .map(|b| (b.to_string(), BundleLoad::default()))
        .collect();
    let mut r = LoadReport {
        broker_id: me.broker_id.clone(),
        native_url: me.native_url.clone(),
        http_url: me.http_url.clone(),
        listeners: me.listeners.clone(),
        listeners_tls: me.listeners_tls.clone(),
        native_url_tls: me.native_url_tls.clone(),
        http_url_tls: me.http_url_tls.clone(),
        cluster: svc.cfg().cluster.clone(),
        timestamp: now_ms(),
        cpu_pct,
        memory_mb,
        memory_limit_mb,
        num_bundles: owned.len() as u64,
        ..Default::default()
    };
    for t in svc.loaded_topics() {
        let s = t.stats().await;
        r.num_topics += 1;
        r.msg_rate_in += s.msg_rate_in;
        r.msg_rate_out += s.msg_rate_out;
        r.msg_throughput_in += s.msg_throughput_in;
        r.msg_throughput_out += s.msg_throughput_out;
        r.num_producers += s.publishers.len() as u64;
        r.num_consumers += s
            .subscriptions
            .values()
            .map(|sub| sub.consumers.len() as u64)
            .sum::<u64>();
        let hash = topic_hash(&t.name.to_string());
        if let Some(b) = owned
            .iter()
            .find(|b| b.namespace == t.name.namespace && b.range.contains(hash))
        {
            let l = bundles.entry(b.to_string()).or_default();
            l.topics += 1;
            l.msg_rate_in += s.msg_rate_in;
            l.msg_rate_out += s.msg_rate_out;
            l.msg_throughput_in += s.msg_throughput_in;
            l.msg_throughput_out += s.msg_throughput_out;
        }
    }
    r.bundles = bundles;
    r
}

// ---- leader and balancer ---------------------------------------------------

async fn leader_loop(svc: BrokerService, lease: i64) {
    let me = LeaderBroker {
        broker_id: svc.ownership().me.broker_id.clone(),
        service_url: svc.ownership().me.http_url.clone(),
    };
    let value = serde_json::to_vec(&me).unwrap_or_default();
    loop {
        let won = meta(&svc)
            .put_with(
                LEADER_KEY,
                &value,
                PutOptions {
                    expected_version: Some(0),
                    lease,
                },
            )
            .await
            .is_ok();
        if won {
            tracing::info!("elected leader broker");
            balance_forever(&svc).await;
            return;
        }
        // A key of an earlier life of this broker is stale: clear it.
        if let Ok(Some(kv)) = meta(&svc).get(LEADER_KEY).await {
            if let Ok(l) = serde_json::from_slice::<LeaderBroker>(&kv.value) {
                if l.broker_id == me.broker_id && kv.lease != lease {
                    let _ = meta(&svc).delete(LEADER_KEY, Some(kv.version)).await;
                    continue;
                }
            }
        }
        tokio::time::sleep(svc.cfg().load_report_interval).await;
    }
}

pub async fn leader(svc: &BrokerService) -> Result<Option<LeaderBroker>> {
    Ok(meta(svc)
        .get(LEADER_KEY)
        .await?
        .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

async fn balance_forever(svc: &BrokerService) {
    let every = svc.cfg().balancer_interval;
    if every.is_zero() {
        return std::future::pending().await;
    }
    let mut cooling: HashMap<BundleId, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        cooling.retain(|_, at| at.elapsed() < every * 3);
        if let Err(e) = balance_once(svc, &mut cooling).await {
            tracing::warn!(error = %e, "load balancing round failed");
        }
    }
}

async fn balance_once(svc: &BrokerService, cooling: &mut HashMap<BundleId, Instant>) -> Result<()> {
    let cfg = svc.cfg();
    let reports = live_brokers(svc).await?;
    let owners = svc.ownership().all_owners().await?;
    let mut views: Vec<BrokerView> = reports
        .iter()
        .map(|r| BrokerView {
            id: r.broker_id.clone(),
            usage_pct: r.usage_pct(),
            bundles: BTreeMap::new(),
        })
        .collect();
    let mut all: BTreeMap<BundleId, BundleLoad> = BTreeMap::new();
    for (bundle, owner) in &owners {
        let load = reports
            .iter()
            .find(|r| r.broker_id == owner.broker_id)
            .and_then(|r| r.bundles.get(&bundle.to_string()).copied())
            .unwrap_or_default();
        if let Some(v) = views.iter_mut().find(|v| v.id == owner.broker_id) {
            v.bundles.insert(bundle.clone(), load);
        }
        all.insert(bundle.clone(), load);
    }
    if cfg.split_max_topics > 0 {
        let mut per_ns: HashMap<NamespaceName, usize> = HashMap::new();
        for b in all.keys() {
            *per_ns.entry(b.namespace.clone()).or_default() += 1;
        }
        let split_cfg = SplitConfig {
            max_topics: cfg.split_max_topics,
            max_msg_rate: cfg.split_max_msg_rate,
            max_throughput: cfg.split_max_throughput,
            max_bundles_per_namespace: cfg.max_bundles_per_namespace,
        };
        // Counting owned bundles underestimates a namespace's bundles, which
        // only makes the cap looser by the unowned ones; the owner's split
        // re-reads the real boundaries.
        for b in plan_splits(
            &all,
            |b| per_ns.get(&b.namespace).copied().unwrap_or(0),
            &split_cfg,
        ) {
            tracing::info!(bundle = %b, "asking the owner to split a hot bundle");
            request(svc, &b, Command::Split { unload: true }).await?;
            cooling.insert(b, Instant::now());
        }
    }
    let cooling_set: HashSet<BundleId> = cooling.keys().cloned().collect();
    let shed_cfg = SheddingConfig {
        overload_pct: cfg.overload_pct,
        imbalance: cfg.imbalance,
        min_throughput: cfg.balance_min_throughput,
    };
    if let Some(b) = plan_shedding(&views, &cooling_set, &shed_cfg) {
        tracing::info!(bundle = %b, "moving a bundle to even out load");
        request(svc, &b, Command::Unload).await?;
        cooling.insert(b, Instant::now());
    }
    Ok(())
}

fn command_key(b: &BundleId) -> String {
    format!("{COMMANDS_PREFIX}{}/{}", b.namespace, b.range)
}

/// Asks a bundle's owner (whoever it is) to act on it.
pub async fn request(svc: &BrokerService, b: &BundleId, cmd: Command) -> Result<()> {
    let lease = svc.ownership().lease().unwrap_or(0);
    let value = serde_json::to_vec(&cmd).unwrap_or_default();
    let key = command_key(b);
    let put = meta(svc)
        .put_with(
            &key,
            value,
            PutOptions {
                expected_version: None,
                lease,
            },
        )
        .await?;
    // A command nobody carried out (its bundle's owner died) must not act
    // on whoever owns the bundle much later.
    let m = meta(svc).clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let _ = m.delete(key, Some(put.version)).await;
    });
    Ok(())
}

/// Carries out commands for bundles owned here.
async fn command_watch(svc: BrokerService) -> Result<()> {
    let m = meta(&svc).clone();
    let page = m.list_all(COMMANDS_PREFIX).await?;
    for kv in &page.kvs {
        handle_command(&svc, &kv.key, &kv.value).await;
    }
    let mut w = m.watch(COMMANDS_PREFIX, page.revision + 1).await?;
    loop {
        let resp = w.next().await?;
        for ev in resp.events {
            if ev.r#type() != EventType::Put {
                continue;
            }
            if let Some(kv) = ev.kv {
                handle_command(&svc, &kv.key, &kv.value).await;
            }
        }
    }
}

async fn handle_command(svc: &BrokerService, key: &[u8], value: &[u8]) {
    let Some(bundle) = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(COMMANDS_PREFIX))
        .and_then(|rest| {
            BundleId::from_key(&format!("{}{rest}", crate::ownership::OWNERSHIP_PREFIX))
        })
    else {
        return;
    };
    if !svc.ownership().owned().contains(&bundle) {
        return;
    }
    let Ok(cmd) = serde_json::from_slice::<Command>(value) else {
        tracing::warn!(bundle = %bundle, "ignoring a malformed bundle command");
        let _ = meta(svc).delete(key, None).await;
        return;
    };
    let svc2 = svc.clone();
    let key = key.to_vec();
    // Off the watch's task: an unload waits for topics to close.
    tokio::spawn(async move {
        let r = match cmd {
            Command::Unload => svc2.release_bundle(&bundle).await.map(|_| ()),
            Command::Split { unload } => svc2.split_bundle(&bundle, unload).await,
        };
        if let Err(e) = r {
            tracing::warn!(bundle = %bundle, error = %e, ?cmd, "bundle command failed");
        }
        let _ = meta(&svc2).delete(key, None).await;
    });
}

/// Applies namespace policy changes to the topics loaded here.
async fn policy_watch(svc: BrokerService) -> Result<()> {
    let m = meta(&svc).clone();
    let mut w = m.watch(POLICIES_PREFIX, 0).await?;
    loop {
        let resp = w.next().await?;
        for ev in resp.events {
            if ev.r#type() != EventType::Put {
                continue;
            }
            let Some(kv) = ev.kv else { continue };
            let Some(ns) = std::str::from_utf8(&kv.key)
                .ok()
                .and_then(|k| k.strip_prefix(POLICIES_PREFIX))
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(t, n)| NamespaceName::new(t, n).ok())
            else {
                continue;
            };
            let Ok(p) = serde_json::from_slice::<Policies>(&kv.value) else {
                continue;
            };
            svc.policies_changed(&ns, &p).await;
            svc.boundaries_changed(&ns, &p).await;
        }
    }
}
