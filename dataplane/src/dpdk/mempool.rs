//! Packet mbuf pools.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{call_err, DpdkError, Eal, Mbuf};

/// An `rte_pktmbuf` pool, freed on drop (after every mbuf went back).
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are designed for concurrent use from many lcores
// (per-lcore caches plus a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: as above; every operation through &Mempool is thread safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// A pool of `count` mbufs with the default data room (2 KiB + headroom)
    /// on `socket` (`-1` for any).
    pub fn new(
        eal: &Eal,
        name: &str,
        count: u32,
        cache: u32,
        socket: i32,
    ) -> Result<Self, DpdkError> {
        Mempool::with_data_room(
            eal,
            name,
            count,
            cache,
            socket,
            dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        )
    }

    /// [`Mempool::new`] with `data_room` bytes per mbuf (headroom
    /// included): large enough for a whole jumbo frame, so that every
    /// received frame is one contiguous segment.
    pub fn with_data_room(
        _eal: &Eal,
        name: &str,
        count: u32,
        cache: u32,
        socket: i32,
        data_room: u16,
    ) -> Result<Self, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::Nul(name.to_string()))?;
        // SAFETY: EAL is initialised (borrowed); cname is a valid C string.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket)
        };
        NonNull::new(raw).map(|raw| Mempool { raw }).ok_or_else(|| {
            call_err(
                format!("creating mbuf pool {name} of {count} mbufs"),
                super::errno(),
            )
        })
    }

    /// The data room (headroom included) an mbuf needs to hold a whole
    /// frame of a port with IP MTU `mtu` (Ethernet header and a VLAN tag
    /// in front), never less than DPDK's default.
    pub fn data_room_for_mtu(mtu: u16) -> u16 {
        let frame = u32::from(mtu) + 18;
        (dpdk_sys::RTE_PKTMBUF_HEADROOM + frame).max(dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE) as u16
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// One mbuf, or `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid while &self lives; a non-null result is
        // a freshly reset mbuf we now own.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(Mbuf::from_raw)
    }

    /// Mbufs currently in the pool (free).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid; a read-only count.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: we own the pool; ports using it were closed before (the
        // daemon drops ports first).
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}
