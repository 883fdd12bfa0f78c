//! The packet buffer abstraction that engine code works on.
//!
//! Why: every rewrite, responder and classifier must be testable without EAL.
//! The DPDK `Mbuf` and the `Vec`-backed [`TestBuf`] implement the same trait,
//! so the exact code that runs in a worker runs in unit tests, property tests
//! and fuzz targets. The operations mirror what an mbuf can do cheaply:
//! grow or shrink at the front (headroom, for encapsulation and
//! decapsulation) and at the back (tailroom).

/// A contiguous packet buffer with head- and tailroom.
pub trait PacketBuf {
    /// The packet bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The packet bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front; `false` (and no change)
    /// if there is not enough headroom.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front; `false` (and no change) if the
    /// packet is shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Grows the packet by `n` bytes at the end; `false` if no tailroom.
    fn append(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end; `false` if shorter than `n`.
    fn trim(&mut self, n: usize) -> bool;

    /// The NIC's verdict on the IPv4 header checksum of a received frame:
    /// `Some(true)` good, `Some(false)` bad, `None` not checked (then the
    /// caller computes it).
    fn rx_ip_checksum(&self) -> Option<bool> {
        None
    }

    fn len(&self) -> usize {
        self.data().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Headroom a [`TestBuf`] starts with, as DPDK's `RTE_PKTMBUF_HEADROOM`.
pub const TEST_HEADROOM: usize = 128;

/// A `Vec`-backed buffer with the same head/tailroom behaviour as an mbuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl TestBuf {
    /// A buffer holding `bytes`, with [`TEST_HEADROOM`] bytes of headroom and
    /// room to grow to `capacity` bytes of packet at the back.
    pub fn with_capacity(bytes: &[u8], capacity: usize) -> TestBuf {
        let cap = capacity.max(bytes.len());
        let mut storage = vec![0u8; TEST_HEADROOM + cap];
        storage[TEST_HEADROOM..TEST_HEADROOM + bytes.len()].copy_from_slice(bytes);
        TestBuf {
            storage,
            start: TEST_HEADROOM,
            end: TEST_HEADROOM + bytes.len(),
        }
    }

    /// A buffer holding `bytes` with 2 KiB of packet capacity (an mbuf's).
    pub fn new(bytes: &[u8]) -> TestBuf {
        TestBuf::with_capacity(bytes, 2048)
    }

    pub fn headroom(&self) -> usize {
        self.start
    }
}

impl PacketBuf for TestBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.storage.len() {
            return false;
        }
        self.end += n;
        true
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_like_an_mbuf() {
        let mut b = TestBuf::with_capacity(&[1, 2, 3], 4);
        assert!(b.prepend(2));
        assert_eq!(b.len(), 5);
        b.data_mut()[0] = 9;
        assert_eq!(b.data(), &[9, 0, 1, 2, 3]);
        assert!(b.adj(2));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(b.append(1));
        assert!(!b.append(1), "capacity is 4");
        assert!(b.trim(4));
        assert!(!b.trim(1));
        assert!(!b.prepend(TEST_HEADROOM + 1));
    }
}
