//! Opening a ledger with recovery, as BookKeeper does: mark it in recovery,
//! fence enough bookies of the last ensemble that the old writer can no longer
//! reach `Qa` for any entry, read forward from the highest LAC the fenced
//! bookies report, rewrite each entry found to its full write set, stop at the
//! first entry that enough bookies confirm missing, and close the ledger there.
//! Two recoveries racing are safe: both fence and rewrite the same entries and
//! only one close wins the metadata CAS; the other adopts it.

use futures::future::join_all;
use magnetar_proto::bookie as pb;

use crate::client::LedgerClient;
use crate::error::LedgerError;
use crate::metadata::{self, LedgerMetadata, LedgerState, Versioned};
use crate::quorum::{fence_quorum, missing_quorum, write_set};
use crate::reader::{read_from, EntryAnswer};

pub(crate) async fn recover(
    client: &LedgerClient,
    mut v: Versioned,
    master_key: &[u8],
) -> Result<LedgerMetadata, LedgerError> {
    let id = v.meta.id;
    let fail = |reason: String| LedgerError::RecoveryFailed { ledger: id, reason };
    // 1. Mark in recovery, so an ensemble change by the old writer fails its CAS.
    while v.meta.state == LedgerState::Open {
        let mut m = v.meta.clone();
        m.state = LedgerState::InRecovery;
        match metadata::store(&client.meta(), &m, v.version).await {
            Ok(version) => v = Versioned { meta: m, version },
            Err(LedgerError::MetadataConflict(_)) => v = metadata::load(&client.meta(), id).await?,
            Err(e) => return Err(e),
        }
    }
    if v.meta.state == LedgerState::Closed {
        return Ok(v.meta);
    }
    let meta = v.meta.clone();
    let Some(last) = meta.last_fragment().cloned() else {
        return close(client, v, -1).await;
    };

    // 2. Fence.
    let fences = join_all(last.bookies.iter().map(|addr| async move {
        let bookie = client.pool().get(addr).map_err(|e| e.to_string())?;
        let r = bookie.fence(id, master_key.to_vec()).await?;
        match pb::StatusCode::try_from(r.code) {
            Ok(pb::StatusCode::Ok) => Ok(r.lac),
            Ok(pb::StatusCode::Unauthorized) => Err(format!("{addr}: wrong master key")),
            _ => Err(format!("{addr}: {}", r.message)),
        }
    }))
    .await;
    let lacs: Vec<i64> = fences
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let need = fence_quorum(meta.ensemble_size, meta.ack_quorum);
    if lacs.len() < need {
        let errors: Vec<String> = fences.into_iter().filter_map(Result::err).collect();
        return Err(fail(format!(
            "fenced {} of {} bookies, need {need}: {}",
            lacs.len(),
            last.bookies.len(),
            errors.join("; ")
        )));
    }

    // 3. Read forward and rewrite what is found.
    let mut entry = (lacs.iter().copied().max().unwrap_or(-1) + 1).max(last.first_entry);
    loop {
        let addrs: Vec<String> = write_set(entry, meta.ensemble_size, meta.write_quorum)
            .into_iter()
            .filter_map(|p| last.bookies.get(p).cloned())
            .collect();
        let answers = join_all(addrs.iter().map(|a| read_from(client, a, id, entry))).await;
        let found = answers.iter().find_map(|a| match a {
            EntryAnswer::Found(d) => Some(d.clone()),
            _ => None,
        });
        match found {
            Some(data) => {
                rewrite(client, &addrs, id, entry, data, master_key, meta.ack_quorum)
                    .await
                    .map_err(fail)?;
                entry += 1;
            }
            None => {
                let missing = answers
                    .iter()
                    .filter(|a| matches!(a, EntryAnswer::Missing))
                    .count();
                if missing >= missing_quorum(meta.write_quorum, meta.ack_quorum) {
                    break;
                }
                return Err(fail(format!(
                    "cannot tell whether entry {entry} exists: {missing} of {} bookies say missing, need {}",
                    addrs.len(),
                    missing_quorum(meta.write_quorum, meta.ack_quorum)
                )));
            }
        }
    }
    close(client, v, entry - 1).await
}

async fn rewrite(
    client: &LedgerClient,
    addrs: &[String],
    ledger: u64,
    entry: i64,
    data: Vec<u8>,
    master_key: &[u8],
    ack_quorum: usize,
) -> Result<(), String> {
    let crc = crc32c::crc32c(&data);
    let results = join_all(addrs.iter().map(|addr| {
        let data = data.clone();
        async move {
            let bookie = client.pool().get(addr)?;
            let req = pb::AddRequest {
                ledger_id: ledger,
                entry_id: entry,
                payload: data.into(),
                crc32c: crc,
                lac: entry - 1,
                master_key: master_key.to_vec().into(),
                recovery: true,
                // Set by the bookie client.
                request_id: 0,
            };
            bookie
                .add_and_wait(req)
                .await
                .map_err(|e| format!("{addr}: {e:?}"))
        }
    }))
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if ok >= ack_quorum {
        Ok(())
    } else {
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        Err(format!(
            "entry {entry} rewritten to {ok} bookies, need {ack_quorum}: {}",
            errors.join("; ")
        ))
    }
}

async fn close(
    client: &LedgerClient,
    v: Versioned,
    last_entry: i64,
) -> Result<LedgerMetadata, LedgerError> {
    let mut m = v.meta.clone();
    m.state = LedgerState::Closed;
    m.last_entry_id = last_entry;
    m.length = None;
    match metadata::store(&client.meta(), &m, v.version).await {
        Ok(_) => {
            tracing::info!(ledger = m.id, last_entry, "ledger recovered and closed");
            Ok(m)
        }
        Err(LedgerError::MetadataConflict(_)) => {
            // Another recovery closed it first; its answer is the answer.
            let now = metadata::load(&client.meta(), m.id).await?;
            if now.meta.state == LedgerState::Closed {
                Ok(now.meta)
            } else {
                Err(LedgerError::MetadataConflict(m.id))
            }
        }
        Err(e) => Err(e),
    }
}
