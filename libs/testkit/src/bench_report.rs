//! Shared by the benchmarks: how to describe the machine and the date, and how
//! to replace one benchmark's section of docs/BENCHMARKS.md.

use std::path::Path;

/// e.g. "2 cores (AMD EPYC), 24 GiB RAM"
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB RAM")
}

/// The current UTC date and time, e.g. "2026-11-25 01:34 UTC".
pub fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Machine-wide CPU time counters from /proc/stat: (busy, total) in ticks.
/// Two readings give how busy every core was in between (`busy_percent`),
/// which says whether a run was CPU-bound or waiting on something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    busy: u64,
    total: u64,
}

impl CpuTicks {
    pub fn now() -> Self {
        let line = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_default();
        Self::parse(&line)
    }

    /// The aggregate `cpu` line: user nice system idle iowait irq softirq steal …
    fn parse(line: &str) -> Self {
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = v.iter().sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Share of all cores' time spent busy since `earlier`, in percent.
    pub fn busy_percent(&self, earlier: &CpuTicks) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// The kernel's CPU pressure counter (PSI, /proc/pressure/cpu): microseconds
/// during which at least one runnable thread waited for a core. Unlike busy
/// time it says how long work queued, which is what an add's latency feels
/// on a shared machine: at 60% busy, two vCPUs can still leave a woken
/// thread waiting. `None` where the kernel has no PSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPressure {
    some_us: u64,
    at: std::time::Instant,
}

impl CpuPressure {
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
        Some(Self {
            some_us: Self::parse_some_total(&text)?,
            at: std::time::Instant::now(),
        })
    }

    /// `some avg10=… avg60=… avg300=… total=N` → N.
    fn parse_some_total(text: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with("some "))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse()
            .ok()
    }

    /// Share of the wall time since `earlier` during which some thread
    /// waited for a core, in percent.
    pub fn stalled_percent(&self, earlier: &CpuPressure) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_micros() as f64;
        if wall == 0.0 {
            return 0.0;
        }
        100.0 * self.some_us.saturating_sub(earlier.some_us) as f64 / wall
    }
}

/// Writes back every dirty page on the machine and waits for it. A benchmark
/// started right after `cargo build` otherwise measures the build: the
/// kernel holds the build's output (hundreds of MB) dirty for 30 s
/// (`vm.dirty_expire_centisecs`) and then writes it back all at once, and
/// every fdatasync in the benchmark queues behind that (seen as a 120 ms
/// journal batch in bench-ledger, 2026-12-04).
pub fn write_back_dirty_pages() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Sequential 1 MiB writes, each followed by fdatasync, for 3 s in `dir`:
/// the bandwidth a journal on that filesystem can reach, in MB/s.
pub fn fsync_bandwidth(dir: &Path) -> f64 {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return 0.0;
    };
    let block = vec![0x5Au8; 1 << 20];
    let start = std::time::Instant::now();
    let mut n = 0u32;
    while start.elapsed() < std::time::Duration::from_secs(3) {
        if f.write_all(&block).and_then(|()| f.sync_data()).is_err() {
            break;
        }
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 * 1.048_576 / start.elapsed().as_secs_f64()
}

/// What the disk alone allows an acknowledged-when-durable write, measured
/// by `durability_floor`.
#[derive(Debug, Clone, Copy)]
pub struct DurabilityFloor {
    /// Median and 99th percentile of one 4 KiB write + fdatasync, in ms.
    pub flush_p50_ms: f64,
    pub flush_p99_ms: f64,
    /// The slowest one, in ms.
    pub flush_max_ms: f64,
    /// Median and 99th percentile, over arrival instants spread evenly across
    /// the run, of the wait from the instant until the end of the first flush
    /// that starts after it, in ms: what a write arriving then waits at least
    /// with one flush at a time (group commit).
    pub wait_p50_ms: f64,
    pub wait_p99_ms: f64,
}

/// Back-to-back 4 KiB write + fdatasync for `run`, overwriting a
/// preallocated file in `dir` (as a journal's recycled segments are); the
/// caller keeps everything else idle meanwhile. Group commit keeps one flush in flight and a
/// write that arrives while it runs must wait for it and then for its own, so
/// the distribution of that wait is a floor under any such journal's
/// acknowledgement latency on this disk at this time.
pub fn durability_floor(dir: &Path, run: std::time::Duration) -> std::io::Result<DurabilityFloor> {
    use std::os::unix::fs::FileExt;
    use std::time::Instant;
    const BLOCK: usize = 4096;
    const FILE: u64 = 64 << 20;
    let path = dir.join("durability-probe");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    for off in (0..FILE).step_by(chunk.len()) {
        f.write_all_at(&chunk, off)?;
    }
    f.sync_all()?;
    let block = [0x5Au8; BLOCK];
    let mut flushes: Vec<(Instant, Instant)> = Vec::new();
    let (start, mut off) = (Instant::now(), 0u64);
    while start.elapsed() < run {
        let t = Instant::now();
        f.write_all_at(&block, off)?;
        f.sync_data()?;
        flushes.push((t, Instant::now()));
        off = (off + BLOCK as u64) % FILE;
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut each: Vec<f64> = flushes.iter().map(|(s, e)| ms(*e - *s)).collect();
    each.sort_by(f64::total_cmp);
    let mut waits = arrival_waits_ms(&flushes, std::time::Duration::from_micros(10));
    waits.sort_by(f64::total_cmp);
    let q = |v: &[f64], q: f64| {
        let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
        v.get(i).copied().unwrap_or(f64::NAN)
    };
    Ok(DurabilityFloor {
        flush_p50_ms: q(&each, 0.5),
        flush_p99_ms: q(&each, 0.99),
        flush_max_ms: each.last().copied().unwrap_or(f64::NAN),
        wait_p50_ms: q(&waits, 0.5),
        wait_p99_ms: q(&waits, 0.99),
    })
}

/// For arrival instants every `step` from the first flush's start: the wait
/// until the end of the first flush that starts at or after the instant, in
/// ms. `flushes` are (start, end) in time order, one at a time.
fn arrival_waits_ms(
    flushes: &[(std::time::Instant, std::time::Instant)],
    step: std::time::Duration,
) -> Vec<f64> {
    let mut waits = Vec::new();
    let Some(&(mut at, _)) = flushes.first() else {
        return waits;
    };
    let mut next = 0;
    loop {
        while flushes.get(next).is_some_and(|(s, _)| *s < at) {
            next += 1;
        }
        let Some(&(_, end)) = flushes.get(next) else {
            return waits;
        };
        waits.push((end - at).as_secs_f64() * 1e3);
        at += step;
    }
}

/// Replaces the section between `<!-- {name}:start -->` and `<!-- {name}:end -->`
/// in `doc` (appending it if absent).
pub fn write_section(doc: &Path, name: &str, section: &str) -> std::io::Result<()> {
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let text = std::fs::read_to_string(doc).unwrap_or_else(|_| "# Benchmarks\n".into());
    let block = format!("{start}\n{section}{end}");
    let new = match (text.find(&start), text.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{}{}", &text[..s], block, &text[e + end.len()..]),
        _ => format!("{}\n\n{}\n", text.trim_end(), block),
    };
    std::fs::write(doc, new)
}

/// A number from a flat JSON line such as `magnetar perf --json` prints
/// (`{"msg_per_sec":123.4,...}`); NaN when absent.
pub fn json_number(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    json.find(&key)
        .and_then(|i| {
            json[i + key.len()..]
                .split([',', '}'])
                .next()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Runs a benchmark client (e.g. `magnetar perf produce --json`), echoes its
/// output and returns its last JSON line (the summary).
pub fn run_summary(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run the benchmark client");
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "benchmark client failed");
    text.lines()
        .rfind(|l| l.starts_with('{'))
        .expect("summary line")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::{CpuPressure, CpuTicks};

    #[test]
    fn cpu_busy_share_counts_iowait_as_idle() {
        let a = CpuTicks::parse("cpu  100 0 100 700 100 0 0 0 0 0");
        let b = CpuTicks::parse("cpu  200 0 150 850 150 0 50 0 0 0");
        // 200 busy ticks (100 user, 50 system, 50 softirq) out of 400.
        assert_eq!(b.busy_percent(&a), 50.0);
        assert_eq!(a.busy_percent(&a), 0.0);
    }

    #[test]
    fn cpu_pressure_is_the_some_line_total_over_wall_time() {
        let text = "some avg10=1.50 avg60=3.73 avg300=14.08 total=203163753\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
        assert_eq!(CpuPressure::parse_some_total(text), Some(203_163_753));
        assert_eq!(CpuPressure::parse_some_total("full total=7\n"), None);
        assert_eq!(
            CpuPressure::parse_some_total("some avg10=1 total=x\n"),
            None
        );
        let at = std::time::Instant::now();
        let a = CpuPressure { some_us: 1_000, at };
        // 250 ms of waiting in 1 s of wall time.
        let b = CpuPressure {
            some_us: 251_000,
            at: at + std::time::Duration::from_secs(1),
        };
        assert_eq!(b.stalled_percent(&a), 25.0);
        assert_eq!(a.stalled_percent(&a), 0.0);
    }

    #[test]
    fn sections_are_replaced_in_place_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("B.md");
        std::fs::write(&doc, "# B\n").unwrap();
        super::write_section(&doc, "x", "one\n").unwrap();
        super::write_section(&doc, "y", "two\n").unwrap();
        super::write_section(&doc, "x", "three\n").unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        assert!(text.contains("<!-- x:start -->\nthree\n<!-- x:end -->"));
        assert!(text.contains("<!-- y:start -->\ntwo\n<!-- y:end -->"));
        assert!(!text.contains("one"));
    }
}
