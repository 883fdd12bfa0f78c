//! EAL start-up and shutdown.
//!
//! EAL can be initialised once per process and never again after cleanup,
//! so [`Eal::init`] refuses a second call and [`Eal`]'s drop runs
//! `rte_eal_cleanup` and removes the runtime directory
//! (`/var/run/dpdk/<prefix>`), which EAL leaves behind. Hugepage files are
//! not left behind when EAL runs with `--huge-unlink` or `--in-memory`
//! (the example configs do).
//!
//! EAL logs its reasons for failing (no hugetlbfs, unknown driver...) on
//! its own log stream, not in the error code. While [`Eal::init`] runs and
//! until [`Eal::quiet_end`], the log goes to a memory buffer so that
//! start-up failures come out as one line with the EAL's last complaint.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{strerror, DpdkError};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The process's EAL. Drop it last: after ports, rings and mempools.
#[derive(Debug)]
pub struct Eal {
    runtime_dir: Option<PathBuf>,
    log: Option<MemLog>,
}

/// The EAL log captured in memory (an `open_memstream` FILE).
#[derive(Debug)]
struct MemLog {
    file: *mut libc::FILE,
    buf: Box<(*mut c_char, libc::size_t)>,
}

impl MemLog {
    fn open() -> Option<MemLog> {
        let mut buf = Box::new((std::ptr::null_mut::<c_char>(), 0usize));
        // SAFETY: open_memstream stores the buffer pointer and size through
        // the two pointers, which point into a Box that outlives the FILE.
        let file = unsafe { libc::open_memstream(&mut buf.0, &mut buf.1) };
        if file.is_null() {
            return None;
        }
        // SAFETY: `file` is a valid stream; EAL only writes to it, and we
        // replace it (rte_openlog_stream(NULL)) before closing it.
        unsafe { dpdk_sys::rte_openlog_stream(file.cast()) };
        Some(MemLog { file, buf })
    }

    /// The last non-empty line the EAL logged, if any.
    fn last_line(&self) -> Option<String> {
        // SAFETY: fflush on our own open stream updates buf/size.
        unsafe { libc::fflush(self.file) };
        let (ptr, len) = *self.buf;
        if ptr.is_null() || len == 0 {
            return None;
        }
        // SAFETY: after fflush, ptr points to `len` initialised bytes owned by
        // the stream; we copy them before any further write.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
        String::from_utf8_lossy(bytes)
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    }

    /// Everything logged so far.
    fn text(&self) -> String {
        // SAFETY: as in last_line.
        unsafe { libc::fflush(self.file) };
        let (ptr, len) = *self.buf;
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: as in last_line.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

impl Drop for MemLog {
    fn drop(&mut self) {
        // SAFETY: point EAL back at its default stream first, so nothing
        // writes to the stream we close; then free the buffer it allocated.
        unsafe {
            dpdk_sys::rte_openlog_stream(std::ptr::null_mut());
            libc::fclose(self.file);
            libc::free(self.buf.0.cast());
        }
    }
}

impl Eal {
    /// Starts EAL with `args` (without a program name; one is prepended).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalTwice);
        }
        let mut cargs = vec![CString::new("uvsd").expect("static name has no NUL")];
        for a in args {
            let a = a.as_ref();
            cargs.push(CString::new(a).map_err(|_| DpdkError::Nul(a.to_string()))?);
        }
        // EAL may permute argv: give it a private array of pointers.
        let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr().cast_mut()).collect();
        let log = MemLog::open();
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc pointers to NUL-terminated strings that
        // live (in `cargs`) until after the call and beyond (EAL may keep
        // pointers to them: cargs is leaked below on success).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let code = super::errno();
            let mut msg = strerror(code);
            if let Some(line) = log.as_ref().and_then(MemLog::last_line) {
                msg = format!("{msg} ({line})");
            }
            return Err(DpdkError::EalInit(msg));
        }
        std::mem::forget(cargs);
        // SAFETY: valid after a successful init; returns a static string.
        let dir = unsafe { CStr::from_ptr(dpdk_sys::rte_eal_get_runtime_dir()) };
        let runtime_dir = Some(PathBuf::from(dir.to_string_lossy().into_owned()));
        Ok(Eal { runtime_dir, log })
    }

    /// The EAL's last log line since start-up (for error messages of port
    /// set-up, which also logs its reasons there).
    pub fn last_log_line(&self) -> Option<String> {
        self.log.as_ref().and_then(MemLog::last_line)
    }

    /// Ends the quiet start-up: EAL logs go to stderr again. Returns what
    /// was logged during start-up.
    pub fn quiet_end(&mut self) -> String {
        self.log.take().map(|l| l.text()).unwrap_or_default()
    }

    /// `/var/run/dpdk/<prefix>` (or wherever EAL put it).
    pub fn runtime_dir(&self) -> Option<&std::path::Path> {
        self.runtime_dir.as_deref()
    }

    /// The lcore this thread runs on (`LCORE_ID_ANY` for non-EAL threads).
    pub fn lcore_id() -> u32 {
        // SAFETY: reads a thread-local variable; no preconditions.
        unsafe { dpdk_sys::rte_lcore_id() }
    }

    /// The main lcore.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised (we exist); returns a number.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Whether `lcore` is an enabled EAL lcore.
    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        if lcore >= dpdk_sys::RTE_MAX_LCORE {
            return false;
        }
        // SAFETY: EAL is initialised and lcore < RTE_MAX_LCORE.
        unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) != 0 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        self.log.take();
        // SAFETY: we are the only EAL owner; the daemon drops ports, rings
        // and pools (fields declared before, or values dropped earlier)
        // before this, and workers have been waited for.
        unsafe { dpdk_sys::rte_eal_cleanup() };
        if let Some(dir) = self.runtime_dir.take() {
            // Best effort: EAL leaves the config and socket files behind.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
