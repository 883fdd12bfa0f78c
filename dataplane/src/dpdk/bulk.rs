//! Bulk allocation and length setting for packet sources.
//!
//! Why: a traffic generator (bench/pktgen) builds a whole burst per loop
//! turn. One `rte_pktmbuf_alloc_bulk` call per burst instead of one alloc per
//! packet, and setting the length of a fresh single-segment mbuf directly
//! instead of calling `rte_pktmbuf_append` per packet, keep the per-packet
//! cost to the bytes the generator actually writes.

use std::ptr::NonNull;

use super::{Burst, Mbuf, Mempool, BURST_SIZE};

impl Mempool {
    /// Appends `n` fresh mbufs to `burst`, all or none: `false` (and
    /// `burst` unchanged) when the pool has fewer than `n` free mbufs or the
    /// burst has less than `n` free slots.
    #[inline]
    pub fn alloc_bulk(&self, burst: &mut Burst, n: usize) -> bool {
        let (ptrs, len) = burst.raw_parts();
        if n == 0 || n > BURST_SIZE - *len {
            return n == 0;
        }
        // SAFETY: the pool is valid while &self lives; the n slots after
        // `len` are inside the burst's array (checked above); on success
        // they hold n owned, reset mbufs and len grows to cover exactly
        // them; on failure nothing was written that we keep.
        let rc =
            unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.as_ptr(), ptrs.add(*len), n as u32) };
        if rc != 0 {
            return false;
        }
        *len += n;
        true
    }
}

impl Mbuf {
    /// Sets the packet length of a single-segment mbuf to `len` bytes from
    /// its data start; `false` (and no change) when `len` exceeds the room
    /// after the data start or the mbuf has more than one segment.
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) -> bool {
        // SAFETY: we own a valid mbuf; &mut self gives exclusive access to
        // its header, and only plain integer fields are written.
        let m = unsafe { self.raw_mut() };
        let room = usize::from(m.buf_len).saturating_sub(usize::from(m.data_off));
        if len > room || m.nb_segs != 1 {
            return false;
        }
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        true
    }

    /// The mbuf header, mutable.
    ///
    /// # Safety
    /// The caller must not break the mbuf's invariants (segments, data
    /// within the buffer).
    #[inline(always)]
    unsafe fn raw_mut(&mut self) -> &mut dpdk_sys::rte_mbuf {
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf> (Burst
        // relies on the same layout), so the cast reads its only field; the
        // pointer is valid and exclusively ours (&mut self).
        unsafe { (*(self as *mut Mbuf).cast::<NonNull<dpdk_sys::rte_mbuf>>()).as_mut() }
    }
}
