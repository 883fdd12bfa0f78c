//! Reassembly of IPv4 and IPv6 fragments into whole datagrams, in a fixed
//! set of preallocated slots per worker.
//!
//! The rules are the kernel's (`net/ipv4/ip_fragment.c`,
//! `net/ipv6/reassembly.c`, `inet_frag_queue_insert`):
//! * a datagram is identified by source, destination, identification and
//!   (IPv4) protocol;
//! * a fragment that overlaps data already held discards the whole
//!   datagram (RFC 5722; Linux does the same for IPv4 since 4.19); an exact
//!   duplicate is only dropped itself;
//! * every fragment but the last carries a multiple of 8 bytes; nothing may
//!   lie beyond the end the last fragment set, nor beyond 65,535 bytes;
//! * a datagram not complete within `ipfrag_time` (30 s, IPv4) or
//!   `ip6frag_time` (60 s, IPv6) of its first fragment is discarded;
//! * memory is bounded: with every slot in use, the oldest datagram is
//!   evicted for the new one (the kernel evicts when its
//!   `ipfrag_high_thresh` is reached).
//!
//! UVS also bounds the fragments of one datagram
//! ([`ReassemblyLimits::max_fragments`]): a datagram cut into more pieces
//! than any real link needs is an attack on the bookkeeping.
//!
//! The reassembled frame is laid out in the slot's buffer as a packet
//! buffer ([`SlotBuf`]): headroom, the first fragment's Ethernet header,
//! the IP header (IPv6: without the fragment header), the data. The stage
//! rewrites it in place like any received frame.
//!
//! Every drop is counted by reason ([`FragDrop`], [`FragCounters`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::buf::PacketBuf;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{ext, Ipv6Packet};
use crate::wire::{ipv6, Fragment, PacketMeta, L3};

// A child module, so the fuzz body can check the slots' bookkeeping.
#[path = "reassembly_fuzz.rs"]
mod fuzz;
pub use fuzz::{fuzz_frame, fuzz_reassembly, FUZZ_LIMITS};

/// Why a fragment (or a whole datagram being reassembled) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragDrop {
    /// Overlapped data already held: the whole datagram is discarded.
    Overlap = 0,
    /// An exact duplicate of a fragment already held.
    Duplicate = 1,
    /// More fragments than [`ReassemblyLimits::max_fragments`]: the
    /// datagram is discarded.
    TooManyFragments = 2,
    /// Data beyond 65,535 bytes, or beyond the end the last fragment set,
    /// or a second, different last fragment: the datagram is discarded.
    BadLength = 3,
    /// Not complete in time (30 s IPv4, 60 s IPv6): discarded.
    Timeout = 4,
    /// Evicted, unfinished, for a newer datagram (every slot in use).
    Evicted = 5,
    /// Not a fragment this reassembler can read (a non-last fragment whose
    /// length is not a multiple of 8, headers too long for a slot).
    Malformed = 6,
    /// A fragment of a datagram already discarded (for one of the reasons
    /// above), until that datagram's time runs out, as the kernel keeps a
    /// dead queue: the rest of a bad datagram never starts a new one.
    OfDiscarded = 7,
    /// A reassembled datagram the load balancer dropped (its reason is
    /// counted in the load balancer's drops too): a datagram, not a
    /// fragment.
    Refused = 8,
    /// A reassembled datagram no service takes (a VIP port without
    /// service, a real server's packet of no connection): a datagram,
    /// not a fragment.
    NotServed = 9,
}

impl FragDrop {
    pub const COUNT: usize = 10;
    pub const ALL: [FragDrop; FragDrop::COUNT] = [
        FragDrop::Overlap,
        FragDrop::Duplicate,
        FragDrop::TooManyFragments,
        FragDrop::BadLength,
        FragDrop::Timeout,
        FragDrop::Evicted,
        FragDrop::Malformed,
        FragDrop::OfDiscarded,
        FragDrop::Refused,
        FragDrop::NotServed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FragDrop::Overlap => "frag_overlap",
            FragDrop::Duplicate => "frag_duplicate",
            FragDrop::TooManyFragments => "frag_too_many",
            FragDrop::BadLength => "frag_bad_length",
            FragDrop::Timeout => "frag_timeout",
            FragDrop::Evicted => "frag_evicted",
            FragDrop::Malformed => "frag_malformed",
            FragDrop::OfDiscarded => "frag_of_discarded",
            FragDrop::Refused => "frag_datagram_refused",
            FragDrop::NotServed => "frag_datagram_not_served",
        }
    }
}

/// A worker's reassembly counters: written by that worker only (relaxed
/// load + store), read by the control thread.
#[derive(Debug, Default)]
pub struct FragCounters {
    drops: [AtomicU64; FragDrop::COUNT],
    /// Fragments taken into a slot.
    pub fragments: AtomicU64,
    /// Datagrams completed.
    pub reassembled: AtomicU64,
}

impl FragCounters {
    pub fn drops(&self, r: FragDrop) -> u64 {
        self.drops[r as usize].load(Ordering::Relaxed)
    }
    fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    fn count(&self, r: FragDrop) {
        Self::add(&self.drops[r as usize], 1);
    }
}

/// How much a worker may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Datagrams under reassembly at once (each slot holds up to 64 KiB).
    pub slots: usize,
    /// Fragments of one datagram.
    pub max_fragments: usize,
    /// `ipfrag_time`, milliseconds.
    pub timeout_v4_ms: u64,
    /// `ip6frag_time`, milliseconds.
    pub timeout_v6_ms: u64,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            slots: 64,
            max_fragments: 64,
            timeout_v4_ms: 30_000,
            timeout_v6_ms: 60_000,
        }
    }
}

/// Largest IP datagram (IPv4 total length; IPv6 40 + payload length is
/// bounded to the same by the parser).
pub const MAX_DATAGRAM: usize = 65_535;
/// Room in front of the reassembled IP header: the Ethernet header (and a
/// tag) plus what encapsulation prepends, as an mbuf's headroom.
const FRONT: usize = 128 + 18;
/// Longest IP header kept from the first fragment (IPv4 with options: 60;
/// IPv6 with extension headers before the fragment header).
const MAX_HEADER: usize = 128;
/// Bytes of a slot's buffer: front room, header, data.
const SLOT_BYTES: usize = FRONT + MAX_HEADER + MAX_DATAGRAM;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    /// IPv4 protocol; 0 for IPv6 (not part of its key).
    proto: u8,
}

/// What a fragment told us about itself.
#[derive(Debug, Clone)]
struct Piece {
    key: Key,
    /// Offset of the fragment's data in the datagram's data.
    offset: usize,
    /// Its data, as a range of the frame.
    data: std::ops::Range<usize>,
    more: bool,
    /// The header to keep if this is the first fragment: its range in the
    /// frame (IPv6: up to the fragment header, excluded).
    header: std::ops::Range<usize>,
    /// IPv6: the fragment header's next header, and where the next-header
    /// byte that names the fragment header is, relative to the header.
    v6_next: Option<(u8, usize)>,
}

#[derive(Debug)]
struct Slot {
    key: Option<Key>,
    /// Discarded: its later fragments are dropped until the deadline.
    dead: bool,
    deadline: u64,
    started: u64,
    /// End of the data, once the last fragment arrived.
    total: Option<usize>,
    /// Received data ranges (no two overlap).
    ranges: Vec<(u32, u32)>,
    received: usize,
    /// Where the frame starts (Ethernet header) once the first fragment
    /// arrived: the header is right in front of [`FRONT`] + [`MAX_HEADER`].
    frame_start: Option<usize>,
    /// The first fragment's link-layer header length (its
    /// `meta.l3_offset`): later fragments may come with another.
    link_len: usize,
    /// The frame of a complete datagram (start, end) in `buf`, as the
    /// stage's rewrite left it.
    view: (usize, usize),
    buf: Box<[u8]>,
}

impl Slot {
    fn new(max_fragments: usize) -> Slot {
        Slot {
            key: None,
            dead: false,
            deadline: 0,
            started: 0,
            total: None,
            ranges: Vec::with_capacity(max_fragments),
            received: 0,
            frame_start: None,
            link_len: 0,
            view: (0, 0),
            buf: vec![0u8; SLOT_BYTES].into_boxed_slice(),
        }
    }

    fn clear(&mut self) {
        self.key = None;
        self.dead = false;
        self.total = None;
        self.ranges.clear();
        self.received = 0;
        self.frame_start = None;
    }

    fn complete(&self) -> bool {
        self.frame_start.is_some() && self.total == Some(self.received)
    }
}

/// The result of [`Reassembler::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Held until the datagram is complete.
    Held,
    /// The datagram is complete in this slot: read or rewrite it with
    /// [`Reassembler::frame`], then [`Reassembler::release`] the slot.
    Complete(usize),
    /// Dropped (counted).
    Dropped(FragDrop),
}

/// One worker's reassembly slots; see the module docs.
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    slots: Vec<Slot>,
    counters: std::sync::Arc<FragCounters>,
}

impl Reassembler {
    /// All slots allocated now (`limits.slots` x about 64 KiB), none later.
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler::with_counters(limits, Default::default())
    }

    /// [`Reassembler::new`] counting into `counters`.
    pub fn with_counters(
        limits: ReassemblyLimits,
        counters: std::sync::Arc<FragCounters>,
    ) -> Reassembler {
        let limits = ReassemblyLimits {
            slots: limits.slots.max(1),
            max_fragments: limits.max_fragments.max(2),
            ..limits
        };
        Reassembler {
            slots: (0..limits.slots)
                .map(|_| Slot::new(limits.max_fragments))
                .collect(),
            limits,
            counters,
        }
    }

    pub fn counters(&self) -> std::sync::Arc<FragCounters> {
        std::sync::Arc::clone(&self.counters)
    }

    /// Datagrams under reassembly.
    pub fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.key.is_some()).count()
    }

    /// Takes one fragment (`meta.fragment` is not `No`) of `frame`.
    pub fn insert(&mut self, frame: &[u8], meta: &PacketMeta, now: u64) -> Insert {
        let piece = match read_piece(frame, meta) {
            Some(p) => p,
            None => return self.dropped(FragDrop::Malformed),
        };
        let i = match self.slot_for(&piece.key, now, meta.l3 == L3::Ipv6) {
            Some(i) => i,
            None => return self.dropped(FragDrop::Malformed),
        };
        let max_fragments = self.limits.max_fragments;
        if self.slots[i].dead {
            return self.dropped(FragDrop::OfDiscarded);
        }
        match self.place(i, &piece, max_fragments) {
            Ok(true) => {}
            // Adds nothing, so it is dropped (and counted: every fragment
            // taken in is held or dropped by a reason).
            Ok(false) => return self.dropped(FragDrop::Malformed),
            Err(r) => {
                // A bad piece spoils the datagram, except a duplicate.
                if r != FragDrop::Duplicate {
                    let s = &mut self.slots[i];
                    s.ranges.clear();
                    s.received = 0;
                    s.total = None;
                    s.frame_start = None;
                    s.dead = true;
                }
                return self.dropped(r);
            }
        }
        let slot = &mut self.slots[i];
        let (start, len) = (piece.offset, piece.data.len());
        let end = start + len;
        let (s32, e32) = (start as u32, end as u32);
        slot.ranges.push((s32, e32));
        slot.received += len;
        if !piece.more {
            slot.total = Some(end);
        }
        let data_at = FRONT + MAX_HEADER;
        slot.buf[data_at + start..data_at + end].copy_from_slice(&frame[piece.data.clone()]);
        if start == 0 {
            // The first fragment: its Ethernet and IP headers lead the frame.
            let l3 = usize::from(meta.l3_offset);
            let hdr = piece.header.len();
            let at = data_at - hdr - l3;
            slot.buf[at..at + l3].copy_from_slice(&frame[..l3]);
            slot.buf[at + l3..data_at].copy_from_slice(&frame[piece.header.clone()]);
            if let Some((next, at_next)) = piece.v6_next {
                slot.buf[at + l3 + at_next] = next;
            }
            slot.frame_start = Some(at);
            slot.link_len = l3;
        }
        if !slot.complete() {
            FragCounters::add(&self.counters.fragments, 1);
            return Insert::Held;
        }
        // Whole: fix the IP header for the whole datagram.
        let total = slot.total.unwrap_or(0);
        // The first fragment's link header leads the frame, not this one's.
        let at = slot.frame_start.unwrap_or(0) + slot.link_len;
        let hdr = data_at - at;
        // Each fragment was checked against its own header's length; with
        // the first fragment's (IPv4 options, IPv6 extension headers) the
        // datagram may still exceed 65,535 bytes: the kernel drops it
        // (ip_frag_reasm, ip6_frag_reasm "oversized").
        let ip_len = match meta.l3 {
            L3::Ipv6 => hdr - ipv6::HEADER_LEN + total,
            _ => hdr + total,
        };
        if ip_len > MAX_DATAGRAM {
            slot.ranges.clear();
            slot.received = 0;
            slot.total = None;
            slot.frame_start = None;
            slot.dead = true;
            return self.dropped(FragDrop::BadLength);
        }
        FragCounters::add(&self.counters.fragments, 1);
        let h = &mut slot.buf[at..data_at + total];
        match meta.l3 {
            L3::Ipv6 => {
                let plen = (hdr - ipv6::HEADER_LEN + total) as u16;
                Ipv6Packet::new_unchecked(&mut h[..]).set_payload_len(plen);
            }
            _ => {
                let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
                p.set_total_len((hdr + total) as u16);
                let df = p.dont_frag();
                p.set_unfragmented(df);
                p.fill_checksum();
            }
        }
        slot.view = (slot.frame_start.unwrap_or(0), data_at + total);
        FragCounters::add(&self.counters.reassembled, 1);
        Insert::Complete(i)
    }

    /// Checks `piece` against what slot `i` holds: `Ok(true)` to store it,
    /// `Ok(false)` if it adds nothing, `Err` with the reason to drop it.
    fn place(&self, i: usize, piece: &Piece, max_fragments: usize) -> Result<bool, FragDrop> {
        let slot = &self.slots[i];
        let (start, len) = (piece.offset, piece.data.len());
        let end = start + len;
        if end > MAX_DATAGRAM - MAX_HEADER.min(piece.header.len()) {
            return Err(FragDrop::BadLength);
        }
        if piece.more && len % 8 != 0 {
            return Err(FragDrop::Malformed);
        }
        // The end of the datagram: set once, never passed.
        match (piece.more, slot.total) {
            (false, None) if slot.ranges.iter().any(|r| r.1 as usize > end) => {
                return Err(FragDrop::BadLength);
            }
            (false, Some(t)) if t != end => {
                return Err(FragDrop::BadLength);
            }
            (true, Some(t)) if end > t => {
                return Err(FragDrop::BadLength);
            }
            _ => {}
        }
        let (s32, e32) = (start as u32, end as u32);
        if slot.ranges.contains(&(s32, e32)) {
            return Err(FragDrop::Duplicate);
        }
        if slot.ranges.iter().any(|&(a, b)| s32 < b && a < e32) {
            return Err(FragDrop::Overlap);
        }
        if slot.ranges.len() == max_fragments {
            return Err(FragDrop::TooManyFragments);
        }
        if len == 0 && piece.more {
            // An empty non-last fragment adds nothing.
            return Ok(false);
        }
        Ok(true)
    }

    /// The reassembled frame of a complete slot, as a packet buffer.
    pub fn frame(&mut self, slot: usize) -> SlotBuf<'_> {
        SlotBuf {
            slot: &mut self.slots[slot],
        }
    }

    /// The frame of a complete slot, read-only (as rewritten through
    /// [`Reassembler::frame`]).
    pub fn frame_of(&self, slot: usize) -> &[u8] {
        let s = &self.slots[slot];
        &s.buf[s.view.0..s.view.1]
    }

    /// Frees a slot (after [`Insert::Complete`]).
    pub fn release(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.clear();
        }
    }

    /// Discards datagrams whose time ran out; returns how many (counted as
    /// [`FragDrop::Timeout`]). Cheap: a pass over the slots.
    pub fn expire(&mut self, now: u64) -> usize {
        let (mut n, mut live) = (0, 0);
        for s in &mut self.slots {
            if s.key.is_some() && now >= s.deadline {
                // A datagram already discarded was counted then (as the
                // kernel's ip_expire skips a killed queue).
                live += u64::from(!s.dead);
                s.clear();
                n += 1;
            }
        }
        FragCounters::add(&self.counters.drops[FragDrop::Timeout as usize], live);
        n
    }

    /// Counts what became of a whole datagram after [`Insert::Complete`]
    /// when it was not sent ([`FragDrop::Refused`], [`FragDrop::NotServed`]).
    pub fn count_drop(&self, r: FragDrop) {
        self.counters.count(r);
    }

    fn dropped(&self, r: FragDrop) -> Insert {
        self.counters.count(r);
        Insert::Dropped(r)
    }

    /// The slot of `key`: its own, a free one (or a discarded datagram's),
    /// or the oldest (evicted).
    fn slot_for(&mut self, key: &Key, now: u64, v6: bool) -> Option<usize> {
        let mut free = None;
        let mut oldest: Option<usize> = None;
        for (i, s) in self.slots.iter().enumerate() {
            match s.key {
                Some(k) if k == *key => {
                    if now >= s.deadline {
                        // Expired: start over with this fragment (a
                        // discarded datagram was counted already).
                        if !s.dead {
                            self.counters.count(FragDrop::Timeout);
                        }
                        free = Some(i);
                        break;
                    }
                    return Some(i);
                }
                Some(_) if s.dead => {
                    // A discarded datagram's slot is the first to reuse.
                    if free.is_none() {
                        free = Some(i);
                    }
                }
                Some(_) => {
                    if oldest.is_none_or(|o| s.started < self.slots[o].started) {
                        oldest = Some(i);
                    }
                }
                None => {
                    if free.is_none() {
                        free = Some(i);
                    }
                }
            }
        }
        let i = match free {
            Some(i) => i,
            None => {
                self.counters.count(FragDrop::Evicted);
                oldest?
            }
        };
        let s = &mut self.slots[i];
        s.clear();
        s.key = Some(*key);
        s.started = now;
        s.deadline = now
            + if v6 {
                self.limits.timeout_v6_ms
            } else {
                self.limits.timeout_v4_ms
            };
        Some(i)
    }
}

/// The identification of fragment `frame` (`meta.fragment` is not `No`),
/// or `None` if it cannot be read (reassembly then drops it as
/// malformed).
pub fn fragment_ident(frame: &[u8], meta: &PacketMeta) -> Option<u32> {
    read_piece(frame, meta).map(|p| p.key.ident)
}

/// Reads the fragment's key, offset, data and header.
fn read_piece(frame: &[u8], meta: &PacketMeta) -> Option<Piece> {
    if meta.fragment == Fragment::No {
        return None;
    }
    let l3 = usize::from(meta.l3_offset);
    let end = meta.l3_end();
    let ip = frame.get(l3..end)?;
    match meta.l3 {
        L3::Ipv4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            let hl = p.header_len();
            Some(Piece {
                key: Key {
                    src: meta.src,
                    dst: meta.dst,
                    ident: u32::from(p.ident()),
                    proto: p.protocol(),
                },
                offset: usize::from(p.frag_offset()),
                data: l3 + hl..end,
                more: p.more_frags(),
                header: l3..l3 + hl,
                v6_next: None,
            })
        }
        L3::Ipv6 => {
            // Walk to the fragment header: the headers in front of it are
            // the unfragmentable part, kept from the first fragment.
            let mut next = ip.get(6).copied()?;
            let mut prev_next_at = 6;
            let mut off = ipv6::HEADER_LEN;
            for _ in 0..=ipv6::MAX_EXT_HEADERS {
                match next {
                    ext::FRAGMENT => {
                        let f = ip.get(off..off + 8)?;
                        let w = u16::from_be_bytes([f[2], f[3]]);
                        if off > MAX_HEADER {
                            return None;
                        }
                        return Some(Piece {
                            key: Key {
                                src: meta.src,
                                dst: meta.dst,
                                ident: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                                proto: 0,
                            },
                            offset: usize::from(w & 0xfff8),
                            data: l3 + off + 8..end,
                            more: w & 1 != 0,
                            header: l3..l3 + off,
                            v6_next: Some((f[0], prev_next_at)),
                        });
                    }
                    ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                        let len = (usize::from(*ip.get(off + 1)?) + 1) * 8;
                        next = *ip.get(off)?;
                        prev_next_at = off;
                        off += len;
                    }
                    _ => return None,
                }
            }
            None
        }
        L3::Arp => None,
    }
}

/// A reassembled frame in its slot, as a [`PacketBuf`]: the stage rewrites
/// it in place (headroom for encapsulation in front); the slot keeps what
/// the rewrite left.
#[derive(Debug)]
pub struct SlotBuf<'a> {
    slot: &'a mut Slot,
}

impl PacketBuf for SlotBuf<'_> {
    fn data(&self) -> &[u8] {
        &self.slot.buf[self.slot.view.0..self.slot.view.1]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.slot.buf[self.slot.view.0..self.slot.view.1]
    }
    fn prepend(&mut self, n: usize) -> bool {
        let v = &mut self.slot.view;
        if n > v.0 {
            return false;
        }
        v.0 -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        let v = &mut self.slot.view;
        if n > v.1 - v.0 {
            return false;
        }
        v.0 += n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        let v = &mut self.slot.view;
        if v.1 + n > self.slot.buf.len() {
            return false;
        }
        v.1 += n;
        true
    }
    fn trim(&mut self, n: usize) -> bool {
        let v = &mut self.slot.view;
        if n > v.1 - v.0 {
            return false;
        }
        v.1 -= n;
        true
    }
}
