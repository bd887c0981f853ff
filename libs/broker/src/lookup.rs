//! Which broker serves a topic: the owner of its bundle, or — for a bundle no
//! one owns — a live broker chosen by load. Any broker answers; the binary
//! LOOKUP, the HTTP lookup and admin calls for a topic all come here.

use magnetar_common::names::TopicName;

use crate::error::{BrokerError, Result};
use crate::load::{LoadReport, BROKERS_PREFIX};
use crate::ownership::OwnerData;
use crate::placement::{choose, Candidate};
use crate::service::BrokerService;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// This broker serves the topic.
    Here,
    /// Another broker owns the bundle: connect to it.
    Owner(OwnerData),
    /// Nobody owns the bundle and this broker picked another one to take
    /// it: ask that broker, authoritatively (it takes the bundle).
    Assign(OwnerData),
}

/// Live brokers' load reports (the keys exist only while a broker's session
/// lease does).
pub async fn live_brokers(svc: &BrokerService) -> Result<Vec<LoadReport>> {
    let page = svc.resources().meta().list_all(BROKERS_PREFIX).await?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<LoadReport>(&kv.value).ok())
        .collect())
}

pub async fn lookup(svc: &BrokerService, topic: &TopicName, authoritative: bool) -> Result<Answer> {
    let bundle = svc.bundle_of(topic).await?;
    let own = svc.ownership();
    if own.serves(&bundle) {
        return Ok(Answer::Here);
    }
    if let Some(owner) = own.owner(&bundle).await? {
        if owner.broker_id != own.me.broker_id {
            return Ok(Answer::Owner(owner));
        }
        if own.owned().contains(&bundle) {
            return Err(BrokerError::ServiceNotReady(format!(
                "bundle {bundle} is being unloaded; retry"
            )));
        }
        // A key left by an earlier life of this broker: `acquire` clears it.
    }
    // Unowned. A broker asked authoritatively was chosen by another one and
    // takes the bundle; otherwise choose.
    let target = if authoritative && !svc.is_draining() {
        None
    } else {
        choose_broker(svc, &bundle.to_string()).await?
    };
    match target {
        Some(other) => Ok(Answer::Assign(other)),
        None => match svc.acquire(&bundle).await? {
            None => Ok(Answer::Here),
            Some(owner) => Ok(Answer::Owner(owner)),
        },
    }
}

/// The broker that should take an unowned bundle; `None` means this one.
async fn choose_broker(svc: &BrokerService, bundle: &str) -> Result<Option<OwnerData>> {
    let me = &svc.ownership().me.broker_id;
    let draining = svc.is_draining();
    let reports: Vec<LoadReport> = live_brokers(svc)
        .await?
        .into_iter()
        .filter(|r| !(draining && &r.broker_id == me))
        .collect();
    if reports.is_empty() {
        if draining {
            return Err(BrokerError::ServiceNotReady(
                "no other broker is available".into(),
            ));
        }
        return Ok(None);
    }
    let owners = svc.ownership().all_owners().await?;
    let cands: Vec<Candidate> = reports
        .iter()
        .map(|r| Candidate {
            id: r.broker_id.clone(),
            bundles: owners
                .iter()
                .filter(|(_, o)| o.broker_id == r.broker_id)
                .count(),
            usage_pct: r.usage_pct(),
        })
        .collect();
    let Some(pick) = choose(&cands, bundle, svc.cfg().overload_pct) else {
        return Ok(None);
    };
    if pick == me {
        return Ok(None);
    }
    let r = reports.iter().find(|r| r.broker_id == pick);
    Ok(r.map(|r| OwnerData {
        broker_id: r.broker_id.clone(),
        native_url: r.native_url.clone(),
        http_url: r.http_url.clone(),
        listeners: r.listeners.clone(),
        listeners_tls: r.listeners_tls.clone(),
        native_url_tls: r.native_url_tls.clone(),
        http_url_tls: r.http_url_tls.clone(),
    }))
}
