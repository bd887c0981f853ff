//! A topic this broker owns: its managed ledger, producers, subscriptions and
//! deduplication state.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use magnetar_common::names::TopicName;
use magnetar_managed_ledger::{InitialPosition, ManagedLedger, MlError, Position};
use magnetar_meta_client::MetaClient;
use magnetar_wire::{pb, Payload};
use serde::Serialize;

use crate::backlog_quota::{self, QuotaPolicy, TopicQuotas};
use crate::dedup::{self, Check, Dedup};
use crate::error::{BrokerError, Result};
use crate::outbound::Outbound;
use crate::subscription::{
    SubCursor, SubType, Subscription, SubscriptionParams, SubscriptionStats,
};
use crate::topic_metrics::LatencyHistogram;

/// Pulsar's producer access modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    Shared,
    Exclusive,
    WaitForExclusive,
    ExclusiveWithFencing,
}

impl AccessMode {
    pub fn from_wire(v: Option<i32>) -> AccessMode {
        match v.and_then(|v| pb::ProducerAccessMode::try_from(v).ok()) {
            Some(pb::ProducerAccessMode::Exclusive) => AccessMode::Exclusive,
            Some(pb::ProducerAccessMode::WaitForExclusive) => AccessMode::WaitForExclusive,
            Some(pb::ProducerAccessMode::ExclusiveWithFencing) => AccessMode::ExclusiveWithFencing,
            _ => AccessMode::Shared,
        }
    }
}

/// Tells a producer's client to reconnect, after the receipts of everything
/// it sent before (so a client resends only what was really not stored).
pub type CloseNotice = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
pub struct ProducerEntry {
    pub name: String,
    pub producer_id: u64,
    pub out: Outbound,
    pub mode: AccessMode,
    pub address: String,
    pub since: u64,
    pub msg_in: Arc<AtomicU64>,
    pub bytes_in: Arc<AtomicU64>,
    pub close_notice: CloseNotice,
}

pub enum Published {
    Stored(Position),
    Duplicate,
}

#[derive(Default)]
struct Rates {
    at: Option<Instant>,
    msg_in: u64,
    bytes_in: u64,
    msg_out: u64,
    bytes_out: u64,
    rate_in: f64,
    throughput_in: f64,
    rate_out: f64,
    throughput_out: f64,
}

pub struct Topic {
    pub name: TopicName,
    pub ml: ManagedLedger,
    meta: MetaClient,
    producers: Mutex<BTreeMap<(u64, u64), ProducerEntry>>,
    subscriptions: Mutex<HashMap<String, Subscription>>,
    dedup_enabled: AtomicBool,
    dedup: Mutex<Option<Dedup>>,
    dedup_interval: u64,
    dispatch_batch: usize,
    max_held: usize,
    msg_in: AtomicU64,
    bytes_in: AtomicU64,
    rates: Mutex<Rates>,
    closed: AtomicBool,
    /// Namespace limits (0 = none).
    max_producers: std::sync::atomic::AtomicU32,
    max_consumers: std::sync::atomic::AtomicU32,
    /// Woken when a producer leaves (WaitForExclusive producers retry).
    producer_left: tokio::sync::Notify,
    /// The namespace's backlog quotas.
    quotas: Mutex<TopicQuotas>,
    write_latency: LatencyHistogram,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct TopicParams {
    pub name: TopicName,
    pub ml: ManagedLedger,
    pub meta: MetaClient,
    pub dedup: bool,
    pub dedup_interval: u64,
    pub dispatch_batch: usize,
    pub max_held: usize,
}

impl Topic {
    pub async fn load(p: TopicParams) -> Result<Arc<Topic>> {
        let dedup = if p.dedup {
            Some(Dedup::recover(&p.meta, &p.ml).await?)
        } else {
            None
        };
        let topic = Arc::new(Topic {
            name: p.name,
            ml: p.ml.clone(),
            meta: p.meta,
            producers: Mutex::new(BTreeMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            dedup_enabled: AtomicBool::new(p.dedup),
            dedup: Mutex::new(dedup),
            dedup_interval: p.dedup_interval.max(1),
            dispatch_batch: p.dispatch_batch,
            max_held: p.max_held,
            msg_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            rates: Mutex::new(Rates::default()),
            closed: AtomicBool::new(false),
            max_producers: Default::default(),
            max_consumers: Default::default(),
            producer_left: tokio::sync::Notify::new(),
            quotas: Mutex::new(TopicQuotas::default()),
            write_latency: LatencyHistogram::default(),
        });
        // Durable subscriptions that exist in storage exist on the topic.
        for c in p.ml.cursors() {
            let sub = Subscription::start(SubscriptionParams {
                name: c.name().to_string(),
                ml: p.ml.clone(),
                cursor: SubCursor::Durable(c.clone()),
                sub_type: SubType::Exclusive,
                dispatch_batch: topic.dispatch_batch,
                max_held: topic.max_held,
            });
            lock(&topic.subscriptions).insert(c.name().to_string(), sub);
        }
        Ok(topic)
    }

    /// The namespace's producer and consumer limits (`None` = no limit).
    pub fn set_limits(&self, producers: Option<u32>, consumers: Option<u32>) {
        self.max_producers
            .store(producers.unwrap_or(0), Ordering::Relaxed);
        self.max_consumers
            .store(consumers.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn write_latency(&self) -> &LatencyHistogram {
        &self.write_latency
    }

    pub fn set_backlog_quotas(&self, q: TopicQuotas) {
        *lock(&self.quotas) = q;
    }

    /// Refuses a new producer while a blocking backlog quota is exceeded.
    pub async fn check_backlog_quota(&self) -> Result<()> {
        let q = *lock(&self.quotas);
        if q.is_empty() {
            return Ok(());
        }
        let name = self.name.to_string();
        match backlog_quota::exceeded(&self.ml, &q)
            .await
            .iter()
            .find_map(|x| x.producer_error(&name))
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The periodic quota check: evicts, or disconnects the producers (they
    /// reconnect and are refused until the backlog is within the quota).
    pub async fn enforce_backlog_quota(&self) {
        let q = *lock(&self.quotas);
        if q.is_empty() {
            return;
        }
        let exceeded = backlog_quota::exceeded(&self.ml, &q).await;
        if exceeded
            .iter()
            .any(|x| x.policy == QuotaPolicy::ConsumerBacklogEviction)
        {
            let subs: Vec<(String, Subscription)> = lock(&self.subscriptions)
                .iter()
                .filter(|(_, s)| s.durable)
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            backlog_quota::evict(&self.ml, &subs, &q).await;
        }
        let Some(x) = exceeded
            .iter()
            .find(|x| x.policy != QuotaPolicy::ConsumerBacklogEviction)
        else {
            return;
        };
        let n = self.disconnect_producers();
        if n > 0 {
            tracing::info!(topic = %self.name, kind = x.kind.key(), producers = n,
                "backlog quota exceeded: disconnecting producers");
        }
    }

    /// A write failed (not a refusal of a later send, nor a takeover or a
    /// close): every producer is let go, as Pulsar does, so each comes back
    /// and resends what has no receipt in order (their later sends are
    /// refused meanwhile; see `publish`).
    fn append_failed(&self, e: &MlError) {
        let write_failure = matches!(
            e,
            MlError::Ledger(_) | MlError::Meta(_) | MlError::Unavailable(_)
        );
        if write_failure && !self.is_closed() && !self.ml.is_fenced() {
            let n = self.disconnect_producers();
            if n > 0 {
                tracing::warn!(topic = %self.name, producers = n, error = %e,
                    "append failed: producers reconnect and resend in order");
            }
        }
    }

    /// Lets every producer go, each told to reconnect after its receipts;
    /// returns how many there were.
    fn disconnect_producers(&self) -> usize {
        let producers = std::mem::take(&mut *lock(&self.producers));
        self.producer_left.notify_waiters();
        let n = producers.len();
        for (_, p) in producers {
            (p.close_notice)();
        }
        n
    }

    /// Whether another consumer may join (the limit counts every
    /// subscription's consumers).
    pub async fn has_room_for_consumer(&self) -> bool {
        let max = self.max_consumers.load(Ordering::Relaxed);
        if max == 0 {
            return true;
        }
        let subs: Vec<Subscription> = lock(&self.subscriptions).values().cloned().collect();
        let mut n = 0;
        for s in subs {
            if let Ok(st) = s.stats().await {
                n += st.consumers.len();
            }
        }
        n < max as usize
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.ml.is_fenced()
    }

    /// Turns deduplication on or off (namespace policy).
    pub async fn set_dedup(&self, on: bool) -> Result<()> {
        if on && lock(&self.dedup).is_none() {
            let d = Dedup::recover(&self.meta, &self.ml).await?;
            *lock(&self.dedup) = Some(d);
        }
        if !on {
            *lock(&self.dedup) = None;
        }
        self.dedup_enabled.store(on, Ordering::Relaxed);
        Ok(())
    }

    pub fn dedup_enabled(&self) -> bool {
        self.dedup_enabled.load(Ordering::Relaxed)
    }

    // ---- producers -------------------------------------------------------

    /// Registers a producer; returns the last stored sequence id for its name
    /// (-1 without deduplication or history).
    pub fn add_producer(&self, p: ProducerEntry) -> Result<i64> {
        if self.is_closed() {
            return Err(BrokerError::ServiceNotReady(format!(
                "topic {} is being unloaded",
                self.name
            )));
        }
        let mut producers = lock(&self.producers);
        let max = self.max_producers.load(Ordering::Relaxed);
        if max > 0 && producers.len() >= max as usize {
            return Err(BrokerError::ProducerBusy(format!(
                "topic {} reached its limit of {max} producers",
                self.name
            )));
        }
        if producers.values().any(|e| e.name == p.name) {
            return Err(BrokerError::ProducerBusy(format!(
                "producer with name '{}' is already connected to topic {}",
                p.name, self.name
            )));
        }
        let exclusive_present = producers.values().any(|e| e.mode != AccessMode::Shared);
        match p.mode {
            AccessMode::Shared if exclusive_present => {
                return Err(BrokerError::ProducerBusy(format!(
                    "topic {} has an exclusive producer",
                    self.name
                )))
            }
            AccessMode::Exclusive | AccessMode::WaitForExclusive if !producers.is_empty() => {
                return Err(BrokerError::ProducerBusy(format!(
                    "topic {} already has producers",
                    self.name
                )))
            }
            AccessMode::ExclusiveWithFencing => {
                for (_, old) in std::mem::take(&mut *producers) {
                    old.out.send(pb::CommandCloseProducer {
                        producer_id: old.producer_id,
                        request_id: 0,
                        ..Default::default()
                    });
                }
            }
            _ => {}
        }
        let last = match lock(&self.dedup).as_ref() {
            Some(d) if self.dedup_enabled() => d.last_sequence(&p.name),
            _ => -1,
        };
        producers.insert(producer_key(&p.out, p.producer_id), p);
        Ok(last)
    }

    pub fn remove_producer(&self, out: &Outbound, producer_id: u64) {
        lock(&self.producers).remove(&producer_key(out, producer_id));
        self.producer_left.notify_waiters();
    }

    /// Registers a WaitForExclusive producer as soon as the topic has no
    /// other producer; returns what [`Topic::add_producer`] returns then.
    pub async fn wait_for_exclusive(&self, p: ProducerEntry) -> Result<i64> {
        loop {
            // Created before the attempt so a departure in between is not missed.
            let left = self.producer_left.notified();
            match self.add_producer(p.clone()) {
                Err(BrokerError::ProducerBusy(_)) => left.await,
                other => return other,
            }
        }
    }

    pub fn has_producer(&self, out: &Outbound, producer_id: u64) -> bool {
        lock(&self.producers).contains_key(&producer_key(out, producer_id))
    }

    /// Starts storing one message (entry). Positions are assigned in call
    /// order; the future resolves once the entry is on an ack quorum.
    /// `seen_failures` is the managed ledger's append failure count when the
    /// producer attached: after a failure its later sends are refused, so
    /// none is stored ahead of the failed one's retry.
    pub fn publish(
        self: &Arc<Self>,
        producer: &str,
        payload: &Payload,
        seen_failures: u64,
    ) -> impl Future<Output = Result<Published>> + Send + 'static {
        let messages = u64::from(payload.metadata.num_messages_in_batch.unwrap_or(1).max(1) as u32);
        let bytes = payload.raw.len() as u64;
        let mut highest = None;
        let mut duplicate = false;
        if self.dedup_enabled() {
            if let Some(d) = lock(&self.dedup).as_mut() {
                match d.check(payload) {
                    Check::Duplicate => duplicate = true,
                    Check::New { highest: h } => highest = Some(h),
                }
            }
        }
        let closed = self.is_closed();
        let append = (!duplicate && !closed).then(|| {
            self.ml
                .append_in_order(&payload.raw, payload.metadata.publish_time, seen_failures)
        });
        let topic = self.clone();
        let producer = producer.to_string();
        let started = Instant::now();
        async move {
            if duplicate {
                return Ok(Published::Duplicate);
            }
            let Some(append) = append else {
                return Err(BrokerError::ServiceNotReady(format!(
                    "topic {} is closed",
                    topic.name
                )));
            };
            match append.await {
                Ok(pos) => {
                    topic.write_latency.record(started.elapsed());
                    topic.msg_in.fetch_add(messages, Ordering::Relaxed);
                    topic.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                    if let Some(h) = highest {
                        topic.dedup_stored(&producer, h, pos);
                    }
                    Ok(Published::Stored(pos))
                }
                Err(e) => {
                    if highest.is_some() {
                        if let Some(d) = lock(&topic.dedup).as_mut() {
                            d.failed(&producer);
                        }
                    }
                    topic.append_failed(&e);
                    Err(e.into())
                }
            }
        }
    }

    fn dedup_stored(&self, producer: &str, highest: i64, pos: Position) {
        let snap = lock(&self.dedup)
            .as_mut()
            .and_then(|d| d.stored(producer, highest, pos, self.dedup_interval));
        if let Some(raw) = snap {
            let meta = self.meta.clone();
            let key = dedup::snapshot_key(self.ml.name());
            tokio::spawn(async move {
                if let Err(e) = meta.put(key, raw).await {
                    tracing::warn!(error = %e, "writing deduplication snapshot");
                }
            });
        }
    }

    // ---- subscriptions ---------------------------------------------------

    /// The subscription `name`, created at `initial` if new.
    pub async fn subscription(
        &self,
        name: &str,
        initial: InitialPosition,
        sub_type: SubType,
    ) -> Result<Subscription> {
        if let Some(s) = lock(&self.subscriptions).get(name) {
            if !s.is_stopped() {
                return Ok(s.clone());
            }
        }
        let cursor = self.ml.open_cursor(name, initial).await?;
        let mut subs = lock(&self.subscriptions);
        if let Some(s) = subs.get(name) {
            if !s.is_stopped() {
                return Ok(s.clone());
            }
        }
        let sub = Subscription::start(SubscriptionParams {
            name: name.to_string(),
            ml: self.ml.clone(),
            cursor: SubCursor::Durable(cursor),
            sub_type,
            dispatch_batch: self.dispatch_batch,
            max_held: self.max_held,
        });
        subs.insert(name.to_string(), sub.clone());
        Ok(sub)
    }

    /// A reader's subscription: in memory, reading after `after`.
    pub fn reader(&self, name: &str, after: Position) -> Subscription {
        let sub = Subscription::start(SubscriptionParams {
            name: name.to_string(),
            ml: self.ml.clone(),
            cursor: SubCursor::NonDurable { after },
            sub_type: SubType::Exclusive,
            dispatch_batch: self.dispatch_batch,
            max_held: self.max_held,
        });
        lock(&self.subscriptions).insert(name.to_string(), sub.clone());
        sub
    }

    pub fn get_subscription(&self, name: &str) -> Option<Subscription> {
        lock(&self.subscriptions)
            .get(name)
            .filter(|s| !s.is_stopped())
            .cloned()
    }

    pub fn forget_subscription(&self, name: &str) {
        lock(&self.subscriptions).remove(name);
    }

    pub fn subscription_names(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.subscriptions)
            .iter()
            .filter(|(_, s)| s.durable && !s.is_stopped())
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Deletes a subscription (fails while it has consumers unless `force`).
    pub async fn delete_subscription(&self, name: &str, force: bool) -> Result<()> {
        let sub = self.get_subscription(name);
        match sub {
            Some(s) => {
                if force {
                    s.close().await;
                    self.ml.delete_cursor(name).await?;
                } else {
                    s.unsubscribe(None).await?;
                }
            }
            None => {
                if self.ml.cursor(name).is_none() {
                    return Err(BrokerError::NotFound(format!(
                        "subscription {name} not found"
                    )));
                }
                self.ml.delete_cursor(name).await?;
            }
        }
        self.forget_subscription(name);
        Ok(())
    }

    // ---- lifecycle -------------------------------------------------------

    /// Tells clients to go away (they reconnect through lookup) and stops
    /// the subscriptions.
    pub async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Relaxed);
        self.disconnect_producers();
        let subs: Vec<Subscription> = lock(&self.subscriptions).drain().map(|(_, s)| s).collect();
        for s in subs {
            s.close().await;
        }
        // The managed ledger is closed by its factory's owner (the service).
        Ok(())
    }

    pub fn has_clients(&self) -> bool {
        !lock(&self.producers).is_empty()
    }

    // ---- stats -----------------------------------------------------------

    pub async fn stats(&self) -> TopicStats {
        let subs: Vec<(String, Subscription)> = lock(&self.subscriptions)
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let mut subscriptions = BTreeMap::new();
        for (n, s) in subs {
            if let Ok(st) = s.stats().await {
                subscriptions.insert(n, st);
            }
        }
        let msg_out: u64 = subscriptions.values().map(|s| s.msg_out_counter).sum();
        let bytes_out: u64 = subscriptions.values().map(|s| s.bytes_out_counter).sum();
        let msg_in = self.msg_in.load(Ordering::Relaxed);
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let (rate_in, throughput_in, rate_out, throughput_out) = {
            let mut r = lock(&self.rates);
            let now = Instant::now();
            if let Some(at) = r.at {
                let dt = now.duration_since(at).as_secs_f64();
                if dt >= 1.0 {
                    r.rate_in = (msg_in - r.msg_in) as f64 / dt;
                    r.throughput_in = (bytes_in - r.bytes_in) as f64 / dt;
                    r.rate_out = msg_out.saturating_sub(r.msg_out) as f64 / dt;
                    r.throughput_out = bytes_out.saturating_sub(r.bytes_out) as f64 / dt;
                    (r.at, r.msg_in, r.bytes_in, r.msg_out, r.bytes_out) =
                        (Some(now), msg_in, bytes_in, msg_out, bytes_out);
                }
            } else {
                (r.at, r.msg_in, r.bytes_in, r.msg_out, r.bytes_out) =
                    (Some(now), msg_in, bytes_in, msg_out, bytes_out);
            }
            (r.rate_in, r.throughput_in, r.rate_out, r.throughput_out)
        };
        let publishers = lock(&self.producers)
            .values()
            .map(|p| PublisherStats {
                producer_name: p.name.clone(),
                producer_id: p.producer_id,
                access_mode: format!("{:?}", p.mode),
                msg_in_counter: p.msg_in.load(Ordering::Relaxed),
                bytes_in_counter: p.bytes_in.load(Ordering::Relaxed),
                address: p.address.clone(),
                connected_since: crate::subscription::rfc3339(p.since),
            })
            .collect();
        let (_, storage) = self.ml.size();
        TopicStats {
            msg_rate_in: rate_in,
            msg_throughput_in: throughput_in,
            msg_rate_out: rate_out,
            msg_throughput_out: throughput_out,
            msg_in_counter: msg_in,
            bytes_in_counter: bytes_in,
            msg_out_counter: msg_out,
            bytes_out_counter: bytes_out,
            storage_size: storage,
            backlog_size: subscriptions
                .values()
                .map(|s| s.backlog_size)
                .max()
                .unwrap_or(0),
            deduplication_status: if self.dedup_enabled() {
                "Enabled"
            } else {
                "Disabled"
            }
            .into(),
            publishers,
            subscriptions,
        }
    }
}

fn producer_key(out: &Outbound, producer_id: u64) -> (u64, u64) {
    (out.conn_id, producer_id)
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherStats {
    pub producer_name: String,
    pub producer_id: u64,
    pub access_mode: String,
    pub msg_in_counter: u64,
    pub bytes_in_counter: u64,
    pub address: String,
    pub connected_since: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicStats {
    pub msg_rate_in: f64,
    pub msg_throughput_in: f64,
    pub msg_rate_out: f64,
    pub msg_throughput_out: f64,
    pub msg_in_counter: u64,
    pub bytes_in_counter: u64,
    pub msg_out_counter: u64,
    pub bytes_out_counter: u64,
    pub storage_size: u64,
    pub backlog_size: u64,
    pub deduplication_status: String,
    pub publishers: Vec<PublisherStats>,
    pub subscriptions: BTreeMap<String, SubscriptionStats>,
}
