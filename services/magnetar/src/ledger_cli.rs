//! `magnetar ledger ...` and `magnetar bookies ...`: ledger tools in the spirit
//! of BookKeeper's shell. Output is JSON.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use futures::StreamExt;
use magnetar_ledger::{LedgerClient, LedgerClientConfig, LedgerError, LedgerMetadata};
use magnetar_meta_client::{ClientConfig, MetaClient};
use serde_json::json;

#[derive(Args)]
pub struct LedgerCli {
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_META_ENDPOINTS",
        default_value = "127.0.0.1:7001"
    )]
    meta: String,
    /// Ledger password (the master key is derived from it).
    #[arg(long, global = true, default_value = "")]
    password: String,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Args, Clone, Copy)]
struct Quorum {
    #[arg(long, default_value_t = 3)]
    ensemble: usize,
    #[arg(long, default_value_t = 2)]
    write_quorum: usize,
    #[arg(long, default_value_t = 2)]
    ack_quorum: usize,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Write entries to a new ledger, read them back, verify, report rate and latency.
    Simpletest {
        #[command(flatten)]
        quorum: Quorum,
        #[arg(long, default_value_t = 10_000)]
        entries: u64,
        #[arg(long, default_value_t = 1024)]
        entry_size: usize,
        /// Appends in flight at once.
        #[arg(long, default_value_t = 256)]
        window: usize,
    },
    /// Write entries to a new ledger, printing each confirmed entry id (a writer for tests).
    Write {
        #[command(flatten)]
        quorum: Quorum,
        #[arg(long, default_value_t = 1000)]
        entries: u64,
        #[arg(long, default_value_t = 100)]
        entry_size: usize,
    },
    /// Print a ledger's metadata, or entries with --from/--to.
    Read {
        id: u64,
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        to: Option<i64>,
    },
    /// Fence the writer and close the ledger at its last recoverable entry.
    Recover {
        id: u64,
    },
    Delete {
        id: u64,
    },
    List,
    /// Ledgers the auditor has marked under-replicated (a bookie is lost).
    Underreplicated,
}

#[derive(Args)]
pub struct BookiesCli {
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_META_ENDPOINTS",
        default_value = "127.0.0.1:7001"
    )]
    meta: String,
    #[command(subcommand)]
    command: BookiesCommand,
}

#[derive(Subcommand)]
enum BookiesCommand {
    /// Registered bookies with their own report of free space and mode.
    List,
}

fn client(meta: &str) -> Result<LedgerClient, String> {
    let meta = MetaClient::new(ClientConfig::from_list(meta)).map_err(|e| e.to_string())?;
    Ok(LedgerClient::new(meta, LedgerClientConfig::default()))
}

fn entry_payload(i: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size.max(8)];
    v[..8].copy_from_slice(&i.to_le_bytes());
    for (j, b) in v.iter_mut().enumerate().skip(8) {
        *b = (i as usize).wrapping_add(j) as u8;
    }
    v
}

fn meta_json(m: &LedgerMetadata) -> serde_json::Value {
    serde_json::to_value(m).unwrap_or_default()
}

pub async fn run_ledger(cli: LedgerCli) -> ExitCode {
    match ledger(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn ledger(cli: LedgerCli) -> Result<(), String> {
    let c = client(&cli.meta)?;
    let pw = cli.password.as_bytes();
    let err = |e: LedgerError| e.to_string();
    match cli.command {
        LedgerCommand::Simpletest {
            quorum,
            entries,
            entry_size,
            window,
        } => {
            let w = c
                .create(quorum.ensemble, quorum.write_quorum, quorum.ack_quorum, pw)
                .await
                .map_err(err)?;
            let mut latencies = hdr();
            let started = Instant::now();
            let mut results = futures::stream::iter(0..entries)
                .map(|i| {
                    let w = w.clone();
                    async move {
                        let t = Instant::now();
                        let r = w.append(entry_payload(i, entry_size)).await;
                        (i, r, t.elapsed())
                    }
                })
                .buffered(window.max(1));
            while let Some((i, r, lat)) = results.next().await {
                let id = r.map_err(err)?;
                if id != i as i64 {
                    return Err(format!("entry {i} was assigned id {id}"));
                }
                let _ = latencies.record(lat.as_micros() as u64);
            }
            let write_secs = started.elapsed().as_secs_f64();
            let meta = w.close().await.map_err(err)?;
            let reader = c.open(meta.id, pw).await.map_err(err)?;
            let read_start = Instant::now();
            let data = reader
                .read_range(0, entries as i64 - 1)
                .await
                .map_err(err)?;
            for (i, d) in data.iter().enumerate() {
                if *d != entry_payload(i as u64, entry_size) {
                    return Err(format!("entry {i} read back differs"));
                }
            }
            let read_secs = read_start.elapsed().as_secs_f64();
            let mb = (entries as f64 * entry_size as f64) / (1 << 20) as f64;
            println!(
                "{}",
                json!({
                    "ledger": meta.id,
                    "entries": entries,
                    "entry_size": entry_size,
                    "write_entries_per_sec": (entries as f64 / write_secs).round(),
                    "write_mb_per_sec": (mb / write_secs * 10.0).round() / 10.0,
                    "add_latency_ms": {"p50": ms(&latencies, 0.5), "p99": ms(&latencies, 0.99), "max": latencies.max() as f64 / 1000.0},
                    "read_entries_per_sec": (entries as f64 / read_secs).round(),
                    "verified": true,
                })
            );
        }
        LedgerCommand::Write {
            quorum,
            entries,
            entry_size,
        } => {
            let w = c
                .create(quorum.ensemble, quorum.write_quorum, quorum.ack_quorum, pw)
                .await
                .map_err(err)?;
            println!("{}", json!({"ledger": w.id()}));
            let mut acks = futures::stream::iter(0..entries)
                .map(|i| {
                    let w = w.clone();
                    async move { w.append(entry_payload(i, entry_size)).await }
                })
                .buffered(64);
            while let Some(r) = acks.next().await {
                println!("{}", json!({"acked": r.map_err(err)?}));
            }
            let meta = w.close().await.map_err(err)?;
            println!("{}", json!({"closed": meta.last_entry_id}));
        }
        LedgerCommand::Read { id, from, to } => {
            let r = c.open(id, pw).await.map_err(err)?;
            match (from, to) {
                (None, None) => println!("{}", meta_json(r.metadata())),
                (from, to) => {
                    let last = match to {
                        Some(t) => t,
                        None => r.last_add_confirmed().await.map_err(err)?,
                    };
                    for e in from.unwrap_or(0)..=last {
                        let d = r.read_entry(e).await.map_err(err)?;
                        println!(
                            "{}",
                            json!({"entry": e, "bytes": d.len(), "text": String::from_utf8_lossy(&d)})
                        );
                    }
                }
            }
        }
        LedgerCommand::Recover { id } => {
            let r = c.open_recover(id, pw).await.map_err(err)?;
            println!("{}", meta_json(r.metadata()));
        }
        LedgerCommand::Delete { id } => {
            c.delete(id).await.map_err(err)?;
            println!("{}", json!({"deleted": id}));
        }
        LedgerCommand::List => {
            println!("{}", json!({"ledgers": c.list().await.map_err(err)?}));
        }
        LedgerCommand::Underreplicated => {
            let list = magnetar_ledger::underreplicated(&c).await.map_err(err)?;
            let ledgers: Vec<_> = list
                .iter()
                .map(|(id, lost)| json!({"ledger": id, "lost_bookies": lost}))
                .collect();
            println!("{}", json!({"ledgers": ledgers}));
        }
    }
    Ok(())
}

fn hdr() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run_bookies(cli: BookiesCli) -> ExitCode {
    let result = async {
        let c = client(&cli.meta)?;
        match cli.command {
            BookiesCommand::List => {
                let mut out = Vec::new();
                for b in c.available_bookies().await.map_err(|e| e.to_string())? {
                    let status = tokio::time::timeout(Duration::from_secs(3), c.bookie_status(&b.address)).await;
                    let mut v = json!({"id": b.id, "address": b.address, "rack": b.rack, "read_only": b.read_only, "free_bytes": b.free_bytes});
                    if let Ok(Ok(s)) = status {
                        v["ledgers"] = json!(s.ledgers);
                        v["total_bytes"] = json!(s.total_bytes);
                    }
                    out.push(v);
                }
                println!("{}", json!({"bookies": out}));
            }
        }
        Ok::<(), String>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
