//! A bounded single-producer single-consumer ring of sync records.
//!
//! Why not an `rte_ring`: the records are fixed-size byte entries, not
//! mbuf pointers, and the rings must exist before and without EAL (the
//! pure tests, the backup thread). Each slot is a row of `AtomicU64`
//! words, so the ring is safe Rust: the producer writes the words with
//! relaxed stores and publishes the slot with a release store of its
//! position; the consumer reads after an acquire load. Pushing never
//! waits, allocates or makes a system call: a full ring refuses the record
//! and counts it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::wire::sync::RECORD_LEN;

/// Words of one record.
const WORDS: usize = RECORD_LEN / 8;

/// One fixed-size record: a sync entry without options
/// ([`crate::wire::sync::SyncConn::emit`]).
pub type Record = [u8; RECORD_LEN];

#[derive(Debug)]
#[repr(align(64))]
struct Position(AtomicUsize);

#[derive(Debug)]
struct Inner {
    slots: Box<[[AtomicU64; WORDS]]>,
    mask: usize,
    /// Next slot the consumer reads.
    head: Position,
    /// Next slot the producer writes.
    tail: Position,
    /// Records refused because the ring was full.
    dropped: AtomicU64,
    /// Records accepted.
    pushed: AtomicU64,
}

/// The writing end (one thread).
#[derive(Debug)]
pub struct Producer(Arc<Inner>);

/// The reading end (one thread).
#[derive(Debug)]
pub struct Consumer(Arc<Inner>);

/// A ring of at least `capacity` records (rounded up to a power of two).
pub fn ring(capacity: usize) -> (Producer, Consumer) {
    let n = capacity.max(2).next_power_of_two();
    let inner = Arc::new(Inner {
        slots: (0..n)
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect(),
        mask: n - 1,
        head: Position(AtomicUsize::new(0)),
        tail: Position(AtomicUsize::new(0)),
        dropped: AtomicU64::new(0),
        pushed: AtomicU64::new(0),
    });
    (Producer(Arc::clone(&inner)), Consumer(inner))
}

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl Producer {
    /// Appends `r`; `false` (and counted) when the ring is full.
    #[inline]
    pub fn push(&self, r: &Record) -> bool {
        let q = &self.0;
        let t = q.tail.0.load(Ordering::Relaxed);
        if t.wrapping_sub(q.head.0.load(Ordering::Acquire)) > q.mask {
            bump(&q.dropped);
            return false;
        }
        let slot = &q.slots[t & q.mask];
        for (w, chunk) in slot.iter().zip(r.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        q.tail.0.store(t.wrapping_add(1), Ordering::Release);
        bump(&q.pushed);
        true
    }

    /// Records refused because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl Consumer {
    /// Takes the oldest record, if any.
    #[inline]
    pub fn pop(&self) -> Option<Record> {
        let q = &self.0;
        let h = q.head.0.load(Ordering::Relaxed);
        if h == q.tail.0.load(Ordering::Acquire) {
            return None;
        }
        let mut r = [0u8; RECORD_LEN];
        for (w, chunk) in q.slots[h & q.mask].iter().zip(r.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        q.head.0.store(h.wrapping_add(1), Ordering::Release);
        Some(r)
    }

    /// Records refused at the producer because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted by the producer.
    pub fn pushed(&self) -> u64 {
        self.0.pushed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: u8) -> Record {
        std::array::from_fn(|i| v.wrapping_add(i as u8))
    }

    #[test]
    fn records_come_out_in_order_and_a_full_ring_counts_what_it_refused() {
        let (p, c) = ring(4);
        for v in 0..6 {
            let _ = p.push(&rec(v));
        }
        assert_eq!((c.pushed(), c.dropped()), (4, 2));
        for v in 0..4 {
            assert_eq!(c.pop(), Some(rec(v)));
        }
        assert_eq!(c.pop(), None);
        assert!(p.push(&rec(9)));
        assert_eq!(c.pop(), Some(rec(9)));
    }

    #[test]
    fn two_threads_pass_every_record_intact() {
        let (p, c) = ring(64);
        let n = 20_000u32;
        let t = std::thread::spawn(move || {
            let mut v = 0u32;
            while v < n {
                let mut r = [0u8; RECORD_LEN];
                for ch in r.chunks_exact_mut(4) {
                    ch.copy_from_slice(&v.to_ne_bytes());
                }
                if p.push(&r) {
                    v += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut want = 0u32;
        while want < n {
            match c.pop() {
                Some(r) => {
                    for ch in r.chunks_exact(4) {
                        assert_eq!(ch, want.to_ne_bytes());
                    }
                    want += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        t.join().unwrap();
        assert_eq!(c.pushed(), u64::from(n));
    }
}
