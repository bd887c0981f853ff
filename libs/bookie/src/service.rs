//! The bookie's gRPC face: maps requests onto `Bookie` and its refusals onto
//! status codes. Adds arrive on a bidirectional stream and are processed
//! concurrently (the journal batches them); a per-stream cap on in-flight adds
//! is the backpressure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use magnetar_proto::bookie as pb;
use magnetar_proto::bookie::bookie_server::Bookie as BookieRpc;
use magnetar_proto::pipeline;
use tonic::{Request, Response, Status, Streaming};

use crate::bookie::{AddEntry, Bookie, BookieError, Refusal};
use crate::metrics::BookieMetrics;

pub struct BookieService {
    pub bookie: Arc<Bookie>,
    pub metrics: Arc<BookieMetrics>,
    /// Adds one stream may have in flight before it stops reading requests.
    pub max_in_flight_per_stream: usize,
    pub disk: Arc<crate::disk::DiskMonitor>,
}

fn code_of(e: &BookieError) -> (pb::StatusCode, String) {
    let code = match e {
        BookieError::Refused(r, _) => match r {
            Refusal::Fenced => pb::StatusCode::Fenced,
            Refusal::Unauthorized => pb::StatusCode::Unauthorized,
            Refusal::BadChecksum => pb::StatusCode::BadChecksum,
            Refusal::ReadOnly => pb::StatusCode::ReadOnly,
            Refusal::NoEntry => pb::StatusCode::NoEntry,
            Refusal::NoLedger => pb::StatusCode::NoLedger,
            Refusal::Invalid => pb::StatusCode::Invalid,
        },
        BookieError::Journal(_) | BookieError::Store(_) => pb::StatusCode::Error,
    };
    if code == pb::StatusCode::Error {
        tracing::error!(error = %e, "bookie operation failed");
    }
    (code, e.to_string())
}

type AddStream = pipeline::Answers<pb::AddResponse>;

/// One add, from request to response.
async fn add_one(
    bookie: Arc<Bookie>,
    metrics: Arc<BookieMetrics>,
    add: pb::AddRequest,
) -> pb::AddResponse {
    let started = Instant::now();
    let (ledger_id, entry_id, request_id, bytes) = (
        add.ledger_id,
        add.entry_id,
        add.request_id,
        add.payload.len(),
    );
    let result = bookie
        .add(AddEntry {
            ledger: add.ledger_id,
            entry: add.entry_id,
            payload: add.payload,
            crc32c: add.crc32c,
            lac: add.lac,
            master_key: add.master_key.to_vec(),
            recovery: add.recovery,
        })
        .await;
    let (code, message) = match &result {
        Ok(timings) => {
            metrics.record_add(started.elapsed(), *timings, bytes);
            (pb::StatusCode::Ok, String::new())
        }
        Err(e) => {
            metrics.add_errors.inc();
            code_of(e)
        }
    };
    pb::AddResponse {
        ledger_id,
        entry_id,
        code: code as i32,
        message,
        request_id,
    }
}

#[tonic::async_trait]
impl BookieRpc for BookieService {
    type AddEntriesStream = AddStream;

    async fn add_entries(
        &self,
        req: Request<Streaming<pb::AddRequest>>,
    ) -> Result<Response<AddStream>, Status> {
        let (bookie, metrics) = (self.bookie.clone(), self.metrics.clone());
        Ok(Response::new(pipeline::serve(
            req.into_inner(),
            self.max_in_flight_per_stream,
            move |add| add_one(bookie.clone(), metrics.clone(), add),
        )))
    }

    async fn read_entry(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let req = req.into_inner();
        let started = Instant::now();
        let resp = match self.bookie.read(req.ledger_id, req.entry_id) {
            Ok((entry_id, e)) => {
                self.metrics.record_read(started.elapsed(), e.payload.len());
                pb::ReadResponse {
                    ledger_id: req.ledger_id,
                    entry_id,
                    code: pb::StatusCode::Ok as i32,
                    message: String::new(),
                    payload: e.payload.into(),
                    crc32c: e.crc32c,
                    lac: e.lac,
                }
            }
            Err(e) => {
                let (code, message) = code_of(&e);
                pb::ReadResponse {
                    ledger_id: req.ledger_id,
                    entry_id: req.entry_id,
                    code: code as i32,
                    message,
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(resp))
    }

    async fn read_lac(
        &self,
        req: Request<pb::ReadLacRequest>,
    ) -> Result<Response<pb::ReadLacResponse>, Status> {
        let req = req.into_inner();
        let timeout = Duration::from_millis(u64::from(req.timeout_ms.min(60_000)));
        let resp = match self
            .bookie
            .read_lac(req.ledger_id, req.previous_lac, timeout)
            .await
        {
            Ok((lac, last_entry_id)) => pb::ReadLacResponse {
                code: pb::StatusCode::Ok as i32,
                message: String::new(),
                lac,
                last_entry_id,
            },
            Err(e) => {
                let (code, message) = code_of(&e);
                pb::ReadLacResponse {
                    code: code as i32,
                    message,
                    lac: -1,
                    last_entry_id: -1,
                }
            }
        };
        Ok(Response::new(resp))
    }

    async fn fence(
        &self,
        req: Request<pb::FenceRequest>,
    ) -> Result<Response<pb::FenceResponse>, Status> {
        let req = req.into_inner();
        let resp = match self
            .bookie
            .fence(req.ledger_id, req.master_key.to_vec())
            .await
        {
            Ok((lac, last_entry_id)) => pb::FenceResponse {
                code: pb::StatusCode::Ok as i32,
                message: String::new(),
                lac,
                last_entry_id,
            },
            Err(e) => {
                let (code, message) = code_of(&e);
                pb::FenceResponse {
                    code: code as i32,
                    message,
                    lac: -1,
                    last_entry_id: -1,
                }
            }
        };
        Ok(Response::new(resp))
    }

    async fn delete_ledger(
        &self,
        req: Request<pb::DeleteLedgerRequest>,
    ) -> Result<Response<pb::DeleteLedgerResponse>, Status> {
        let ledger = req.into_inner().ledger_id;
        let (code, message) = match self.bookie.delete(ledger).await {
            Ok(()) => (pb::StatusCode::Ok, String::new()),
            Err(e) => code_of(&e),
        };
        Ok(Response::new(pb::DeleteLedgerResponse {
            code: code as i32,
            message,
        }))
    }

    async fn info(
        &self,
        _req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let (free_bytes, total_bytes) = self.disk.last();
        Ok(Response::new(pb::InfoResponse {
            bookie_id: self.bookie.id.clone(),
            free_bytes,
            total_bytes,
            read_only: self.bookie.is_read_only(),
            ledgers: self.bookie.ledger_count() as u64,
        }))
    }
}
