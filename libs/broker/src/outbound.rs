//! The sending half of a client connection, shared by the connection and by
//! the subscriptions that dispatch to its consumers.
//!
//! The queue is unbounded in count but not in effect: everything in it is
//! either a reply to a request or a message the client asked for with
//! permits. Its byte size is tracked so that dispatchers stop sending to a
//! connection whose socket is not draining (a slow consumer then holds back
//! only itself).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use magnetar_wire::{BaseCommand, Payload};
use tokio::sync::mpsc;

pub struct OutFrame {
    pub command: BaseCommand,
    pub payload: Option<Payload>,
    /// Bytes accounted for this frame (payload size).
    pub bytes: usize,
}

#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<OutFrame>,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    max_queued: usize,
    /// Identifies the connection (logs, consumer keys).
    pub conn_id: u64,
}

/// The writer task's end: the queue and the byte counter, without a sender
/// (so the queue ends once every `Outbound` is gone).
pub struct OutboundReceiver {
    pub rx: mpsc::UnboundedReceiver<OutFrame>,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl OutboundReceiver {
    /// Called by the writer once frames are on the socket.
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The socket failed: senders stop queueing.
    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl Outbound {
    pub fn new(conn_id: u64, max_queued: usize) -> (Self, OutboundReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        (
            Self {
                tx,
                queued: queued.clone(),
                closed: closed.clone(),
                max_queued,
                conn_id,
            },
            OutboundReceiver { rx, queued, closed },
        )
    }

    /// Queues a command; returns false if the connection is gone.
    pub fn send(&self, command: impl Into<BaseCommand>) -> bool {
        self.send_frame(command.into(), None)
    }

    pub fn send_frame(&self, command: BaseCommand, payload: Option<Payload>) -> bool {
        let bytes = payload.as_ref().map_or(0, |p| p.raw.len());
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        if self
            .tx
            .send(OutFrame {
                command,
                payload,
                bytes,
            })
            .is_err()
        {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.closed.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether more messages may be queued now.
    pub fn writable(&self) -> bool {
        !self.is_closed() && self.queued.load(Ordering::Relaxed) < self.max_queued
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}
