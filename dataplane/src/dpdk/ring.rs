//! `rte_ring` of mbufs: the hand-over channel between lcores.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{call_err, Burst, DpdkError, Eal, BURST_SIZE};

/// A ring of mbuf pointers. Single producer and single consumer unless
/// created with `multi = true`.
#[derive(Debug)]
pub struct Ring {
    raw: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: rte_ring is a lock-free queue meant for use across lcores; the
// SP/SC flavour is used by one producer and one consumer (caller's duty,
// documented on `new`).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `count` slots (a power of two; one slot stays empty).
    /// With `multi == false` exactly one thread may enqueue and one dequeue.
    pub fn new(_eal: &Eal, name: &str, count: u32, multi: bool) -> Result<Ring, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::Nul(name.to_string()))?;
        let flags = if multi {
            0
        } else {
            dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ
        };
        // SAFETY: EAL initialised; valid C string; any socket.
        let raw = unsafe { dpdk_sys::rte_ring_create(cname.as_ptr(), count, -1, flags) };
        NonNull::new(raw)
            .map(|raw| Ring { raw })
            .ok_or_else(|| call_err(format!("creating ring {name}"), super::errno()))
    }

    /// Moves as many mbufs of `burst` as fit into the ring; the rest stay in
    /// `burst`. Returns how many moved.
    #[inline]
    pub fn enqueue(&self, burst: &mut Burst) -> usize {
        let (ptrs, len) = burst.raw_parts();
        let n = *len as u32;
        // SAFETY: ptrs[0..n] are owned mbufs; those enqueued become the
        // ring's, and consume_front forgets them.
        let done = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.raw.as_ptr(),
                ptrs.cast(),
                n,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.consume_front(done);
        done
    }

    /// Fills `burst` (up to its free space) from the ring; returns how many.
    #[inline]
    pub fn dequeue(&self, burst: &mut Burst) -> usize {
        let (ptrs, len) = burst.raw_parts();
        let room = (BURST_SIZE - *len) as u32;
        // SAFETY: the slots after len are free; dequeued pointers are owned
        // mbufs that producers gave up; len grows to cover exactly them.
        let got = unsafe {
            dpdk_sys::rte_ring_dequeue_burst(
                self.raw.as_ptr(),
                ptrs.add(*len).cast(),
                room,
                std::ptr::null_mut(),
            )
        } as usize;
        *len += got;
        got
    }

    /// Entries currently queued.
    pub fn count(&self) -> u32 {
        // SAFETY: valid ring; read-only.
        unsafe { dpdk_sys::rte_ring_count(self.raw.as_ptr()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut b = Burst::new();
        while self.dequeue(&mut b) > 0 {
            b.clear();
        }
        // SAFETY: we own the ring and it is now empty; no lcore uses it any
        // more (workers are joined before rings drop).
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) };
    }
}

/// Creates an ethdev whose rx queue `i` reads `rx[i]` and tx queue `i`
/// writes `tx[i]` (`rte_eth_from_rings`), for a generator or a test that
/// feeds a port and drains it from the same process. Returns the ethdev's
/// name (the driver prefixes `name` with `net_ring_`): open it afterwards
/// with [`super::Port::open`] and that name as device. The rings must
/// outlive the port; ring ports do not free them.
pub fn ring_port(_eal: &Eal, name: &str, rx: &[&Ring], tx: &[&Ring]) -> Result<String, DpdkError> {
    let cname = CString::new(name).map_err(|_| DpdkError::Nul(name.to_string()))?;
    let mut rxp: Vec<*mut dpdk_sys::rte_ring> = rx.iter().map(|r| r.raw.as_ptr()).collect();
    let mut txp: Vec<*mut dpdk_sys::rte_ring> = tx.iter().map(|r| r.raw.as_ptr()).collect();
    // SAFETY: EAL initialised; valid C string; the arrays hold valid rings
    // and live across the call (the driver copies the pointers); the counts
    // are the arrays' lengths.
    let rc = unsafe {
        dpdk_sys::rte_eth_from_rings(
            cname.as_ptr(),
            rxp.as_mut_ptr(),
            rxp.len() as u32,
            txp.as_mut_ptr(),
            txp.len() as u32,
            0,
        )
    };
    if rc < 0 {
        return Err(call_err(
            format!("creating ring port {name}"),
            super::errno(),
        ));
    }
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: rc is the new port's id; buf has RTE_ETH_NAME_MAX_LEN (64)
    // bytes, which the call requires, and receives a NUL-terminated name.
    let rc = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(rc as u16, buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(call_err(format!("naming ring port {name}"), rc));
    }
    // SAFETY: NUL-terminated by the call above, within buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}
