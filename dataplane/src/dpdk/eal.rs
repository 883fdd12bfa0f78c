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

    /// Bytes logged so far.
    fn mark(&self) -> usize {
        // SAFETY: fflush on our own open stream updates the size.
        unsafe { libc::fflush(self.file) };
        self.buf.1
    }

    /// The last non-empty line logged after `mark`, if any.
    fn last_line_since(&self, mark: usize) -> Option<String> {
        let text = self.text();
        text.get(mark.min(text.len())..)?
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
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

/// Where EAL will put its runtime directory (`rte_eal_get_runtime_dir`
/// is only valid after init): `/var/run/dpdk/<prefix>` for root,
/// `$XDG_RUNTIME_DIR/dpdk/<prefix>` or `/tmp/dpdk/<prefix>` otherwise.
fn runtime_dir_guess<S: AsRef<str>>(args: &[S]) -> Option<PathBuf> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    if args
        .iter()
        .any(|a| *a == "--in-memory" || *a == "--no-shconf")
    {
        return None;
    }
    let prefix = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--file-prefix=") {
            Some(v) => Some(v.to_string()),
            None if *a == "--file-prefix" => args.get(i + 1).map(|v| v.to_string()),
            None => None,
        })
        .unwrap_or_else(|| "rte".into());
    // SAFETY: getuid has no preconditions and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let base = if root {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    };
    Some(base.join("dpdk").join(prefix))
}

/// fd 2 pointed at /dev/null until dropped.
struct Stderr {
    saved: i32,
}

impl Stderr {
    fn silence() -> Option<Stderr> {
        // SAFETY: plain fd calls on fds we own (the dup and /dev/null); a
        // failure leaves stderr untouched.
        unsafe {
            let saved = libc::dup(2);
            if saved < 0 {
                return None;
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null < 0 {
                libc::close(saved);
                return None;
            }
            libc::dup2(null, 2);
            libc::close(null);
            Some(Stderr { saved })
        }
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        // SAFETY: restores the descriptor saved by silence(), which we own.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
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
        let dir_guess = runtime_dir_guess(args);
        let existed = dir_guess.as_ref().is_some_and(|d| d.exists());
        // EAL also prints its fatal alerts straight to stderr; they are in
        // the captured log too, so silence fd 2 for the call.
        let quiet = Stderr::silence();
        // SAFETY: argv holds argc pointers to NUL-terminated strings that
        // live (in `cargs`) until after the call and beyond (EAL may keep
        // pointers to them: cargs is leaked below on success).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        drop(quiet);
        if rc < 0 {
            let code = super::errno();
            // A failed init leaves its fresh runtime directory behind; one
            // that existed before may belong to a running process.
            if let (Some(d), false) = (&dir_guess, existed) {
                let _ = std::fs::remove_dir_all(d);
            }
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

    /// A position in the start-up log (see [`Eal::log_line_since`]).
    pub fn log_mark(&self) -> usize {
        self.log.as_ref().map_or(0, MemLog::mark)
    }

    /// The EAL's last log line after `mark` (for error messages of port
    /// set-up, which logs its reasons there), while start-up is quiet.
    pub fn log_line_since(&self, mark: usize) -> Option<String> {
        self.log.as_ref().and_then(|l| l.last_line_since(mark))
    }

    /// Ends the quiet start-up: EAL logs go to stderr again. Returns what
    /// was logged during start-up.
    pub fn quiet_end(&mut self) -> String {
        self.log.take().map(|l| l.text()).unwrap_or_default()
    }

    /// Where EAL run with `args` keeps its runtime directory, if it keeps
    /// one (known before init, e.g. to clean one a killed process left).
    pub fn runtime_dir_for<S: AsRef<str>>(args: &[S]) -> Option<PathBuf> {
        runtime_dir_guess(args)
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
