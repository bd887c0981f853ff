//! The bookie's journal: an append-only write-ahead log of opaque records.
//!
//! An add is acknowledged only once its record is durable here. A dedicated
//! writer thread does the blocking I/O: it takes one queued record, drains every
//! other record already waiting (up to a byte cap), writes them with one
//! `write`, calls `fdatasync` once, and then completes them all. Concurrent adds
//! thus share one fsync: that group commit is what makes small synced adds fast.
//!
//! On disk: segment files `journal-{seq:016x}.log`. A segment starts with a
//! 12-byte header, `MGJ\xF1` and its sequence number (u64 LE), followed by
//! records `[len: u32 LE][hcrc: u32 LE][crc: u32 LE][payload]`: `hcrc` is CRC32C
//! over the sequence number and the length bytes, `crc` continues it over the
//! payload (so a corrupt length is caught too). A record never spans segments.
//! Segments written before the header existed have none and their records are
//! `[len][crc][payload]` with the CRC over length and payload; they are still
//! read.
//!
//! Recycling: a segment the entry storage has checkpointed past is renamed to
//! `recycle-{seq:016x}.log` (a few are kept) and later overwritten as a new
//! segment, as RocksDB recycles its WAL files. Overwriting blocks a file already
//! has makes `fdatasync` a data flush only, without the file-system journal
//! commit that growing a file needs: on our VM's disk 0.15 -> 0.10 ms for 4 KiB
//! and 0.20 -> 0.12 ms for 64 KiB. The old records left behind in such a file
//! were checksummed with another sequence number, so they never pass for
//! records of the new segment: the first one read is where the segment ends.
//!
//! Rolling: the next segment is prepared by a helper thread while the writer
//! fills the current one (file created or a recycled one taken, header written
//! and synced, renamed, directory synced), so a roll costs the writer no
//! metadata syncs. A finished segment ends with an end marker, a record header
//! whose length is `END_MARK`, written and synced with the segment's last batch;
//! whatever follows it (a reused file's old records) is never read.
//!
//! Padding: every batch ends on a page boundary, the gap filled by a padding
//! record (`encode_pad`), so no buffered write covers part of a page the page
//! cache has dropped: such a write reads the page back from the disk first.
//!
//! Torn tails: a crash can leave the last record written partly on disk. On
//! open, a bad record with nothing valid after it, in the last segment that
//! holds records, is cut off (the file is truncated there) and never returned;
//! segments after that one hold no records (a prepared spare the writer never
//! reached) and are put back into the recycle pool. A bad record anywhere else
//! is corruption and opening fails.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Records larger than this are refused, and a length above it on replay is
/// treated as damage rather than allocated.
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// Record header in old-format segments: length, CRC.
const HEADER: usize = 8;
/// Record header in segments with a segment header: length, a CRC of the
/// sequence number and length, then the record's CRC. The header's own CRC
/// rejects a stale or garbage candidate without hashing a payload, which keeps
/// the scan past a reused file's tail (up to `RESYNC_WINDOW` byte offsets)
/// cheap: a random length would otherwise mean hashing megabytes per offset.
const RECORD_HEADER: usize = HEADER + 4;
/// Start of every segment written by this version: magic and sequence number.
/// Read as an old-format record length the magic is far above
/// `MAX_RECORD_BYTES`, so the two formats cannot be confused.
const SEGMENT_MAGIC: [u8; 4] = *b"MGJ\xF1";
const SEGMENT_HEADER: usize = 12;
/// Length field of the end marker that closes a finished segment. Far above
/// `MAX_RECORD_BYTES`, so it is never a record's length.
const END_MARK: u32 = u32::MAX;
/// Bytes a segment keeps free for its end marker.
const END_BYTES: u64 = RECORD_HEADER as u64;
/// Length field of a padding record: a record header (both CRC words the
/// header CRC, as the end marker's) followed by filler up to the first page
/// boundary at least a header past its start. Far above `MAX_RECORD_BYTES`.
const PAD_MARK: u32 = u32::MAX - 1;
/// Every batch ends on a page boundary (see `encode_pad`).
const PAGE: usize = 4096;

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
    /// Segments kept for reuse after a checkpoint instead of being deleted.
    pub recycle_segments: usize,
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
            .field("recycle_segments", &self.recycle_segments)
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
            recycle_segments: 4,
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
    /// Segments started since open (a checkpoint after one frees the old).
    pub segments_started: u64,
    /// Of those, segments that reused a recycled file.
    pub segments_recycled: u64,
    /// The longest batch (write + fdatasync, and a segment roll if one fell
    /// in it) since open: rare slow batches hold every add queued behind them
    /// but vanish in a per-batch p99.
    pub slowest_batch: Duration,
    /// The longest segment roll (seal the old, start the new) since open.
    pub slowest_roll: Duration,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    last_batch: AtomicU64,
    segments_started: AtomicU64,
    segments_recycled: AtomicU64,
    slowest_batch_us: AtomicU64,
    slowest_roll_us: AtomicU64,
}

fn raise_micros(max: &AtomicU64, took: Duration) {
    max.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
}

/// Recycled segment files waiting to be reused, oldest first.
type Pool = Arc<Mutex<Vec<PathBuf>>>;

fn lock_pool(pool: &Pool) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

struct Request {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<Held, JournalError>>,
}

/// Records that are durable but not yet applied by whoever appended them,
/// and where the journal's durable data ends. Updated by the writer thread
/// before it completes a batch, so a record is never durable without being
/// either held here or covered by `end` after its holder let go.
struct Unapplied {
    /// Position just past the last durable record.
    end: JournalPos,
    /// Durable records still held (positions are unique).
    held: std::collections::BTreeSet<JournalPos>,
}

type UnappliedRef = Arc<Mutex<Unapplied>>;

fn lock_unapplied(u: &UnappliedRef) -> std::sync::MutexGuard<'_, Unapplied> {
    u.lock().unwrap_or_else(|p| p.into_inner())
}

/// A durable record whose effects its appender has not yet applied. While it
/// lives, `Journal::applied_position` stays at or before it, so a checkpoint
/// never retires the segment it is in; dropping it says "applied" (or "never
/// to be applied": a refused add is not acknowledged either way).
pub struct Held {
    pub pos: JournalPos,
    /// When the writer started the batch carrying the record, and when that
    /// batch was durable: with the appender's own clock they split an add's
    /// wait into queueing, the batch itself, and the hand-off back.
    pub batch_started: std::time::Instant,
    pub durable_at: std::time::Instant,
    unapplied: UnappliedRef,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock_unapplied(&self.unapplied).held.remove(&self.pos);
    }
}

struct Inner {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    /// Segment the writer is appending to (never deleted by a checkpoint).
    current_segment: Arc<AtomicU64>,
    counters: Arc<Counters>,
    pool: Pool,
    recycle_segments: usize,
    unapplied: UnappliedRef,
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

fn recycled_name(seq: u64) -> String {
    format!("recycle-{seq:016x}.log")
}

fn parse_name(name: &str, prefix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(".log")?;
    u64::from_str_radix(hex, 16).ok()
}

/// CRC32C over the segment's sequence number (`salt`; none in old-format
/// segments) and a record's length bytes.
fn header_crc(salt: Option<u64>, len: u32) -> u32 {
    let seed = salt.map_or(0, |s| crc32c::crc32c(&s.to_le_bytes()));
    crc32c::crc32c_append(seed, &len.to_le_bytes())
}

/// CRC32C of a record: over the salt, the length bytes, then the payload.
fn record_crc(salt: Option<u64>, len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(header_crc(salt, len), payload)
}

fn record_header_len(salt: Option<u64>) -> usize {
    if salt.is_some() {
        RECORD_HEADER
    } else {
        HEADER
    }
}

fn encode_into(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = payload.len() as u32;
    let head = header_crc(Some(seq), len);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&head.to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c_append(head, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Appends a marker of segment `seq`: a record header whose length field is
/// `mark` and whose two CRC words are both the header CRC (no payload).
fn encode_marker(buf: &mut Vec<u8>, seq: u64, mark: u32) {
    let head = header_crc(Some(seq), mark);
    buf.extend_from_slice(&mark.to_le_bytes());
    buf.extend_from_slice(&head.to_le_bytes());
    buf.extend_from_slice(&head.to_le_bytes());
}

/// Appends the end marker of segment `seq`.
fn encode_end(buf: &mut Vec<u8>, seq: u64) {
    encode_marker(buf, seq, END_MARK);
}

/// Pads the batch that ends at file offset `at` (the bytes in `buf` end there)
/// to a page boundary with a padding record, unless it already ends on one.
///
/// A buffered write that covers only part of a page the page cache does not
/// hold makes the kernel read that page from the disk first when the file has
/// data there. In a recycled segment every page past the tail holds the old
/// segment's data and is not cached, so each batch that ended mid-page read
/// its last page back before writing: under load that read queued behind the
/// device's writes and a 64 KiB `pwrite` took 10-68 ms (bench-ledger's 64 KiB
/// rows, 2026-12-04). Every batch now starts and ends on a page boundary, so
/// no write covers part of a page. The filler costs no device bandwidth that
/// was not spent before: the disk writes whole pages either way.
fn encode_pad(buf: &mut Vec<u8>, seq: u64, at: u64) {
    if at.is_multiple_of(PAGE as u64) {
        return;
    }
    let end = pad_end(at as usize);
    encode_marker(buf, seq, PAD_MARK);
    buf.resize(buf.len() + (end - at as usize - RECORD_HEADER), 0);
}

/// Where the padding record starting at `at` ends: the first page boundary at
/// least a record header past `at`.
fn pad_end(at: usize) -> usize {
    (at + RECORD_HEADER).div_ceil(PAGE) * PAGE
}

/// What `record_at` found: an intact record (its payload's range), padding
/// (where the next record starts), or the end marker of a finished segment.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Record(std::ops::Range<usize>),
    Pad(usize),
    End,
}

/// The intact record (or end marker) at `at`, or why there is none.
fn record_at(bytes: &[u8], at: usize, salt: Option<u64>) -> Result<Found, String> {
    let hl = record_header_len(salt);
    let header = bytes
        .get(at..at.saturating_add(hl))
        .ok_or("partial record header")?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let len = word(0);
    if salt.is_some() && word(4) != header_crc(salt, len) {
        return Err("record header checksum mismatch".into());
    }
    if salt.is_some() && len == END_MARK {
        return if word(8) == word(4) {
            Ok(Found::End)
        } else {
            Err("damaged end marker".into())
        };
    }
    if salt.is_some() && len == PAD_MARK {
        let end = pad_end(at);
        return if word(8) != word(4) {
            Err("damaged padding".into())
        } else if end > bytes.len() {
            Err("partial padding".into())
        } else {
            Ok(Found::Pad(end))
        };
    }
    if len as usize > MAX_RECORD_BYTES {
        return Err(format!("impossible record length {len}"));
    }
    let start = at + hl;
    let end = start + len as usize;
    let payload = bytes.get(start..end).ok_or("partial record payload")?;
    if record_crc(salt, len, payload) != word(hl - 4) {
        return Err("checksum mismatch".into());
    }
    Ok(Found::Record(start..end))
}

fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..4].copy_from_slice(&SEGMENT_MAGIC);
    h[4..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// Sorted (seq, path) of the segment files in `dir`.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    list_files(dir, "journal-")
}

/// Sorted (seq, path) of the files named `{prefix}{seq:016x}.log` in `dir`.
fn list_files(dir: &Path, prefix: &str) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(seq) = entry
            .file_name()
            .to_str()
            .and_then(|n| parse_name(n, prefix))
        {
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
    /// The sequence number in the segment's header (none in the old format).
    salt: Option<u64>,
}

fn scan_segment(bytes: &[u8]) -> Scan {
    let head = &bytes[..bytes.len().min(SEGMENT_MAGIC.len())];
    if !head.is_empty() && SEGMENT_MAGIC.starts_with(head) && bytes.len() < SEGMENT_HEADER {
        // Cut short while the segment was being created.
        return Scan {
            records: Vec::new(),
            valid_len: 0,
            damage: Some("partial segment header".to_string()),
            salt: None,
        };
    }
    let (salt, start) = match bytes.get(4..SEGMENT_HEADER) {
        Some(seq) if bytes[..4] == SEGMENT_MAGIC => {
            let seq = u64::from_le_bytes(seq.try_into().unwrap_or_default());
            (Some(seq), SEGMENT_HEADER)
        }
        _ => (None, 0),
    };
    let mut records = Vec::new();
    let mut off = start;
    let damage = loop {
        if off == bytes.len() {
            break None;
        }
        match record_at(bytes, off, salt) {
            Ok(Found::Record(payload)) => {
                records.push((off as u64, bytes[payload.clone()].to_vec()));
                off = payload.end;
            }
            Ok(Found::Pad(next)) => off = next,
            // A finished segment: what follows is a reused file's old data.
            Ok(Found::End) => break None,
            Err(reason) => break Some(reason),
        }
    };
    Scan {
        records,
        valid_len: off as u64,
        damage,
        salt,
    }
}

/// How far past damage to look for an intact record before calling the damage
/// a torn tail. A torn tail has no intact record after it; corruption in the
/// middle of a segment is followed by the next record within one record's size.
const RESYNC_WINDOW: usize = 8 << 20;

/// True if an intact record (or end marker) starts after the damage at
/// `from`. Padding does not count: it holds nothing, and a torn batch can
/// leave its padding intact behind a record that did not make it to disk.
fn intact_record_after(bytes: &[u8], from: usize, salt: Option<u64>) -> bool {
    let last = bytes.len().min(from.saturating_add(RESYNC_WINDOW));
    (from + 1..last).any(|i| matches!(record_at(bytes, i, salt), Ok(Found::Record(_) | Found::End)))
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
        // Scanned first, judged after: whether damage is a torn tail depends
        // on whether any later segment holds records.
        let segments = list_segments(&cfg.dir)?;
        // A spare put back below keeps its number as a recycled file's, so
        // the highest number in use is known from this listing.
        let newest = segments.last().map(|(seq, _)| *seq);
        let mut scanned = Vec::new();
        for (seq, path) in segments {
            if from.is_some_and(|f| seq < f.segment) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let scan = scan_segment(&bytes);
            if scan.salt.is_some_and(|s| s != seq) {
                return Err(JournalError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("header names segment {:?}", scan.salt),
                });
            }
            // In a reused file, the old records after the last one written
            // (checksummed for another segment) are not intact here.
            let intact_after = scan.damage.is_some()
                && intact_record_after(&bytes, scan.valid_len as usize, scan.salt);
            scanned.push((seq, path, scan, intact_after));
        }
        let last_written = scanned
            .iter()
            .rposition(|(_, _, s, _)| !s.records.is_empty());
        let mut replay = Vec::new();
        for (i, (seq, path, scan, intact_after)) in scanned.into_iter().enumerate() {
            let later_records = last_written.is_some_and(|last| i < last);
            if let Some(reason) = scan.damage {
                if intact_after || later_records {
                    return Err(JournalError::Corrupt {
                        path,
                        offset: scan.valid_len,
                        reason,
                    });
                }
                if scan.records.is_empty() {
                    // A spare prepared for a roll that never came (or whose
                    // first record was torn): back into the pool, below.
                    let to = cfg.dir.join(recycled_name(seq));
                    std::fs::rename(&path, &to).map_err(io_err(&path))?;
                    sync_dir(&cfg.dir)?;
                    continue;
                }
                tracing::warn!(segment = %path.display(), offset = scan.valid_len, %reason, "cutting a torn record off the journal tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(scan.valid_len).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            for (offset, payload) in scan.records {
                let pos = JournalPos {
                    segment: seq,
                    offset,
                };
                if from.is_none_or(|f| pos >= f) {
                    replay.push((pos, payload));
                }
            }
        }
        // Recycled files keep their old names: a new segment's number must be
        // above theirs too, or its checksums could match their old records.
        let mut recycled = list_files(&cfg.dir, "recycle-")?;
        let highest = recycled.iter().map(|(s, _)| *s).chain(newest).max();
        let next_seq = highest.map_or(1, |s| s + 1);
        while recycled.len() > cfg.recycle_segments {
            let (_, path) = recycled.remove(0);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let pool: Pool = Arc::new(Mutex::new(recycled.into_iter().map(|(_, p)| p).collect()));
        let journal = Self::start_writer(cfg, next_seq, pool)?;
        Ok((journal, replay))
    }

    fn start_writer(
        cfg: JournalConfig,
        first_seq: u64,
        pool: Pool,
    ) -> Result<Journal, JournalError> {
        let (tx, rx) = mpsc::channel::<Request>(cfg.queue_depth.max(1));
        let current_segment = Arc::new(AtomicU64::new(first_seq));
        let counters = Arc::new(Counters::default());
        // Everything before the first new segment was replayed (and applied by
        // the caller before it appends anything).
        let unapplied: UnappliedRef = Arc::new(Mutex::new(Unapplied {
            end: JournalPos {
                segment: first_seq,
                offset: SEGMENT_HEADER as u64,
            },
            held: Default::default(),
        }));
        let mut writer = Writer::create(
            cfg.clone(),
            first_seq,
            current_segment.clone(),
            counters.clone(),
            pool.clone(),
            unapplied.clone(),
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
                pool,
                recycle_segments: cfg.recycle_segments,
                unapplied,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Appends one record; resolves once it is durable.
    pub async fn append(&self, payload: Vec<u8>) -> Result<JournalPos, JournalError> {
        Ok(self.append_held(payload).await?.pos)
    }

    /// Appends one record whose effects the caller applies after it is
    /// durable: resolves once it is, with a `Held` to drop once they are
    /// applied. Until then no checkpoint passes the record.
    pub async fn append_held(&self, payload: Vec<u8>) -> Result<Held, JournalError> {
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

    /// A position every durable record before which has been applied (its
    /// `Held` dropped): the earliest record still held, else the end of the
    /// durable data. What a checkpoint may cut at, once the entry storage has
    /// persisted what was applied before this call.
    pub fn applied_position(&self) -> JournalPos {
        let u = lock_unapplied(&self.inner.unapplied);
        u.held.first().copied().unwrap_or(u.end)
    }

    /// Retires the segments wholly before `pos` (keeps a few for reuse,
    /// deletes the rest); returns how many.
    pub fn checkpoint(&self, pos: JournalPos) -> Result<usize, JournalError> {
        let current = self.inner.current_segment.load(Ordering::Acquire);
        let dir = &self.inner.dir;
        let mut retired = 0;
        for (seq, path) in list_segments(dir)? {
            if seq < pos.segment && seq < current {
                let keep = lock_pool(&self.inner.pool).len() < self.inner.recycle_segments;
                if keep {
                    let to = dir.join(recycled_name(seq));
                    std::fs::rename(&path, &to).map_err(io_err(&path))?;
                    lock_pool(&self.inner.pool).push(to);
                } else {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                }
                retired += 1;
            }
        }
        if retired > 0 {
            sync_dir(dir)?;
        }
        Ok(retired)
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
            segments_started: c.segments_started.load(Ordering::Relaxed),
            segments_recycled: c.segments_recycled.load(Ordering::Relaxed),
            slowest_batch: Duration::from_micros(c.slowest_batch_us.load(Ordering::Relaxed)),
            slowest_roll: Duration::from_micros(c.slowest_roll_us.load(Ordering::Relaxed)),
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
    /// Length of the current file when it was opened (a recycled file is
    /// cut to what was written before the writer moves on).
    file_len: u64,
    current_segment: Arc<AtomicU64>,
    counters: Arc<Counters>,
    pool: Pool,
    unapplied: UnappliedRef,
    /// Segment `seq + 1`, being prepared by a helper thread.
    spare: Option<std::thread::JoinHandle<Result<Segment, JournalError>>>,
    failed: Option<String>,
    sync_warned: AtomicBool,
}

/// A segment file ready for records: header durable, named, directory synced.
struct Segment {
    file: File,
    path: PathBuf,
    /// The file's length (a recycled file keeps its old length).
    len: u64,
    recycled: bool,
}

impl Writer {
    fn create(
        cfg: JournalConfig,
        seq: u64,
        current_segment: Arc<AtomicU64>,
        counters: Arc<Counters>,
        pool: Pool,
        unapplied: UnappliedRef,
    ) -> Result<Self, JournalError> {
        let first = Self::new_segment(&cfg.dir, seq, &pool)?;
        let mut writer = Self {
            cfg,
            file: first.file,
            path: first.path,
            seq,
            offset: SEGMENT_HEADER as u64,
            file_len: first.len,
            current_segment,
            counters,
            pool,
            unapplied,
            spare: None,
            failed: None,
            sync_warned: AtomicBool::new(false),
        };
        writer.count_started(first.recycled);
        writer.prepare_spare();
        Ok(writer)
    }

    fn count_started(&self, recycled: bool) {
        self.counters
            .segments_started
            .fetch_add(1, Ordering::Relaxed);
        if recycled {
            self.counters
                .segments_recycled
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts preparing segment `seq + 1` on a helper thread. If the thread
    /// cannot be started, the next roll prepares the segment itself.
    fn prepare_spare(&mut self) {
        let (dir, seq, pool) = (self.cfg.dir.clone(), self.seq + 1, self.pool.clone());
        self.spare = std::thread::Builder::new()
            .name("journal-prepare".into())
            .spawn(move || Self::new_segment(&dir, seq, &pool))
            .ok();
    }

    /// Creates segment `seq`, from a recycled file when one is free.
    fn new_segment(dir: &Path, seq: u64, pool: &Pool) -> Result<Segment, JournalError> {
        use std::os::unix::fs::FileExt;
        let path = dir.join(segment_name(seq));
        let recycled = {
            let mut pool = lock_pool(pool);
            (!pool.is_empty()).then(|| pool.remove(0))
        };
        // A reused file is opened under its old name and keeps its length.
        let opened = match &recycled {
            Some(old) => OpenOptions::new().write(true).open(old),
            None => OpenOptions::new().create_new(true).write(true).open(&path),
        };
        let at = recycled.as_deref().unwrap_or(&path);
        let file = opened.map_err(io_err(at))?;
        // The new header is durable before a reused file takes the new name:
        // a segment never carries another segment's number.
        file.write_all_at(&segment_header(seq), 0)
            .and_then(|_| file.sync_data())
            .map_err(io_err(at))?;
        let len = file.metadata().map_err(io_err(at))?.len();
        if let Some(old) = &recycled {
            std::fs::rename(old, &path).map_err(io_err(old))?;
        }
        sync_dir(dir)?;
        Ok(Segment {
            file,
            path,
            len,
            recycled: recycled.is_some(),
        })
    }

    /// Waits for the spare being prepared (normally long ready), or prepares
    /// segment `seq + 1` here if none is.
    fn take_spare(&mut self) -> Result<Segment, JournalError> {
        match self.spare.take() {
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(JournalError::Failed(
                    "the thread preparing the next journal segment panicked".into(),
                ))
            }),
            None => Self::new_segment(&self.cfg.dir, self.seq + 1, &self.pool),
        }
    }

    /// On close: the unused spare goes back to the recycle pool's naming, so
    /// a closed journal's newest segment is the last one written.
    fn return_spare(&mut self) {
        let Some(handle) = self.spare.take() else {
            return;
        };
        let Ok(Ok(spare)) = handle.join() else { return };
        let to = self.cfg.dir.join(recycled_name(self.seq + 1));
        if let Err(e) = std::fs::rename(&spare.path, &to).map_err(io_err(&spare.path)) {
            tracing::warn!(error = %e, "returning the unused journal segment to the pool");
        }
    }

    /// Cuts a recycled file's old records off the end of the last segment on
    /// close (tidiness: its end marker-less tail would be cut on open anyway).
    fn seal(&mut self) -> Result<(), JournalError> {
        if self.file_len > self.offset {
            self.file
                .set_len(self.offset)
                .and_then(|_| self.file.sync_all())
                .map_err(io_err(&self.path))?;
            self.file_len = self.offset;
        }
        Ok(())
    }

    /// Moves on to the prepared next segment (the current one was finished
    /// with its end marker) and starts preparing the one after.
    fn roll(&mut self) -> Result<(), JournalError> {
        let started = std::time::Instant::now();
        let next = self.take_spare()?;
        self.seq += 1;
        self.file = next.file;
        self.path = next.path;
        self.offset = SEGMENT_HEADER as u64;
        self.file_len = next.len;
        self.current_segment.store(self.seq, Ordering::Release);
        self.count_started(next.recycled);
        self.prepare_spare();
        // A roll that fails fails the journal; only finished ones are timed.
        raise_micros(&self.counters.slowest_roll_us, started.elapsed());
        Ok(())
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = batch[0].payload.len() + RECORD_HEADER;
            while bytes < self.cfg.max_batch_bytes {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.payload.len() + RECORD_HEADER;
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
        }
        if self.failed.is_none() {
            if let Err(e) = self.seal() {
                tracing::warn!(error = %e, "sealing the last journal segment on close");
            }
        }
        self.return_spare();
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
        let mut buf =
            Vec::with_capacity(batch.iter().map(|r| RECORD_HEADER + r.payload.len()).sum());
        let mut positions = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        for r in &batch {
            let size = (RECORD_HEADER + r.payload.len()) as u64;
            let empty = self.offset == SEGMENT_HEADER as u64 && buf.is_empty();
            if !empty && self.offset + buf.len() as u64 + size + END_BYTES > self.cfg.segment_bytes
            {
                // The end marker goes out with the segment's last records:
                // nothing is written to the next segment before it is durable.
                encode_end(&mut buf, self.seq);
                result = self.flush(&mut buf).and_then(|_| self.roll());
                if result.is_err() {
                    break;
                }
            }
            positions.push(JournalPos {
                segment: self.seq,
                offset: self.offset + buf.len() as u64,
            });
            encode_into(&mut buf, self.seq, &r.payload);
        }
        if result.is_ok() {
            let end = self.offset + buf.len() as u64;
            encode_pad(&mut buf, self.seq, end);
            result = self.flush(&mut buf);
        }
        match result {
            Ok(()) => {
                let durable_at = std::time::Instant::now();
                let n = batch.len() as u64;
                self.counters.records.fetch_add(n, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.last_batch.store(n, Ordering::Relaxed);
                let took = durable_at - started;
                raise_micros(&self.counters.slowest_batch_us, took);
                if let Some(observe) = &self.cfg.observer {
                    observe(took, batch.len());
                }
                {
                    // Held before anyone hears of it: a checkpoint between
                    // here and the appender applying the record must not
                    // pass it.
                    let mut u = lock_unapplied(&self.unapplied);
                    u.held.extend(positions.iter().copied());
                    u.end = JournalPos {
                        segment: self.seq,
                        offset: self.offset,
                    };
                }
                for (r, pos) in batch.into_iter().zip(positions) {
                    let held = Held {
                        pos,
                        batch_started: started,
                        durable_at,
                        unapplied: self.unapplied.clone(),
                    };
                    // An appender that went away drops `held` here: nothing
                    // of its record will be applied, and it was not answered.
                    let _ = r.done.send(Ok(held));
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
    /// `offset` to the end of the last *whole* page. Batches end on page
    /// boundaries (`encode_pad`), so that is all of it except where a batch
    /// ends a segment (nothing is written after it). Dropping a page the next
    /// write only partly covers would make that write read it back from the
    /// disk first, behind the device's writes (a buffered `pwrite` stalled up
    /// to 200 ms that way, seen with `perf trace` in bench-ledger).
    fn drop_cached(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let page_mask = !(PAGE as u64 - 1);
        let start = offset & page_mask;
        let end = (offset + len) & page_mask;
        if end <= start {
            return;
        }
        let (Ok(start_off), Ok(span)) = (
            libc::off_t::try_from(start),
            libc::off_t::try_from(end - start),
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
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(buf, self.offset)
            .map_err(io_err(&self.path))?;
        if self.cfg.sync {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.drop_cached(self.offset, buf.len() as u64);
        } else if !self.sync_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("journal writes are not fsynced");
        }
        self.offset += buf.len() as u64;
        self.file_len = self.file_len.max(self.offset);
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
        cfg_rolling_at(dir, 1 << 20)
    }

    /// A journal config whose segments roll after `segment_bytes`.
    fn cfg_rolling_at(dir: &Path, segment_bytes: u64) -> JournalConfig {
        let mut c = JournalConfig::new(dir.to_path_buf());
        c.segment_bytes = segment_bytes;
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

    /// Where the last record of a segment's bytes ends (its batch's padding
    /// follows it).
    fn last_record_end(bytes: &[u8]) -> usize {
        let scan = scan_segment(bytes);
        let (off, payload) = scan.records.last().expect("a record");
        *off as usize + RECORD_HEADER + payload.len()
    }

    /// A journal in `dir` holding payloads 0..10; returns its segment.
    async fn ten_records(dir: &Path) -> PathBuf {
        let (j, _) = Journal::open(cfg(dir), None).unwrap();
        for i in 0..10 {
            j.append(payload(i)).await.unwrap();
        }
        j.close();
        newest_segment(dir)
    }

    #[test]
    fn padding_ends_batches_on_page_boundaries_and_is_skipped_on_replay() {
        let seq = 7;
        let mut bytes = segment_header(seq).to_vec();
        encode_into(&mut bytes, seq, b"first");
        let end = bytes.len() as u64;
        encode_pad(&mut bytes, seq, end);
        assert_eq!(bytes.len(), PAGE);
        // At a boundary already: nothing to pad.
        encode_pad(&mut bytes, seq, PAGE as u64);
        assert_eq!(bytes.len(), PAGE);
        // A batch ending 4 bytes short of a boundary leaves no room for a
        // padding header there, so its padding runs to the boundary after.
        let fill = 2 * PAGE - 4 - bytes.len() - RECORD_HEADER;
        encode_into(&mut bytes, seq, &vec![b's'; fill]);
        let pad_at = bytes.len();
        assert_eq!(pad_at, 2 * PAGE - 4);
        encode_pad(&mut bytes, seq, pad_at as u64);
        assert_eq!(bytes.len(), 3 * PAGE);
        encode_into(&mut bytes, seq, b"third");
        let scan = scan_segment(&bytes);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.valid_len, bytes.len() as u64);
        let payloads: Vec<_> = scan.records.iter().map(|(_, p)| p.len()).collect();
        assert_eq!(payloads, [5, fill, 5]);
        assert_eq!(scan.records[2].0, 3 * PAGE as u64);
        // Padding whose filler was cut short by a crash is a torn tail at the
        // padding's start; the records before it stand.
        let torn = &bytes[..3 * PAGE - 100];
        let scan = scan_segment(torn);
        assert_eq!(scan.damage.as_deref(), Some("partial padding"));
        assert_eq!(scan.valid_len, pad_at as u64);
        assert_eq!(scan.records.len(), 2);
        // Padding of another segment (a reused file's stale bytes) is not ours.
        let mut stale = segment_header(seq).to_vec();
        encode_pad(&mut stale, seq + 1, SEGMENT_HEADER as u64);
        let scan = scan_segment(&stale);
        assert_eq!(scan.valid_len, SEGMENT_HEADER as u64);
        assert!(scan.damage.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_batch_is_written_up_to_a_page_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(cfg(dir.path()), None).unwrap();
        for i in 0..5 {
            let pos = j.append(payload(i * 37)).await.unwrap();
            let segments = list_segments(dir.path()).unwrap();
            let (_, path) = segments
                .iter()
                .find(|(seq, _)| *seq == pos.segment)
                .unwrap();
            let len = std::fs::metadata(path).unwrap().len();
            assert_eq!(len % PAGE as u64, 0, "batch {i} left the file at {len}");
        }
        j.close();
        let (_j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        let got: Vec<_> = replay.into_iter().map(|(_, p)| p).collect();
        let want: Vec<_> = (0..5).map(|i| payload(i * 37)).collect();
        assert_eq!(got, want);
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
        let c = cfg_rolling_at(dir.path(), 4096);
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
    async fn the_applied_position_stops_at_the_first_record_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg_rolling_at(dir.path(), 4096);
        let (j, _) = Journal::open(c.clone(), None).unwrap();
        let start = j.applied_position();
        let first = j.append_held(payload(1)).await.unwrap();
        assert_eq!(start, first.pos, "nothing before the first record");
        assert_eq!(j.applied_position(), first.pos);
        // Later records, across segments, applied at once: still held back
        // by the first one.
        let mut last = first.pos;
        for i in 2..200 {
            last = j.append(payload(i)).await.unwrap();
        }
        assert!(last.segment > first.pos.segment, "expected rollover");
        let second = j.append_held(payload(200)).await.unwrap();
        assert_eq!(j.applied_position(), first.pos);
        drop(first);
        assert_eq!(j.applied_position(), second.pos);
        drop(second);
        let end = j.applied_position();
        assert!(end > last, "past every record once all are applied");
        // A checkpoint at the applied position keeps every record from it on.
        let held = j.append_held(payload(201)).await.unwrap();
        let cut = j.applied_position();
        assert_eq!(cut, held.pos);
        j.checkpoint(cut).unwrap();
        drop(held);
        j.close();
        let (_j, replay) = Journal::open(c, Some(cut)).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].1, payload(201));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn retired_segments_are_reused_and_their_old_records_never_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg_rolling_at(dir.path(), 8192);
        c.recycle_segments = 2;
        let (j, _) = Journal::open(c.clone(), None).unwrap();
        // Big records fill the first segments to the brim.
        for i in 0..20 {
            j.append(vec![i as u8; 3000]).await.unwrap();
        }
        let cut = j.append(b"cut".to_vec()).await.unwrap();
        let retired = j.checkpoint(cut).unwrap();
        assert!(retired > 2, "{retired} segments retired");
        // Two kept for reuse (one may already be the next segment's spare),
        // the others deleted.
        assert!(list_files(dir.path(), "recycle-").unwrap().len() <= 2);
        assert!(list_segments(dir.path())
            .unwrap()
            .iter()
            .all(|(seq, _)| *seq >= cut.segment));
        // Small records now go into the reused files, leaving old big
        // records behind them.
        let mut positions = Vec::new();
        for i in 0..400 {
            positions.push(j.append(payload(i)).await.unwrap());
        }
        // The two kept, plus the spare if it was itself a reused file
        // (depends on when the spare was made: seen under load).
        let recycled = j.stats().segments_recycled;
        assert!(matches!(recycled, 2 | 3), "{recycled} segments reused");
        j.close();
        for _ in 0..2 {
            // Twice: the second open sees the first one's segment sealed.
            let (j, replay) = Journal::open(c.clone(), Some(cut)).unwrap();
            let got: Vec<_> = replay.iter().map(|(_, p)| p.clone()).collect();
            let mut want = vec![b"cut".to_vec()];
            want.extend((0..400).map(payload));
            assert_eq!(got, want);
            assert_eq!(replay[1].0, positions[0]);
            j.close();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_crash_in_a_reused_segment_cuts_the_old_records_off() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash leaves in a reused file: this segment's records, then
        // intact records of the segment the file used to be.
        let seg = ten_records(dir.path()).await;
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes.extend_from_slice(&stale_records());
        std::fs::write(&seg, &bytes).unwrap();
        let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        let got: Vec<_> = replay.into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, (0..10).map(payload).collect::<Vec<_>>());
        j.close();
    }

    /// Stale records of another segment (salted 7), as a reused file holds.
    fn stale_records() -> Vec<u8> {
        let mut stale = Vec::new();
        for i in 0..10 {
            encode_into(&mut stale, 7, &payload(100 + i));
        }
        stale
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn finished_segments_end_at_their_marker() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg_rolling_at(dir.path(), 4096);
        let (j, _) = Journal::open(c.clone(), None).unwrap();
        for i in 0..300 {
            j.append(payload(i)).await.unwrap();
        }
        j.close();
        let segments = list_segments(dir.path()).unwrap();
        assert!(segments.len() > 3, "expected rollover");
        // What a reused file keeps after the marker (a roll no longer cuts
        // it): never read, in any segment.
        for (_, path) in &segments[..segments.len() - 1] {
            let mut bytes = std::fs::read(path).unwrap();
            let end = bytes.len() - END_BYTES as usize;
            let mut marker = Vec::new();
            encode_end(
                &mut marker,
                parse_name(path.file_name().unwrap().to_str().unwrap(), "journal-").unwrap(),
            );
            assert_eq!(
                bytes[end..],
                marker[..],
                "{} ends with its marker",
                path.display()
            );
            bytes.extend_from_slice(&stale_records());
            std::fs::write(path, &bytes).unwrap();
        }
        let (j, replay) = Journal::open(c.clone(), None).unwrap();
        let got: Vec<_> = replay.into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, (0..300).map(payload).collect::<Vec<_>>());
        j.close();
        // Damage before a marker is corruption, not a tail.
        let (_, first) = &segments[0];
        let mut bytes = std::fs::read(first).unwrap();
        bytes[SEGMENT_HEADER + RECORD_HEADER] ^= 0xFF;
        std::fs::write(first, &bytes).unwrap();
        assert!(matches!(
            Journal::open(c, None),
            Err(JournalError::Corrupt { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_crash_with_a_prepared_spare_cuts_the_tail_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let seg = ten_records(dir.path()).await;
        let seq = parse_name(seg.file_name().unwrap().to_str().unwrap(), "journal-").unwrap();
        // The crash: the last record torn, and the next segment prepared
        // from a reused file (its header, then another segment's records).
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[..last_record_end(&bytes) - 3]).unwrap();
        let mut spare = segment_header(seq + 1).to_vec();
        spare.extend_from_slice(&stale_records());
        std::fs::write(dir.path().join(segment_name(seq + 1)), &spare).unwrap();
        let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        let got: Vec<_> = replay.into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, (0..9).map(payload).collect::<Vec<_>>());
        // The unused spare went back to the pool (and was taken again for
        // the new segment): no longer a segment of its own.
        assert!(
            list_segments(dir.path())
                .unwrap()
                .iter()
                .all(|(s, _)| *s != seq + 1),
            "the unused spare is still a segment"
        );
        j.append(b"after".to_vec()).await.unwrap();
        j.close();
        let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        let got: Vec<_> = replay.into_iter().map(|(_, p)| p).collect();
        let mut want: Vec<_> = (0..9).map(payload).collect();
        want.push(b"after".to_vec());
        assert_eq!(got, want);
        j.close();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn random_bytes_after_the_tail_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let seg = ten_records(dir.path()).await;
        // Incompressible old data (a reused file's tail after a crash): every
        // offset is tried as a record start, and random lengths must not
        // make that hash megabytes each.
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..(24 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(&seg, &bytes).unwrap();
        let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        let got: Vec<_> = replay.into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, (0..10).map(payload).collect::<Vec<_>>());
        j.close();
    }

    #[test]
    fn segments_without_a_header_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        // The format before segment headers: records checksummed without a
        // sequence number from the first byte.
        let mut bytes = Vec::new();
        for i in 0..5 {
            let p = payload(i);
            let len = p.len() as u32;
            bytes.extend_from_slice(&len.to_le_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), &p);
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&p);
        }
        std::fs::write(dir.path().join(segment_name(3)), &bytes).unwrap();
        let (j, replay) = Journal::open(cfg(dir.path()), None).unwrap();
        assert_eq!(replay.len(), 5);
        assert_eq!(replay[4].1, payload(4));
        assert_eq!(
            replay[0].0,
            JournalPos {
                segment: 3,
                offset: 0
            }
        );
        j.close();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn torn_tails_are_cut_and_writing_goes_on() {
        for damage in ["truncate", "flip", "garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let seg = ten_records(dir.path()).await;
            let mut bytes = std::fs::read(&seg).unwrap();
            let end = last_record_end(&bytes);
            let keep = match damage {
                "truncate" => {
                    bytes.truncate(end - 3);
                    9
                }
                "flip" => {
                    bytes[end - 1] ^= 0xFF;
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
        let seg = ten_records(dir.path()).await;
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[SEGMENT_HEADER + RECORD_HEADER + 2] ^= 0xFF; // inside the first record's payload
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
                prop_assert!(*off as usize + record_header_len(scan.salt) + payload.len() <= scan.valid_len as usize);
            }
            let _ = intact_record_after(&bytes, 0, scan.salt);
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
