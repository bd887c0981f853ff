//! Reading a ledger: each entry from one bookie of its write set, falling back
//! to the others on error, with a speculative second read when the first bookie
//! is slow. Every payload's CRC32C is checked.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use magnetar_proto::bookie as pb;

use crate::client::LedgerClient;
use crate::error::LedgerError;
use crate::metadata::{LedgerMetadata, LedgerState};
use crate::quorum::write_set;

/// What one bookie said about one entry.
#[derive(Debug)]
pub(crate) enum EntryAnswer {
    Found(Vec<u8>),
    Missing,
    Failed(String),
}

/// Asks one bookie for one entry.
pub(crate) async fn read_from(
    client: &LedgerClient,
    addr: &str,
    ledger: u64,
    entry: i64,
) -> EntryAnswer {
    let bookie = match client.pool().get(addr) {
        Ok(b) => b,
        Err(e) => return EntryAnswer::Failed(e),
    };
    match bookie.read(ledger, entry).await {
        Ok(r) => match pb::StatusCode::try_from(r.code) {
            Ok(pb::StatusCode::Ok) => {
                if crc32c::crc32c(&r.payload) == r.crc32c {
                    EntryAnswer::Found(r.payload.to_vec())
                } else {
                    EntryAnswer::Failed(format!("{addr}: checksum mismatch on entry {entry}"))
                }
            }
            Ok(pb::StatusCode::NoEntry) | Ok(pb::StatusCode::NoLedger) => EntryAnswer::Missing,
            _ => EntryAnswer::Failed(format!("{addr}: {}", r.message)),
        },
        Err(e) => EntryAnswer::Failed(e),
    }
}

pub struct LedgerReader {
    client: LedgerClient,
    meta: LedgerMetadata,
}

impl LedgerReader {
    pub(crate) fn new(client: LedgerClient, meta: LedgerMetadata) -> Self {
        Self { client, meta }
    }

    pub fn metadata(&self) -> &LedgerMetadata {
        &self.meta
    }

    pub fn id(&self) -> u64 {
        self.meta.id
    }

    pub fn is_closed(&self) -> bool {
        self.meta.state == LedgerState::Closed
    }

    /// The last entry that may be read: the closed ledger's last entry, or for
    /// an open ledger the highest LAC its bookies report.
    pub async fn last_add_confirmed(&self) -> Result<i64, LedgerError> {
        if self.is_closed() {
            return Ok(self.meta.last_entry_id);
        }
        self.read_lac(-1, Duration::ZERO).await
    }

    /// Long-polls the bookies of the current ensemble for a LAC above
    /// `previous` (tailing reads); returns the highest LAC seen.
    pub async fn read_lac(&self, previous: i64, wait: Duration) -> Result<i64, LedgerError> {
        let Some(frag) = self.meta.last_fragment() else {
            return Ok(-1);
        };
        let mut asks: FuturesUnordered<_> = frag
            .bookies
            .iter()
            .map(|addr| {
                let pool = self.client.pool();
                let addr = addr.clone();
                let id = self.meta.id;
                async move {
                    match pool.get(&addr) {
                        Ok(b) => b.read_lac(id, previous, wait).await.ok(),
                        Err(_) => None,
                    }
                }
            })
            .collect();
        let mut best = -1;
        let mut answered = 0;
        while let Some(r) = asks.next().await {
            if let Some(r) = r {
                if r.code == pb::StatusCode::Ok as i32 || r.code == pb::StatusCode::NoLedger as i32
                {
                    answered += 1;
                    best = best.max(r.lac);
                    if best > previous {
                        break;
                    }
                }
            }
        }
        if answered == 0 {
            return Err(LedgerError::ReadFailed {
                ledger: self.meta.id,
                entry: previous + 1,
                reason: "no bookie of the ensemble answered".into(),
            });
        }
        Ok(best)
    }

    /// Reads one entry.
    pub async fn read_entry(&self, entry: i64) -> Result<Vec<u8>, LedgerError> {
        if self.is_closed() && entry > self.meta.last_entry_id || entry < 0 {
            return Err(LedgerError::NoSuchEntry {
                ledger: self.meta.id,
                entry,
                last: self.meta.last_entry_id,
            });
        }
        let fail = |reason: String| LedgerError::ReadFailed {
            ledger: self.meta.id,
            entry,
            reason,
        };
        let frag = self
            .meta
            .fragment_for(entry)
            .ok_or_else(|| fail("no ensemble covers it".into()))?;
        let addrs: Vec<String> = write_set(entry, self.meta.ensemble_size, self.meta.write_quorum)
            .into_iter()
            .filter_map(|p| frag.bookies.get(p).cloned())
            .collect();
        let speculative = self.client.config().speculative_read_timeout;
        let mut inflight = FuturesUnordered::new();
        let mut next = 0;
        let mut errors = Vec::new();
        let id = self.meta.id;
        loop {
            if inflight.is_empty() && next < addrs.len() {
                inflight.push(read_from_owned(
                    self.client.clone(),
                    addrs[next].clone(),
                    id,
                    entry,
                ));
                next += 1;
            }
            if inflight.is_empty() {
                return Err(fail(errors.join("; ")));
            }
            // Wait for an answer, or past the speculative timeout ask one more bookie too.
            let answer = if next < addrs.len() {
                match tokio::time::timeout(speculative, inflight.next()).await {
                    Ok(a) => a,
                    Err(_) => {
                        inflight.push(read_from_owned(
                            self.client.clone(),
                            addrs[next].clone(),
                            id,
                            entry,
                        ));
                        next += 1;
                        continue;
                    }
                }
            } else {
                inflight.next().await
            };
            match answer {
                Some((_, EntryAnswer::Found(data))) => return Ok(data),
                Some((addr, EntryAnswer::Missing)) => errors.push(format!("{addr}: no such entry")),
                Some((_, EntryAnswer::Failed(e))) => errors.push(e),
                None => {}
            }
        }
    }

    /// Reads `first..=last` in order, many entries in flight at once.
    pub async fn read_range(&self, first: i64, last: i64) -> Result<Vec<Vec<u8>>, LedgerError> {
        futures::stream::iter(first..=last)
            .map(|e| self.read_entry(e))
            .buffered(64)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

async fn read_from_owned(
    client: LedgerClient,
    addr: String,
    ledger: u64,
    entry: i64,
) -> (String, EntryAnswer) {
    let a = read_from(&client, &addr, ledger, entry).await;
    (addr, a)
}
