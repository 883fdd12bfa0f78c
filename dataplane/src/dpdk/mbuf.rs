//! Owned mbufs and stack bursts of them.
//!
//! [`Mbuf`] is a transparent owner of a non-null `rte_mbuf` pointer:
//! dropping it frees the buffer. [`Burst`] is a fixed array of raw pointers
//! on the stack plus a length; its first `len` entries are owned mbufs,
//! handed out as `&mut [Mbuf]` (same layout) so engine code sees safe
//! owners while rx/tx pass the array to DPDK without any allocation.

use std::ptr::NonNull;

use crate::buf::PacketBuf;

/// The most packets one rx/tx burst carries.
pub const BURST_SIZE: usize = 32;

/// An owned single-segment mbuf.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf; moving the owner to another
// thread moves the ownership (DPDK frees it to its pool from any lcore).
unsafe impl Send for Mbuf {}

impl Mbuf {
    pub(crate) fn from_raw(p: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(p)
    }

    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline(always)]
    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for as long as self lives.
        unsafe { self.0.as_ref() }
    }

    /// The port the mbuf was received on.
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Records the port the frame belongs to (for frames handed between
    /// workers).
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: we own the mbuf; a plain field write.
        unsafe { self.0.as_mut().port = port };
    }

    /// The RSS hash the NIC computed (valid when the NIC set it).
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: reading a plain u32 out of a union of plain integers.
        unsafe { self.raw().__bindgen_anon_2.hash.rss }
    }

    /// Offload flags (`RTE_MBUF_F_*`).
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; after this it is back in its pool and
        // self is gone.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// `RTE_MBUF_F_RX_IP_CKSUM_*` (rte_mbuf_core.h): bad, good; both set
/// means "not checked".
const RX_IP_CKSUM_BAD: u64 = 1 << 4;
const RX_IP_CKSUM_GOOD: u64 = 1 << 7;

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn rx_ip_checksum(&self) -> Option<bool> {
        match self.ol_flags() & (RX_IP_CKSUM_BAD | RX_IP_CKSUM_GOOD) {
            RX_IP_CKSUM_GOOD => Some(true),
            RX_IP_CKSUM_BAD => Some(false),
            _ => None,
        }
    }
    #[inline(always)]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: for a single-segment mbuf, data_len bytes starting at
        // buf_addr + data_off lie within the buffer (DPDK's invariant),
        // and we own it. Multi-segment mbufs are not produced: ports are
        // set up without scatter, so data_len == pkt_len.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self gives exclusive access.
        unsafe {
            let m = self.0.as_mut();
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }
    /// `rte_pktmbuf_prepend`, written out for the single-segment mbufs
    /// the ports produce (the C function is an out-of-line wrapper here:
    /// every tunnelled packet would pay for the call).
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf (exclusive through &mut self). With one
        // segment, the headroom is data_off: moving data_off back by at
        // most that and growing both lengths by the same amount keeps the
        // data inside the buffer, as rte_pktmbuf_prepend does.
        unsafe {
            let m = self.0.as_mut();
            if m.nb_segs == 1 {
                if n > m.data_off {
                    return false;
                }
                m.data_off -= n;
                m.data_len += n;
                m.pkt_len += u32::from(n);
                return true;
            }
        }
        // SAFETY: we own the mbuf; rte_pktmbuf_prepend checks headroom and
        // returns NULL (changing nothing) when there is not enough.
        !unsafe { dpdk_sys::rte_pktmbuf_prepend(self.0.as_ptr(), n) }.is_null()
    }
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: as prepend; adj checks the length.
        !unsafe { dpdk_sys::rte_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }
    fn append(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: as prepend; append checks the tailroom.
        !unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }
    /// `rte_pktmbuf_trim`, written out for single-segment mbufs (see
    /// `prepend`).
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf; with one segment the last segment is
        // the mbuf itself, and shortening both lengths by at most data_len
        // is what rte_pktmbuf_trim does.
        unsafe {
            let m = self.0.as_mut();
            if m.nb_segs == 1 {
                if n > m.data_len {
                    return false;
                }
                m.data_len -= n;
                m.pkt_len -= u32::from(n);
                return true;
            }
        }
        // SAFETY: as prepend; trim checks the length.
        unsafe { dpdk_sys::rte_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }
}

/// Up to [`BURST_SIZE`] owned mbufs in a stack array.
#[derive(Debug)]
pub struct Burst {
    ptrs: [*mut dpdk_sys::rte_mbuf; BURST_SIZE],
    len: usize,
}

// SAFETY: the first `len` pointers are mbufs this Burst owns exclusively,
// as each Mbuf owns its own; moving the Burst moves their ownership, which
// is as sound as moving the Mbufs (see `Mbuf`'s Send). The rest are unused.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Burst::new()
    }
}

impl Burst {
    pub const fn new() -> Burst {
        Burst {
            ptrs: [std::ptr::null_mut(); BURST_SIZE],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// The owned mbufs.
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: entries 0..len are non-null owned mbuf pointers, and Mbuf
        // is repr(transparent) over NonNull<rte_mbuf>, which has the layout
        // of *mut rte_mbuf.
        unsafe { std::slice::from_raw_parts_mut(self.ptrs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Adds `m`; gives it back when the burst is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST_SIZE {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the mbuf at `i` (order of the rest is kept).
    pub fn take(&mut self, i: usize) -> Option<Mbuf> {
        if i >= self.len {
            return None;
        }
        let p = self.ptrs[i];
        self.ptrs.copy_within(i + 1..self.len, i);
        self.len -= 1;
        NonNull::new(p).map(Mbuf::from_raw)
    }

    /// Removes and returns the last mbuf.
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        NonNull::new(self.ptrs[self.len]).map(Mbuf::from_raw)
    }

    /// Frees every mbuf with one bulk call.
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: entries 0..len are owned mbufs; after the call they are
            // back in their pools and len is reset so they are not reused.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Takes every mbuf out, in order; those not taken are freed when the
    /// iterator drops.
    pub fn drain(&mut self) -> Drain<'_> {
        let len = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            len,
        }
    }

    pub(crate) fn raw_parts(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, &mut usize) {
        (self.ptrs.as_mut_ptr(), &mut self.len)
    }

    /// Drops the first `n` entries, whose ownership went to DPDK (sent or
    /// enqueued), keeping the rest at the front.
    pub(crate) fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Iterator of [`Burst::drain`].
#[derive(Debug)]
pub struct Drain<'a> {
    burst: &'a mut Burst,
    next: usize,
    len: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;
    #[inline(always)]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next >= self.len {
            return None;
        }
        let p = self.burst.ptrs[self.next];
        self.next += 1;
        NonNull::new(p).map(Mbuf::from_raw)
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
