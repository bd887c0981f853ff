//! Is the metadata service one linearizable store, whatever happens to its
//! nodes? Concurrent clients read, write and compare-and-set a few registers
//! while something else breaks the cluster; each register's history goes to a
//! Wing & Gong checker that looks for a legal sequential order fitting every
//! operation's call and return.
//!
//! Visibility: `pub` only for the two outside users, the meta service's
//! nemesis test (`services/meta/tests/linearizability.rs`, processes on
//! loopback) and `magnetar meta check-linearizable` (run inside the Docker
//! network by the fault campaign in `e2e/`). The rest stays private.

pub mod linearizability;
mod workload;

pub use workload::{record, History, KeyReport, Recorded, Report, WorkloadConfig, WorkloadError};
