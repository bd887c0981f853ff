//! Protobuf and gRPC types generated from the files in `proto/`, and the
//! gRPC glue the services share.

pub mod pipeline;

/// The metadata service: the client KV/lease/watch API and Raft peer traffic.
pub mod meta {
    tonic::include_proto!("magnetar.meta.v1");

    /// gRPC metadata key of a follower's `UNAVAILABLE` answer that names the
    /// leader's address, for the client to retry there.
    pub const LEADER_ADDR_METADATA: &str = "leader-addr";
}

/// The ledger service (bookie): adds, reads, LAC, fencing.
pub mod bookie {
    tonic::include_proto!("magnetar.bookie.v1");
}
