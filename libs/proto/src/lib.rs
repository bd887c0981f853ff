//! Protobuf and gRPC types generated from the files in `proto/`, and the
//! gRPC glue the services share.

pub mod pipeline;

/// The metadata service: the client KV/lease/watch API and Raft peer traffic.
pub mod meta {
    tonic::include_proto!("magnetar.meta.v1");
}

/// The ledger service (bookie): adds, reads, LAC, fencing.
pub mod bookie {
    tonic::include_proto!("magnetar.bookie.v1");
}
