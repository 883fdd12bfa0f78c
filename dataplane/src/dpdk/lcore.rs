//! Running closures on EAL worker lcores.
//!
//! `rte_eal_remote_launch` takes a C function and a pointer; we pass a
//! boxed closure through the pointer and run it under `catch_unwind`, so a
//! panicking worker reports failure instead of unwinding into C (which is
//! undefined behaviour).

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{call_err, DpdkError, Eal};

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch`, received exactly once.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    catch_unwind(AssertUnwindSafe(move || (*job)())).unwrap_or(-1)
}

/// Runs `f` on worker lcore `lcore`. Its return value (or -1 if it
/// panicked) is what [`wait`] returns.
pub fn launch<F>(eal: &Eal, lcore: u32, f: F) -> Result<(), DpdkError>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    if !eal.lcore_enabled(lcore) || lcore == eal.main_lcore() {
        return Err(DpdkError::Call {
            what: format!("launching a worker on lcore {lcore}"),
            reason: "not an enabled EAL worker lcore (check eal.args -l/--lcores and that it is not the main lcore)".into(),
        });
    }
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job).cast::<c_void>();
    // SAFETY: trampoline takes ownership of `arg` when it runs; on failure
    // it never runs and we take the box back.
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc != 0 {
        // SAFETY: launch failed, so the closure was not handed over.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(call_err(format!("launching a worker on lcore {lcore}"), rc));
    }
    Ok(())
}

/// How often [`wait`] looks at a running lcore.
const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(1);

/// Waits for the job on `lcore` to finish; its return value.
///
/// Sleeps between looks rather than spinning as `rte_eal_wait_lcore` does:
/// the caller (the main thread at shutdown) often shares its CPU with other
/// work, and a spin would take that CPU from the very threads (and kernel
/// work) the shutdown waits for.
pub fn wait(_eal: &Eal, lcore: u32) -> i32 {
    // SAFETY: EAL initialised; reads the lcore's state (an atomic load).
    while unsafe { dpdk_sys::rte_eal_get_lcore_state(lcore) } == dpdk_sys::rte_lcore_state_t_RUNNING
    {
        std::thread::sleep(WAIT_STEP);
    }
    // SAFETY: EAL initialised; the lcore is no longer running its job, so
    // this returns at once with the job's value.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) }
}

/// Registers the calling non-EAL thread with EAL (for mempool caches).
pub fn register_thread(_eal: &Eal) -> Result<(), DpdkError> {
    // SAFETY: EAL initialised; registers the current thread only.
    let rc = unsafe { dpdk_sys::rte_thread_register() };
    if rc != 0 {
        return Err(call_err("registering a thread with EAL", super::errno()));
    }
    Ok(())
}

/// Runs `f` on a new thread (not an EAL lcore) registered with EAL, so
/// that it may use mempools and rings like a worker (with an lcore id and
/// a mempool cache); unregistered when `f` returns or panics.
pub fn spawn_registered<F>(
    _eal: &Eal,
    name: &str,
    f: F,
) -> Result<std::thread::JoinHandle<()>, DpdkError>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // SAFETY: EAL is initialised (the caller holds it) and outlives
            // the thread, which the caller joins before dropping EAL.
            let registered = unsafe { dpdk_sys::rte_thread_register() } == 0;
            let _ = catch_unwind(AssertUnwindSafe(f));
            if registered {
                // SAFETY: this thread registered itself above.
                unsafe { dpdk_sys::rte_thread_unregister() };
            }
        })
        .map_err(|e| DpdkError::Call {
            what: format!("starting thread {name}"),
            reason: e.to_string(),
        })
}
