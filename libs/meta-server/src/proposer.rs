//! Batches concurrent client writes into single Raft entries.
//!
//! openraft appends (and fsyncs) each proposal on its own; with many clients
//! that makes the log fsync the bottleneck. The proposer drains every write
//! queued while earlier proposals were in flight into one `Command::Batch`
//! entry, so one log append and one replication round carry many writes. Each
//! command still applies atomically on its own and gets its own answer.
//!
//! It also tells the state machine which remembered answers it may drop.
//! Each write of ours says which of its client's requests have all been
//! answered (`answered_below`); once a client's mark has moved on by
//! `FORGET_EVERY`, the next entry carries a `Command::Forget` for the range
//! since the last one. Without it, answers were kept for a fixed window of
//! log entries: at 10,000 writes/s, a few million of them, all in every
//! snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::Status;

use crate::service::not_leader;
use crate::types::{Command, CommandResult, Raft};

type Reply = oneshot::Sender<Result<CommandResult, Status>>;

/// A client's requests are forgotten this many at a time (one small command
/// per this many writes of one client).
const FORGET_EVERY: u64 = 256;
/// The first range this leader forgets for a client reaches this far back:
/// a previous leader forgot up to some mark, and the client can have moved
/// on by little more than its requests in flight since. Farther back the
/// range would mostly walk that leader's tombstones; anything older and
/// never forgotten goes with the log-index window (`kv::DEDUP_WINDOW`).
const FIRST_FORGET_SPAN: u64 = 4096;
/// Clients whose last forgotten mark is kept; past it the map starts over.
const MAX_TRACKED_CLIENTS: usize = 1 << 16;

/// Where each client's next `Forget` starts: the end of its previous one.
#[derive(Default)]
struct ForgetMarks {
    below: HashMap<u64, u64>,
}

impl ForgetMarks {
    /// The `Forget` commands for this batch's `answered_below` marks.
    fn commands(&mut self, marks: impl Iterator<Item = (u64, u64)>) -> Vec<Command> {
        let mut highest: HashMap<u64, u64> = HashMap::new();
        for (client, below) in marks {
            let h = highest.entry(client).or_default();
            *h = (*h).max(below);
        }
        if self.below.len() > MAX_TRACKED_CLIENTS {
            self.below.clear();
        }
        let mut forgets = Vec::new();
        for (client_id, below) in highest {
            let from = *self
                .below
                .get(&client_id)
                .unwrap_or(&below.saturating_sub(FIRST_FORGET_SPAN));
            if below >= from.saturating_add(FORGET_EVERY) {
                self.below.insert(client_id, below);
                forgets.push(Command::Forget {
                    client_id,
                    from,
                    below,
                });
            }
        }
        forgets
    }
}

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
    tx: mpsc::Sender<(Command, u64, Reply)>,
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
        let (tx, mut rx) = mpsc::channel::<(Command, u64, Reply)>(max_batch * 4);
        let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
        tokio::spawn(async move {
            let mut recent = RecentSizes::default();
            let mut marks = ForgetMarks::default();
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
                let answered = batch.iter().filter_map(|(cmd, below, _)| {
                    let id = cmd.request_id()?;
                    (*below > 0).then_some((id.client_id, *below))
                });
                let forgets = marks.commands(answered);
                tokio::spawn(async move {
                    let (mut cmds, replies): (Vec<Command>, Vec<Reply>) = batch
                        .into_iter()
                        .map(|(cmd, _, reply)| (cmd, reply))
                        .unzip();
                    // After the clients' commands, so answers keep their places.
                    cmds.extend(forgets);
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

    /// Proposes `cmd`; `answered_below` is its client's mark (every request
    /// of the client below it has had its answer; 0 if unknown).
    pub async fn propose(
        &self,
        cmd: Command,
        answered_below: u64,
    ) -> Result<CommandResult, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, answered_below, reply))
            .await
            .map_err(|_| Status::unavailable("node is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("node is shutting down"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(cmds: Vec<Command>) -> Vec<(u64, u64, u64)> {
        let mut r: Vec<_> = cmds
            .into_iter()
            .map(|c| match c {
                Command::Forget {
                    client_id,
                    from,
                    below,
                } => (client_id, from, below),
                other => panic!("not a forget: {other:?}"),
            })
            .collect();
        r.sort();
        r
    }

    #[test]
    fn each_clients_ranges_follow_each_other_in_steps() {
        let mut marks = ForgetMarks::default();
        // Too little answered yet to be worth a command.
        assert!(marks.commands([(1, 100), (1, 200)].into_iter()).is_empty());
        // The highest mark of a batch counts; the first range reaches back.
        assert_eq!(
            ranges(marks.commands([(1, 300), (1, 290), (2, 1 << 20)].into_iter())),
            vec![(1, 0, 300), (2, (1 << 20) - FIRST_FORGET_SPAN, 1 << 20)]
        );
        // Next ranges start where the last ended, once FORGET_EVERY more.
        assert!(marks
            .commands([(1, 300 + FORGET_EVERY - 1)].into_iter())
            .is_empty());
        assert_eq!(
            ranges(marks.commands([(1, 300 + FORGET_EVERY)].into_iter())),
            vec![(1, 300, 300 + FORGET_EVERY)]
        );
        // A mark that goes backwards (a stale retry) forgets nothing.
        assert!(marks.commands([(1, 5)].into_iter()).is_empty());
    }
}
