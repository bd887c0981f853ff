//! Message deduplication by producer name and sequence id.
//!
//! A message whose sequence id is not above the highest one already accepted
//! from that producer name is a duplicate: it is acknowledged without being
//! stored again. The highest persisted sequence id per producer is written to
//! the metadata service every `snapshot_interval` messages together with the
//! log position it covers; a new owner loads that snapshot and replays the
//! entries written after it, so the state survives restarts and takeovers.

use std::collections::HashMap;

use magnetar_managed_ledger::{ManagedLedger, Position};
use magnetar_meta_client::MetaClient;
use magnetar_wire::Payload;
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    position: Position,
    producers: HashMap<String, i64>,
}

pub enum Check {
    /// Store it; `highest` is the sequence id to record once stored.
    New {
        highest: i64,
    },
    Duplicate,
}

#[derive(Default)]
pub struct Dedup {
    /// Highest sequence id accepted (maybe not yet stored) per producer.
    pushed: HashMap<String, i64>,
    /// Highest sequence id stored per producer.
    persisted: HashMap<String, i64>,
    since_snapshot: u64,
    last_position: Position,
}

pub fn snapshot_key(ml_name: &str) -> String {
    format!("/dedup/{ml_name}")
}

impl Dedup {
    /// Rebuilds the state: the last snapshot plus every entry after it.
    pub async fn recover(meta: &MetaClient, ml: &ManagedLedger) -> Result<Dedup> {
        let snap: Snapshot = match meta.get(snapshot_key(ml.name())).await? {
            Some(kv) => serde_json::from_slice(&kv.value).unwrap_or_default(),
            None => Snapshot::default(),
        };
        let mut d = Dedup {
            persisted: snap.producers.clone(),
            last_position: snap.position,
            ..Default::default()
        };
        let last = ml.last_confirmed();
        let mut from = Position::new(snap.position.ledger_id, snap.position.entry_id + 1);
        if snap.position == Position::default() {
            from = ml.ledger_list().next_valid(ml.ledger_list().before_first());
        }
        while from <= last {
            let entries = ml.read_from(from, 1000).await?;
            let Some(tail) = entries.last() else { break };
            from = Position::new(tail.position.ledger_id, tail.position.entry_id + 1);
            for e in &entries {
                let raw = bytes::Bytes::from_owner(e.data.clone());
                if let Ok(p) = Payload::parse(raw) {
                    let (name, highest) = identity(&p);
                    let v = d.persisted.entry(name).or_insert(-1);
                    *v = (*v).max(highest);
                }
                d.last_position = e.position;
            }
        }
        d.pushed = d.persisted.clone();
        Ok(d)
    }

    pub fn check(&mut self, payload: &Payload) -> Check {
        let (name, highest) = identity(payload);
        let seq = payload.metadata.sequence_id as i64;
        match self.pushed.get(&name) {
            Some(&last) if seq <= last => Check::Duplicate,
            _ => {
                self.pushed.insert(name, highest);
                Check::New { highest }
            }
        }
    }

    /// A message was stored; returns a snapshot to write if one is due.
    pub fn stored(
        &mut self,
        producer: &str,
        highest: i64,
        at: Position,
        interval: u64,
    ) -> Option<Vec<u8>> {
        let v = self.persisted.entry(producer.to_string()).or_insert(-1);
        *v = (*v).max(highest);
        self.last_position = self.last_position.max(at);
        self.since_snapshot += 1;
        if self.since_snapshot < interval {
            return None;
        }
        self.since_snapshot = 0;
        let snap = Snapshot {
            position: self.last_position,
            producers: self.persisted.clone(),
        };
        serde_json::to_vec(&snap).ok()
    }

    /// A store failed: forget what was accepted but not stored, so the
    /// client's resend is not taken for a duplicate.
    pub fn failed(&mut self, producer: &str) {
        match self.persisted.get(producer) {
            Some(&v) => self.pushed.insert(producer.to_string(), v),
            None => self.pushed.remove(producer),
        };
    }

    /// The last stored sequence id of a producer (-1 if none), returned to a
    /// producer that reconnects.
    pub fn last_sequence(&self, producer: &str) -> i64 {
        self.persisted.get(producer).copied().unwrap_or(-1)
    }
}

/// (producer name, highest sequence id) of a stored or sent message.
fn identity(p: &Payload) -> (String, i64) {
    let md = &p.metadata;
    let seq = md.sequence_id as i64;
    let highest = md
        .highest_sequence_id
        .map(|h| h as i64)
        .filter(|&h| h > seq)
        .unwrap_or(seq);
    (md.producer_name.clone(), highest)
}
