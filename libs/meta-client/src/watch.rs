use std::time::{Duration, Instant};

use magnetar_proto::meta as pb;
use tonic::{Code, Streaming};

use crate::{Error, MetaClient, Result};

/// A prefix watch that survives node failures: when its stream breaks it
/// reconnects (to any node) from the revision after the last one it delivered.
/// History that is gone surfaces as `Error::Compacted`.
pub struct Watcher {
    client: MetaClient,
    prefix: Vec<u8>,
    /// Next revision to deliver.
    next_revision: i64,
    stream: Option<Streaming<pb::WatchResponse>>,
}

impl Watcher {
    pub(crate) async fn start(
        client: MetaClient,
        prefix: Vec<u8>,
        start_revision: i64,
    ) -> Result<Self> {
        let mut start = start_revision;
        if start <= 0 {
            // "From now": pin "now" to a revision so a reconnect cannot skip events.
            start = client
                .list(
                    &prefix,
                    crate::ListOptions {
                        limit: 1,
                        keys_only: true,
                        ..Default::default()
                    },
                )
                .await?
                .revision
                + 1;
        }
        let mut w = Self {
            client,
            prefix,
            next_revision: start,
            stream: None,
        };
        w.connect().await?;
        Ok(w)
    }

    async fn connect(&mut self) -> Result<()> {
        let req = pb::WatchRequest {
            prefix: self.prefix.clone().into(),
            start_revision: self.next_revision,
        };
        let cfg = self.client.config().clone();
        let deadline = Instant::now() + cfg.operation_timeout;
        let mut last = String::new();
        let mut attempts = 0;
        let mut i = 0usize;
        while Instant::now() < deadline {
            attempts += 1;
            let addr = cfg.endpoints[i % cfg.endpoints.len()].clone();
            i += 1;
            let mut rpc = self.client.rpc(&addr)?;
            match tokio::time::timeout(cfg.request_timeout, rpc.watch(req.clone())).await {
                Ok(Ok(resp)) => {
                    self.stream = Some(resp.into_inner());
                    return Ok(());
                }
                Ok(Err(s)) => {
                    if let Some(e) = Error::from_final_status(&s) {
                        return Err(e);
                    }
                    last = format!("{addr}: {}", s.message());
                }
                Err(_) => last = format!("{addr}: no answer"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Unavailable {
            elapsed: cfg.operation_timeout,
            attempts,
            last,
        })
    }

    /// The next batch of events (all of one revision).
    pub async fn next(&mut self) -> Result<pb::WatchResponse> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.connect().await?;
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) => {
                    self.next_revision = resp.revision + 1;
                    return Ok(resp);
                }
                Ok(None) => self.stream = None,
                Err(s) => {
                    if s.code() != Code::Unavailable
                        && s.code() != Code::Unknown
                        && s.code() != Code::Cancelled
                    {
                        if let Some(e) = Error::from_final_status(&s) {
                            return Err(e);
                        }
                    }
                    tracing::debug!(error = %s, "watch stream broke; reconnecting");
                    self.stream = None;
                }
            }
        }
    }

    /// The first revision not yet delivered.
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }
}
