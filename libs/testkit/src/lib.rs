//! Real clusters of Magnetar binaries for tests: free loopback ports, temporary
//! data dirs, readiness waits, and faults (SIGKILL, restart, SIGSTOP/SIGCONT).
//! Each process logs to a file; when a test panics the tail of every log is
//! printed so a failure can be read from CI output alone.

pub mod bench_report;
mod bookie;
mod broker;
pub mod http;
mod meta;
mod process;
mod s3;
pub mod tls;

pub use bookie::{BookieCluster, BookieProc};
pub use broker::{python, run_python, BrokerCluster, BrokerProc, PulsarService, Standalone, Urls};
pub use meta::{MetaCluster, MetaNodeProc};
pub use process::{bin_path, free_port, Process};
pub use s3::{s3_python, S3Server};
