//! Tiered storage: closed ledgers written to object storage (S3 and
//! S3-compatible servers, Google Cloud Storage, Azure Blob Storage, a local
//! directory) and read back. The format is in docs/OFFLOAD.md.
//!
//! - `config`: driver names and fields → an `object_store` client
//! - `format`: the block and index codecs (pure)
//! - `writer`: one ledger → data object (multipart upload) + index object
//! - `reader`: ranged reads with read-ahead of an offloaded ledger
//! - `offloader`: object names, deletion, the deadline of every request

mod config;
mod error;
pub mod format;
mod offloader;
mod reader;
mod writer;

pub use config::{Driver, DriverConfig, StaticCredentials};
pub use error::{OffloadError, Result};
pub use offloader::{data_object_name, index_object_name, new_uuid, Offloader};
pub use reader::OffloadedLedger;
pub use writer::{LedgerWriter, OffloadedInfo};
