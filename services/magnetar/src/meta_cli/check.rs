//! `magnetar meta check-linearizable`: runs the register workload of
//! libs/meta-check against the given metadata nodes until --duration passes
//! or SIGTERM/Ctrl-C arrives, then checks every register's history and prints
//! one JSON object. Exit code 1 if any history is not linearizable. The Docker
//! fault campaign runs it inside the cluster's network beside its faults.

use std::time::Duration;

use clap::Args;
use magnetar_meta_check::{record, Report, WorkloadConfig};
use serde_json::json;

use super::CliError;

#[derive(Args)]
pub(super) struct CheckArgs {
    /// Stop after this many seconds (SIGTERM stops it earlier).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Registers in use at once.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Fresh registers every this many seconds (bounds each history).
    #[arg(long, default_value_t = 10.0)]
    slice: f64,
    /// Milliseconds each client waits after an operation.
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
    /// Key prefix; must be one no earlier run used.
    #[arg(long)]
    prefix: String,
    /// Print every history that fails the check.
    #[arg(long)]
    dump: bool,
}

fn seconds(v: f64, what: &str) -> Result<Duration, CliError> {
    if v > 0.0 && v.is_finite() {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(CliError::Usage(format!(
            "{what} must be a positive number of seconds"
        )))
    }
}

pub(super) async fn run(endpoints: Vec<String>, a: CheckArgs) -> Result<(), CliError> {
    let duration = seconds(a.duration, "--duration")?;
    let mut cfg = WorkloadConfig::new(endpoints, a.prefix);
    cfg.clients = a.clients.max(1);
    cfg.keys = a.keys.max(1);
    cfg.slice = seconds(a.slice, "--slice")?;
    cfg.pause = Duration::from_millis(a.pause_ms);
    let stop = async move {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = magnetar_common::shutdown_signal() => {}
        }
    };
    let recorded = record(cfg, stop)
        .await
        .map_err(|e| CliError::Check(e.to_string()))?;
    let dump = a.dump;
    let (report, dumps) = tokio::task::spawn_blocking(move || {
        let report = recorded.check();
        let dumps: Vec<String> = report
            .keys
            .iter()
            .filter(|k| dump && !k.linearizable)
            .map(|k| format!("{}: {:?}", k.key, recorded.histories[&k.key]))
            .collect();
        (report, dumps)
    })
    .await
    .map_err(|e| CliError::Check(format!("the checker panicked: {e}")))?;
    for d in dumps {
        eprintln!("{d}");
    }
    println!("{}", report_json(&report));
    if report.linearizable() {
        Ok(())
    } else {
        Err(CliError::Check(
            "a register history is not linearizable".into(),
        ))
    }
}

fn report_json(r: &Report) -> serde_json::Value {
    let failed: Vec<&str> = r
        .keys
        .iter()
        .filter(|k| !k.linearizable)
        .map(|k| k.key.as_str())
        .collect();
    json!({
        "linearizable": r.linearizable(),
        "registers": r.keys.len(),
        "operations": r.operations(),
        "unknown": r.keys.iter().map(|k| k.unknown).sum::<usize>(),
        "check_ms": r.keys.iter().map(|k| k.check_time.as_millis() as u64).sum::<u64>(),
        "not_linearizable": failed,
    })
}
