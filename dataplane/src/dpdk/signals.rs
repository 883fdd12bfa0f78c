//! SIGINT/SIGTERM for a DPDK process.
//!
//! Why here: the signals must be blocked before `rte_eal_init` creates its
//! threads (they inherit the mask), so that no EAL thread or worker is ever
//! interrupted and only the thread that calls [`Termination::wait`] takes
//! them. That is part of EAL's start-up order, and it needs libc calls, so
//! it lives in the one module allowed `unsafe`.

/// SIGINT and SIGTERM, blocked in the calling thread and its future threads.
#[derive(Clone, Copy)]
pub struct Termination {
    set: libc::sigset_t,
}

impl std::fmt::Debug for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Termination(SIGINT, SIGTERM)")
    }
}

impl Termination {
    /// Blocks SIGINT and SIGTERM. Call before [`super::Eal::init`].
    pub fn block() -> Termination {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before
        // sigaddset reads it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame; the calls
        // only write it, and pthread_sigmask changes this thread's mask.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        Termination { set }
    }

    /// Waits for SIGINT or SIGTERM; returns the signal number.
    pub fn wait(&self) -> i32 {
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
}
