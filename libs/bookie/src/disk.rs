//! Free-space watch of the ledger disk: below the threshold the bookie turns
//! read-only (refuses adds, keeps serving reads) until space returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct DiskMonitor {
    path: PathBuf,
    free: AtomicU64,
    total: AtomicU64,
}

/// (free bytes available to us, total bytes) of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

impl DiskMonitor {
    pub fn new(path: PathBuf) -> Self {
        let m = Self {
            path,
            free: AtomicU64::new(0),
            total: AtomicU64::new(0),
        };
        m.refresh();
        m
    }

    /// Re-reads the filesystem's free space; returns the free bytes.
    pub fn refresh(&self) -> u64 {
        match disk_space(&self.path) {
            Ok((free, total)) => {
                self.free.store(free, Ordering::Relaxed);
                self.total.store(total, Ordering::Relaxed);
                free
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "statvfs failed");
                self.free.load(Ordering::Relaxed)
            }
        }
    }

    pub fn last(&self) -> (u64, u64) {
        (
            self.free.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}
