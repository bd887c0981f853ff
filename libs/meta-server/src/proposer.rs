//! Batches concurrent client writes into single Raft entries.
//!
//! openraft appends (and fsyncs) each proposal on its own; with many clients
//! that makes the log fsync the bottleneck. The proposer drains every write
//! queued while earlier proposals were in flight into one `Command::Batch`
//! entry, so one log append and one replication round carry many writes. Each
//! command still applies atomically on its own and gets its own answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::Status;

use crate::service::not_leader;
use crate::types::{Command, CommandResult, Raft};

type Reply = oneshot::Sender<Result<CommandResult, Status>>;

/// How well proposals batch: commands per proposed entry = commands / entries.
#[derive(Default)]
pub struct ProposerStats {
    pub entries: AtomicU64,
    pub commands: AtomicU64,
}

/// Sizes of the last few entries. Their maximum is what the next entry waits
/// for (up to the linger): closed-loop clients answered together send again
/// together, a little later. Waiting for the *largest* recent size, not the
/// last one, is what merges two groups of clients into one. Waiting only for
/// the last size let 16 clients settle into two groups of 8 that took turns:
/// each group's writes arrived while the other's entry was being replicated,
/// so every put waited for the round in flight and then its own, and each
/// entry's replication could queue behind the previous one's commit heartbeat
/// (openraft 0.9 sends one request at a time per follower).
#[derive(Default)]
struct RecentSizes {
    sizes: [usize; RECENT_ENTRIES],
    next: usize,
}

/// How many entries back the proposer remembers: with 1 ms lingers at most,
/// a drop in load costs at most this many lingers before batches stop
/// waiting for clients that are gone.
const RECENT_ENTRIES: usize = 32;

impl RecentSizes {
    fn push(&mut self, size: usize) {
        self.sizes[self.next] = size;
        self.next = (self.next + 1) % RECENT_ENTRIES;
    }

    fn expected(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(0).max(1)
    }
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<(Command, Reply)>,
}

/// Proposes one command and waits until it is applied here.
pub async fn write(
    raft: &Raft,
    cmd: Command,
    quorum_timeout: Duration,
) -> Result<CommandResult, Status> {
    match tokio::time::timeout(quorum_timeout, raft.client_write(cmd)).await {
        Err(_) => Err(Status::unavailable(format!(
            "write not committed within {quorum_timeout:?}: no quorum reachable"
        ))),
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Err(not_leader(&f)),
        Ok(Err(e)) => Err(Status::unavailable(format!("write failed: {e}"))),
    }
}

fn clone_status(s: &Status) -> Status {
    Status::with_metadata(s.code(), s.message(), s.metadata().clone())
}

impl Proposer {
    /// `max_batch` commands at most per entry, `max_in_flight` entries proposed
    /// at once; a batch smaller than the previous one waits up to `linger`
    /// for more.
    pub fn start(
        raft: Raft,
        stats: Arc<ProposerStats>,
        quorum_timeout: Duration,
        max_batch: usize,
        max_in_flight: usize,
        linger: Duration,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Command, Reply)>(max_batch * 4);
        let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
        tokio::spawn(async move {
            let mut recent = RecentSizes::default();
            while let Some(first) = rx.recv().await {
                // Waiting for a slot is what lets the next batch fill up.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                let linger_until = tokio::time::Instant::now() + linger;
                let expected = recent.expected();
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) if batch.len() >= expected || linger.is_zero() => break,
                        Err(_) => match tokio::time::timeout_at(linger_until, rx.recv()).await {
                            Ok(Some(item)) => batch.push(item),
                            Ok(None) | Err(_) => break,
                        },
                    }
                }
                recent.push(batch.len());
                let raft = raft.clone();
                stats.entries.fetch_add(1, Ordering::Relaxed);
                stats
                    .commands
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tokio::spawn(async move {
                    let (mut cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
                    let single = cmds.len() == 1;
                    let cmd = match cmds.pop() {
                        Some(only) if single => only,
                        Some(last) => {
                            cmds.push(last);
                            Command::Batch(cmds)
                        }
                        None => return,
                    };
                    match write(&raft, cmd, quorum_timeout).await {
                        Ok(CommandResult::Batch(results)) if !single => {
                            for (reply, r) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(r));
                            }
                        }
                        Ok(r) => {
                            for reply in replies {
                                let _ = reply.send(Ok(r.clone()));
                            }
                        }
                        Err(s) => {
                            for reply in replies {
                                let _ = reply.send(Err(clone_status(&s)));
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Self { tx }
    }

    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| Status::unavailable("node is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("node is shutting down"))?
    }
}
