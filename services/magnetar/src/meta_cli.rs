//! `magnetar meta ...`: a command-line client for the metadata service, in the
//! spirit of etcdctl. Output is JSON (one object, or one per line for streams).
//! Exit codes: 0 success, 2 compare-and-set mismatch, 3 service unavailable
//! (no leader / timeout), 1 any other error.

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use magnetar_meta_client::{
    ClientConfig, CompareOp, Error, EventType, KeyValue, ListOptions, MetaClient, PutOptions, Txn,
};
use serde_json::{json, Value};

mod check;

#[derive(Args)]
pub struct MetaCli {
    /// Metadata service addresses, comma-separated.
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_META_ENDPOINTS",
        default_value = "127.0.0.1:7001"
    )]
    meta: String,
    /// Give up after this many seconds (retries included).
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: MetaCommand,
}

#[derive(Subcommand)]
enum MetaCommand {
    /// Leader, term, members and indexes.
    Status,
    /// Read one key (linearizable unless --serializable).
    Get {
        key: String,
        #[arg(long)]
        serializable: bool,
    },
    /// Write one key.
    Put {
        key: String,
        value: String,
        /// Only if the key's version is N (0 = must not exist).
        #[arg(long)]
        expect_version: Option<i64>,
        /// Attach to a lease.
        #[arg(long, default_value_t = 0)]
        lease: i64,
    },
    /// Delete a key, or every key under a prefix.
    Del {
        key: String,
        #[arg(long, conflicts_with = "expect_version")]
        prefix: bool,
        #[arg(long)]
        expect_version: Option<i64>,
    },
    /// List keys under a prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        keys_only: bool,
        /// At most N keys (one page); default: all.
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long, default_value = "")]
        start_after: String,
    },
    /// Print changes under a prefix as JSON lines.
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// First revision to report (default: changes from now on).
        #[arg(long, default_value_t = 0)]
        from_revision: i64,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Compare versions, then put/delete atomically.
    Txn {
        /// KEY=VERSION: holds if the key's version equals VERSION (0 = absent).
        #[arg(long = "cmp")]
        compares: Vec<String>,
        /// KEY=VALUE to put if all compares hold.
        #[arg(long = "put")]
        puts: Vec<String>,
        /// KEY to delete if all compares hold.
        #[arg(long = "del")]
        dels: Vec<String>,
        /// KEY=VALUE to put otherwise.
        #[arg(long = "else-put")]
        else_puts: Vec<String>,
        /// KEY to delete otherwise.
        #[arg(long = "else-del")]
        else_dels: Vec<String>,
    },
    #[command(subcommand)]
    Lease(LeaseCommand),
    #[command(subcommand)]
    Members(MembersCommand),
    /// Run a read/write/CAS workload on fresh registers and check that every
    /// register's history is linearizable (exit 1 if one is not).
    CheckLinearizable(check::CheckArgs),
}

#[derive(Subcommand)]
enum LeaseCommand {
    Grant {
        ttl_seconds: i64,
    },
    Revoke {
        id: i64,
    },
    /// Keep a lease alive until interrupted.
    Keepalive {
        id: i64,
    },
    List,
    /// Grant a lease, put keys on it, print the lease id, keep it alive until killed.
    Hold {
        #[arg(long)]
        ttl: i64,
        /// KEY=VALUE to attach.
        #[arg(long = "put")]
        puts: Vec<String>,
    },
}

#[derive(Subcommand)]
enum MembersCommand {
    List,
    /// Add a node (started with --join) as a non-voting learner; it catches up.
    AddLearner {
        id: u64,
        addr: String,
    },
    /// Make a learner a voter.
    Promote {
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        id: u64,
    },
}

#[derive(Debug)]
enum CliError {
    Meta(Error),
    Usage(String),
    Check(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Meta(e) => write!(f, "{e}"),
            CliError::Usage(m) | CliError::Check(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Meta(e)
    }
}

pub async fn run(cli: MetaCli) -> ExitCode {
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                CliError::Meta(Error::VersionMismatch { .. }) => 2,
                CliError::Meta(Error::Unavailable { .. }) => 3,
                _ => 1,
            })
        }
    }
}

fn kv_json(kv: &KeyValue) -> Value {
    let mut v = json!({
        "key": String::from_utf8_lossy(&kv.key),
        "version": kv.version,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "lease": kv.lease,
    });
    match std::str::from_utf8(&kv.value) {
        Ok(s) => v["value"] = json!(s),
        Err(_) => {
            v["value_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&kv.value))
        }
    }
    v
}

fn split_pair(s: &str, what: &str) -> Result<(String, String), CliError> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| CliError::Usage(format!("{what} {s:?} must look like KEY=VALUE")))
}

fn print(v: Value) {
    println!("{v}");
}

async fn execute(cli: MetaCli) -> Result<(), CliError> {
    let mut cfg = ClientConfig::from_list(&cli.meta);
    let endpoints = cfg.endpoints.clone();
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        return Err(CliError::Usage(
            "--timeout must be a positive number of seconds".into(),
        ));
    }
    cfg.operation_timeout = Duration::from_secs_f64(cli.timeout);
    cfg.request_timeout = cfg.request_timeout.min(cfg.operation_timeout);
    let client = MetaClient::new(cfg)?;
    match cli.command {
        MetaCommand::Status => {
            let s = client.status().await?;
            print(json!({
                "id": s.id,
                "leader": s.leader,
                "leader_addr": s.leader_addr,
                "term": s.term,
                "state": s.state,
                "revision": s.revision,
                "last_log_index": s.last_log_index,
                "applied_index": s.applied_index,
                "snapshot_index": s.snapshot_index,
                "members": s.members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>(),
            }));
        }
        MetaCommand::Get { key, serializable } => {
            match client.get_with(&key, serializable).await? {
                Some(kv) => print(kv_json(&kv)),
                None => return Err(CliError::Meta(Error::NotFound(format!("key {key:?}")))),
            }
        }
        MetaCommand::Put {
            key,
            value,
            expect_version,
            lease,
        } => {
            let r = client
                .put_with(
                    &key,
                    &value,
                    PutOptions {
                        expected_version: expect_version,
                        lease,
                    },
                )
                .await?;
            print(json!({"key": key, "version": r.version, "revision": r.revision}));
        }
        MetaCommand::Del {
            key,
            prefix,
            expect_version,
        } => {
            let deleted = if prefix {
                client.delete_prefix(&key).await?
            } else {
                client.delete(&key, expect_version).await? as i64
            };
            print(json!({"deleted": deleted}));
        }
        MetaCommand::List {
            prefix,
            keys_only,
            limit,
            start_after,
        } => {
            let page = match limit {
                Some(limit) => {
                    client
                        .list(
                            &prefix,
                            ListOptions {
                                start_after: start_after.into_bytes(),
                                limit,
                                keys_only,
                                serializable: false,
                            },
                        )
                        .await?
                }
                None => client.list_all(&prefix).await?,
            };
            let kvs: Vec<Value> = page
                .kvs
                .iter()
                .map(|kv| {
                    if keys_only {
                        json!(String::from_utf8_lossy(&kv.key))
                    } else {
                        kv_json(kv)
                    }
                })
                .collect();
            print(json!({"kvs": kvs, "more": page.more, "revision": page.revision}));
        }
        MetaCommand::Watch {
            prefix,
            from_revision,
            count,
        } => {
            let mut watcher = client.watch(&prefix, from_revision).await?;
            let mut seen = 0usize;
            while count.is_none_or(|c| seen < c) {
                let batch = watcher.next().await?;
                for e in &batch.events {
                    let kv = e.kv.clone().unwrap_or_default();
                    let kind = if e.r#type == EventType::Delete as i32 {
                        "DELETE"
                    } else {
                        "PUT"
                    };
                    let mut v = kv_json(&kv);
                    v["type"] = json!(kind);
                    v["revision"] = json!(batch.revision);
                    print(v);
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        break;
                    }
                }
            }
        }
        MetaCommand::Txn {
            compares,
            puts,
            dels,
            else_puts,
            else_dels,
        } => {
            let mut txn = Txn::new();
            for c in &compares {
                let (k, v) = split_pair(c, "--cmp")?;
                let version = v.parse().map_err(|_| {
                    CliError::Usage(format!("--cmp {c:?}: version must be a number"))
                })?;
                txn = txn.when(k, CompareOp::Equal, version);
            }
            for p in &puts {
                let (k, v) = split_pair(p, "--put")?;
                txn = txn.put(k, v);
            }
            for k in &dels {
                txn = txn.delete(k);
            }
            for p in &else_puts {
                let (k, v) = split_pair(p, "--else-put")?;
                txn = txn.or_else_put(k, v);
            }
            for k in &else_dels {
                txn = txn.or_else_delete(k);
            }
            let r = client.txn(txn).await?;
            print(json!({
                "succeeded": r.succeeded,
                "revision": r.header.map_or(0, |h| h.revision),
                "compare_versions": r.compare_versions,
            }));
        }
        MetaCommand::Lease(cmd) => lease(&client, cmd).await?,
        MetaCommand::CheckLinearizable(args) => check::run(endpoints, args).await?,
        MetaCommand::Members(cmd) => {
            let members = match cmd {
                MembersCommand::List => client.status().await?.members,
                MembersCommand::AddLearner { id, addr } => client.add_learner(id, &addr).await?,
                MembersCommand::Promote { id } => {
                    let mut voters: Vec<u64> = client
                        .status()
                        .await?
                        .members
                        .iter()
                        .filter(|m| m.voter)
                        .map(|m| m.id)
                        .collect();
                    voters.push(id);
                    client.change_membership(voters, false).await?
                }
                MembersCommand::Remove { id } => {
                    let voters: Vec<u64> = client
                        .status()
                        .await?
                        .members
                        .iter()
                        .filter(|m| m.voter && m.id != id)
                        .map(|m| m.id)
                        .collect();
                    client.change_membership(voters, false).await?
                }
            };
            print(json!({
                "members": members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>()
            }));
        }
    }
    Ok(())
}

async fn lease(client: &MetaClient, cmd: LeaseCommand) -> Result<(), CliError> {
    match cmd {
        LeaseCommand::Grant { ttl_seconds } => {
            let l = client.lease_grant(ttl_seconds).await?;
            print(json!({"id": l.id, "ttl": l.ttl_seconds}));
        }
        LeaseCommand::Revoke { id } => {
            let found = client.lease_revoke(id).await?;
            if !found {
                return Err(CliError::Meta(Error::NotFound(format!("lease {id}"))));
            }
            print(json!({"revoked": id}));
        }
        LeaseCommand::Keepalive { id } => loop {
            let ttl = client.lease_keep_alive(id).await?;
            print(json!({"id": id, "ttl": ttl}));
            tokio::time::sleep(Duration::from_secs((ttl / 3).max(1) as u64)).await;
        },
        LeaseCommand::List => {
            let leases = client.lease_list().await?;
            print(json!({
                "leases": leases.iter().map(|l| json!({"id": l.lease_id, "ttl": l.ttl_seconds, "keys": l.keys})).collect::<Vec<_>>()
            }));
        }
        LeaseCommand::Hold { ttl, puts } => {
            let pairs = puts
                .iter()
                .map(|p| split_pair(p, "--put"))
                .collect::<Result<Vec<_>, _>>()?;
            let lease = client.lease_grant(ttl).await?;
            let mut txn = Txn::new();
            for (k, v) in &pairs {
                txn = txn.put_with_lease(k, v, lease.id);
            }
            if !pairs.is_empty() {
                client.txn(txn).await?;
            }
            print(json!({"id": lease.id, "ttl": lease.ttl_seconds}));
            let mut keeper = client.keep_alive(lease);
            tokio::select! {
                reason = keeper.lost() => return Err(CliError::Meta(Error::NotFound(format!("lease {} lost: {reason}", lease.id)))),
                _ = magnetar_common::shutdown_signal() => {
                    client.lease_revoke(lease.id).await?;
                }
            }
        }
    }
    Ok(())
}
