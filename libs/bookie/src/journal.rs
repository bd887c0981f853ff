//! The bookie's journal: an append-only write-ahead log of opaque records.
//!
//! An add is acknowledged only once its record is durable here. A dedicated
//! writer thread does the blocking I/O: it takes one queued record, drains every
//! other record already waiting (up to a byte cap), writes them with one
//! `write`, calls `fdatasync` once, and then completes them all. Concurrent adds
//! thus share one fsync: that group commit is what makes small synced adds fast.
//!
//! On disk: segment files `journal-{seq:016x}.log`, each a sequence of records
//! `[len: u32 LE][crc: u32 LE][payload]`, where `crc` is CRC32C over the length
//! bytes and then the payload (so a corrupt length is caught too). A record never
//! spans segments.
//!
//! Torn tails: a crash can leave the last record of the newest segment partly
//! written. On open, a bad record at the tail of the newest segment, with
//! nothing valid after it, is cut off (the file is truncated there) and never
//! returned. A bad record anywhere else is corruption and opening fails.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Records larger than this are refused, and a length above it on replay is
/// treated as damage rather than allocated.
pub const MAX_RECORD_BYTES: usize = 64 << 20;
const HEADER: usize = 8;

/// Called by the writer thread after each batch: (write + fdatasync time,
/// records in the batch). For metrics; must be cheap.
pub type BatchObserver = Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>;

#[derive(Clone)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub sync: bool,
    pub max_batch_bytes: usize,
    pub queue_depth: usize,
    pub observer: Option<BatchObserver>,
}

impl std::fmt::Debug for JournalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalConfig")
            .field("dir", &self.dir)
            .field("segment_bytes", &self.segment_bytes)
            .field("sync", &self.sync)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("queue_depth", &self.queue_depth)
            .finish()
    }
}

impl JournalConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            segment_bytes: 256 << 20,
            sync: true,
            max_batch_bytes: 4 << 20,
            queue_depth: 16384,
            observer: None,
        }
    }
}

/// Position of a record: segment sequence number and byte offset of its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JournalPos {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal is closed")]
    Closed,
    #[error("journal failed earlier and accepts no more writes: {0}")]
    Failed(String),
    #[error("corrupt journal record in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("record of {0} bytes exceeds the journal limit")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Records found on open, with their positions, oldest first.
pub type Replay = Vec<(JournalPos, Vec<u8>)>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records: u64,
    /// Batches written (each one fdatasync when sync is on).
    pub batches: u64,
    pub last_batch_records: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    last_batch: AtomicU64,
}

struct Request {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<JournalPos, JournalError>>,
}

struct Inner {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    /// Segment the writer is appending to (never deleted by a checkpoint).
    current_segment: Arc<AtomicU64>,
    counters: Arc<Counters>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

fn segment_name(seq: u64) -> String {
    format!("journal-{seq:016x}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("journal-")?.strip_suffix(".log")?;
    u64::from_str_radix(hex, 16).ok()
}

fn record_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Sorted (seq, path) of the segment files in `dir`.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            segs.push((seq, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Result of scanning one segment: intact records, and where the valid data ends.
struct Scan {
    records: Vec<(u64, Vec<u8>)>,
    valid_len: u64,
    /// Why scanning stopped before the end of the file, if it did.
    damage: Option<String>,
}

fn scan_segment(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut off = 0usize;
    let damage = loop {
        if off == bytes.len() {
            break None;
        }
        if bytes.len() - off < HEADER {
            break Some("partial record header".to_string());
        }
        let len = u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        let crc = u32::from_le_bytes([
            bytes[off + 4],
            bytes[off + 5],
            bytes[off + 6],
            bytes[off + 7],
        ]);
        let (len_usize, start) = (len as usize, off + HEADER);
        if len_usize > MAX_RECORD_BYTES {
            break Some(format!("impossible record length {len}"));
        }
        if bytes.len() - start < len_usize {
            break Some("partial record payload".to_string());
        }
        let payload = &bytes[start..start + len_usize];
        if record_crc(len, payload) != crc {
            break Some("checksum mismatch".to_string());
        }
        records.push((off as u64, payload.to_vec()));
        off = start + len_usize;
    };
    Scan {
        records,
        valid_len: off as u64,
        damage,
    }
}

/// How far past damage to look for an intact record before calling the damage
/// a torn tail. A torn tail has no intact record after it; corruption in the
/// middle of a segment is followed by the next record within one record's size.
const RESYNC_WINDOW: usize = 8 << 20;

/// Whether an intact record starts at `at`.
fn intact_record_at(bytes: &[u8], at: usize) -> bool {
    let Some(header) = bytes.get(at..at + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = at + HEADER + len as usize;
    len as usize <= MAX_RECORD_BYTES
        && end <= bytes.len()
        && record_crc(len, &bytes[at + HEADER..end]) == crc
}

/// True if an intact record starts after the damage at `from`.
fn intact_record_after(bytes: &[u8], from: usize) -> bool {
    let last = bytes.len().min(from.saturating_add(RESYNC_WINDOW));
    (from + 1..last).any(|i| intact_record_at(bytes, i))
}

impl Journal {
    /// Opens the journal in `cfg.dir` and replays the intact records at or
    /// after `from` (all, if None). New records go to a fresh segment.
    pub fn open(
        cfg: JournalConfig,
        from: Option<JournalPos>,
    ) -> Result<(Journal, Replay), JournalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        if !cfg.sync {
            tracing::warn!(dir = %cfg.dir.display(), "journal fsync is OFF: acknowledged records can be lost on a crash");
        }
        let segments = list_segments(&cfg.dir)?;
        let mut replay = Vec::new();
        let newest = segments.last().map(|(seq, _)| *seq);
        for (seq, path) in &segments {
            if from.is_some_and(|f| *seq < f.segment) {
                continue;
            }
            let bytes = std::fs::read(path).map_err(io_err(path))?;
            let scan = scan_segment(&bytes);
            if let Some(reason) = scan.damage {
                let is_tail =
                    Some(*seq) == newest && !intact_record_after(&bytes, scan.valid_len as usize);
                if !is_tail {
                    return Err(JournalError::Corrupt {
                        path: path.clone(),
                        offset: scan.valid_len,
                        reason,
                    });
                }
                tracing::warn!(segment = %path.display(), offset = scan.valid_len, %reason, "cutting a torn record off the journal tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(scan.valid_len).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
            }
            for (offset, payload) in scan.records {
                let pos = JournalPos {
                    segment: *seq,
                    offset,
                };
                if from.is_none_or(|f| pos >= f) {
                    replay.push((pos, payload));
                }
            }
        }
        let next_seq = newest.map_or(1, |s| s + 1);
        let journal = Self::start_writer(cfg, next_seq)?;
        Ok((journal, replay))
    }

    fn start_writer(cfg: JournalConfig, first_seq: u64) -> Result<Journal, JournalError> {
        let (tx, rx) = mpsc::channel::<Request>(cfg.queue_depth.max(1));
        let current_segment = Arc::new(AtomicU64::new(first_seq));
        let counters = Arc::new(Counters::default());
        let mut writer = Writer::create(
            cfg.clone(),
            first_seq,
            current_segment.clone(),
            counters.clone(),
        )?;
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&cfg.dir))?;
        Ok(Journal {
            inner: Arc::new(Inner {
                dir: cfg.dir,
                tx: Mutex::new(Some(tx)),
                current_segment,
                counters,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Appends one record; resolves once it is durable.
    pub async fn append(&self, payload: Vec<u8>) -> Result<JournalPos, JournalError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(JournalError::TooLarge(payload.len()));
        }
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(JournalError::Closed)?;
        let (done, rx) = oneshot::channel();
        tx.send(Request { payload, done })
            .await
            .map_err(|_| JournalError::Closed)?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Deletes the segments wholly before `pos`; returns how many.
    pub fn checkpoint(&self, pos: JournalPos) -> Result<usize, JournalError> {
        let current = self.inner.current_segment.load(Ordering::Acquire);
        let mut deleted = 0;
        for (seq, path) in list_segments(&self.inner.dir)? {
            if seq < pos.segment && seq < current {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Records queued for the writer thread right now.
    pub fn queue_depth(&self) -> usize {
        match self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(tx) => tx.max_capacity() - tx.capacity(),
            None => 0,
        }
    }

    pub fn stats(&self) -> JournalStats {
        let c = &self.inner.counters;
        JournalStats {
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            last_batch_records: c.last_batch.load(Ordering::Relaxed),
        }
    }

    /// Writes and syncs everything queued, then stops the writer thread.
    pub fn close(&self) {
        self.inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
    }
}

/// The writer thread's state.
struct Writer {
    cfg: JournalConfig,
    file: File,
    path: PathBuf,
    seq: u64,
    offset: u64,
    current_segment: Arc<AtomicU64>,
    counters: Arc<Counters>,
    failed: Option<String>,
    sync_warned: AtomicBool,
}

impl Writer {
    fn create(
        cfg: JournalConfig,
        seq: u64,
        current_segment: Arc<AtomicU64>,
        counters: Arc<Counters>,
    ) -> Result<Self, JournalError> {
        let (file, path) = Self::new_segment(&cfg.dir, seq)?;
        Ok(Self {
            cfg,
            file,
            path,
            seq,
            offset: 0,
            current_segment,
            counters,
            failed: None,
            sync_warned: AtomicBool::new(false),
        })
    }

    fn new_segment(dir: &Path, seq: u64) -> Result<(File, PathBuf), JournalError> {
        let path = dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        Ok((file, path))
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        let (file, path) = Self::new_segment(&self.cfg.dir, self.seq + 1)?;
        self.seq += 1;
        self.file = file;
        self.path = path;
        self.offset = 0;
        self.current_segment.store(self.seq, Ordering::Release);
        Ok(())
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = batch[0].payload.len() + HEADER;
            while bytes < self.cfg.max_batch_bytes {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.payload.len() + HEADER;
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
        }
    }

    /// Writes a batch (rolling segments as needed), syncs, completes it.
    fn write_batch(&mut self, batch: Vec<Request>) {
        let started = std::time::Instant::now();
        if let Some(reason) = &self.failed {
            for r in batch {
                let _ = r.done.send(Err(JournalError::Failed(reason.clone())));
            }
            return;
        }
        // Sized up front: growing it by doubling copied each batch again.
        let mut buf = Vec::with_capacity(batch.iter().map(|r| HEADER + r.payload.len()).sum());
        let mut positions = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        for r in &batch {
            let size = (HEADER + r.payload.len()) as u64;
            if self.offset > 0 && self.offset + buf.len() as u64 + size > self.cfg.segment_bytes {
                result = self.flush(&mut buf).and_then(|_| self.roll());
                if result.is_err() {
                    break;
                }
            }
            positions.push(JournalPos {
                segment: self.seq,
                offset: self.offset + buf.len() as u64,
            });
            encode_into(&mut buf, &r.payload);
        }
        if result.is_ok() {
            result = self.flush(&mut buf);
        }
        match result {
            Ok(()) => {
                let n = batch.len() as u64;
                self.counters.records.fetch_add(n, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.last_batch.store(n, Ordering::Relaxed);
                if let Some(observe) = &self.cfg.observer {
                    observe(started.elapsed(), batch.len());
                }
                for (r, pos) in batch.into_iter().zip(positions) {
                    let _ = r.done.send(Ok(pos));
                }
            }
            Err(e) => {
                // Nothing after a failed write or fsync can be called durable.
                let reason = e.to_string();
                tracing::error!(error = %reason, "journal write failed; refusing further writes");
                self.failed = Some(reason.clone());
                for r in batch {
                    let _ = r.done.send(Err(JournalError::Failed(reason.clone())));
                }
            }
        }
    }

    /// Drops the page cache of a synced range. The journal is read only on
    /// start, so its pages are dead weight once durable; dropping them also
    /// makes the kernel reuse warm pages for the next write instead of
    /// touching fresh memory, which was most of the journal writer's CPU
    /// on a VM (see docs/ARCHITECTURE.md). From the start of the page holding
    /// `offset`: the previous batch's partial last page is complete now.
    fn drop_cached(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let start = offset & !4095;
        let (Ok(start_off), Ok(span)) = (
            libc::off_t::try_from(start),
            libc::off_t::try_from(offset + len - start),
        ) else {
            return;
        };
        // SAFETY: posix_fadvise only reads its integer arguments; the fd is
        // owned by `self.file` and open for the duration of the call. It is
        // advice: a failure changes nothing but the cache, so it is ignored.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                start_off,
                span,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }

    /// Writes `buf` to the current segment and syncs it (when sync is on).
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), JournalError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf).map_err(io_err(&self.path))?;
        if self.cfg.sync {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.drop_cached(self.offset, buf.len() as u64);
        } else if !self.sync_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("journal writes are not fsynced");
        }
        self.offset += buf.len() as u64;
        buf.clear();
        Ok(())
    }
}

/// Reads a whole segment file (for tools and tests).
pub fn read_segment(path: &Path) -> Result<Vec<Vec<u8>>, JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    Ok(scan_segment(&bytes)
        .records
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(dir: &Path) -> JournalConfig {
        let mut c = JournalConfig::new(dir.to_path_buf());
        c.segment_bytes = 1 << 20;
        c
    }

    fn payload(i: usize) -> Vec<u8> {
        format!("record-{i}-{}", "p".repeat(i % 300)).into_bytes()
    }

    async fn append_all(j: &Journal, n: usize) -> Vec<JournalPos> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let j = j.clone();
                tokio::spawn(async move { (i, j.append(payload(i)).await.unwrap()) })
            })
            .collect();
        let mut out = vec![
            JournalPos {
                segment: 0,
                offset: 0
            };
            n
        ];
        for t in tasks {
            let (i, pos) = t.await.unwrap();
            out[i] = pos;
        }
        out
    }

    fn newest_segment(dir: &Path) -> PathBuf {
        list_segments(dir).unwrap().last().unwrap().1.clone()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_appends_replay_in_order_and_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        assert!(replay.is_empty());
        let positions = append_all(&j, 2000).await;
        let stats = j.stats();
        assert_eq!(stats.records, 2000);
        assert!(stats.batches < 2000, "no group commit: {stats:?}");
        j.close();
        let (_j2, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        assert_eq!(replay.len(), 2000);
        assert!(replay.windows(2).all(|w| w[0].0 < w[1].0));
        for (pos, data) in &replay {
            let i = positions
                .iter()
                .position(|p| p == pos)
                .expect("replayed position was returned by append");
            assert_eq!(data, &payload(i));
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn segments_roll_and_checkpoints_delete_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.segment_bytes = 4096;
        let (j, _) = Journal::open(c.clone(), None).unwrap();
        let mut positions = Vec::new();
        for i in 0..200 {
            positions.push(j.append(payload(i)).await.unwrap());
        }
        let segments = list_segments(dir.path()).unwrap().len();
        assert!(segments > 3, "expected rollover, got {segments} segments");
        let cut = positions[150];
        let deleted = j.checkpoint(cut).unwrap();
        assert!(deleted > 0);
        j.close();
        let (_j, replay) = Journal::open(c, Some(cut)).unwrap();
        assert_eq!(replay.len(), 50);
        assert_eq!(replay[0].1, payload(150));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn torn_tails_are_cut_and_writing_goes_on() {
        for damage in ["truncate", "flip", "garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let (j, _) = Journal::open(cfg(dir.path()), None).unwrap();
            for i in 0..10 {
                j.append(payload(i)).await.unwrap();
            }
            j.close();
            let seg = newest_segment(dir.path());
            let mut bytes = std::fs::read(&seg).unwrap();
            let keep = match damage {
                "truncate" => {
                    bytes.truncate(bytes.len() - 3);
                    9
                }
                "flip" => {
                    let n = bytes.len();
                    bytes[n - 1] ^= 0xFF;
                    9
                }
                _ => {
                    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
                    10
                }
            };
            std::fs::write(&seg, &bytes).unwrap();
            let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
            assert_eq!(replay.len(), keep, "{damage}");
            assert_eq!(replay.last().unwrap().1, payload(keep - 1));
            j.append(b"after".to_vec()).await.unwrap();
            j.close();
            let (_j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
            assert_eq!(replay.len(), keep + 1, "{damage}");
            assert_eq!(replay.last().unwrap().1, b"after".to_vec());
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn corruption_before_valid_records_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(cfg(dir.path()), None).unwrap();
        for i in 0..10 {
            j.append(payload(i)).await.unwrap();
        }
        j.close();
        let seg = newest_segment(dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[HEADER + 2] ^= 0xFF; // inside the first record's payload
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            Journal::open(cfg(dir.path()), None),
            Err(JournalError::Corrupt { .. })
        ));
    }

    proptest! {
        /// The segment decoder reads bytes from disk: whatever they are, it
        /// must not panic, and what it returns must be intact records that
        /// end within the input.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let scan = scan_segment(&bytes);
            prop_assert!(scan.valid_len as usize <= bytes.len());
            for (off, payload) in &scan.records {
                prop_assert!(*off as usize + HEADER + payload.len() <= scan.valid_len as usize);
            }
            let _ = intact_record_after(&bytes, 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Whatever the truncation point, replay returns exactly a prefix.
        #[test]
        fn truncation_replays_a_prefix(sizes in prop::collection::vec(0usize..5000, 1..50), cut in any::<prop::sample::Index>()) {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let records: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| vec![(i % 251) as u8; *n]).collect();
            rt.block_on(async {
                let (j, _) = Journal::open(cfg(dir.path()), None).unwrap();
                for r in &records {
                    j.append(r.clone()).await.unwrap();
                }
                j.close();
            });
            let seg = newest_segment(dir.path());
            let bytes = std::fs::read(&seg).unwrap();
            let at = cut.index(bytes.len() + 1);
            std::fs::write(&seg, &bytes[..at]).unwrap();
            let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
            j.close();
            let got: Vec<Vec<u8>> = replay.into_iter().map(|(_, p)| p).collect();
            prop_assert!(got.len() <= records.len());
            prop_assert_eq!(&got[..], &records[..got.len()]);
        }
    }
}
