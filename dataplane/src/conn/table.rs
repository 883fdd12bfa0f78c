//! The slab, the two hash indexes, accounting and expiry.
//!
//! Memory layout (why it is small): a [`Conn`] is one slab slot holding the
//! three addresses (16 bytes each), ports, state, flags, the `u32` chain
//! links of both hash indexes, the `u32` timer-wheel links, the template
//! link and two `Arc` pointers (destination and service, which keep a
//! deleted destination's counters alive as the kernel's "trash" does). The
//! bucket arrays hold one `u32` per bucket, one bucket per slot rounded up
//! to a power of two. [`ConnTable::memory_bytes`] adds these up.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::shared::{SharedRef, SharedTemplates};
use super::timer::{self, before, tick_of_ms, HasLink, Wheel, TICKS_PER_SEC, UNLINKED};
use super::{
    proto_sctp, proto_tcp, proto_udp, ConnAddr, ConnId, ConnKey, Dir, Sysctls, Verdict, IPPROTO_IP,
};
use crate::model::{dest_flags, ConnEntry, DestShared, ForwardMethod, ServiceShared, Timeouts};

const NIL: u32 = u32::MAX;
const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

/// Re-arm timeout of a template that expired while still controlling
/// connections.
pub const TEMPLATE_REARM_SECS: u32 = 60;
/// Longest timeout we arm (keeps wrapping tick comparisons valid).
const MAX_TIMEOUT_TICKS: u32 = 1 << 30;

/// Flag bits of [`Conn::flags`].
pub mod cflags {
    /// Slot holds a connection.
    pub const LIVE: u16 = 0x1;
    /// Persistence template.
    pub const TEMPLATE: u16 = 0x2;
    /// Counted in `inactconns` (else in `activeconns`; templates neither).
    pub const INACTIVE: u16 = 0x4;
    /// No server-to-client packet seen on a non-NAT connection.
    pub const NOOUTPUT: u16 = 0x8;
    /// Template: a controlled connection got established / saw a reply.
    pub const ASSURED: u16 = 0x10;
    /// Linked in the NAT-reply index.
    pub const HASHED_OUT: u16 = 0x20;
    /// Client packets seen, saturating at 9 ("more than 8"), in the top
    /// four bits: the kernel's `in_pkts` as far as `drop_entry` reads it,
    /// kept in the hot line the client packet writes anyway.
    pub const IN_PKTS_SHIFT: u16 = 12;
    pub const IN_PKTS: u16 = 0xf << IN_PKTS_SHIFT;
    /// Installed from a sync master's message (the kernel's
    /// `IP_VS_CONN_F_SYNC`).
    pub const SYNCED: u16 = 0x40;
    /// Opened by the SYN proxy: its sequence numbers are translated
    /// ([`crate::synproxy`] keeps the offset beside the table).
    pub const SYNPROXY: u16 = 0x800;
    /// FULLNAT: the entry holds a local port ([`super::Conn::local`]); its
    /// NAT-reply key is `(proto, daddr, dport, local address, lport)`.
    pub const FULLNAT: u16 = 0x80;
    /// FULLNAT with TOA: the real server has sent data, so the client has
    /// acknowledged past its first byte and TOA is no longer inserted.
    pub const TOA_DONE: u16 = 0x100;
}

/// `in_pkts` saturates here: `drop_entry` leaves entries with more alone.
const IN_PKTS_MAX: u16 = 9;

/// One connection or template.
///
/// Laid out by hand in two cache lines: what the lookup and the state
/// update read or write (key, state, flags, chain link, expiry, wheel slot
/// tick, destination) is in the first 64 bytes; the second holds the reply
/// direction and what the transmit reads (real server, service, method).
/// An established flow's packet touches one bucket word and both lines of
/// its entry (the re-arm reads the timer's link, `next_t`, in the second);
/// the warm-up of large tables prefetches both ([`ConnTable::warm_head`]).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Conn {
    // --- hot line ---
    caddr: ConnAddr,
    vaddr: ConnAddr,
    cport: u16,
    vport: u16,
    proto: u8,
    state: u8,
    flags: u16,
    next_in: u32,
    /// Tick at which the entry expires.
    expires: u32,
    /// Wheel: tick at which the entry is next examined (<= `expires`).
    at: u32,
    /// Controlling template, or NIL.
    control: u32,
    dest: Option<Arc<DestShared>>,
    // --- second line: reply direction and cold fields ---
    daddr: ConnAddr,
    dport: u16,
    /// State when last synchronised (the kernel's `old_state`); here, in
    /// the padding after `dport`, to keep the entry at two lines.
    sync_state: u8,
    next_out: u32,
    prev_t: u32,
    next_t: u32,
    /// Number of connections this template controls.
    n_control: u32,
    /// Templates: current timeout in ticks.
    timeout: u32,
    /// Templates: the director-wide template this one refers to (a slot
    /// of [`SharedTemplates`]), or NIL.
    shared: u32,
    /// Client packets seen while a sync master runs (the kernel's
    /// `in_pkts`; the creating packet counts as the first).
    in_pkts: u32,
    svc: Option<Arc<ServiceShared>>,
    method: ForwardMethod,
    /// FULLNAT: the local port and the local address's number
    /// ([`crate::model::LocalAddr::id`]), in the line's last four bytes.
    lport: u16,
    local: u16,
}

impl HasLink for Conn {
    fn prev(&self) -> u32 {
        self.prev_t
    }
    fn next(&self) -> u32 {
        self.next_t
    }
    fn at(&self) -> u32 {
        self.at
    }
    fn set_prev(&mut self, v: u32) {
        self.prev_t = v
    }
    fn set_next(&mut self, v: u32) {
        self.next_t = v
    }
    fn set_at(&mut self, v: u32) {
        self.at = v
    }
}

impl Conn {
    fn empty() -> Conn {
        Conn {
            caddr: ConnAddr::default(),
            vaddr: ConnAddr::default(),
            daddr: ConnAddr::default(),
            cport: 0,
            vport: 0,
            dport: 0,
            proto: 0,
            state: 0,
            flags: 0,
            control: NIL,
            n_control: 0,
            timeout: 0,
            shared: NIL,
            expires: 0,
            next_in: NIL,
            next_out: NIL,
            at: 0,
            prev_t: UNLINKED,
            next_t: UNLINKED,
            method: ForwardMethod::Route,
            dest: None,
            svc: None,
            in_pkts: 0,
            sync_state: 0,
            lport: 0,
            local: 0,
        }
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }
    pub fn client(&self) -> (ConnAddr, u16) {
        (self.caddr, self.cport)
    }
    pub fn virt(&self) -> (ConnAddr, u16) {
        (self.vaddr, self.vport)
    }
    pub fn real(&self) -> (ConnAddr, u16) {
        (self.daddr, self.dport)
    }
    /// Protocol state number (TCP: [`proto_tcp::state`]).
    pub fn state(&self) -> u8 {
        self.state
    }
    pub fn flags(&self) -> u16 {
        self.flags
    }
    pub fn is_template(&self) -> bool {
        self.flags & cflags::TEMPLATE != 0
    }
    pub fn method(&self) -> &ForwardMethod {
        &self.method
    }
    pub fn dest(&self) -> Option<&Arc<DestShared>> {
        self.dest.as_ref()
    }
    pub fn service(&self) -> Option<&Arc<ServiceShared>> {
        self.svc.as_ref()
    }
    /// Controlling template.
    pub fn control(&self) -> Option<ConnId> {
        (self.control != NIL).then_some(ConnId(self.control))
    }
    /// Connections controlled by this template.
    pub fn n_control(&self) -> u32 {
        self.n_control
    }
    /// FULLNAT: the local address's number and the local port.
    pub fn local(&self) -> Option<(u16, u16)> {
        (self.flags & cflags::FULLNAT != 0).then_some((self.local, self.lport))
    }
    /// Templates: the director-wide template referred to (several workers).
    pub fn shared_slot(&self) -> Option<u32> {
        (self.shared != NIL).then_some(self.shared)
    }

    fn in_key_eq(&self, k: &ConnKey) -> bool {
        self.cport == k.sport
            && self.vport == k.dport
            && self.proto == k.proto
            && self.caddr == k.src
            && self.vaddr == k.dst
    }
    fn out_key_eq(&self, k: &ConnKey) -> bool {
        self.dport == k.sport
            && self.cport == k.dport
            && self.proto == k.proto
            && self.daddr == k.src
            && self.caddr == k.dst
    }
    fn in_key(&self) -> ConnKey {
        ConnKey::new(self.proto, self.caddr, self.cport, self.vaddr, self.vport)
    }
    fn out_key(&self) -> ConnKey {
        ConnKey::new(self.proto, self.daddr, self.dport, self.caddr, self.cport)
    }
}

/// A connection limit shared by every worker's table (`max connections`):
/// creation beyond it is refused.
#[derive(Debug)]
pub struct ConnBudget {
    max: u32,
    count: AtomicU32,
}

impl ConnBudget {
    pub fn new(max: u32) -> ConnBudget {
        ConnBudget {
            max,
            count: AtomicU32::new(0),
        }
    }
    /// Entries (connections and templates) alive in all tables.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
    fn take(&self) -> bool {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            false
        } else {
            true
        }
    }
    fn give(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The maximum number of connections is reached; the packet is refused.
    #[error("connection table full")]
    Full,
}

/// The connections one [`ConnTable::random_drop`] pass freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RandomDrop {
    /// Half-open: TCP in SYN_RECV or SYNACK, SCTP in INIT1 or INIT.
    pub half_open: usize,
    /// Established TCP or SCTP, or other (UDP), that `todrop_entry` picked:
    /// idle 60 s or more, with 1..=8 client packets.
    pub idle: usize,
}

/// What [`ConnTable::create`] needs for a new connection.
#[derive(Debug, Clone)]
pub struct NewConn<'a> {
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub client: ConnAddr,
    pub cport: u16,
    pub vaddr: ConnAddr,
    pub vport: u16,
    pub daddr: ConnAddr,
    pub dport: u16,
    pub method: ForwardMethod,
    pub dest: &'a Arc<DestShared>,
    pub svc: Option<&'a Arc<ServiceShared>>,
    /// Controlling persistence template.
    pub control: Option<ConnId>,
    /// FULLNAT: local address number and port, taken with
    /// [`ConnTable::take_local_port`]; the table gives the port back when
    /// the entry is freed.
    pub local: Option<(u16, u16)>,
}

/// One worker's ports of one FULLNAT local address.
#[derive(Debug)]
struct LocalPool {
    addr: ConnAddr,
    pool: crate::ports::PortPool,
    shared: Arc<crate::model::LocalAddr>,
}

/// Memory advice for a freshly reserved, not yet touched array: its
/// address and length in bytes (see [`ConnTable::with_advice`]).
pub type MemAdvice = fn(*mut u8, usize);

/// The most packets of a burst `Lb::warm_parsed` warms.
pub(crate) const WARM_BURST: usize = 32;

/// A lookup key with its bucket in one table, hashed once
/// ([`ConnTable::hashed`]) for the inbound lookup, the NAT-reply lookup
/// and, for a connection created under the same key, its insertion (both
/// indexes use the same hash of a key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashedKey {
    key: ConnKey,
    bucket: u32,
}

impl HashedKey {
    /// The bucket it was hashed to.
    #[cfg(test)]
    pub(crate) fn bucket(&self) -> u32 {
        self.bucket
    }

    /// The key that was hashed.
    #[inline]
    pub(crate) fn key(&self) -> &ConnKey {
        &self.key
    }
}

/// One worker's connection table. See the module docs of [`super`].
#[derive(Debug)]
pub struct ConnTable {
    ents: Vec<Conn>,
    buckets_in: Vec<u32>,
    buckets_out: Vec<u32>,
    mask: u32,
    seed: [u64; 3],
    wheel: Wheel,
    free_head: u32,
    len: u32,
    refused: u64,
    budget: Option<Arc<ConnBudget>>,
    timeouts: Timeouts,
    /// `timeouts` in ticks per TCP state, and for UDP (and anything else):
    /// computed when the timeouts change, read on every re-arm.
    tcp_ticks: [u32; proto_tcp::state::COUNT],
    udp_ticks: u32,
    sysctls: Sysctls,
    /// With several workers: the director-wide templates (see
    /// [`super::shared`]).
    shared: Option<Arc<SharedTemplates>>,
    /// FULLNAT: this worker's ports of each local address, by number.
    locals: Vec<Option<LocalPool>>,
    /// Per slot: how many connections it has held ([`ConnTable::serial`]).
    serials: Vec<u32>,
    /// Keys linked into either index so far ([`ConnTable::links`]).
    links: u64,
    /// The newest connection's reply key, not linked into `buckets_out`
    /// yet (NIL: none): see [`ConnTable::link_pending_out`].
    pending_out: u32,
    /// Its bucket in `buckets_out`.
    pending_out_bucket: u32,
}

/// `dpdk::prefetch` where the engine is built with DPDK; nothing without
/// (the fuzz targets and the control plane's build, which take the pure
/// logic only): a prefetch is a hint, so the table behaves the same.
#[inline(always)]
fn prefetch<T>(r: &T) {
    #[cfg(feature = "dpdk")]
    crate::dpdk::prefetch(r);
    #[cfg(not(feature = "dpdk"))]
    let _ = r;
}

/// The second word of a mapped IPv4 address ([`ConnAddr::words`], in
/// memory order): the prefix's `00 00 ff ff` in the half `MAPPED_MASK`
/// keeps, the IPv4 address in the other.
const MAPPED_MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
const MAPPED_BITS: u64 = u64::from_ne_bytes([0, 0, 0xff, 0xff, 0, 0, 0, 0]);

fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

fn secs_to_ticks(s: u32) -> u32 {
    s.saturating_mul(TICKS_PER_SEC).min(MAX_TIMEOUT_TICKS)
}

/// Moves a connection between its destination's active and inactive
/// counts when its new state is (not) one that counts as active.
#[inline(always)]
fn set_active(c: &mut Conn, active_new: bool) {
    let Some(d) = &c.dest else {
        return;
    };
    let inactive = c.flags & cflags::INACTIVE != 0;
    if !inactive && !active_new {
        d.activeconns.fetch_sub(1, Ordering::Relaxed);
        d.inactconns.fetch_add(1, Ordering::Relaxed);
        c.flags |= cflags::INACTIVE;
    } else if inactive && active_new {
        d.activeconns.fetch_add(1, Ordering::Relaxed);
        d.inactconns.fetch_sub(1, Ordering::Relaxed);
        c.flags &= !cflags::INACTIVE;
    }
}

/// The timeout of every TCP state in ticks.
fn tcp_ticks(t: &Timeouts) -> [u32; proto_tcp::state::COUNT] {
    std::array::from_fn(|s| secs_to_ticks(proto_tcp::timeout_secs(s as u8, t)))
}

impl ConnTable {
    /// A table with room for `capacity` entries (connections and templates;
    /// the per-worker maximum), optionally also limited by a `budget` shared
    /// with the other workers. `now` is the clock in milliseconds.
    /// All memory is allocated here.
    pub fn new(capacity: u32, budget: Option<Arc<ConnBudget>>, now: u64) -> ConnTable {
        ConnTable::with_advice(capacity, budget, now, None)
    }

    /// [`ConnTable::new`], calling `advise` on the slab and the bucket
    /// arrays after reserving them and before touching them (the daemon
    /// asks for transparent huge pages there, see `dpdk::advise_huge_pages`).
    pub fn with_advice(
        capacity: u32,
        budget: Option<Arc<ConnBudget>>,
        now: u64,
        advise: Option<MemAdvice>,
    ) -> ConnTable {
        let capacity = capacity.min(u32::MAX - timer::SLOTS as u32 - 2);
        let nb = (capacity.max(2) as usize).next_power_of_two();
        let mut ents: Vec<Conn> = Vec::with_capacity(capacity as usize);
        let mut buckets_in: Vec<u32> = Vec::with_capacity(nb);
        let mut buckets_out: Vec<u32> = Vec::with_capacity(nb);
        if let Some(f) = advise {
            f(
                ents.as_mut_ptr().cast(),
                ents.capacity() * std::mem::size_of::<Conn>(),
            );
            f(buckets_in.as_mut_ptr().cast(), nb * 4);
            f(buckets_out.as_mut_ptr().cast(), nb * 4);
        }
        buckets_in.resize(nb, NIL);
        buckets_out.resize(nb, NIL);
        for i in 0..capacity {
            let mut c = Conn::empty();
            c.next_in = if i + 1 < capacity { i + 1 } else { NIL };
            ents.push(c);
        }
        let rs = RandomState::new();
        let seed = [
            rs.hash_one(1u8) | 1,
            rs.hash_one(2u8) | 1,
            rs.hash_one(3u8) | 1,
        ];
        ConnTable {
            ents,
            buckets_in,
            buckets_out,
            mask: (nb - 1) as u32,
            seed,
            wheel: Wheel::new(capacity, tick_of_ms(now)),
            free_head: if capacity > 0 { 0 } else { NIL },
            len: 0,
            links: 0,
            pending_out: NIL,
            pending_out_bucket: 0,
            refused: 0,
            budget,
            timeouts: Timeouts::default(),
            tcp_ticks: tcp_ticks(&Timeouts::default()),
            udp_ticks: secs_to_ticks(proto_udp::timeout_secs(&Timeouts::default())),
            sysctls: Sysctls::default(),
            shared: None,
            locals: Vec::new(),
            serials: vec![0; capacity as usize],
        }
    }

    /// Whether this table has ports of local address number `id`.
    pub fn has_local_pool(&self, id: u16) -> bool {
        self.locals
            .get(usize::from(id))
            .is_some_and(Option::is_some)
    }

    /// Gives this table its ports of a local address (built on the control
    /// side of the worker, between bursts).
    pub fn add_local_pool(
        &mut self,
        shared: Arc<crate::model::LocalAddr>,
        pool: crate::ports::PortPool,
    ) {
        let i = usize::from(shared.id);
        if self.locals.len() <= i {
            self.locals.resize_with(i + 1, || None);
        }
        self.locals[i] = Some(LocalPool {
            addr: ConnAddr::from(shared.addr),
            pool,
            shared,
        });
    }

    /// A free port of local address `id` (counted in its connections), or
    /// `None` when none is free (counted in its conflicts).
    #[inline]
    pub fn take_local_port(&mut self, id: u16) -> Option<u16> {
        let l = self.locals.get_mut(usize::from(id))?.as_mut()?;
        match l.pool.take() {
            Some(p) => {
                l.shared.conns.fetch_add(1, Ordering::Relaxed);
                Some(p)
            }
            None => {
                l.shared.conflicts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Gives back a port [`ConnTable::take_local_port`] handed out for a
    /// connection that could not be created.
    pub fn put_back_local_port(&mut self, id: u16, port: u16) {
        self.put_local_port(id, port);
    }

    /// Gives back a port [`ConnTable::take_local_port`] handed out.
    fn put_local_port(&mut self, id: u16, port: u16) {
        if let Some(Some(l)) = self.locals.get_mut(usize::from(id)) {
            l.pool.put(port);
            l.shared.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Local address number `id` (unspecified if unknown).
    #[inline]
    pub fn local_addr(&self, id: u16) -> ConnAddr {
        match self.locals.get(usize::from(id)) {
            Some(Some(l)) => l.addr,
            _ => ConnAddr::default(),
        }
    }

    /// Marks a FULLNAT connection as past the point where TOA is inserted.
    pub fn set_toa_done(&mut self, id: ConnId) {
        if let Some(c) = self.ents.get_mut(id.0 as usize) {
            c.flags |= cflags::TOA_DONE;
        }
    }

    /// The NAT-reply key of entry `c`.
    #[inline]
    fn out_key_of(&self, c: &Conn) -> ConnKey {
        if c.flags & cflags::FULLNAT != 0 {
            ConnKey::new(c.proto, c.daddr, c.dport, self.local_addr(c.local), c.lport)
        } else {
            c.out_key()
        }
    }

    /// Makes this table's templates refer to the director-wide ones (set
    /// before the first template is created).
    pub fn set_shared_templates(&mut self, shared: Arc<SharedTemplates>) {
        self.shared = Some(shared);
    }

    /// The director-wide templates, with several workers.
    pub fn shared_templates(&self) -> Option<&Arc<SharedTemplates>> {
        self.shared.as_ref()
    }

    /// Bytes of memory the table holds: slab, bucket arrays, wheel heads.
    pub fn memory_bytes(&self) -> usize {
        self.ents.capacity() * std::mem::size_of::<Conn>()
            + (self.buckets_in.capacity() + self.buckets_out.capacity()) * 4
            + self.wheel.memory_bytes()
            + self.serials.capacity() * 4
    }

    /// Which occupant of its slot connection `id` is: changes whenever
    /// the slot takes a new entry, so data kept beside the table by slot
    /// (the packet rules' verdicts, [`crate::rules::conncache`]) can tell
    /// its connection from an earlier one. Wraps after 2^32 entries in
    /// one slot.
    #[inline]
    pub fn serial(&self, id: ConnId) -> u32 {
        self.serials.get(id.0 as usize).copied().unwrap_or(0)
    }

    /// Maximum number of entries.
    pub fn capacity(&self) -> u32 {
        self.ents.len() as u32
    }
    /// Live entries (connections and templates).
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Creations refused because the maximum was reached.
    /// How many keys were linked into the indexes so far (creations,
    /// synced entries, re-keyed templates): a lookup that missed keeps
    /// missing while this stays the same (removals only make misses).
    #[inline]
    pub fn links(&self) -> u64 {
        self.links
    }

    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// `--set tcp tcpfin udp` (all values final; 0 handling is the control
    /// side's). Takes effect at each connection's next re-arm.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
        self.tcp_ticks = tcp_ticks(&t);
        self.udp_ticks = secs_to_ticks(proto_udp::timeout_secs(&t));
    }
    pub fn set_sysctls(&mut self, s: Sysctls) {
        self.sysctls = s;
    }
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The entry `id` (which must be live).
    pub fn get(&self, id: ConnId) -> &Conn {
        &self.ents[id.0 as usize]
    }

    /// The bucket of `k`: a keyed hash of the whole key, folded to the
    /// index. A key of two IPv4 addresses (nearly every packet) is hashed
    /// as its 12 bytes that vary, two words in one multiply, the way
    /// wyhash hashes a short input; any other key as three products of its
    /// five fields. Which way a key goes depends on the key alone (both
    /// addresses mapped, `::ffff:a.b.c.d`, or not), so each key has one
    /// bucket whichever caller asks.
    ///
    /// Why: the one product saved an established IPv4 packet 8
    /// instructions and a new connection 13 (it hashes two or three keys;
    /// loop-instructions.sh, NAT UDP 695.0 -> 687.2, new 1513.3 ->
    /// 1500.1).
    #[inline(always)]
    fn bucket(&self, k: &ConnKey) -> usize {
        let (s0, s1) = k.src.words();
        let (d0, d1) = k.dst.words();
        let p = u64::from(k.sport) | u64::from(k.dport) << 16 | u64::from(k.proto) << 32;
        let h =
            if s0 | d0 == 0 && s1 & MAPPED_MASK == MAPPED_BITS && d1 & MAPPED_MASK == MAPPED_BITS {
                // `s1` is the mapped prefix's last word and the IPv4 source in
                // one half, `d1` the same for the destination: rotated, the
                // destination's address lies where the source's prefix does.
                mix(s1 ^ d1.rotate_left(32) ^ self.seed[0], p ^ self.seed[2])
            } else {
                mix(s0 ^ self.seed[0], s1 ^ 0x9e37_79b9_7f4a_7c15)
                    ^ mix(d0 ^ self.seed[1], d1 ^ 0xc2b2_ae3d_27d4_eb4f)
                    ^ mix(p ^ self.seed[2], 0x1656_67b1_9e37_79f9)
            };
        ((h ^ (h >> 32)) as u32 & self.mask) as usize
    }

    /// Inbound lookup: `(proto, client, cport, vaddr, vport)`. Templates are
    /// never returned.
    pub fn lookup_in(&self, k: &ConnKey) -> Option<ConnId> {
        self.walk_in(self.buckets_in[self.bucket(k)], k)
    }

    /// `k` with its bucket in this table, for [`ConnTable::lookup_in_hashed`],
    /// [`ConnTable::lookup_out_hashed`] and [`ConnTable::create_hashed`].
    #[inline]
    pub(crate) fn hashed(&self, k: ConnKey) -> HashedKey {
        HashedKey {
            bucket: self.bucket(&k) as u32,
            key: k,
        }
    }

    /// [`ConnTable::lookup_in`] of a key hashed by this table. Always
    /// inlined: with the two-worker lane a fourth caller, and left out of
    /// line the one-worker lane paid a call per packet.
    #[inline(always)]
    pub(crate) fn lookup_in_hashed(&self, h: &HashedKey) -> Option<ConnId> {
        match self.buckets_in.get(h.bucket as usize) {
            Some(&head) => self.walk_in(head, &h.key),
            None => self.lookup_in(&h.key),
        }
    }

    /// [`ConnTable::lookup_in_hashed`] of `k` hashed to `bucket` by
    /// [`ConnTable::bucket_of`], for a caller that builds the
    /// [`HashedKey`] only when it keeps it ([`ConnTable::hashed_at`]),
    /// with the connection's flags.
    #[inline(always)]
    pub(crate) fn lookup_in_at(&self, bucket: u32, k: &ConnKey) -> Option<(ConnId, u16)> {
        match self.buckets_in.get(bucket as usize) {
            Some(&head) => self.walk_in_flags(head, k),
            None => self.lookup_in(k).map(|id| (id, self.get(id).flags())),
        }
    }

    /// [`ConnTable::lookup_out_hashed`] of `k` hashed to `bucket`.
    #[inline]
    pub(crate) fn lookup_out_at(&self, bucket: u32, k: &ConnKey) -> Option<ConnId> {
        match self.buckets_out.get(bucket as usize) {
            Some(&head) => self.walk_out(head, k),
            None => self.lookup_out(k),
        }
    }

    /// `k` with `bucket`, the one [`ConnTable::bucket_of`] gave for it.
    #[inline(always)]
    pub(crate) fn hashed_at(&self, k: ConnKey, bucket: u32) -> HashedKey {
        debug_assert_eq!(bucket, self.bucket_of(&k));
        HashedKey { key: k, bucket }
    }

    /// [`ConnTable::lookup_out`] of a key hashed by this table.
    #[inline]
    pub(crate) fn lookup_out_hashed(&self, h: &HashedKey) -> Option<ConnId> {
        match self.buckets_out.get(h.bucket as usize) {
            Some(&head) => self.walk_out(head, &h.key),
            None => self.lookup_out(&h.key),
        }
    }

    /// The bucket of `k` in this table (both indexes use the one hash), for
    /// the warm-up ([`ConnTable::prefetch_bucket`]).
    #[inline(always)]
    pub(crate) fn bucket_of(&self, k: &ConnKey) -> u32 {
        self.bucket(k) as u32
    }

    /// The first step of warming one lookup (`Lb::warm_parsed`, a burst's
    /// packets each a few packets ahead of the one being processed):
    /// prefetches the word of `bucket` in the `dir` index. Buckets past
    /// the index are ignored.
    #[inline(always)]
    pub(crate) fn prefetch_bucket(&self, bucket: u32, dir: Dir) {
        if let Some(w) = self.index(dir).get(bucket as usize) {
            prefetch(w);
        }
    }

    /// The second step, once the word has had time to arrive: reads the
    /// chain's head at `bucket` and prefetches both lines of its entry
    /// (the key, and the second line that the re-arm and the transmit
    /// read). Returns the head (NIL: none), for [`ConnTable::warm_second`].
    #[inline(always)]
    pub(crate) fn warm_head(&self, bucket: u32, dir: Dir) -> u32 {
        let h = self.index(dir).get(bucket as usize).copied().unwrap_or(NIL);
        if let Some(c) = self.ents.get(h as usize) {
            prefetch(c);
        }
        h
    }

    /// The third step, once the head entry has had time to arrive:
    /// prefetches the entry after `head` in its `dir` chain, which only a
    /// key behind the head needs (about one packet in four at a million
    /// flows in 2^21 buckets).
    #[inline(always)]
    pub(crate) fn warm_second(&self, head: u32, dir: Dir) {
        if let Some(c) = self.ents.get(head as usize) {
            let next = if dir == Dir::In {
                c.next_in
            } else {
                c.next_out
            };
            if let Some(c) = self.ents.get(next as usize) {
                prefetch(c);
            }
        }
    }

    #[inline(always)]
    fn index(&self, dir: Dir) -> &[u32] {
        if dir == Dir::In {
            &self.buckets_in
        } else {
            &self.buckets_out
        }
    }

    /// Inbound lookup of a burst: `out[j] = lookup_in(&keys[j])`.
    ///
    /// Why: at millions of entries each lookup is two dependent cache
    /// misses (bucket word, then entry). Doing the bucket loads of the whole
    /// burst first, then the first entry loads, then the compares, lets the
    /// CPU keep many misses in flight instead of waiting for each in turn
    /// (2-4x fewer ns per packet in `bench/CONNTRACK.md`). `keys` and `out`
    /// are processed up to the shorter length.
    pub fn lookup_in_batch(&self, keys: &[ConnKey], out: &mut [Option<ConnId>]) {
        self.lookup_batch(keys, out, Dir::In);
    }

    /// NAT-reply lookup of a burst: `out[j] = lookup_out(&keys[j])`.
    pub fn lookup_out_batch(&self, keys: &[ConnKey], out: &mut [Option<ConnId>]) {
        self.lookup_batch(keys, out, Dir::Out);
    }

    fn lookup_batch(&self, keys: &[ConnKey], out: &mut [Option<ConnId>], dir: Dir) {
        const B: usize = 32;
        let buckets = if dir == Dir::In {
            &self.buckets_in
        } else {
            &self.buckets_out
        };
        let n = keys.len().min(out.len());
        let mut start = 0;
        while start < n {
            let end = (start + B).min(n);
            let mut heads = [NIL; B];
            for (h, k) in heads.iter_mut().zip(&keys[start..end]) {
                *h = buckets[self.bucket(k)];
            }
            for &h in &heads[..end - start] {
                if h != NIL {
                    // Start the entry's cache miss now; compared below.
                    std::hint::black_box(self.ents[h as usize].cport);
                }
            }
            for (j, k) in keys[start..end].iter().enumerate() {
                out[start + j] = match dir {
                    Dir::In => self.walk_in(heads[j], k),
                    Dir::Out => self.walk_out(heads[j], k),
                };
            }
            start = end;
        }
    }

    /// Always inlined: with four callers of `lookup_in_hashed` (the
    /// two-worker lane's among them) the compiler kept it out of line, a
    /// call per established packet (DR 707 -> 730 instructions).
    #[inline(always)]
    fn walk_in(&self, i: u32, k: &ConnKey) -> Option<ConnId> {
        self.walk_in_flags(i, k).map(|(id, _)| id)
    }

    /// [`ConnTable::walk_in`] with the flags of the connection found, read
    /// with its key: the lane tests one of them next, and a second read
    /// through the id costs the entry's bounds check again.
    #[inline(always)]
    fn walk_in_flags(&self, mut i: u32, k: &ConnKey) -> Option<(ConnId, u16)> {
        while i != NIL {
            let c = &self.ents[i as usize];
            if c.in_key_eq(k) && c.flags & cflags::TEMPLATE == 0 {
                return Some((ConnId(i), c.flags));
            }
            i = c.next_in;
        }
        None
    }

    /// The reply index's chain from `i`, the connection not linked yet
    /// (`pending_out`) first: it is the newest, which a linked entry would
    /// be at the head of its chain.
    fn walk_out(&self, mut i: u32, k: &ConnKey) -> Option<ConnId> {
        if let Some(c) = self.ents.get(self.pending_out as usize) {
            if self.out_hit(c, k) {
                return Some(ConnId(self.pending_out));
            }
        }
        while i != NIL {
            let c = &self.ents[i as usize];
            if self.out_hit(c, k) {
                return Some(ConnId(i));
            }
            i = c.next_out;
        }
        None
    }

    /// Whether `c`'s reply key is `k`.
    #[inline(always)]
    fn out_hit(&self, c: &Conn, k: &ConnKey) -> bool {
        if c.flags & cflags::FULLNAT == 0 {
            c.out_key_eq(k)
        } else {
            c.dport == k.sport
                && c.lport == k.dport
                && c.proto == k.proto
                && c.daddr == k.src
                && self.local_addr(c.local) == k.dst
        }
    }

    /// NAT-reply lookup: `(proto, daddr, dport, client, cport)`.
    pub fn lookup_out(&self, k: &ConnKey) -> Option<ConnId> {
        self.walk_out(self.buckets_out[self.bucket(k)], k)
    }

    /// Template lookup by its exact key (see [`super::persist`]).
    pub(super) fn lookup_template(&self, k: &ConnKey) -> Option<u32> {
        let mut i = self.buckets_in[self.bucket(k)];
        while i != NIL {
            let c = &self.ents[i as usize];
            if c.in_key_eq(k) && c.flags & cflags::TEMPLATE != 0 {
                return Some(i);
            }
            i = c.next_in;
        }
        None
    }

    fn hash_in(&mut self, i: u32) {
        let b = self.bucket(&self.ents[i as usize].in_key());
        self.hash_in_at(i, b);
    }

    fn hash_in_at(&mut self, i: u32, b: usize) {
        self.links = self.links.wrapping_add(1);
        self.ents[i as usize].next_in = self.buckets_in[b];
        self.buckets_in[b] = i;
    }

    /// In line: a call per new connection otherwise (its only
    /// per-packet caller is `create_at`).
    #[inline(always)]
    fn hash_out(&mut self, i: u32) {
        let b = self.bucket(&self.out_key_of(&self.ents[i as usize]));
        self.links = self.links.wrapping_add(1);
        self.ents[i as usize].next_out = self.buckets_out[b];
        self.buckets_out[b] = i;
        self.ents[i as usize].flags |= cflags::HASHED_OUT;
    }

    /// [`ConnTable::hash_out`] for a connection just created: its reply
    /// key's bucket is prefetched now and linked at the next creation or
    /// at the end of the burst ([`ConnTable::link_pending_out`]), and
    /// until then the reply lookups find it first (`walk_out`). Why: the
    /// bucket is a random word of a large array, known only once the
    /// connection has its real server, so at millions of connections
    /// linking it at once waited for a cache miss on every new connection.
    /// Nothing can look for the reply of a request before that request
    /// has left, after this burst.
    #[inline(always)]
    fn hash_out_deferred(&mut self, i: u32) {
        self.link_pending_out();
        let b = self.bucket(&self.out_key_of(&self.ents[i as usize]));
        if let Some(w) = self.buckets_out.get(b) {
            prefetch(w);
        }
        self.links = self.links.wrapping_add(1);
        self.pending_out = i;
        self.pending_out_bucket = b as u32;
        self.ents[i as usize].flags |= cflags::HASHED_OUT;
    }

    /// Links the connection [`ConnTable::hash_out_deferred`] left
    /// pending into the reply index (its `links` were counted then).
    /// The worker calls this at the end of every burst.
    #[inline]
    pub fn link_pending_out(&mut self) {
        let i = self.pending_out;
        if i == NIL {
            return;
        }
        self.pending_out = NIL;
        let b = self.pending_out_bucket as usize;
        self.ents[i as usize].next_out = self.buckets_out[b];
        self.buckets_out[b] = i;
    }

    pub(super) fn unhash_in(&mut self, i: u32) {
        let b = self.bucket(&self.ents[i as usize].in_key());
        let next = self.ents[i as usize].next_in;
        if self.buckets_in[b] == i {
            self.buckets_in[b] = next;
        } else {
            let mut j = self.buckets_in[b];
            while j != NIL {
                let nj = self.ents[j as usize].next_in;
                if nj == i {
                    self.ents[j as usize].next_in = next;
                    break;
                }
                j = nj;
            }
        }
        self.ents[i as usize].next_in = NIL;
    }

    fn unhash_out(&mut self, i: u32) {
        if self.ents[i as usize].flags & cflags::HASHED_OUT == 0 {
            return;
        }
        if i == self.pending_out {
            self.pending_out = NIL;
            let c = &mut self.ents[i as usize];
            c.flags &= !cflags::HASHED_OUT;
            return;
        }
        let b = self.bucket(&self.out_key_of(&self.ents[i as usize]));
        let next = self.ents[i as usize].next_out;
        if self.buckets_out[b] == i {
            self.buckets_out[b] = next;
        } else {
            let mut j = self.buckets_out[b];
            while j != NIL {
                let nj = self.ents[j as usize].next_out;
                if nj == i {
                    self.ents[j as usize].next_out = next;
                    break;
                }
                j = nj;
            }
        }
        let c = &mut self.ents[i as usize];
        c.next_out = NIL;
        c.flags &= !cflags::HASHED_OUT;
    }

    /// Takes a free slot, honouring the maximum.
    fn alloc(&mut self) -> Result<u32, CreateError> {
        if self.free_head == NIL {
            self.refused += 1;
            return Err(CreateError::Full);
        }
        if let Some(b) = &self.budget {
            if !b.take() {
                self.refused += 1;
                return Err(CreateError::Full);
            }
        }
        let i = self.free_head;
        self.free_head = self.ents[i as usize].next_in;
        self.len += 1;
        let n = &mut self.serials[i as usize];
        *n = n.wrapping_add(1);
        Ok(i)
    }

    /// Arms entry `i` to expire `ticks` from `now_t`. O(1); usually only a
    /// store (the wheel is touched only when the expiry moves earlier).
    #[inline(always)]
    fn arm(&mut self, i: u32, ticks: u32, now_t: u32) {
        self.arm_bounded(i, ticks.min(MAX_TIMEOUT_TICKS), now_t);
    }

    /// [`ConnTable::arm`] with `ticks` at most [`MAX_TIMEOUT_TICKS`]
    /// already: [`ConnTable::state_timeout_ticks`]'s answers, which
    /// `secs_to_ticks` bounded (the re-arm of every packet).
    #[inline(always)]
    fn arm_bounded(&mut self, i: u32, ticks: u32, now_t: u32) {
        debug_assert!(ticks <= MAX_TIMEOUT_TICKS);
        let exp = now_t.wrapping_add(ticks);
        let c = &mut self.ents[i as usize];
        c.expires = exp;
        let (linked, at) = (c.is_linked(), c.at);
        if !linked {
            self.wheel.schedule(&mut self.ents, i, exp);
        } else if before(exp, at) {
            self.wheel.reschedule(&mut self.ents, i, exp);
        }
    }

    /// At most [`MAX_TIMEOUT_TICKS`] (`secs_to_ticks`).
    #[inline(always)]
    fn state_timeout_ticks(&self, c: &Conn) -> u32 {
        match c.proto {
            TCP => match self.tcp_ticks.get(usize::from(c.state)) {
                Some(&t) => t,
                None => secs_to_ticks(proto_tcp::timeout_secs(c.state, &self.timeouts)),
            },
            SCTP => secs_to_ticks(proto_sctp::timeout_secs(c.state)),
            _ => self.udp_ticks,
        }
    }

    /// Creates a connection for the client packet that starts it (the
    /// engine has scheduled `n.dest`), binds it to the destination (counted
    /// inactive first, OVERLOAD set at the upper threshold), runs that first
    /// packet through the state machine from NONE, and restarts the
    /// controlling template's timer.
    pub fn create(&mut self, n: &NewConn, tcp_flags: u8, now: u64) -> Result<ConnId, CreateError> {
        self.create_at(n, tcp_flags, now, None)
    }

    /// [`ConnTable::create`] for the packet whose lookup key `h` missed:
    /// the inbound index reuses `h`'s bucket when `h` is the new
    /// connection's inbound key (else the key is hashed again).
    pub(crate) fn create_hashed(
        &mut self,
        n: &NewConn,
        tcp_flags: u8,
        now: u64,
        h: &HashedKey,
    ) -> Result<ConnId, CreateError> {
        let k = &h.key;
        let same = k.sport == n.cport
            && k.dport == n.vport
            && k.proto == n.proto
            && k.src == n.client
            && k.dst == n.vaddr;
        let bucket =
            (same && (h.bucket as usize) < self.buckets_in.len()).then_some(h.bucket as usize);
        self.create_at(n, tcp_flags, now, bucket)
    }

    fn create_at(
        &mut self,
        n: &NewConn,
        tcp_flags: u8,
        now: u64,
        in_bucket: Option<usize>,
    ) -> Result<ConnId, CreateError> {
        let i = self.alloc()?;
        let control = match n.control {
            Some(t) if self.is_live_template(t.0) => t.0,
            _ => NIL,
        };
        {
            let c = &mut self.ents[i as usize];
            c.caddr = n.client;
            c.cport = n.cport;
            c.vaddr = n.vaddr;
            c.vport = n.vport;
            c.daddr = n.daddr;
            c.dport = n.dport;
            c.proto = n.proto;
            c.state = proto_tcp::state::NONE;
            c.flags = cflags::LIVE | cflags::INACTIVE;
            if !matches!(n.method, ForwardMethod::Masq | ForwardMethod::FullNat) {
                c.flags |= cflags::NOOUTPUT;
            }
            let (local, lport) = n.local.unwrap_or((0, 0));
            if n.local.is_some() {
                c.flags |= cflags::FULLNAT;
            }
            c.local = local;
            c.lport = lport;
            c.control = control;
            c.n_control = 0;
            c.timeout = 0;
            c.shared = NIL;
            c.next_in = NIL;
            c.next_out = NIL;
            c.prev_t = UNLINKED;
            c.next_t = UNLINKED;
            c.method = n.method;
            c.dest = Some(Arc::clone(n.dest));
            c.svc = n.svc.map(Arc::clone);
            c.in_pkts = 1;
            c.sync_state = proto_tcp::state::NONE;
        }
        bind(n.dest, false);
        match in_bucket {
            Some(b) => self.hash_in_at(i, b),
            None => self.hash_in(i),
        }
        self.hash_out_deferred(i);
        if control != NIL {
            self.ents[control as usize].n_control += 1;
            let t = self.ents[control as usize].timeout;
            self.arm(control, t, tick_of_ms(now));
        }
        self.transition(i, Dir::In, tcp_flags, now);
        Ok(ConnId(i))
    }

    /// Marks connection `id` as one the SYN proxy opened
    /// ([`cflags::SYNPROXY`]); creation clears the mark.
    pub fn mark_synproxy(&mut self, id: ConnId) {
        if let Some(c) = self.ents.get_mut(id.0 as usize) {
            c.flags |= cflags::SYNPROXY;
        }
    }

    pub(super) fn is_live_template(&self, i: u32) -> bool {
        self.ents.get(i as usize).is_some_and(|c| {
            c.flags & (cflags::LIVE | cflags::TEMPLATE) == cflags::LIVE | cflags::TEMPLATE
        })
    }

    /// Creates a persistence template with key `k` (see
    /// [`super::persist::template_key`]) pointing at `dest`, expiring
    /// `timeout_secs` (the service's persistence timeout) from `now`.
    /// `shared`: the director-wide template it refers to (several workers),
    /// whose reference it now holds; it counts in the destination's
    /// PersistConn only if it published that template, so that the
    /// director counts one per client as the kernel does.
    #[allow(clippy::too_many_arguments)]
    pub fn create_template(
        &mut self,
        k: &ConnKey,
        daddr: ConnAddr,
        dport: u16,
        method: ForwardMethod,
        dest: &Arc<DestShared>,
        svc: Option<&Arc<ServiceShared>>,
        timeout_secs: u32,
        now: u64,
        shared: Option<SharedRef>,
    ) -> Result<ConnId, CreateError> {
        let i = match self.alloc() {
            Ok(i) => i,
            Err(e) => {
                // Give the reference back. A template this worker
                // published that another worker has taken meanwhile lives
                // on: count it as its publisher should have.
                if let (Some(r), Some(t)) = (shared, &self.shared) {
                    if !t.release(r.slot) && r.installed {
                        bind(dest, true);
                    }
                }
                return Err(e);
            }
        };
        let timeout = secs_to_ticks(timeout_secs);
        {
            let c = &mut self.ents[i as usize];
            c.caddr = k.src;
            c.cport = k.sport;
            c.vaddr = k.dst;
            c.vport = k.dport;
            c.daddr = daddr;
            c.dport = dport;
            c.proto = k.proto;
            c.state = proto_tcp::state::NONE;
            c.flags = cflags::LIVE | cflags::TEMPLATE;
            c.control = NIL;
            c.n_control = 0;
            c.timeout = timeout;
            c.shared = shared.map_or(NIL, |r| r.slot);
            c.next_in = NIL;
            c.next_out = NIL;
            c.prev_t = UNLINKED;
            c.next_t = UNLINKED;
            c.method = method;
            c.dest = Some(Arc::clone(dest));
            c.svc = svc.map(Arc::clone);
            c.in_pkts = 0;
            c.sync_state = proto_tcp::state::NONE;
        }
        if shared.is_none_or(|r| r.installed) {
            bind(dest, true);
        }
        self.hash_in(i);
        self.arm(i, timeout, tick_of_ms(now));
        Ok(ConnId(i))
    }

    /// A one-packet (`-o`) UDP datagram: the connection is never inserted;
    /// its counters go up and down around the packet, and the controlling
    /// template (if any) is restarted.
    pub fn one_packet(&mut self, dest: &DestShared, control: Option<ConnId>, now: u64) {
        bind(dest, false);
        unbind(dest, false, true);
        if let Some(t) = control.filter(|t| self.is_live_template(t.0)) {
            let to = self.ents[t.0 as usize].timeout;
            self.arm(t.0, to, tick_of_ms(now));
        }
    }

    /// Per-packet work on an existing connection. See [`Verdict`].
    /// `tcp_flags`: the TCP flag byte; for SCTP the packet's event
    /// ([`proto_sctp::event`]); ignored for other protocols.
    #[inline]
    pub fn on_packet(&mut self, id: ConnId, dir: Dir, tcp_flags: u8, now: u64) -> Verdict {
        let i = id.0;
        let Some(c) = self.ents.get(i as usize) else {
            return Verdict::Expired;
        };
        if c.flags & cflags::LIVE == 0 {
            return Verdict::Expired;
        }
        if c.flags & cflags::TEMPLATE != 0 {
            return Verdict::Forward;
        }
        if dir == Dir::In {
            // Destination checks read the shared DestShared line only for
            // client packets, as the kernel's ip_vs_in does.
            let dest = c.dest.as_deref();
            let new_conn = match c.proto {
                TCP => proto_tcp::is_new_conn(tcp_flags),
                SCTP => proto_sctp::is_new_conn(tcp_flags),
                _ => false,
            };
            if new_conn && self.sysctls.conn_reuse_mode != 0 {
                // ip_vs_in: with conn_reuse_mode on, a SYN (SCTP: INIT) to
                // a weight-0 server is rescheduled under
                // expire_nodest_conn.
                let nodest0 =
                    self.sysctls.expire_nodest_conn && dest.is_some_and(|d| d.weight() == 0);
                if nodest0 || self.reuse_expected(c) {
                    self.free(i);
                    return Verdict::Expired;
                }
            }
            if !dest.is_some_and(DestShared::is_available) {
                if self.sysctls.expire_nodest_conn {
                    self.free(i);
                    return Verdict::Expired;
                }
                return Verdict::Drop;
            }
        }
        self.transition(i, dir, tcp_flags, now);
        Verdict::Forward
    }

    /// [`ConnTable::on_packet`] for a steady packet of the fast lane
    /// (`crate::lb`'s `Lb::lane`): entry `id` is what a lookup returned
    /// just now (live: freed entries leave both indexes; a client packet's
    /// lookup returns no template), and the packet cannot start a
    /// connection (UDP, or TCP that [`proto_tcp::is_new_conn`] refuses).
    /// So the tests `on_packet` makes first cannot decide anything and are
    /// skipped: the destination check of a client packet and the state
    /// transition with its timer re-arm are the same code, inlined into
    /// the lane. The same verdict and the same entry afterwards (unit test
    /// `steady_packets_update_like_on_packet`, and the lane's property
    /// tests).
    #[inline(always)]
    pub fn on_packet_steady(&mut self, id: ConnId, dir: Dir, tcp_flags: u8, now: u64) -> Verdict {
        let i = id.0;
        let c = &self.ents[i as usize];
        debug_assert!(c.flags & cflags::LIVE != 0);
        debug_assert!(c.proto == UDP || (c.proto == TCP && !proto_tcp::is_new_conn(tcp_flags)));
        if c.flags & cflags::TEMPLATE != 0 {
            return Verdict::Forward;
        }
        if dir == Dir::In && !c.dest.as_deref().is_some_and(DestShared::is_available) {
            if self.sysctls.expire_nodest_conn {
                self.free(i);
                return Verdict::Expired;
            }
            return Verdict::Drop;
        }
        self.transition(i, dir, tcp_flags, now);
        Verdict::Forward
    }

    /// `conn_reuse_mode`: may a new SYN (SCTP: INIT) replace this entry?
    fn reuse_expected(&self, c: &Conn) -> bool {
        use proto_tcp::state::*;
        let mode = self.sysctls.conn_reuse_mode;
        if c.proto == SCTP {
            return mode != 0 && c.control == NIL && proto_sctp::reuse_expected(c.state);
        }
        mode != 0
            && c.control == NIL
            && (c.state == TIME_WAIT
                || c.state == CLOSE
                || (mode & 2 != 0 && c.state == FIN_WAIT && c.flags & cflags::NOOUTPUT != 0))
    }

    /// State transition, accounting, template marking and re-arm. Inlined
    /// into its two callers (the per-packet one and creation).
    #[inline(always)]
    fn transition(&mut self, i: u32, dir: Dir, tcp_flags: u8, now: u64) {
        let secure = self.sysctls.secure_tcp;
        let c = &mut self.ents[i as usize];
        if dir == Dir::In && (c.flags >> cflags::IN_PKTS_SHIFT) < IN_PKTS_MAX {
            c.flags += 1 << cflags::IN_PKTS_SHIFT;
        }
        let mut assure = false;
        match c.proto {
            TCP => {
                let nooutput = c.flags & cflags::NOOUTPUT != 0;
                if nooutput && dir == Dir::Out {
                    c.flags &= !cflags::NOOUTPUT;
                }
                let new = if proto_tcp::stays_established(c.state, tcp_flags) {
                    proto_tcp::state::ESTABLISHED
                } else {
                    let table = proto_tcp::Table::select(dir, nooutput && dir == Dir::In);
                    proto_tcp::next_state(c.state, table, tcp_flags, secure)
                };
                if new != c.state {
                    set_active(c, proto_tcp::is_active(new));
                    c.state = new;
                }
                assure = new == proto_tcp::state::ESTABLISHED;
            }
            UDP => assure = dir == Dir::Out,
            SCTP => {
                // Here `tcp_flags` is the packet's SCTP event.
                let nooutput = c.flags & cflags::NOOUTPUT != 0;
                if nooutput && dir == Dir::Out {
                    c.flags &= !cflags::NOOUTPUT;
                }
                let table = proto_sctp::Table::select(dir, nooutput && dir == Dir::In);
                let new = proto_sctp::next_state(c.state, table, tcp_flags);
                if new != c.state {
                    set_active(c, proto_sctp::is_active(new));
                    c.state = new;
                }
                assure = new == proto_sctp::state::ESTABLISHED;
            }
            _ => {}
        }
        if assure && c.control != NIL {
            let ctl = c.control;
            self.ents[ctl as usize].flags |= cflags::ASSURED;
        }
        let t = self.state_timeout_ticks(&self.ents[i as usize]);
        self.arm_bounded(i, t, tick_of_ms(now));
    }

    /// Frees entry `i`: unlinks it everywhere, releases its destination
    /// (counters, OVERLOAD) and its template.
    fn free(&mut self, i: u32) {
        self.unhash_in(i);
        self.unhash_out(i);
        self.wheel.unlink(&mut self.ents, i);
        let c = &self.ents[i as usize];
        if c.flags & cflags::FULLNAT != 0 {
            let (id, port) = (c.local, c.lport);
            self.put_local_port(id, port);
        }
        let c = &mut self.ents[i as usize];
        let template = c.flags & cflags::TEMPLATE != 0;
        let inactive = c.flags & cflags::INACTIVE != 0;
        let shared = std::mem::replace(&mut c.shared, NIL);
        // A template that refers to a director-wide one is uncounted from
        // PersistConn only with the director-wide one (the last reference).
        let counted =
            !template || shared == NIL || self.shared.as_ref().is_some_and(|t| t.release(shared));
        if let Some(d) = c.dest.take() {
            if counted {
                unbind(&d, template, inactive);
            }
        }
        c.svc = None;
        let ctl = c.control;
        c.control = NIL;
        c.flags = 0;
        c.next_in = self.free_head;
        self.free_head = i;
        self.len -= 1;
        if ctl != NIL {
            let t = &mut self.ents[ctl as usize];
            t.n_control = t.n_control.saturating_sub(1);
        }
        if let Some(b) = &self.budget {
            b.give();
        }
    }

    /// Processes due timers: frees expired entries, re-arms templates that
    /// still control connections with 60 s. Examines at most `max` entries
    /// and returns how many it examined (call again while it returns `max`).
    pub fn expire(&mut self, now: u64, max: usize) -> usize {
        let now_t = tick_of_ms(now);
        let mut n = 0;
        while n < max {
            let Some(i) = self.wheel.pop_due(&mut self.ents, now_t) else {
                break;
            };
            n += 1;
            let c = &mut self.ents[i as usize];
            if before(now_t, c.expires) {
                let e = c.expires;
                self.wheel.schedule(&mut self.ents, i, e);
            } else if c.n_control > 0 {
                let t = secs_to_ticks(TEMPLATE_REARM_SECS);
                c.timeout = t;
                self.arm(i, t, now_t);
            } else {
                self.free(i);
            }
        }
        n
    }

    /// `expire_nodest_conn=1` after a destination was deleted: frees every
    /// connection whose destination is unavailable, then the templates of
    /// such destinations that no longer control anything. O(capacity); run
    /// once per delete, between bursts.
    pub fn flush_unavailable(&mut self) -> usize {
        let mut n = 0;
        for pass_templates in [false, true] {
            for i in 0..self.ents.len() as u32 {
                let c = &self.ents[i as usize];
                if c.flags & cflags::LIVE == 0 || c.is_template() != pass_templates {
                    continue;
                }
                let gone = !c.dest.as_ref().is_some_and(|d| d.is_available());
                if gone && c.n_control == 0 {
                    self.free(i);
                    n += 1;
                }
            }
        }
        n
    }

    /// Frees every entry, connections before the templates that control
    /// them; returns how many. Costs one pass over the slots, far less than
    /// a new table (whose timer wheel alone has [`timer::SLOTS`] heads): the
    /// fuzz pipeline empties its stage this way between inputs.
    pub fn flush(&mut self) -> usize {
        let mut n = 0;
        for pass_templates in [false, true] {
            for i in 0..self.ents.len() as u32 {
                let c = &self.ents[i as usize];
                if c.flags & cflags::LIVE != 0 && c.is_template() == pass_templates {
                    self.free(i);
                    n += 1;
                }
            }
        }
        n
    }

    /// The `drop_entry` defence (reference 4.9; the kernel's
    /// `ip_vs_random_dropentry`): examines `n` slots picked by `pick` (the
    /// kernel scans 1/32 of its hash buckets a second) and frees, among
    /// connections that control nothing, TCP ones still in SYN_RECV or
    /// SYNACK and SCTP ones in INIT1 or INIT, and established TCP or SCTP
    /// or other (UDP) ones that `todrop_entry`
    /// picks: idle for 60 s or more and with 1..=8 client packets, the i-th
    /// such entry with i packets (one counter per packet count, in
    /// `counters`). A dropped connection's template goes with it when it
    /// controls nothing else. Between bursts; returns how many connections
    /// it freed, of each kind (their templates not counted).
    pub fn random_drop(
        &mut self,
        n: usize,
        mut pick: impl FnMut() -> u32,
        now: u64,
        counters: &mut [i8; 9],
    ) -> RandomDrop {
        use proto_tcp::state::{ESTABLISHED, SYNACK, SYN_RECV};
        let cap = self.ents.len() as u32;
        let mut freed = RandomDrop::default();
        if cap == 0 {
            return freed;
        }
        let now_t = tick_of_ms(now);
        let idle_min = secs_to_ticks(60);
        for _ in 0..n {
            let i = pick() % cap;
            let c = &self.ents[i as usize];
            if c.flags & cflags::LIVE == 0 || c.n_control > 0 || c.is_template() {
                continue;
            }
            let todrop = |c: &Conn, counters: &mut [i8; 9]| {
                let armed = c.expires.wrapping_sub(self.state_timeout_ticks(c));
                if now_t.wrapping_sub(armed) < idle_min {
                    return false;
                }
                let p = usize::from(c.flags >> cflags::IN_PKTS_SHIFT);
                if p == 0 || p > 8 {
                    return false;
                }
                counters[p] -= 1;
                if counters[p] > 0 {
                    return false;
                }
                counters[p] = p as i8;
                true
            };
            let half_open = matches!(
                (c.proto, c.state),
                (TCP, SYN_RECV | SYNACK)
                    | (SCTP, proto_sctp::state::INIT1 | proto_sctp::state::INIT)
            );
            let idle = !half_open
                && match (c.proto, c.state) {
                    (TCP, ESTABLISHED) => todrop(c, counters),
                    (TCP, _) => false,
                    (SCTP, proto_sctp::state::ESTABLISHED) => todrop(c, counters),
                    (SCTP, _) => false,
                    _ => todrop(c, counters),
                };
            if half_open || idle {
                let ctl = c.control;
                self.free(i);
                if half_open {
                    freed.half_open += 1;
                } else {
                    freed.idle += 1;
                }
                if ctl != NIL && self.ents[ctl as usize].n_control == 0 {
                    self.free(ctl);
                }
            }
        }
        freed
    }

    /// Rows of `ipvsadm -L -c` for every live entry (control path; allocates).
    /// Tests: every live entry's slot and fields (state, flags, expiry,
    /// wheel slot, links, counts; not the shared destination and service),
    /// for comparing two tables that saw the same packets.
    #[cfg(test)]
    pub(crate) fn live_for_tests(&self) -> Vec<String> {
        self.ents
            .iter()
            .enumerate()
            .filter(|(_, c)| c.flags & cflags::LIVE != 0)
            .map(|(i, c)| {
                format!(
                    "{i}: {:?}:{} -> {:?}:{} -> {:?}:{} p{} s{} f{:#x} e{} at{} ctl{} in{} l{}/{} {:?}",
                    c.caddr, c.cport, c.vaddr, c.vport, c.daddr, c.dport, c.proto, c.state,
                    c.flags, c.expires, c.at, c.control, c.in_pkts, c.local, c.lport, c.method
                )
            })
            .collect()
    }

    pub fn iter_entries(&self, now: u64) -> impl Iterator<Item = ConnEntry> + '_ {
        self.entries_in(0..self.ents.len(), now)
    }

    /// [`ConnTable::iter_entries`] of the entry slots in `slots`, for a
    /// listing made a piece at a time ([`ConnTable::slots`] slots in all).
    pub fn entries_in(
        &self,
        slots: std::ops::Range<usize>,
        now: u64,
    ) -> impl Iterator<Item = ConnEntry> + '_ {
        let now_t = tick_of_ms(now);
        let end = slots.end.min(self.ents.len());
        self.ents[slots.start.min(end)..end]
            .iter()
            .filter(|c| c.flags & cflags::LIVE != 0)
            .map(move |c| {
                let left = if before(now_t, c.expires) {
                    c.expires.wrapping_sub(now_t)
                } else {
                    0
                };
                let state = if c.is_template() {
                    if c.flags & cflags::ASSURED != 0 {
                        "ASSURED"
                    } else {
                        "NONE"
                    }
                } else if c.proto == TCP {
                    proto_tcp::name(c.state)
                } else if c.proto == UDP {
                    proto_udp::NAME
                } else if c.proto == SCTP {
                    proto_sctp::name(c.state)
                } else {
                    "NONE"
                };
                let protocol = match c.proto {
                    TCP => "TCP",
                    UDP => "UDP",
                    SCTP => "SCTP",
                    IPPROTO_IP => "IP",
                    _ => "IP",
                };
                ConnEntry {
                    protocol: protocol.to_string(),
                    client: c.caddr.to_ip(),
                    cport: c.cport,
                    vaddr: c.vaddr.to_ip(),
                    vport: c.vport,
                    daddr: c.daddr.to_ip(),
                    dport: c.dport,
                    state: state.to_string(),
                    expires: left / TICKS_PER_SEC,
                    pe: None,
                }
            })
    }

    /// Entry slots (live or not): the range of [`ConnTable::entries_in`].
    pub fn slots(&self) -> usize {
        self.ents.len()
    }

    /// Average number of entries examined by a successful inbound lookup
    /// (index quality diagnostic; O(capacity)).
    pub fn mean_probe_len(&self) -> f64 {
        let (mut sum, mut n) = (0u64, 0u64);
        for &head in &self.buckets_in {
            let mut depth = 0;
            let mut i = head;
            while i != NIL {
                depth += 1;
                sum += depth;
                n += 1;
                i = self.ents[i as usize].next_in;
            }
        }
        if n == 0 {
            0.0
        } else {
            sum as f64 / n as f64
        }
    }

    /// Ids of live entries (tests and diagnostics).
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.ents
            .iter()
            .enumerate()
            .filter(|(_, c)| c.flags & cflags::LIVE != 0)
            .map(|(i, _)| ConnId(i as u32))
    }

    pub(crate) fn sysctls(&self) -> &Sysctls {
        &self.sysctls
    }

    /// Takes a template out of matching: rewrites vport/dport to 0xffff and
    /// cport to 0, and rehashes it (kernel `ip_vs_check_template`).
    pub(super) fn neutralise(&mut self, i: u32) {
        if self.ents[i as usize].vport == 0xffff {
            return;
        }
        self.unhash_in(i);
        let c = &mut self.ents[i as usize];
        c.vport = 0xffff;
        c.dport = 0xffff;
        c.cport = 0;
        self.hash_in(i);
    }
}

/// Counts a new entry on its destination (kernel `ip_vs_bind_dest`): a
/// template in `persistconns`, a connection in `inactconns`; sets OVERLOAD
/// when active + inactive reaches the upper threshold.
fn bind(d: &DestShared, template: bool) {
    if template {
        d.persistconns.fetch_add(1, Ordering::Relaxed);
    } else {
        d.inactconns.fetch_add(1, Ordering::Relaxed);
    }
    let u = d.u_threshold.load(Ordering::Relaxed);
    if u != 0 && conns(d) >= u64::from(u) {
        d.flags.fetch_or(dest_flags::OVERLOAD, Ordering::Relaxed);
    }
}

/// Releases an entry from its destination (kernel `ip_vs_unbind_dest`) and
/// clears OVERLOAD below the low-water mark.
fn unbind(d: &DestShared, template: bool, inactive: bool) {
    if template {
        // Saturating: a director-wide template may be uncounted through
        // another worker's reference to a re-added destination.
        let _ = d
            .persistconns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    } else if inactive {
        d.inactconns.fetch_sub(1, Ordering::Relaxed);
    } else {
        d.activeconns.fetch_sub(1, Ordering::Relaxed);
    }
    let l = u64::from(d.l_threshold.load(Ordering::Relaxed));
    let u = u64::from(d.u_threshold.load(Ordering::Relaxed));
    let clear = if l != 0 {
        conns(d) < l
    } else if u != 0 {
        conns(d) * 4 < u * 3
    } else {
        true
    };
    if clear {
        d.flags.fetch_and(!dest_flags::OVERLOAD, Ordering::Relaxed);
    }
}

fn conns(d: &DestShared) -> u64 {
    u64::from(d.activeconns.load(Ordering::Relaxed))
        + u64::from(d.inactconns.load(Ordering::Relaxed))
}

#[cfg(test)]
mod layout_tests {
    use super::Conn;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn entry_hot_fields_share_one_cache_line() {
        assert_eq!((size_of::<Conn>(), align_of::<Conn>()), (128, 64));
        for end in [
            offset_of!(Conn, dest) + 8,
            offset_of!(Conn, at) + 4,
            offset_of!(Conn, expires) + 4,
            offset_of!(Conn, next_in) + 4,
            offset_of!(Conn, flags) + 2,
        ] {
            assert!(end <= 64, "hot field ends at {end}");
        }
    }
}

/// What a synchronised entry is bound to on the backup: the local
/// destination that matches the message, its service, and its forwarding
/// method (the kernel's synced connections inherit the destination's).
#[derive(Debug, Clone, Copy)]
pub struct SyncBind<'a> {
    pub dest: &'a Arc<DestShared>,
    pub svc: Option<&'a Arc<ServiceShared>>,
    pub method: ForwardMethod,
}

/// Template timeout on a backup when the message carries none (v0).
const SYNC_TEMPLATE_SECS: u32 = 180;

/// Connection synchronisation (`--start-daemon`; [`crate::sync`]).
impl ConnTable {
    /// Master side, after a client packet of connection `id` went through
    /// [`ConnTable::on_packet`]: counts the packet and says whether the
    /// kernel would send the entry now ([`crate::sync::sync_needed`]).
    pub fn sync_due(&mut self, id: ConnId, p: &crate::sync::SyncParams) -> bool {
        let Some(c) = self.ents.get_mut(id.0 as usize) else {
            return false;
        };
        // FULLNAT entries are not synchronised: the kernel's message has
        // no room for the local address and port.
        if c.flags & cflags::LIVE == 0 || c.flags & cflags::FULLNAT != 0 {
            return false;
        }
        c.in_pkts = c.in_pkts.wrapping_add(1);
        let due = crate::sync::sync_needed(
            c.proto,
            c.flags & cflags::TEMPLATE != 0,
            c.state,
            c.sync_state,
            c.in_pkts,
            p,
        );
        if due {
            c.sync_state = c.state;
        }
        due
    }

    /// Entry `id` (live) as a sync message entry: flags as the kernel's
    /// (method, NOOUTPUT, INACTIVE, TEMPLATE), the state (templates: NONE
    /// or ASSURED) and the current timeout value in seconds.
    pub fn sync_entry(&self, id: ConnId) -> crate::wire::sync::SyncConn {
        use crate::wire::sync::{flags, template_state, SyncConn};
        let c = &self.ents[id.0 as usize];
        let template = c.flags & cflags::TEMPLATE != 0;
        let mut fl = match c.method {
            ForwardMethod::Masq => flags::MASQ,
            ForwardMethod::Route => flags::DROUTE,
            ForwardMethod::Tunnel(_) => flags::TUNNEL,
            // Never sent (see `sync_due`); the nearest kernel method.
            ForwardMethod::FullNat => flags::MASQ,
        };
        if c.flags & cflags::NOOUTPUT != 0 {
            fl |= flags::NOOUTPUT;
        }
        if template || c.flags & cflags::INACTIVE != 0 {
            fl |= flags::INACTIVE;
        }
        let (state, ticks) = if template {
            fl |= flags::TEMPLATE;
            let s = if c.flags & cflags::ASSURED != 0 {
                template_state::ASSURED
            } else {
                template_state::NONE
            };
            (s, c.timeout)
        } else {
            let s = if c.proto == TCP {
                u16::from(c.state)
            } else {
                0
            };
            (s, self.state_timeout_ticks(c))
        };
        SyncConn {
            protocol: c.proto,
            flags: fl,
            state,
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            fwmark: 0,
            timeout: ticks / TICKS_PER_SEC,
            caddr: c.caddr.to_ip(),
            vaddr: c.vaddr.to_ip(),
            daddr: c.daddr.to_ip(),
            seq: None,
        }
    }

    /// Whether entry `id` was installed from a sync message.
    pub fn is_synced(&self, id: ConnId) -> bool {
        self.ents
            .get(id.0 as usize)
            .is_some_and(|c| c.flags & cflags::SYNCED != 0)
    }

    /// Backup side: creates or updates the entry a sync message describes
    /// (the kernel's `ip_vs_proc_conn`). The caller checked the protocol
    /// and state and found `b`. An existing connection with another real
    /// server is replaced; an existing one is updated (state, INACTIVE and
    /// the counters it moves). The entry is flagged synced and expires
    /// `s.timeout` seconds from `now` (0, from v0: the state's timeout, or
    /// 180 s for a template).
    pub fn install_synced(
        &mut self,
        s: &crate::wire::sync::SyncConn,
        b: SyncBind,
        now: u64,
    ) -> Result<ConnId, CreateError> {
        use crate::wire::sync::{flags, template_state};
        let template = s.flags & flags::TEMPLATE != 0;
        let inactive = template || s.flags & flags::INACTIVE != 0;
        let (caddr, vaddr, daddr) = (
            ConnAddr::from(s.caddr),
            ConnAddr::from(s.vaddr),
            ConnAddr::from(s.daddr),
        );
        let key = ConnKey::new(s.protocol, caddr, s.cport, vaddr, s.vport);
        let state = if template {
            proto_tcp::state::NONE
        } else {
            s.state as u8
        };
        let existing = if template {
            self.lookup_template(&key)
        } else {
            self.lookup_in(&key).map(|id| id.0)
        };
        let now_t = tick_of_ms(now);
        if let Some(i) = existing {
            let c = &self.ents[i as usize];
            if !template && (c.daddr != daddr || c.dport != s.dport) {
                self.free(i);
            } else {
                let c = &mut self.ents[i as usize];
                if !template && (c.flags & cflags::INACTIVE != 0) != inactive {
                    if let Some(d) = &c.dest {
                        if inactive {
                            d.activeconns.fetch_sub(1, Ordering::Relaxed);
                            d.inactconns.fetch_add(1, Ordering::Relaxed);
                        } else {
                            d.activeconns.fetch_add(1, Ordering::Relaxed);
                            d.inactconns.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    c.flags ^= cflags::INACTIVE;
                }
                c.state = state;
                c.sync_state = state;
                c.flags |= cflags::SYNCED;
                if template && s.state == template_state::ASSURED {
                    c.flags |= cflags::ASSURED;
                }
                let ticks = self.synced_ticks(i, s.timeout, template);
                if template {
                    self.ents[i as usize].timeout = ticks;
                }
                self.arm(i, ticks, now_t);
                return Ok(ConnId(i));
            }
        }
        let i = self.alloc()?;
        {
            let c = &mut self.ents[i as usize];
            c.caddr = caddr;
            c.cport = s.cport;
            c.vaddr = vaddr;
            c.vport = s.vport;
            c.daddr = daddr;
            c.dport = s.dport;
            c.proto = s.protocol;
            c.state = state;
            c.flags = cflags::LIVE | cflags::SYNCED;
            if template {
                c.flags |= cflags::TEMPLATE;
                if s.state == template_state::ASSURED {
                    c.flags |= cflags::ASSURED;
                }
            } else if inactive {
                c.flags |= cflags::INACTIVE;
            }
            if s.flags & flags::NOOUTPUT != 0 && !matches!(b.method, ForwardMethod::Masq) {
                c.flags |= cflags::NOOUTPUT;
            }
            c.control = NIL;
            c.n_control = 0;
            c.timeout = 0;
            c.next_in = NIL;
            c.next_out = NIL;
            c.prev_t = UNLINKED;
            c.next_t = UNLINKED;
            c.method = b.method;
            c.dest = Some(Arc::clone(b.dest));
            c.svc = b.svc.map(Arc::clone);
            c.in_pkts = 0;
            c.sync_state = state;
        }
        bind(b.dest, template);
        if !template && !inactive {
            b.dest.inactconns.fetch_sub(1, Ordering::Relaxed);
            b.dest.activeconns.fetch_add(1, Ordering::Relaxed);
        }
        self.hash_in(i);
        if !template {
            self.hash_out(i);
        }
        let ticks = self.synced_ticks(i, s.timeout, template);
        if template {
            self.ents[i as usize].timeout = ticks;
        }
        self.arm(i, ticks, now_t);
        Ok(ConnId(i))
    }

    /// The timeout of a synced entry in ticks: the message's, else the
    /// state's (templates: 180 s).
    fn synced_ticks(&self, i: u32, secs: u32, template: bool) -> u32 {
        if secs > 0 {
            secs_to_ticks(secs)
        } else if template {
            secs_to_ticks(SYNC_TEMPLATE_SECS)
        } else {
            self.state_timeout_ticks(&self.ents[i as usize])
        }
    }
}
