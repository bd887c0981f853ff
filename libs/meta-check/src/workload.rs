//! The register workload: `clients` tasks, each looping over a random read,
//! write or CAS on one of `keys` registers, recording call and return times
//! from one monotonic clock.
//!
//! An operation whose outcome the client never learned (a timeout, a lost
//! leader) is recorded with `ret = u64::MAX`: it may take effect at any later
//! instant or never. Such operations stay concurrent with everything after
//! them, so a long history full of them makes the search explode; every
//! `slice` the workload moves on to fresh registers, which bounds each history.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use magnetar_meta_client::{ClientConfig, Error, ListOptions, MetaClient, PutOptions};
use rand::Rng;

use crate::linearizability::{check, Operation, RegisterInput, RegisterOutput, VersionedRegister};

/// One register's history.
pub type History = Vec<Operation<RegisterInput, RegisterOutput>>;

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Metadata node addresses (host:port).
    pub endpoints: Vec<String>,
    pub clients: usize,
    /// Registers written at once.
    pub keys: usize,
    /// Registers live under `{prefix}/{slice}/{key}`; use a prefix no earlier
    /// run used, since a register must start absent.
    pub prefix: String,
    /// How long one set of registers is used before the next.
    pub slice: Duration,
    /// A client's pause after each operation (0: as fast as it can).
    pub pause: Duration,
    /// One attempt against one node.
    pub request_timeout: Duration,
    /// One operation, retries included; after it the outcome is unknown.
    pub operation_timeout: Duration,
}

impl WorkloadConfig {
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        Self {
            endpoints,
            clients: 6,
            keys: 3,
            prefix: prefix.into(),
            slice: Duration::from_secs(3600),
            pause: Duration::ZERO,
            request_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot make a metadata client: {0}")]
    Client(#[source] Error),
    #[error(
        "{op} on {key} failed with an error that is neither an answer nor an unknown outcome: \
         {source} (is the metadata service configured as the workload expects?)"
    )]
    Unexpected {
        op: &'static str,
        key: String,
        #[source]
        source: Error,
    },
    #[error("{key} holds {value:?}, which this workload never wrote: choose a fresh --prefix")]
    ForeignValue { key: String, value: String },
    #[error(
        "{prefix}/ already holds {found} (a register must start absent): choose a fresh --prefix"
    )]
    PrefixInUse { prefix: String, found: String },
    #[error("cannot list {prefix}/ to see that it is unused: {source}")]
    PrefixUnknown {
        prefix: String,
        #[source]
        source: Error,
    },
    #[error("a workload client panicked")]
    Panicked,
}

/// What the clients recorded, one history per register.
pub struct Recorded {
    pub histories: BTreeMap<String, History>,
}

#[derive(Clone, Debug)]
pub struct KeyReport {
    pub key: String,
    pub operations: usize,
    /// Operations whose outcome the client never learned.
    pub unknown: usize,
    pub linearizable: bool,
    pub check_time: Duration,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub keys: Vec<KeyReport>,
}

impl Report {
    pub fn linearizable(&self) -> bool {
        self.keys.iter().all(|k| k.linearizable)
    }

    pub fn operations(&self) -> usize {
        self.keys.iter().map(|k| k.operations).sum()
    }
}

impl Recorded {
    /// Checks every register's history (CPU-bound: call it off the runtime).
    pub fn check(&self) -> Report {
        let keys = self
            .histories
            .iter()
            .map(|(key, h)| {
                let started = Instant::now();
                let linearizable = check(&VersionedRegister, h);
                KeyReport {
                    key: key.clone(),
                    operations: h.len(),
                    unknown: h
                        .iter()
                        .filter(|o| o.output == RegisterOutput::Unknown)
                        .count(),
                    linearizable,
                    check_time: started.elapsed(),
                }
            })
            .collect();
        Report { keys }
    }
}

type Shared = Arc<Mutex<BTreeMap<String, History>>>;

/// Runs the workload until `stop` completes, then waits for the operations in
/// flight (each bounded by `operation_timeout`) and returns the histories.
pub async fn record(
    cfg: WorkloadConfig,
    stop: impl Future<Output = ()>,
) -> Result<Recorded, WorkloadError> {
    ensure_unused(&cfg).await?;
    let epoch = Instant::now();
    let histories: Shared = Arc::default();
    let halt = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..cfg.clients {
        let mut ccfg = ClientConfig::new(cfg.endpoints.clone());
        ccfg.request_timeout = cfg.request_timeout;
        ccfg.operation_timeout = cfg.operation_timeout;
        // Spread first contacts over the nodes so redirects are exercised too.
        let n = ccfg.endpoints.len().max(1);
        ccfg.endpoints.rotate_left(w % n);
        let client = MetaClient::new(ccfg).map_err(WorkloadError::Client)?;
        let worker = Worker {
            id: w as i64,
            client,
            cfg: cfg.clone(),
            epoch,
            histories: histories.clone(),
        };
        let halt = halt.clone();
        workers.push(tokio::spawn(async move { worker.run(&halt).await }));
    }
    stop.await;
    halt.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.map_err(|_| WorkloadError::Panicked)??;
    }
    let histories = std::mem::take(&mut *histories.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Recorded { histories })
}

/// Every register must start absent, or the first read's answer fits no
/// history: refuse a prefix that holds anything.
async fn ensure_unused(cfg: &WorkloadConfig) -> Result<(), WorkloadError> {
    let mut ccfg = ClientConfig::new(cfg.endpoints.clone());
    ccfg.operation_timeout = cfg.operation_timeout.max(Duration::from_secs(10));
    let client = MetaClient::new(ccfg).map_err(WorkloadError::Client)?;
    let opts = ListOptions {
        limit: 1,
        keys_only: true,
        ..Default::default()
    };
    let prefix = format!("{}/", cfg.prefix);
    let page = client
        .list(&prefix, opts)
        .await
        .map_err(|source| WorkloadError::PrefixUnknown {
            prefix: cfg.prefix.clone(),
            source,
        })?;
    match page.kvs.first() {
        None => Ok(()),
        Some(kv) => Err(WorkloadError::PrefixInUse {
            prefix: cfg.prefix.clone(),
            found: String::from_utf8_lossy(&kv.key).into_owned(),
        }),
    }
}

struct Worker {
    id: i64,
    client: MetaClient,
    cfg: WorkloadConfig,
    epoch: Instant,
    histories: Shared,
}

impl Worker {
    async fn run(self, halt: &AtomicBool) -> Result<(), WorkloadError> {
        let mut n = 0i64;
        while !halt.load(Ordering::Relaxed) {
            n += 1;
            let (k, kind, guess) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(0..self.cfg.keys.max(1)),
                    rng.random_range(0..3u8),
                    rng.random_range(0..4i64),
                )
            };
            let slice = self.epoch.elapsed().as_nanos() / self.cfg.slice.as_nanos().max(1);
            let key = format!("{}/{slice}/{k}", self.cfg.prefix);
            // Unique per client and operation, so a read names the write it saw.
            let value = self.id * 1_000_000_000 + n;
            let call = self.now();
            let done = match kind {
                0 => self.read(&key).await?,
                1 => Some(self.write(&key, value).await?),
                _ => Some(self.cas(&key, guess, value).await?),
            };
            if let Some((input, output)) = done {
                let ret = if output == RegisterOutput::Unknown {
                    u64::MAX
                } else {
                    self.now()
                };
                let op = Operation {
                    call,
                    ret,
                    input,
                    output,
                };
                let mut h = self.histories.lock().unwrap_or_else(|p| p.into_inner());
                h.entry(key).or_default().push(op);
            }
            if !self.cfg.pause.is_zero() {
                tokio::time::sleep(self.cfg.pause).await;
            }
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// None: the read failed, which has no effect and is left out.
    async fn read(
        &self,
        key: &str,
    ) -> Result<Option<(RegisterInput, RegisterOutput)>, WorkloadError> {
        let out = match self.client.get(key).await {
            Ok(Some(kv)) => {
                let text = String::from_utf8_lossy(&kv.value);
                let v = text.parse().map_err(|_| WorkloadError::ForeignValue {
                    key: key.to_string(),
                    value: text.to_string(),
                })?;
                RegisterOutput::Read(Some(v), kv.version)
            }
            Ok(None) => RegisterOutput::Read(None, 0),
            Err(e) if e.is_indeterminate() => return Ok(None),
            Err(source) => return Err(unexpected("read", key, source)),
        };
        Ok(Some((RegisterInput::Read, out)))
    }

    async fn write(
        &self,
        key: &str,
        value: i64,
    ) -> Result<(RegisterInput, RegisterOutput), WorkloadError> {
        let out = match self.client.put(key, value.to_string()).await {
            Ok(_) => RegisterOutput::Written,
            Err(e) if e.is_indeterminate() => RegisterOutput::Unknown,
            Err(source) => return Err(unexpected("write", key, source)),
        };
        Ok((RegisterInput::Write(value), out))
    }

    async fn cas(
        &self,
        key: &str,
        expected_version: i64,
        new: i64,
    ) -> Result<(RegisterInput, RegisterOutput), WorkloadError> {
        let opts = PutOptions {
            expected_version: Some(expected_version),
            lease: 0,
        };
        let out = match self.client.put_with(key, new.to_string(), opts).await {
            Ok(_) => RegisterOutput::Cas(true),
            Err(Error::VersionMismatch { .. }) => RegisterOutput::Cas(false),
            Err(e) if e.is_indeterminate() => RegisterOutput::Unknown,
            Err(source) => return Err(unexpected("cas", key, source)),
        };
        let input = RegisterInput::Cas {
            expected_version,
            new,
        };
        Ok((input, out))
    }
}

fn unexpected(op: &'static str, key: &str, source: Error) -> WorkloadError {
    WorkloadError::Unexpected {
        op,
        key: key.to_string(),
        source,
    }
}
