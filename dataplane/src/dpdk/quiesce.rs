//! No burst in flight while a driver tears a port's memory down.
//!
//! Why: DPDK 22.11's memif driver handles a peer's disconnect in EAL's
//! interrupt thread (`memif_disconnect`, drivers/net/memif/memif_socket.c):
//! it clears the port's CONNECTED flag with a plain store and then, a few
//! microseconds later and without waiting for anyone, unmaps the shared
//! regions that hold the rings and packet buffers (`memif_free_regions`).
//! The rx/tx burst functions check the flag once, at their start; a burst
//! that passed the check before the store, on a worker lcore, keeps reading
//! descriptors and copying buffers from memory that is gone, and the worker
//! dies of SIGSEGV inside `librte_net_memif.so`. The driver raises no event
//! before (or after) the unmap, so no callback can hold it back; the window
//! is one burst, wide enough when the worker's vCPU is preempted mid-burst.
//! docs/design/operations.md has the analysis and a reproduction.
//!
//! The fix is a grace period, as in RCU: every worker announces, between
//! two turns of its loop (never inside a burst), that it passed a quiescent
//! point by advancing its epoch with a full barrier; and uvsd's own
//! `munmap` (the binary exports it, so the driver's call binds to it) waits,
//! when called from the interrupt thread while workers run, until every
//! online worker has advanced once. Any burst that began before the
//! driver's flag store has then ended, and every later burst sees the flag
//! cleared and returns without touching the regions; only then is the
//! memory unmapped. The wait is a few microseconds (one worker turn). Any
//! other caller of `munmap` (every other thread, or before [`arm`]) goes
//! straight to the system call.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Worker slots (at least the engine's worker limit).
const SLOTS: usize = 64;

/// Epoch of each worker slot; 0 = no worker there (offline).
static EPOCHS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// Whether interrupt-thread unmaps wait for the workers.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Longest wait for the workers: a worker that does not come back within
/// it is stuck elsewhere, and the unmap goes ahead (as it would have).
const GRACE_LIMIT: Duration = Duration::from_millis(500);

/// A worker's presence in the grace-period protocol; offline on drop.
#[derive(Debug)]
pub struct Quiescence {
    slot: usize,
}

impl Quiescence {
    /// Worker `slot` comes online (call on its own lcore, before polling).
    pub fn enter(slot: usize) -> Quiescence {
        let slot = slot % SLOTS;
        EPOCHS[slot].store(1, Ordering::SeqCst);
        Quiescence { slot }
    }

    /// A quiescent point: no burst of this worker is in flight. One locked
    /// add per turn of the worker loop (a full barrier, so the driver's
    /// flag store is seen by every burst that follows).
    #[inline]
    pub fn passed(&self) {
        EPOCHS[self.slot].fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Quiescence {
    fn drop(&mut self) {
        EPOCHS[self.slot].store(0, Ordering::SeqCst);
    }
}

/// Makes interrupt-thread unmaps wait for a grace period (call once the
/// workers were launched).
pub fn arm() {
    // Referencing the interposer keeps its object in the link even where
    // nothing else names it.
    std::hint::black_box(munmap as unsafe extern "C" fn(*mut c_void, usize) -> c_int);
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops waiting (before the workers stop).
pub fn disarm() {
    ARMED.store(false, Ordering::SeqCst);
}

/// Waits until every online worker passed a quiescent point (or
/// [`GRACE_LIMIT`]). Returns whether they all did.
pub fn grace_period() -> bool {
    fence(Ordering::SeqCst);
    let seen: [u64; SLOTS] = std::array::from_fn(|i| EPOCHS[i].load(Ordering::SeqCst));
    let start = Instant::now();
    loop {
        let pending = seen.iter().enumerate().any(|(i, &e)| {
            let now = EPOCHS[i].load(Ordering::SeqCst);
            e != 0 && now == e
        });
        if !pending {
            return true;
        }
        if start.elapsed() > GRACE_LIMIT {
            return false;
        }
        std::thread::yield_now();
    }
}

fn in_interrupt_thread() -> bool {
    // SAFETY: compares the calling thread with EAL's interrupt thread (a
    // zero handle before EAL starts it); no other state is touched.
    unsafe { dpdk_sys::rte_thread_is_intr() != 0 }
}

/// uvsd's `munmap`, exported by the uvsd binary (see the module docs and
/// the root build script): waits for a grace period when a driver unmaps
/// from EAL's interrupt thread while workers poll, then unmaps.
///
/// # Safety
///
/// The contract of munmap(2): the caller owns the mapping.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    if ARMED.load(Ordering::SeqCst) && in_interrupt_thread() {
        grace_period();
    }
    // SAFETY: the system call itself, with the caller's arguments; the
    // caller guarantees the mapping is theirs to remove.
    unsafe { libc::syscall(libc::SYS_munmap, addr, len) as c_int }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_waits_for_an_online_worker_and_not_for_an_offline_one() {
        // Slot 63 only: other tests leave the others offline.
        let q = Quiescence { slot: 63 };
        EPOCHS[63].store(1, Ordering::SeqCst);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let worker = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                q.passed();
            }
            drop(q);
        });
        assert!(grace_period(), "a polling worker passes a quiescent point");
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        assert_eq!(EPOCHS[63].load(Ordering::SeqCst), 0, "offline on drop");
        assert!(grace_period(), "no online worker: nothing to wait for");
    }

    #[test]
    fn munmap_outside_the_interrupt_thread_is_the_system_call() {
        let len = 4096;
        // SAFETY: an anonymous private mapping owned by this test.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: `p` is the mapping made above, unmapped once.
        assert_eq!(unsafe { munmap(p, len) }, 0);
    }
}
