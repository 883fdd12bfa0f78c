//! Memory advice for the engine's large tables, and prefetches.
//!
//! Why: at millions of connections every lookup is a cache miss, and with
//! 4 KiB pages every miss is also a TLB miss (a page walk, doubled under a
//! hypervisor's nested paging). Transparent huge pages (2 MiB) cover the
//! connection slab with a few hundred TLB entries instead of millions. The
//! advice must be given before the memory is first touched, so the tables
//! take it as a hook ([`crate::conn::table::MemAdvice`]) and call it right
//! after reserving their arrays.

/// Size of a transparent huge page on x86-64.
const HUGE: usize = 2 << 20;

/// Asks the kernel to back `[addr, addr + len)` with transparent huge pages
/// where whole 2 MiB pages fit in it. Best effort: with THP disabled the
/// kernel ignores the advice, and an error changes nothing.
pub fn advise_huge_pages(addr: *mut u8, len: usize) {
    let start = (addr as usize).saturating_add(HUGE - 1) & !(HUGE - 1);
    let end = (addr as usize).saturating_add(len) & !(HUGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the
    // pages of a range the caller owns (an allocation of at least `len`
    // bytes at `addr`, narrowed here to whole huge pages inside it); it does
    // not change their contents, validity or ownership.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
}

/// Asks the CPU to bring every cache line of `*r` toward its caches
/// (`prefetcht0`), without waiting for them. Why not a plain load: a load
/// that misses holds the instructions behind it from retiring until the
/// line arrives, and at hundreds of cycles a miss the reorder buffer fills
/// and the core stalls; a prefetch retires at once. For lines the packet
/// path will need a little later: the next free connection entry, the
/// chains a burst will walk.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (r as *const T).cast::<i8>();
        let mut at = 0;
        while at < std::mem::size_of::<T>().max(1) {
            // SAFETY: a prefetch is a hint that never faults and changes
            // no memory; `p + at` lies within `*r`, which the reference
            // keeps alive for the call.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at)) };
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
