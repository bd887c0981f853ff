//! Which bundles this broker owns.
//!
//! A broker owns a bundle by holding the key `/namespace/{tenant}/{ns}/{range}`
//! in the metadata service, attached to the broker's session lease: created
//! with "must not exist", so at most one broker holds it, and deleted by the
//! service when the lease expires, so a dead broker's bundles become free
//! after one TTL. The lease keeper judges expiry locally too (see
//! `LeaseKeeper`): when it reports the lease lost, this broker has already
//! stopped trusting its keys before the service can hand them to anyone.
//! Should a write still slip through (a broker paused mid-append), the new
//! owner's opening of the managed ledger has fenced the old ledger, so the
//! write fails and the log never splits.
//!
//! This module keeps the bookkeeping only; `cluster` runs the session and
//! `service` closes topics when a bundle is released.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use magnetar_common::names::NamespaceName;
use magnetar_meta_client::{Error as MetaError, LeaseValidity, MetaClient, PutOptions};
use serde::{Deserialize, Serialize};

use crate::bundle::BundleRange;
use crate::error::{BrokerError, Result};

pub const OWNERSHIP_PREFIX: &str = "/namespace/";

/// A bundle of a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    pub namespace: NamespaceName,
    pub range: BundleRange,
}

impl BundleId {
    pub fn key(&self) -> String {
        format!("{OWNERSHIP_PREFIX}{}/{}", self.namespace, self.range)
    }

    /// Parses an ownership key back into the bundle it names.
    pub fn from_key(key: &str) -> Option<BundleId> {
        let rest = key.strip_prefix(OWNERSHIP_PREFIX)?;
        let (ns, range) = rest.rsplit_once('/')?;
        let (t, n) = ns.split_once('/')?;
        Some(BundleId {
            namespace: NamespaceName::new(t, n).ok()?,
            range: BundleRange::parse(range).ok()?,
        })
    }
}

impl std::fmt::Display for BundleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.range)
    }
}

/// What an ownership key holds (Pulsar's names where Pulsar has them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerData {
    pub broker_id: String,
    /// `pulsar://host:port`
    pub native_url: String,
    /// `http://host:port`
    pub http_url: String,
    /// Advertised listener name → `pulsar://` URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, String>,
    /// Advertised listener name → `pulsar+ssl://` URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners_tls: BTreeMap<String, String>,
    /// `pulsar+ssl://host:port` and `https://host:port`, when TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_url_tls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url_tls: Option<String>,
}

impl OwnerData {
    /// The URL a client should use: the one of the listener it named, else
    /// the broker's own. A listener this broker lacks is an error for the
    /// client (it would otherwise connect to an address it cannot reach).
    pub fn url_for(&self, listener: Option<&str>) -> Result<String> {
        match listener.filter(|l| !l.is_empty()) {
            None => Ok(self.native_url.clone()),
            Some(l) => self.listeners.get(l).cloned().ok_or_else(|| {
                BrokerError::NotAllowed(format!(
                    "broker {} has no advertised listener named {l:?}",
                    self.broker_id
                ))
            }),
        }
    }
}

impl OwnerData {
    /// The URLs a LOOKUP answers with: (`brokerServiceUrl`,
    /// `brokerServiceUrlTls`). A client over TLS gets the broker's
    /// `pulsar+ssl` URL; one without gets its plain URL, or a clear error
    /// when that broker serves TLS only.
    pub fn lookup_urls(
        &self,
        listener: Option<&str>,
        tls: bool,
    ) -> Result<(String, Option<String>)> {
        let named = listener.is_some_and(|l| !l.is_empty());
        if !tls {
            if !named && self.native_url.is_empty() {
                return Err(BrokerError::NotAllowed(format!(
                    "broker {} serves pulsar+ssl only; connect with a pulsar+ssl:// service URL",
                    self.broker_id
                )));
            }
            let tls_url = match listener.filter(|l| !l.is_empty()) {
                Some(l) => self.listeners_tls.get(l).cloned(),
                None => self.native_url_tls.clone(),
            };
            return Ok((self.url_for(listener)?, tls_url));
        }
        let tls_url = self.native_url_tls.clone().ok_or_else(|| {
            BrokerError::NotAllowed(format!(
                "broker {} has no pulsar+ssl listener",
                self.broker_id
            ))
        })?;
        if let Some(l) = listener.filter(|l| !l.is_empty()) {
            let url = self.listeners_tls.get(l).cloned().ok_or_else(|| {
                BrokerError::NotAllowed(format!(
                    "broker {} has no pulsar+ssl URL for advertised listener {l:?}",
                    self.broker_id
                ))
            })?;
            let plain = self
                .listeners
                .get(l)
                .cloned()
                .unwrap_or_else(|| url.clone());
            return Ok((plain, Some(url)));
        }
        let plain = if self.native_url.is_empty() {
            tls_url.clone()
        } else {
            self.native_url.clone()
        };
        Ok((plain, Some(tls_url)))
    }

    /// The web URL for a caller over TLS (`tls`) or plain HTTP.
    pub fn web_url(&self, tls: bool) -> &str {
        match &self.http_url_tls {
            Some(u) if tls => u,
            _ => &self.http_url,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// Serving its topics.
    Serving,
    /// Being unloaded or split: no new topic loads.
    Releasing,
}

#[derive(Default)]
struct State {
    /// The session lease, while there is one, and until when it may be
    /// trusted (judged locally).
    session: Option<(i64, LeaseValidity)>,
    /// Owned bundles and the version of their key.
    owned: HashMap<BundleId, (Held, i64)>,
}

/// The outcome of trying to take a bundle.
pub enum Acquired {
    Mine,
    /// Someone else holds it.
    Other(OwnerData),
}

pub struct Ownership {
    meta: MetaClient,
    pub me: OwnerData,
    state: Mutex<State>,
}

impl State {
    fn lease(&self) -> Option<i64> {
        self.session.as_ref().map(|(id, _)| *id)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ownership {
    pub fn new(meta: MetaClient, me: OwnerData) -> Self {
        Ownership {
            meta,
            me,
            state: Mutex::new(State::default()),
        }
    }

    pub fn lease(&self) -> Option<i64> {
        lock(&self.state).lease()
    }

    /// A new session: nothing is owned under it yet.
    pub fn session_started(&self, lease: i64, validity: LeaseValidity) {
        let mut s = lock(&self.state);
        s.session = Some((lease, validity));
        s.owned.clear();
    }

    /// The session ended (lease lost or revoked): every bundle it held is
    /// gone. Returns them so their topics can be closed.
    pub fn session_ended(&self) -> Vec<BundleId> {
        let mut s = lock(&self.state);
        s.session = None;
        s.owned.drain().map(|(b, _)| b).collect()
    }

    /// Whether this broker serves `bundle` now. Not once the session lease
    /// may have expired, even before the session loop has reacted to that
    /// (a broker resumed after a pause must not answer for what it held).
    pub fn serves(&self, bundle: &BundleId) -> bool {
        let s = lock(&self.state);
        s.session.as_ref().is_some_and(|(_, v)| v.is_valid())
            && matches!(s.owned.get(bundle), Some((Held::Serving, _)))
    }

    pub fn owned(&self) -> Vec<BundleId> {
        lock(&self.state).owned.keys().cloned().collect()
    }

    /// The owner of `bundle` as recorded in metadata, if any.
    pub async fn owner(&self, bundle: &BundleId) -> Result<Option<OwnerData>> {
        let Some(kv) = self.meta.get(bundle.key()).await? else {
            return Ok(None);
        };
        let data = serde_json::from_slice(&kv.value).map_err(|e| {
            BrokerError::internal(format!("corrupt ownership record {}", bundle.key()), e)
        })?;
        Ok(Some(data))
    }

    /// Takes `bundle` for this broker unless another broker holds it.
    pub async fn acquire(&self, bundle: &BundleId) -> Result<Acquired> {
        let Some(lease) = self.lease() else {
            return Err(BrokerError::ServiceNotReady(
                "this broker has no metadata session".into(),
            ));
        };
        match lock(&self.state).owned.get(bundle) {
            Some((Held::Serving, _)) => return Ok(Acquired::Mine),
            Some((Held::Releasing, _)) => {
                return Err(BrokerError::ServiceNotReady(format!(
                    "bundle {bundle} is being released; retry"
                )))
            }
            None => {}
        }
        let value = serde_json::to_vec(&self.me).unwrap_or_default();
        for _ in 0..2 {
            let put = self
                .meta
                .put_with(
                    bundle.key(),
                    &value,
                    PutOptions {
                        expected_version: Some(0),
                        lease,
                    },
                )
                .await;
            match put {
                Ok(r) => {
                    let mut s = lock(&self.state);
                    if s.lease() != Some(lease) {
                        // The session ended meanwhile: the key went with it.
                        return Err(BrokerError::ServiceNotReady(
                            "metadata session lost while taking the bundle".into(),
                        ));
                    }
                    s.owned.insert(bundle.clone(), (Held::Serving, r.version));
                    tracing::info!(bundle = %bundle, "bundle owned");
                    return Ok(Acquired::Mine);
                }
                Err(MetaError::VersionMismatch { .. }) => {
                    let Some(kv) = self.meta.get(bundle.key()).await? else {
                        continue; // released meanwhile: try again
                    };
                    let owner: OwnerData = serde_json::from_slice(&kv.value).map_err(|e| {
                        BrokerError::internal(
                            format!("corrupt ownership record {}", bundle.key()),
                            e,
                        )
                    })?;
                    if owner.broker_id == self.me.broker_id && kv.lease != lease {
                        // Left by an earlier life of this broker (killed and
                        // restarted before its lease ran out): that process
                        // is gone, so the key is stale.
                        let _ = self.meta.delete(bundle.key(), Some(kv.version)).await;
                        continue;
                    }
                    if owner.broker_id == self.me.broker_id {
                        // Ours under this session (an earlier attempt whose
                        // answer was lost went through).
                        let mut s = lock(&self.state);
                        if s.lease() != Some(lease) {
                            return Err(BrokerError::ServiceNotReady(
                                "metadata session lost while taking the bundle".into(),
                            ));
                        }
                        s.owned
                            .entry(bundle.clone())
                            .or_insert((Held::Serving, kv.version));
                        return Ok(Acquired::Mine);
                    }
                    return Ok(Acquired::Other(owner));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(BrokerError::ServiceNotReady(format!(
            "bundle {bundle} is changing hands; retry"
        )))
    }

    /// Stops serving `bundle` (its topics are closed next, then `forget`).
    /// False if it is not owned or already releasing.
    pub fn start_release(&self, bundle: &BundleId) -> bool {
        let mut s = lock(&self.state);
        match s.owned.get_mut(bundle) {
            Some(h) if h.0 == Held::Serving => {
                h.0 = Held::Releasing;
                true
            }
            _ => false,
        }
    }

    /// Serves a bundle again after a release that did not happen.
    pub fn resume(&self, bundle: &BundleId) {
        if let Some(h) = lock(&self.state).owned.get_mut(bundle) {
            h.0 = Held::Serving;
        }
    }

    /// Gives a released bundle up: deletes its key (if still ours).
    pub async fn forget(&self, bundle: &BundleId) -> Result<()> {
        // The entry stays (releasing) until the key is gone, so a lookup in
        // between sees "being released", not a key of ours to adopt.
        let version = lock(&self.state).owned.get(bundle).map(|(_, v)| *v);
        let Some(v) = version else {
            return Ok(());
        };
        let deleted = match self.meta.delete(bundle.key(), Some(v)).await {
            Ok(_) | Err(MetaError::VersionMismatch { .. }) | Err(MetaError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        };
        // Even if the delete failed, this broker no longer serves the bundle;
        // the key goes with the session at the latest.
        lock(&self.state).owned.remove(bundle);
        deleted?;
        tracing::info!(bundle = %bundle, "bundle released");
        Ok(())
    }

    /// Every ownership record in the cluster.
    pub async fn all_owners(&self) -> Result<Vec<(BundleId, OwnerData)>> {
        let page = self.meta.list_all(OWNERSHIP_PREFIX).await?;
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| {
                let key = std::str::from_utf8(&kv.key).ok()?;
                Some((
                    BundleId::from_key(key)?,
                    serde_json::from_slice(&kv.value).ok()?,
                ))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let b = BundleId {
            namespace: NamespaceName::new("public", "default").unwrap(),
            range: BundleRange {
                start: 0x4000_0000,
                end: 0x8000_0000,
            },
        };
        assert_eq!(b.key(), "/namespace/public/default/0x40000000_0x80000000");
        assert_eq!(BundleId::from_key(&b.key()), Some(b));
        assert_eq!(BundleId::from_key("/namespace/public/default"), None);
        assert_eq!(BundleId::from_key("/namespace/a/b/garbage"), None);
    }
}
