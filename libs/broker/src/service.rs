//! The broker's shared state: configuration, metadata access, the managed
//! ledger factory and the topics loaded here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_managed_ledger::{info, ManagedLedgerConfig, ManagedLedgerFactory, RetentionPolicy};
use magnetar_meta_client::MetaClient;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
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
}

#[derive(Clone)]
pub struct BrokerService {
    pub inner: Arc<ServiceInner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerService {
    pub fn new(cfg: BrokerConfig, meta: MetaClient, factory: ManagedLedgerFactory) -> Self {
        let host = cfg.advertised_host();
        let broker_url = format!("pulsar://{host}:{}", cfg.listen.port());
        let web_url = format!("http://{host}:{}", cfg.http.port());
        BrokerService {
            inner: Arc::new(ServiceInner {
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

    /// Whether the topic exists in storage (it has a managed ledger).
    pub async fn topic_exists(&self, name: &TopicName) -> Result<bool> {
        if self.loaded(name).is_some() {
            return Ok(true);
        }
        let key = info::ledger_key(&name.managed_ledger_name());
        Ok(self.resources().meta().get(key).await?.is_some())
    }

    /// The topic, loading it (and creating it if `create` and policy allow).
    pub async fn topic(&self, name: &TopicName, create: bool) -> Result<Arc<Topic>> {
        if let Some(t) = self.loaded(name) {
            return Ok(t);
        }
        let gate = lock(&self.inner.loading)
            .entry(name.clone())
            .or_default()
            .clone();
        let _guard = gate.lock().await;
        let result = self.load(name, create).await;
        lock(&self.inner.loading).remove(name);
        result
    }

    async fn load(&self, name: &TopicName, create: bool) -> Result<Arc<Topic>> {
        if let Some(t) = self.loaded(name) {
            return Ok(t);
        }
        let Some((policies, _)) = self.resources().policies(&name.namespace).await? else {
            return Err(BrokerError::TopicNotFound(format!(
                "namespace {} does not exist",
                name.namespace
            )));
        };
        if self.resources().partitioned(name).await?.is_some() {
            return Err(BrokerError::BadRequest(format!(
                "{name} is a partitioned topic: use its partitions"
            )));
        }
        let exists = self.topic_exists(name).await?;
        let may_create = create && self.cfg().allow_auto_topic_creation;
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
        lock(&self.inner.topics).insert(name.clone(), topic.clone());
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
            retention_time: (minutes >= 0).then(|| Duration::from_secs(minutes as u64 * 60)),
            retention_bytes: (mb >= 0).then(|| mb as u64 * 1024 * 1024),
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
            if let Err(e) = t.set_dedup(dedup).await {
                tracing::warn!(topic = %t.name, error = %e, "applying deduplication policy");
            }
        }
    }

    /// Unloads a topic (clients reconnect and it is loaded again).
    pub async fn unload(&self, name: &TopicName) -> Result<()> {
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
        let _ = self.resources().delete_schemas(name).await;
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

    /// Closes every topic (shutdown).
    pub async fn shutdown(&self) {
        let topics: Vec<Arc<Topic>> = lock(&self.inner.topics).drain().map(|(_, t)| t).collect();
        for t in topics {
            if let Err(e) = t.close().await {
                tracing::warn!(topic = %t.name, error = %e, "closing topic");
            }
        }
        self.inner.factory.shutdown().await;
    }
}
