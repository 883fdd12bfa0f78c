//! Process signals of a DPDK daemon: the ones an operator or a service
//! manager sends, and the fatal ones.
//!
//! Why here: the operator's signals must be blocked before `rte_eal_init`
//! creates its threads (they inherit the mask), so that no EAL thread or
//! worker is ever interrupted and only the thread that calls
//! [`Signals::wait`] takes them. That is part of EAL's start-up order, and
//! it needs libc calls, so it lives in the one module allowed `unsafe`.
//!
//! Every signal a terminal or a service manager sends is in the set: HUP,
//! INT, QUIT, TERM, USR1 and USR2 are taken by `sigwait` and the daemon
//! decides what each means; none of them can end the process behind its
//! back (left unblocked, HUP, QUIT, USR1 and USR2 would kill it without its
//! clean shutdown). PIPE is ignored: a control client that goes away is an
//! EPIPE on that client's socket, nothing more.
//!
//! The fatal signals (SEGV, BUS, ILL, FPE) cannot be waited for; a handler
//! writes one fixed line naming the signal and the thread (EAL names its
//! lcore threads `rte-worker-N`) with `write(2)`, the only kind of output
//! that is safe there, then lets the signal kill the process as it would
//! have (core dump included).

use std::os::raw::{c_int, c_void};

/// The operator's signals, blocked in the calling thread and its future
/// threads.
#[derive(Clone, Copy)]
pub struct Signals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals(HUP, INT, QUIT, TERM, USR1, USR2)")
    }
}

/// The signals [`Signals::wait`] returns.
pub const WAITED: [c_int; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The conventional name of a signal number (`SIGTERM`), for logs.
pub fn signal_name(sig: c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

impl Signals {
    /// Blocks [`WAITED`] and ignores SIGPIPE. Call before
    /// [`super::Eal::init`].
    pub fn block() -> Signals {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before
        // sigaddset reads it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame; the calls
        // only write it, and pthread_sigmask changes this thread's mask.
        // SIG_IGN for SIGPIPE is a process-wide disposition with no handler
        // code.
        unsafe {
            libc::sigemptyset(&mut set);
            for s in WAITED {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        Signals { set }
    }

    /// Waits for one of [`WAITED`]; returns its number.
    pub fn wait(&self) -> c_int {
        let mut sig = 0;
        loop {
            // SAFETY: the set is initialised and its signals are blocked in
            // this thread; `sig` is a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            if rc == 0 {
                return sig;
            }
        }
    }

    /// Waits up to `timeout` for one of [`WAITED`]: its number, or `None`
    /// when none came.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Option<c_int> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: the set is initialised and its signals are blocked in this
        // thread; no siginfo is asked for (null); `ts` outlives the call.
        let rc = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (rc > 0).then_some(rc)
    }

    /// Sends `sig` to this process (a worker that failed asks the main
    /// thread for the clean shutdown this way).
    pub fn raise_in_process(sig: c_int) {
        // SAFETY: kill(2) on our own pid with a valid signal number; no
        // memory is passed.
        unsafe {
            libc::kill(libc::getpid(), sig);
        }
    }
}

const FATAL: [c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Installs the fatal-signal report (see the module docs). Idempotent.
pub fn report_fatal_signals() {
    for sig in FATAL {
        // SAFETY: sigaction is plain data, zeroed then filled; the handler
        // is an `extern "C"` function that only calls async-signal-safe
        // functions (prctl, write). SA_RESETHAND restores the default
        // action before the handler runs, so returning re-raises the fault
        // with its default effect.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = fatal_handler as *const () as usize;
            sa.sa_flags = libc::SA_RESETHAND | libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

extern "C" fn fatal_handler(sig: c_int, _info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    let mut line = [0u8; 160];
    let mut n = 0;
    let mut put = |s: &[u8]| {
        for &b in s {
            if n < line.len() {
                line[n] = b;
                n += 1;
            }
        }
    };
    put(b"uvsd: fatal: ");
    put(signal_name(sig).as_bytes());
    put(b" in thread ");
    let mut tname = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL included) into the
    // 17-byte buffer; prctl is async-signal-safe (a plain syscall).
    unsafe {
        libc::prctl(libc::PR_GET_NAME, tname.as_mut_ptr());
    }
    let len = tname.iter().position(|&b| b == 0).unwrap_or(16);
    put(&tname[..len]);
    put(b"; the process stops (a core dump, if enabled, shows where)\n");
    // SAFETY: writes `n` initialised bytes of `line` to stderr; write(2) is
    // async-signal-safe. A short or failed write is of no consequence.
    unsafe {
        libc::write(2, line.as_ptr().cast(), n);
    }
}
