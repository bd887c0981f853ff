//! Opening a ledger with recovery, as BookKeeper does: mark it in recovery,
//! fence enough bookies of the last ensemble that the old writer can no longer
//! reach `Qa` for any entry, read forward from the highest LAC the fenced
//! bookies report, rewrite each entry found to its full write set (replacing a
//! member that is down, as the writer would), stop at the first entry that
//! enough bookies confirm missing, and close the ledger there. Fencing needs
//! `E - Qa + 1` bookies and the read forward `Qw - Qa + 1` answers per entry,
//! so with one bookie of the ensemble down recovery still completes.
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

    // 3. Read forward and rewrite what is found. Entries past the LAC are
    // read from the ensemble that was last when recovery began (the old
    // writer put them there); they are rewritten under the ledger's current
    // last ensemble, which `rewrite` may change when a member is down.
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
                rewrite(client, &mut v, entry, data, master_key).await?;
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

/// Writes a recovered entry to its whole write set under the ledger's current
/// last ensemble until `Qa` bookies hold it. A member that fails is replaced
/// by a live bookie outside the ensemble (an ensemble change from `entry` on,
/// stored by CAS while the ledger is in recovery, as the writer does), so one
/// dead bookie of the ensemble never stops a recovery while a spare lives.
///
/// Invariant: the ledger is closed only at entries that `Qa` bookies of the
/// fragment readers will use hold, so the close adds no under-replicated
/// entry of its own.
async fn rewrite(
    client: &LedgerClient,
    v: &mut Versioned,
    entry: i64,
    data: Vec<u8>,
    master_key: &[u8],
) -> Result<(), LedgerError> {
    let id = v.meta.id;
    let fail = |reason: String| LedgerError::RecoveryFailed { ledger: id, reason };
    let mut stored: Vec<String> = Vec::new();
    // Each round replaces at least one member, so E + 1 rounds bound it.
    for _ in 0..=v.meta.ensemble_size {
        let Some(frag) = v.meta.last_fragment().cloned() else {
            return Err(LedgerError::BadMetadata(id, "no ensemble".into()));
        };
        let addrs: Vec<String> = write_set(entry, v.meta.ensemble_size, v.meta.write_quorum)
            .into_iter()
            .filter_map(|p| frag.bookies.get(p).cloned())
            .collect();
        stored.retain(|a| addrs.contains(a));
        let to_send: Vec<&String> = addrs.iter().filter(|a| !stored.contains(a)).collect();
        let results = join_all(
            to_send
                .iter()
                .map(|addr| add_one(client, addr, id, entry, &data, master_key)),
        )
        .await;
        let mut failed = Vec::new();
        for (addr, r) in to_send.into_iter().zip(results) {
            match r {
                Ok(()) => stored.push(addr.clone()),
                Err(e) => failed.push((addr.clone(), e)),
            }
        }
        if stored.len() >= v.meta.ack_quorum {
            return Ok(());
        }
        for (addr, why) in &failed {
            tracing::warn!(ledger = id, entry, bookie = %addr, error = %why, "recovery write failed; replacing the bookie");
            replace(client, v, entry, addr).await.map_err(|e| {
                fail(format!(
                    "entry {entry} is on {} bookies, need {}; {addr} failed ({why}) and could not be replaced: {e}",
                    stored.len(),
                    v.meta.ack_quorum
                ))
            })?;
        }
    }
    Err(fail(format!(
        "entry {entry} could not reach {} bookies",
        v.meta.ack_quorum
    )))
}

async fn add_one(
    client: &LedgerClient,
    addr: &str,
    ledger: u64,
    entry: i64,
    data: &[u8],
    master_key: &[u8],
) -> Result<(), String> {
    let bookie = client.pool().get(addr)?;
    let req = pb::AddRequest {
        ledger_id: ledger,
        entry_id: entry,
        payload: data.to_vec().into(),
        crc32c: crc32c::crc32c(data),
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

/// Ensemble change during recovery: `failed` is replaced from `entry` on in
/// the ledger's last ensemble. A concurrent change of the metadata (another
/// recovery) fails this one; its opener retries from the new metadata.
async fn replace(
    client: &LedgerClient,
    v: &mut Versioned,
    entry: i64,
    failed: &str,
) -> Result<(), LedgerError> {
    let mut meta = v.meta.clone();
    let Some(last) = meta.last_fragment().cloned() else {
        return Err(LedgerError::BadMetadata(meta.id, "no ensemble".into()));
    };
    let Some(pos) = last.bookies.iter().position(|b| b == failed) else {
        return Ok(());
    };
    let replacement = client.spare_bookie(&last.bookies).await?;
    meta.replace_bookie(pos, replacement.clone(), entry);
    let version = metadata::store(&client.meta(), &meta, v.version).await?;
    tracing::info!(ledger = meta.id, from_entry = entry, %failed, %replacement, "ensemble changed during recovery");
    *v = Versioned { meta, version };
    Ok(())
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
