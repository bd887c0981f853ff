//! Writes pipelined on one `TxnStream` per server.
//!
//! A unary call per write costs request headers, response headers and
//! trailers, and a new HTTP/2 stream on both sides; with many writers that was
//! most of what a metadata node spent per write. A session keeps one
//! bidirectional stream open to a server and multiplexes every transaction of
//! this client onto it, matching answers to callers by an id.
//!
//! A session that breaks (connection lost, server restarted) fails its
//! unanswered calls as `UNAVAILABLE` — the caller's retry loop decides what
//! happens next, exactly as for a unary call — and the next call opens a new
//! one.

use std::collections::HashMap;
use std::time::Duration;

use magnetar_proto::meta as pb;
use magnetar_proto::meta::meta_client::MetaClient as RpcClient;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Unanswered transactions per session; a server reads no more than this
/// many from one stream either.
const MAX_IN_FLIGHT: usize = 1024;

type Reply = oneshot::Sender<Result<pb::TxnResponse, Status>>;

/// A handle on one server's transaction stream. Cheap to clone.
#[derive(Clone)]
pub(crate) struct TxnSession {
    calls: mpsc::Sender<(pb::TxnRequest, Reply)>,
}

impl TxnSession {
    /// Starts a session; the stream is opened by its task, within `open_timeout`.
    pub(crate) fn open(client: RpcClient<Channel>, open_timeout: Duration) -> Self {
        let (calls, rx) = mpsc::channel(MAX_IN_FLIGHT);
        tokio::spawn(run(client, rx, open_timeout));
        Self { calls }
    }

    /// False once the session's stream has ended: open a new one.
    pub(crate) fn is_open(&self) -> bool {
        !self.calls.is_closed()
    }

    pub(crate) async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        let closed = || Status::unavailable("transaction stream closed");
        let (reply, rx) = oneshot::channel();
        self.calls.send((req, reply)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// The answer as the unary call would have returned it.
fn to_result(answer: pb::TxnStreamResponse) -> Result<pb::TxnResponse, Status> {
    if answer.code == Code::Ok as i32 {
        return answer
            .txn
            .ok_or_else(|| Status::internal("stream answer carries no transaction result"));
    }
    let mut status = Status::new(Code::from(answer.code), answer.message);
    if !answer.leader_addr.is_empty() {
        if let Ok(addr) = MetadataValue::try_from(answer.leader_addr.as_str()) {
            status.metadata_mut().insert(pb::LEADER_ADDR_METADATA, addr);
        }
    }
    Err(status)
}

async fn run(
    mut client: RpcClient<Channel>,
    mut calls: mpsc::Receiver<(pb::TxnRequest, Reply)>,
    open_timeout: Duration,
) {
    // Room for every request that may be unanswered, so sending never waits
    // (a send waiting on the server while the server waits on us to read its
    // answers would be a deadlock).
    let (requests, request_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    let mut next_id = 0u64;
    // The call that opened the session goes out with the stream's headers
    // instead of a round trip after them.
    if let Some((txn, reply)) = calls.recv().await {
        next_id += 1;
        let _ = requests.try_send(pb::TxnStreamRequest {
            id: next_id,
            txn: Some(txn),
        });
        pending.insert(next_id, reply);
    }
    let opened = tokio::time::timeout(
        open_timeout,
        client.txn_stream(tokio_stream::wrappers::ReceiverStream::new(request_rx)),
    )
    .await;
    let mut answers = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return fail_all(pending, calls, status),
        Err(_) => {
            let status = Status::unavailable(format!(
                "transaction stream not opened within {open_timeout:?}"
            ));
            return fail_all(pending, calls, status);
        }
    };
    let ended = loop {
        tokio::select! {
            call = calls.recv(), if pending.len() < MAX_IN_FLIGHT => {
                let Some((txn, reply)) = call else { return };
                next_id += 1;
                let request = pb::TxnStreamRequest { id: next_id, txn: Some(txn) };
                if requests.try_send(request).is_err() {
                    let _ = reply.send(Err(Status::unavailable("transaction stream closed")));
                    break Status::unavailable("transaction stream closed");
                }
                pending.insert(next_id, reply);
            }
            answer = answers.message() => match answer {
                // A caller that gave up (timed out) has dropped its receiver.
                Ok(Some(a)) => {
                    if let Some(reply) = pending.remove(&a.id) {
                        let _ = reply.send(to_result(a));
                    }
                }
                Ok(None) => break Status::unavailable("transaction stream ended by the server"),
                Err(s) => break Status::unavailable(format!("transaction stream failed: {}", s.message())),
            },
        }
    };
    fail_all(pending, calls, ended);
}

/// Ends the session: every call sent or queued gets `status`. Whether an
/// unanswered write was applied is unknown; its caller retries with the same
/// request id, which the server applies at most once.
fn fail_all(
    pending: HashMap<u64, Reply>,
    mut calls: mpsc::Receiver<(pb::TxnRequest, Reply)>,
    status: Status,
) {
    for (_, reply) in pending {
        let _ = reply.send(Err(status.clone()));
    }
    calls.close();
    while let Ok((_, reply)) = calls.try_recv() {
        let _ = reply.send(Err(status.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_what_the_unary_call_returns() {
        let ok = to_result(pb::TxnStreamResponse {
            id: 1,
            txn: Some(pb::TxnResponse {
                succeeded: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(ok.is_ok_and(|r| r.succeeded));

        let redirect = to_result(pb::TxnStreamResponse {
            id: 2,
            code: Code::Unavailable as i32,
            message: "not the leader".into(),
            leader_addr: "127.0.0.1:7002".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(redirect.code(), Code::Unavailable);
        assert_eq!(
            redirect
                .metadata()
                .get("leader-addr")
                .map(|v| v.to_str().unwrap()),
            Some("127.0.0.1:7002")
        );

        let bad = to_result(pb::TxnStreamResponse {
            id: 3,
            code: Code::InvalidArgument as i32,
            message: "key is 5000 bytes".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.metadata().get("leader-addr").is_none());

        let empty = to_result(pb::TxnStreamResponse {
            id: 4,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(empty.code(), Code::Internal);
    }
}
