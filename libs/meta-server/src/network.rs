//! Raft peer traffic over gRPC: the client side (`PeerNetwork`) that openraft
//! uses to reach other nodes, and the server side (`PeerService`) that hands
//! incoming requests to the local Raft.
//!
//! Payloads are openraft's request/response types in bincode; a remote Raft error
//! travels back inside the payload so openraft can act on it (e.g. a higher vote).
//!
//! AppendEntries, the only frequent request (two per entry per follower: the
//! entries, then the commit index), goes on one long-lived stream per
//! replication session rather than a call each. openraft sends one request
//! at a time per follower, so answers come back in order and need no ids.

use std::time::Duration;

use futures::StreamExt;
use magnetar_proto::meta::raft_peer_client::RaftPeerClient;
use magnetar_proto::meta::raft_peer_server::RaftPeer;
use magnetar_proto::meta::RaftPayload;
use magnetar_proto::pipeline::Answers;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use prost::bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::types::{NodeId, Raft, TypeConfig};

/// Raft payloads can carry many entries (values up to the configured limit) or a
/// snapshot chunk; allow generously sized messages between peers.
pub const MAX_PEER_MESSAGE: usize = 256 << 20;

pub struct PeerNetworkFactory {
    pub connect_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            node: node.clone(),
            client: connect_lazy(&node.addr, self.connect_timeout),
            appends: None,
            unary_appends: false,
        }
    }
}

pub fn connect_lazy(addr: &str, connect_timeout: Duration) -> Option<RaftPeerClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    Some(
        RaftPeerClient::new(magnetar_tls::internal::connect_lazy(endpoint))
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE),
    )
}

pub struct PeerNetwork {
    target: NodeId,
    node: BasicNode,
    client: Option<RaftPeerClient<Channel>>,
    /// The open AppendEntries stream; dropped on any error or timeout, so a
    /// late answer can never be taken for the next request's.
    appends: Option<AppendStream>,
    /// The peer answered UNIMPLEMENTED to the stream (an older version):
    /// AppendEntries calls instead, for the rest of this session.
    unary_appends: bool,
}

struct AppendStream {
    requests: mpsc::Sender<RaftPayload>,
    answers: Streaming<RaftPayload>,
}

/// Sends one request on the append stream (opening it if needed, with the
/// request in the opening call) and waits for its answer.
async fn exchange_on_stream(
    client: &mut RaftPeerClient<Channel>,
    open: &mut Option<AppendStream>,
    data: Bytes,
) -> Result<Bytes, Status> {
    let closed = || Status::unavailable("append stream closed");
    let stream = match open {
        Some(stream) => {
            stream
                .requests
                .send(RaftPayload { data })
                .await
                .map_err(|_| closed())?;
            stream
        }
        None => {
            let (requests, rx) = mpsc::channel(1);
            requests
                .try_send(RaftPayload { data })
                .map_err(|_| closed())?;
            let answers = client
                .append_entries_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            open.insert(AppendStream { requests, answers })
        }
    };
    match stream.answers.message().await? {
        Some(answer) => Ok(answer.data),
        None => Err(closed()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            let err = TransportError(format!("invalid peer address {:?}", self.node.addr));
            return Err(RPCError::Unreachable(Unreachable::new(&err)));
        };
        let data: Bytes = bincode::serialize(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
            .into();
        let ttl = option.hard_ttl();
        let mut answer = None;
        if matches!(kind, Rpc::Append) && !self.unary_appends {
            let exchange = exchange_on_stream(client, &mut self.appends, data.clone());
            let outcome = tokio::time::timeout(ttl, exchange).await;
            if !matches!(outcome, Ok(Ok(_))) {
                self.appends = None;
            }
            answer = match outcome {
                Ok(Ok(data)) => Some(data),
                Ok(Err(status)) if status.code() == Code::Unimplemented => {
                    tracing::info!(
                        target = self.target,
                        "peer has no append stream; using calls"
                    );
                    self.unary_appends = true;
                    None
                }
                Ok(Err(status)) => return Err(unreachable(kind, self.target, &status)),
                Err(_) => return Err(timed_out(kind, self.target)),
            };
        }
        let data = match answer {
            Some(data) => data,
            None => {
                let mut request = tonic::Request::new(RaftPayload { data });
                request.set_timeout(ttl);
                let call = async {
                    match kind {
                        Rpc::Append => client.append_entries(request).await,
                        Rpc::Vote => client.vote(request).await,
                        Rpc::Snapshot => client.install_snapshot(request).await,
                    }
                };
                match tokio::time::timeout(ttl, call).await {
                    Err(_) => return Err(timed_out(kind, self.target)),
                    Ok(Err(status)) => return Err(unreachable(kind, self.target, &status)),
                    Ok(Ok(r)) => r.into_inner().data,
                }
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

fn timed_out<E: std::error::Error>(kind: Rpc, target: NodeId) -> RPCError<NodeId, BasicNode, E> {
    let err = TransportError(format!("{kind:?} to node {target} timed out"));
    RPCError::Unreachable(Unreachable::new(&err))
}

fn unreachable<E: std::error::Error>(
    kind: Rpc,
    target: NodeId,
    status: &Status,
) -> RPCError<NodeId, BasicNode, E> {
    let err = TransportError(format!("{kind:?} to node {target}: {status}"));
    RPCError::Unreachable(Unreachable::new(&err))
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

/// Server side of the peer protocol.
pub struct PeerService {
    pub raft: Raft,
}

fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    bincode::deserialize(data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<RaftPayload, Status> {
    let data = bincode::serialize(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(RaftPayload { data: data.into() })
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data)?;
        encode(&self.raft.append_entries(rpc).await).map(tonic::Response::new)
    }

    async fn vote(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().data)?;
        encode(&self.raft.vote(rpc).await).map(tonic::Response::new)
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().data)?;
        encode(&self.raft.install_snapshot(rpc).await).map(tonic::Response::new)
    }

    type AppendEntriesStreamStream = Answers<RaftPayload>;

    /// Answers each request before reading the next, so answers keep the
    /// requests' order. An undecodable request ends the stream with its error.
    async fn append_entries_stream(
        &self,
        req: tonic::Request<Streaming<RaftPayload>>,
    ) -> Result<tonic::Response<Self::AppendEntriesStreamStream>, Status> {
        let raft = self.raft.clone();
        let answers = req.into_inner().then(move |request| {
            let raft = raft.clone();
            async move {
                let rpc: AppendEntriesRequest<TypeConfig> = decode(&request?.data)?;
                encode(&raft.append_entries(rpc).await)
            }
        });
        Ok(tonic::Response::new(Box::pin(answers)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use magnetar_proto::meta::raft_peer_server::RaftPeerServer;
    use openraft::Vote;

    use super::*;

    /// A peer of a version before the append stream: AppendEntries calls only.
    struct CallsOnly {
        calls: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl RaftPeer for CallsOnly {
        async fn append_entries(
            &self,
            req: tonic::Request<RaftPayload>,
        ) -> Result<tonic::Response<RaftPayload>, Status> {
            let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data)?;
            assert_eq!(rpc.vote, Vote::new(4, 1));
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
                Ok(AppendEntriesResponse::Success);
            encode(&answer).map(tonic::Response::new)
        }

        async fn vote(
            &self,
            _: tonic::Request<RaftPayload>,
        ) -> Result<tonic::Response<RaftPayload>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn install_snapshot(
            &self,
            _: tonic::Request<RaftPayload>,
        ) -> Result<tonic::Response<RaftPayload>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        type AppendEntriesStreamStream = Answers<RaftPayload>;

        /// What tonic answers for a method the server does not have.
        async fn append_entries_stream(
            &self,
            _: tonic::Request<Streaming<RaftPayload>>,
        ) -> Result<tonic::Response<Self::AppendEntriesStreamStream>, Status> {
            Err(Status::unimplemented("unknown method AppendEntriesStream"))
        }
    }

    #[tokio::test]
    async fn appends_fall_back_to_calls_when_the_peer_has_no_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let server = tonic::transport::Server::builder()
            .add_service(RaftPeerServer::new(CallsOnly {
                calls: calls.clone(),
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(server);

        let mut factory = PeerNetworkFactory {
            connect_timeout: Duration::from_secs(2),
        };
        let mut peer = factory
            .new_client(2, &BasicNode::new(addr.to_string()))
            .await;
        for n in 1..=3 {
            let request = AppendEntriesRequest {
                vote: Vote::new(4, 1),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            };
            let answer = peer
                .append_entries(request, RPCOption::new(Duration::from_secs(5)))
                .await
                .unwrap();
            assert_eq!(answer, AppendEntriesResponse::Success);
            assert_eq!(calls.load(Ordering::SeqCst), n);
        }
        assert!(
            peer.unary_appends,
            "the session should have switched to calls"
        );
        server.abort();
    }
}
