//! Tiered storage in the broker: the cluster-wide default driver (broker
//! flags), a namespace's `offloadPolicies` over it, and the managed ledger
//! offload policy they make (docs/OFFLOAD.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use magnetar_managed_ledger::{ManagedLedger, OffloadPolicy, ReadPriority};
use magnetar_offload::{Driver, DriverConfig, Offloader};

use crate::error::{BrokerError, Result};
use crate::resources::{OffloadPolicies, Policies};
use crate::service::BrokerService;

/// Pulsar's default `managedLedgerOffloadDeletionLagMs`: 4 hours.
const DEFAULT_DELETION_LAG: Duration = Duration::from_secs(4 * 3600);

/// The broker's `--offload-*` flags (`MAGNETAR_BROKER_OFFLOAD_*`, or
/// `MAGNETAR_OFFLOAD_*`): the driver namespaces without offload policies use.
#[derive(Clone, Debug, Default)]
pub struct OffloadFlags {
    pub driver: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// The `filesystem` driver's directory.
    pub path: Option<String>,
}

impl OffloadFlags {
    /// Fills unset fields from `MAGNETAR_OFFLOAD_<FIELD>` variables.
    pub fn with_env_fallback(mut self) -> Self {
        let env = |k: &str| std::env::var(format!("MAGNETAR_OFFLOAD_{k}")).ok();
        for (field, key) in [
            (&mut self.driver, "DRIVER"),
            (&mut self.bucket, "BUCKET"),
            (&mut self.region, "REGION"),
            (&mut self.endpoint, "ENDPOINT"),
            (&mut self.path, "PATH"),
        ] {
            if field.as_deref().is_none_or(str::is_empty) {
                *field = env(key).filter(|v| !v.is_empty());
            }
        }
        self
    }

    /// The driver configuration, `None` without a driver.
    pub fn driver_config(&self) -> Result<Option<DriverConfig>> {
        let Some(name) = self.driver.as_deref().filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let driver = Driver::parse(name).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
        let mut c = DriverConfig::new(driver, self.bucket.as_deref().unwrap_or(""));
        c.region = self.region.clone();
        c.endpoint = self.endpoint.clone();
        c.path = self.path.clone();
        // Building checks the fields the driver needs, at start.
        offloader(&c)?;
        Ok(Some(c))
    }
}

/// One offloader (one HTTP client) per distinct configuration, shared by
/// every topic that uses it.
fn offloader(c: &DriverConfig) -> Result<Offloader> {
    static CACHE: Mutex<Option<HashMap<String, Offloader>>> = Mutex::new(None);
    let key = format!("{c:?}");
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(o) = cache.get(&key) {
        return Ok(o.clone());
    }
    let o = Offloader::new(c.clone())
        .map_err(|e| BrokerError::BadRequest(format!("offload driver: {e}")))?;
    cache.insert(key, o.clone());
    Ok(o)
}

/// A namespace's offload policies as a driver configuration.
fn namespace_driver(p: &OffloadPolicies) -> Result<DriverConfig> {
    let driver = Driver::parse(&p.managed_ledger_offload_driver)
        .map_err(|e| BrokerError::BadRequest(e.to_string()))?;
    let bucket = p.s3_managed_ledger_offload_bucket.as_deref().unwrap_or("");
    let mut c = DriverConfig::new(driver, bucket);
    c.region = p.s3_managed_ledger_offload_region.clone();
    c.endpoint = p.s3_managed_ledger_offload_service_endpoint.clone();
    c.path = p
        .file_system_uri
        .as_deref()
        .map(|u| u.strip_prefix("file://").unwrap_or(u).to_string());
    let positive = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as usize);
    if let Some(b) = positive(p.s3_managed_ledger_offload_max_block_size_in_bytes) {
        c.max_block_size = b.max(1024);
    }
    if let Some(b) = positive(p.s3_managed_ledger_offload_read_buffer_size_in_bytes) {
        c.read_buffer_size = b;
    }
    Ok(c)
}

impl BrokerService {
    /// The offload policy of topics in a namespace with `p`: its own
    /// offload policies, else the broker's default driver (offloads only
    /// when asked, bookie copies kept 4 hours).
    pub(crate) fn offload_policy(&self, p: &Policies) -> OffloadPolicy {
        let Some(o) = &p.offload_policies else {
            return OffloadPolicy {
                offloader: self.cfg().offload.as_ref().and_then(|c| offloader(c).ok()),
                deletion_lag: Some(DEFAULT_DELETION_LAG),
                ..Default::default()
            };
        };
        let non_negative = |v: i64| u64::try_from(v).ok();
        let priority = o.managed_ledger_offloaded_read_priority.as_deref();
        OffloadPolicy {
            offloader: namespace_driver(o).ok().and_then(|c| offloader(&c).ok()),
            deletion_lag: non_negative(o.managed_ledger_offload_deletion_lag_in_millis)
                .map(Duration::from_millis),
            read_priority: priority
                .and_then(|p| ReadPriority::parse(&p.to_ascii_lowercase().replace('_', "-")))
                .unwrap_or_default(),
            threshold_bytes: non_negative(o.managed_ledger_offload_threshold_in_bytes),
            threshold_age: non_negative(o.managed_ledger_offload_threshold_in_seconds)
                .map(Duration::from_secs),
        }
    }

    /// Applies the namespace's offload policy to a topic's managed ledger.
    pub(crate) fn apply_offload_policy(&self, ml: &ManagedLedger, p: &Policies) {
        ml.set_offload_policy(self.offload_policy(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_a_driver_or_none() {
        assert!(OffloadFlags::default().driver_config().unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let flags = OffloadFlags {
            driver: Some("filesystem".into()),
            path: Some(dir.path().display().to_string()),
            ..Default::default()
        };
        let c = flags.driver_config().unwrap().unwrap();
        assert_eq!(c.driver, Driver::Filesystem);
        let bad = OffloadFlags {
            driver: Some("tape".into()),
            ..Default::default()
        };
        assert!(bad.driver_config().is_err());
    }

    #[test]
    fn namespace_policies_map_onto_a_driver() {
        let p: OffloadPolicies = serde_json::from_str(
            r#"{"managedLedgerOffloadDriver": "S3", "s3ManagedLedgerOffloadBucket": "b",
                "s3ManagedLedgerOffloadServiceEndpoint": "http://127.0.0.1:9000",
                "s3ManagedLedgerOffloadReadBufferSizeInBytes": 4096}"#,
        )
        .unwrap();
        let c = namespace_driver(&p).unwrap();
        assert_eq!(c.driver, Driver::S3);
        assert_eq!(c.bucket, "b");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.read_buffer_size, 4096);
        let mut p = p;
        p.managed_ledger_offloaded_read_priority = Some("BOOKKEEPER_FIRST".into());
        assert!(p.validate().is_ok());
        p.managed_ledger_offloaded_read_priority = Some("disk-first".into());
        assert!(p.validate().is_err());
    }
}
