//! The broker's shared state: configuration, metadata access, the managed
//! ledger factory and the topics loaded here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_managed_ledger::{
    ledger_key, ManagedLedgerConfig, ManagedLedgerFactory, MlError, RetentionPolicy,
};
use magnetar_meta_client::MetaClient;

use crate::backlog_quota::TopicQuotas;
use crate::bundle::{topic_hash, Bundles};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::ownership::{Acquired, BundleId, OwnerData, Ownership};
use crate::resources::{ClusterData, Policies, Resources, TenantInfo};
use crate::topic::{Topic, TopicParams};

pub struct ServiceInner {
    pub cfg: BrokerConfig,
    pub resources: Resources,
    pub factory: ManagedLedgerFactory,
    topics: Mutex<HashMap<TopicName, Arc<Topic>>>,
    /// One loader per topic name at a time.
    loading: Mutex<HashMap<TopicName, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
    /// This broker's URLs (pulsar://, http://).
    pub broker_url: String,
    pub web_url: String,
    pub ownership: Ownership,
    /// Shutting down: takes no new bundles.
    draining: AtomicBool,
    /// The client WebSocket sessions and REST produce use.
    pub client: crate::self_client::SelfClient,
}

/// Whether loading a topic that does not exist creates it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    Never,
    /// If the auto-creation policy allows (a client's producer/consumer).
    Auto,
    /// An administrator asked for it.
    Explicit,
}

#[derive(Clone)]
pub struct BrokerService {
    pub inner: Arc<ServiceInner>,
}

/// Topics closed at once at shutdown: enough to overlap storage round trips,
/// few enough not to flood the metadata service.
const CLOSE_CONCURRENCY: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerService {
    pub fn new(cfg: BrokerConfig, meta: MetaClient, factory: ManagedLedgerFactory) -> Self {
        // A listener that is off has no URL; the TLS one stands in.
        let urls = crate::tls::Urls::of(&cfg);
        let broker_url = urls.native.clone().or(urls.native_tls.clone());
        let broker_url = broker_url.unwrap_or_default();
        let web_url = urls
            .http
            .clone()
            .or(urls.http_tls.clone())
            .unwrap_or_default();
        let me = OwnerData {
            broker_id: cfg.broker_id(),
            native_url: urls.native.unwrap_or_default(),
            http_url: web_url.clone(),
            listeners: crate::tls::listener_urls(&cfg.advertised_listeners, false),
            listeners_tls: crate::tls::listener_urls(&cfg.advertised_listeners, true),
            native_url_tls: urls.native_tls,
            http_url_tls: urls.http_tls,
        };
        BrokerService {
            inner: Arc::new(ServiceInner {
                ownership: Ownership::new(meta.clone(), me),
                draining: AtomicBool::new(false),
                client: crate::self_client::SelfClient::new(),
                cfg,
                resources: Resources::new(meta),
                factory,
                topics: Mutex::new(HashMap::new()),
                loading: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                broker_url,
                web_url,
            }),
        }
    }

    pub fn cfg(&self) -> &BrokerConfig {
        &self.inner.cfg
    }

    pub fn resources(&self) -> &Resources {
        &self.inner.resources
    }

    /// A number unique within this broker's lifetime.
    pub fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates the cluster record, tenant `public` and namespace
    /// `public/default` if they do not exist (standalone's first start).
    pub async fn bootstrap_defaults(&self) -> Result<()> {
        let r = self.resources();
        let cluster = self.cfg().cluster.clone();
        if r.cluster(&cluster).await?.is_none() {
            r.set_cluster(
                &cluster,
                &ClusterData {
                    service_url: self.inner.web_url.clone(),
                    broker_service_url: self.inner.broker_url.clone(),
                },
            )
            .await?;
        }
        if r.tenant("public").await?.is_none() {
            let info = TenantInfo {
                admin_roles: vec![],
                allowed_clusters: vec![cluster.clone()],
            };
            match r.put_tenant("public", &info, 0).await {
                Ok(()) | Err(BrokerError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let ns = NamespaceName::new("public", "default")?;
        if r.policies(&ns).await?.is_none() {
            let p = Policies {
                replication_clusters: vec![cluster],
                bundles: Some(Bundles::equal(self.cfg().default_bundles)?.to_data()),
                ..Default::default()
            };
            match r.put_policies(&ns, &p, 0).await {
                Ok(()) | Err(BrokerError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn loaded(&self, name: &TopicName) -> Option<Arc<Topic>> {
        lock(&self.inner.topics)
            .get(name)
            .filter(|t| !t.is_closed())
            .cloned()
    }

    pub fn loaded_topics(&self) -> Vec<Arc<Topic>> {
        lock(&self.inner.topics).values().cloned().collect()
    }

    /// A topic's partition count (0: not partitioned). A topic that does not
    /// exist yet is created partitioned when its namespace's auto-creation
    /// policy says so (as a client's first lookup does in Pulsar).
    pub async fn partitions_of(&self, name: &TopicName) -> Result<u32> {
        let r = self.resources();
        if let Some(m) = r.partitioned(name).await? {
            return Ok(m.partitions);
        }
        let Some((p, _)) = r.policies(&name.namespace).await? else {
            return Ok(0);
        };
        let Some(o) = p
            .auto_topic_creation
            .filter(|o| o.allow_auto_topic_creation && o.topic_type == "partitioned")
        else {
            return Ok(0);
        };
        if name.partition_index().is_some() || self.topic_exists(name).await? {
            return Ok(0);
        }
        let n = o.default_num_partitions.unwrap_or(1).max(1);
        let md = crate::resources::PartitionedTopicMetadata { partitions: n };
        match r.put_partitioned(name, md, 0).await {
            Ok(()) => Ok(n),
            // Created by someone else meanwhile.
            Err(BrokerError::Conflict(_)) => {
                Ok(r.partitioned(name).await?.map_or(0, |m| m.partitions))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the topic exists in storage (it has a managed ledger).
    pub async fn topic_exists(&self, name: &TopicName) -> Result<bool> {
        if self.loaded(name).is_some() {
            return Ok(true);
        }
        let key = ledger_key(&name.managed_ledger_name());
        Ok(self.resources().meta().get(key).await?.is_some())
    }

    /// The topic, loading it (and creating it if `create` and the
    /// auto-creation policy allow).
    pub async fn topic(&self, name: &TopicName, create: bool) -> Result<Arc<Topic>> {
        let how = if create { Create::Auto } else { Create::Never };
        self.topic_with(name, how).await
    }

    /// Creates (or loads) a topic at an administrator's request, whatever
    /// the auto-creation policy.
    pub async fn create_topic(&self, name: &TopicName) -> Result<Arc<Topic>> {
        self.topic_with(name, Create::Explicit).await
    }

    async fn topic_with(&self, name: &TopicName, create: Create) -> Result<Arc<Topic>> {
        if let Some(t) = self.loaded(name) {
            return Ok(t);
        }
        let gate = self.loading_gate(name);
        let _guard = gate.lock().await;
        let limit = self.cfg().topic_load_timeout;
        let result = match tokio::time::timeout(limit, self.load(name, create)).await {
            Ok(r) => r.map_err(|e| load_failed(name, e)),
            Err(_) => {
                tracing::warn!(topic = %name, timeout = ?limit, "topic load timed out; the client will retry");
                Err(BrokerError::ServiceNotReady(format!(
                    "topic {name} did not load within {limit:?}; retry"
                )))
            }
        };
        lock(&self.inner.loading).remove(name);
        result
    }

    async fn load(&self, name: &TopicName, create: Create) -> Result<Arc<Topic>> {
        if let Some(t) = self.loaded(name) {
            return Ok(t);
        }
        let Some((policies, _)) = self.resources().policies(&name.namespace).await? else {
            return Err(BrokerError::TopicNotFound(format!(
                "namespace {} does not exist",
                name.namespace
            )));
        };
        let bundle = self.bundle_in(name, &policies)?;
        self.check_serves(&bundle)?;
        if self.resources().partitioned(name).await?.is_some() {
            return Err(BrokerError::BadRequest(format!(
                "{name} is a partitioned topic: use its partitions"
            )));
        }
        let exists = self.topic_exists(name).await?;
        let may_create = match create {
            Create::Never => false,
            Create::Explicit => true,
            Create::Auto => policies
                .auto_topic_creation
                .as_ref()
                .map_or(self.cfg().allow_auto_topic_creation, |o| {
                    o.allow_auto_topic_creation
                }),
        };
        if !exists && !may_create {
            return Err(BrokerError::TopicNotFound(format!(
                "topic {name} not found"
            )));
        }
        let ml_cfg = self.ml_config(&policies);
        let ml = self
            .inner
            .factory
            .open(&name.managed_ledger_name(), ml_cfg)
            .await?;
        self.apply_offload_policy(&ml, &policies);
        let topic = Topic::load(TopicParams {
            name: name.clone(),
            ml,
            meta: self.resources().meta().clone(),
            dedup: policies.deduplication_enabled.unwrap_or(false),
            dedup_interval: self.cfg().dedup_snapshot_interval,
            dispatch_batch: self.cfg().dispatch_batch,
            max_held: self.cfg().max_held_entries,
        })
        .await?;
        topic.set_limits(
            policies.max_producers_per_topic,
            policies.max_consumers_per_topic,
        );
        topic.set_backlog_quotas(TopicQuotas::from_map(&policies.backlog_quota_map));
        lock(&self.inner.topics).insert(name.clone(), topic.clone());
        // The bundle may have been released while the topic opened; the
        // release closed what was loaded then, this closes the latecomer.
        if let Err(e) = self.check_serves(&bundle) {
            self.unload_now(name).await?;
            return Err(e);
        }
        tracing::info!(topic = %name, "topic loaded");
        Ok(topic)
    }

    fn ml_config(&self, p: &Policies) -> ManagedLedgerConfig {
        let cfg = self.cfg();
        let retention = self.retention(p);
        ManagedLedgerConfig {
            ensemble_size: cfg.ensemble_size,
            write_quorum: cfg.write_quorum,
            ack_quorum: cfg.ack_quorum,
            max_entries_per_ledger: cfg.max_entries_per_ledger,
            retention_time: retention.retention_time,
            retention_bytes: retention.retention_bytes,
            message_ttl: retention.message_ttl,
            max_entry_bytes: cfg.max_message_size + (64 << 10),
            ..Default::default()
        }
    }

    fn retention(&self, p: &Policies) -> RetentionPolicy {
        let (minutes, mb) = match p.retention_policies {
            Some(r) => (r.retention_time_in_minutes, r.retention_size_in_mb),
            None => (
                self.cfg().default_retention_minutes,
                self.cfg().default_retention_mb,
            ),
        };
        RetentionPolicy {
            // Saturating: a policy may say "practically forever" with i64::MAX.
            retention_time: (minutes >= 0)
                .then(|| Duration::from_secs((minutes as u64).saturating_mul(60))),
            retention_bytes: (mb >= 0).then(|| (mb as u64).saturating_mul(1 << 20)),
            message_ttl: p
                .message_ttl_in_seconds
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(s as u64)),
        }
    }

    /// Applies changed namespace policies to the loaded topics.
    pub async fn policies_changed(&self, ns: &NamespaceName, p: &Policies) {
        let policy = self.retention(p);
        let dedup = p.deduplication_enabled.unwrap_or(false);
        let topics: Vec<Arc<Topic>> = self
            .loaded_topics()
            .into_iter()
            .filter(|t| &t.name.namespace == ns)
            .collect();
        for t in topics {
            t.ml.set_retention_policy(policy);
            self.apply_offload_policy(&t.ml, p);
            t.set_limits(p.max_producers_per_topic, p.max_consumers_per_topic);
            t.set_backlog_quotas(TopicQuotas::from_map(&p.backlog_quota_map));
            if let Err(e) = t.set_dedup(dedup).await {
                tracing::warn!(topic = %t.name, error = %e, "applying deduplication policy");
            }
        }
    }

    /// Unloads a topic (clients reconnect and it is loaded again).
    ///
    /// Holds the topic's loading gate while it closes, so a client coming
    /// back at once waits and then opens the log after this close (instead
    /// of opening it beside the closing one, which would fence it).
    pub async fn unload(&self, name: &TopicName) -> Result<()> {
        let gate = self.loading_gate(name);
        let guard = gate.lock().await;
        let r = self.unload_now(name).await;
        {
            let mut loading = lock(&self.inner.loading);
            // Nobody else holds or waits for the gate: forget it.
            if loading.get(name).is_some_and(|g| Arc::strong_count(g) <= 2) {
                loading.remove(name);
            }
        }
        drop(guard);
        r
    }

    /// The lock that serializes loading and unloading one topic.
    fn loading_gate(&self, name: &TopicName) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.loading)
            .entry(name.clone())
            .or_default()
            .clone()
    }

    /// Unloads without taking the loading gate (its holder calls this).
    async fn unload_now(&self, name: &TopicName) -> Result<()> {
        let t = lock(&self.inner.topics).remove(name);
        if let Some(t) = t {
            t.close().await?;
            self.inner
                .factory
                .close(&name.managed_ledger_name())
                .await?;
        }
        Ok(())
    }

    /// Deletes a topic's data (fails if it has clients unless `force`).
    pub async fn delete_topic(&self, name: &TopicName, force: bool) -> Result<()> {
        if !self.topic_exists(name).await? {
            return Err(BrokerError::NotFound(format!("topic {name} not found")));
        }
        if let Some(t) = self.loaded(name) {
            if !force && t.has_clients() {
                return Err(BrokerError::Precondition(format!(
                    "topic {name} has connected producers"
                )));
            }
        }
        self.unload(name).await?;
        self.inner
            .factory
            .delete(&name.managed_ledger_name())
            .await?;
        let _ = self
            .resources()
            .meta()
            .delete(
                crate::dedup::snapshot_key(&name.managed_ledger_name()),
                None,
            )
            .await;
        // A partition's schema is the partitioned topic's, deleted with it.
        if name.partition_index().is_none() {
            let _ = self.resources().delete_schemas(name).await;
        }
        Ok(())
    }

    /// Non-partitioned topics and partitions stored in a namespace.
    pub async fn list_topics(&self, ns: &NamespaceName) -> Result<Vec<String>> {
        let names = self
            .inner
            .factory
            .list(&format!("{ns}/persistent/"))
            .await?;
        let mut out: Vec<String> = names
            .iter()
            .filter_map(|n| TopicName::from_managed_ledger_name(n))
            .map(|t| t.to_string())
            .collect();
        out.sort();
        Ok(out)
    }

    // ---- bundles ----------------------------------------------------------

    pub fn ownership(&self) -> &Ownership {
        &self.inner.ownership
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// A namespace's bundles as its policies define them.
    pub fn bundles_of(&self, p: &Policies) -> Result<Bundles> {
        match &p.bundles {
            Some(d) => Bundles::from_data(d),
            None => Bundles::equal(self.cfg().default_bundles),
        }
    }

    fn bundle_in(&self, name: &TopicName, p: &Policies) -> Result<BundleId> {
        Ok(BundleId {
            namespace: name.namespace.clone(),
            range: self.bundles_of(p)?.for_topic(&name.to_string()),
        })
    }

    /// The bundle a topic belongs to now.
    pub async fn bundle_of(&self, name: &TopicName) -> Result<BundleId> {
        let Some((p, _)) = self.resources().policies(&name.namespace).await? else {
            return Err(BrokerError::TopicNotFound(format!(
                "namespace {} does not exist",
                name.namespace
            )));
        };
        self.bundle_in(name, &p)
    }

    fn check_serves(&self, bundle: &BundleId) -> Result<()> {
        if self.inner.ownership.serves(bundle) {
            Ok(())
        } else {
            Err(BrokerError::ServiceNotReady(format!(
                "namespace bundle {bundle} is not served by this broker; look the topic up again"
            )))
        }
    }

    fn topics_in(&self, bundle: &BundleId) -> Vec<TopicName> {
        lock(&self.inner.topics)
            .keys()
            .filter(|t| {
                t.namespace == bundle.namespace && bundle.range.contains(topic_hash(&t.to_string()))
            })
            .cloned()
            .collect()
    }

    async fn close_topics_of(&self, bundle: &BundleId) {
        let topics = self.topics_in(bundle);
        let closing = topics.iter().map(|t| async move {
            if let Err(e) = self.unload(t).await {
                tracing::warn!(topic = %t, error = %e, "closing topic");
            }
        });
        futures::future::join_all(closing).await;
    }

    /// Takes a bundle if no broker holds it (`Ok(None)`), or names the
    /// broker that does.
    pub async fn acquire(&self, bundle: &BundleId) -> Result<Option<OwnerData>> {
        if self.is_draining() {
            return Err(BrokerError::ServiceNotReady(
                "this broker is shutting down".into(),
            ));
        }
        match self.inner.ownership.acquire(bundle).await? {
            Acquired::Mine => Ok(None),
            Acquired::Other(o) => Ok(Some(o)),
        }
    }

    /// Unloads a bundle this broker owns: its topics are closed (clients are
    /// told to reconnect and look them up again) and its key is deleted so
    /// another broker may take it. False if the bundle is not owned here.
    pub async fn release_bundle(&self, bundle: &BundleId) -> Result<bool> {
        if !self.inner.ownership.start_release(bundle) {
            return Ok(false);
        }
        self.close_topics_of(bundle).await;
        self.inner.ownership.forget(bundle).await?;
        Ok(true)
    }

    /// The session lease is gone, and with it every bundle: stop serving.
    pub async fn session_lost(&self) {
        let bundles = self.inner.ownership.session_ended();
        for b in &bundles {
            self.close_topics_of(b).await;
        }
        // Anything still loaded belonged to a bundle of the lost session.
        let rest: Vec<TopicName> = lock(&self.inner.topics).keys().cloned().collect();
        for t in rest {
            let _ = self.unload(&t).await;
        }
    }

    /// Splits an owned bundle in two. With `unload`, both halves are
    /// released for placement; otherwise this broker keeps both and its
    /// topics stay loaded.
    pub async fn split_bundle(&self, bundle: &BundleId, unload: bool) -> Result<()> {
        let own = &self.inner.ownership;
        if !own.start_release(bundle) {
            return Err(BrokerError::ServiceNotReady(format!(
                "bundle {bundle} is not served by this broker"
            )));
        }
        let r = self.split_owned(bundle, unload).await;
        if r.is_err() {
            own.resume(bundle);
        }
        r
    }

    async fn split_owned(&self, bundle: &BundleId, unload: bool) -> Result<()> {
        let r = self.resources();
        let Some((mut p, version)) = r.policies(&bundle.namespace).await? else {
            return Err(BrokerError::NotFound(format!(
                "namespace {} does not exist",
                bundle.namespace
            )));
        };
        let next = self.bundles_of(&p)?.split(&bundle.range)?;
        let halves: Vec<BundleId> = next
            .ranges()
            .filter(|h| h.start >= bundle.range.start && h.end <= bundle.range.end)
            .map(|range| BundleId {
                namespace: bundle.namespace.clone(),
                range,
            })
            .collect();
        if !unload {
            for h in &halves {
                if let Acquired::Other(o) = self.inner.ownership.acquire(h).await? {
                    return Err(BrokerError::Conflict(format!(
                        "half {h} is held by {}",
                        o.broker_id
                    )));
                }
            }
        }
        p.bundles = Some(next.to_data());
        if let Err(e) = r.put_policies(&bundle.namespace, &p, version).await {
            for h in &halves {
                let _ = self.inner.ownership.forget(h).await;
            }
            return Err(e);
        }
        tracing::info!(bundle = %bundle, unload, "bundle split");
        if unload {
            self.close_topics_of(bundle).await;
        }
        self.inner.ownership.forget(bundle).await
    }

    /// Boundaries of a namespace changed (a split, here or elsewhere):
    /// owned bundles that no longer exist are released.
    pub async fn boundaries_changed(&self, ns: &NamespaceName, p: &Policies) {
        let Ok(bundles) = self.bundles_of(p) else {
            return;
        };
        for b in self.inner.ownership.owned() {
            if &b.namespace == ns && !bundles.contains(&b.range) {
                if let Err(e) = self.release_bundle(&b).await {
                    tracing::warn!(bundle = %b, error = %e, "releasing a bundle that no longer exists");
                }
            }
        }
    }

    /// Hands every bundle over before shutdown: no new bundles are taken,
    /// clients of each topic are told to reconnect, and the keys go.
    pub async fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        let owned = self.inner.ownership.owned();
        let releasing = owned.iter().map(|b| async move {
            if let Err(e) = self.release_bundle(b).await {
                tracing::warn!(bundle = %b, error = %e, "releasing bundle at shutdown");
            }
        });
        futures::future::join_all(releasing).await;
    }

    /// Closes every topic (shutdown).
    pub async fn shutdown(&self) {
        use futures::StreamExt;
        let topics: Vec<Arc<Topic>> = lock(&self.inner.topics).drain().map(|(_, t)| t).collect();
        // Each close waits on storage round trips (cursor flush, ledger
        // close); one after another, shutdown time grew with the topic count.
        futures::stream::iter(topics)
            .for_each_concurrent(CLOSE_CONCURRENCY, |t| async move {
                if let Err(e) = t.close().await {
                    tracing::warn!(topic = %t.name, error = %e, "closing topic");
                }
            })
            .await;
        self.inner.factory.shutdown().await;
    }
}

/// A load that failed on storage or metadata is worth a retry (another
/// attempt recovers from whatever the previous owner left); the client gets
/// `ServiceNotReady`, which it retries, and the log names the topic and the
/// cause. Answers about the request itself (not found, bad name) stay as they
/// are.
fn load_failed(name: &TopicName, e: BrokerError) -> BrokerError {
    match e {
        BrokerError::Storage(MlError::Terminated(_)) => e,
        BrokerError::Storage(_) | BrokerError::Meta(_) => {
            tracing::warn!(topic = %name, error = %e, "topic load failed; the client will retry");
            BrokerError::ServiceNotReady(format!("topic {name} could not be loaded: {e}"))
        }
        other => other,
    }
}
