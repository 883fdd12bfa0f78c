//! One set: its header (type and create options) and its elements.
//!
//! Storage: a hash set keeps every element in one hash map whose key holds
//! the (masked) addresses, the protocol and port, and the prefix lengths.
//! A `hash:net*` set also keeps the list of prefix-length pairs present,
//! most specific first, with a count each, so a lookup probes only lengths
//! that exist. IPv4 sets key on `u32` and IPv6 sets on `u128`, so a
//! million-entry IPv4 blocklist costs 32 bytes per slot, not 64.
//! Comments are kept beside the map (the packet path never reads them).

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap as FastMap;

use super::{Dirs, Match, Packet};
use uvs_model::sets::{Elem, Family, Header, SetKind, NO_EXPIRY};

/// Packet and byte counters of one element, shared by the control plane's
/// copy and every worker's snapshot.
#[derive(Debug, Default)]
pub struct ElemCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

/// What the packet path needs of an element besides its key.
#[derive(Debug, Clone, Default)]
pub struct ElemVal {
    /// Second of [`super::clock`] after which the element is gone, or
    /// [`NO_EXPIRY`].
    pub expires: u32,
    pub nomatch: bool,
    pub counters: Option<Arc<ElemCounters>>,
}

impl ElemVal {
    pub fn expired(&self, now: u32) -> bool {
        self.expires != NO_EXPIRY && self.expires <= now
    }

    pub(crate) fn count(&self, bytes: u32) {
        if let Some(c) = &self.counters {
            c.packets.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(u64::from(bytes), Ordering::Relaxed);
        }
    }

    /// (packets, bytes).
    pub fn counts(&self) -> (u64, u64) {
        match &self.counters {
            Some(c) => (
                c.packets.load(Ordering::Relaxed),
                c.bytes.load(Ordering::Relaxed),
            ),
            None => (0, 0),
        }
    }
}

/// An address as a set stores it: `u32` for IPv4, `u128` for IPv6.
pub trait Addr: Copy + Eq + Hash + Ord + fmt::Debug + Default + Send + Sync + 'static {
    const BITS: u8;
    fn mask(self, cidr: u8) -> Self;
    fn from_ip(ip: IpAddr) -> Option<Self>;
    fn to_ip(self) -> IpAddr;
}

impl Addr for u32 {
    const BITS: u8 = 32;
    fn mask(self, cidr: u8) -> u32 {
        if cidr == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(cidr.min(32))))
        }
    }
    fn from_ip(ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
}

impl Addr for u128 {
    const BITS: u8 = 128;
    fn mask(self, cidr: u8) -> u128 {
        if cidr == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(cidr.min(128))))
        }
    }
    fn from_ip(ip: IpAddr) -> Option<u128> {
        match ip {
            IpAddr::V6(a) => Some(u128::from(a)),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
}

/// The hash key of an element: addresses already masked to their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key<A> {
    pub a: A,
    pub ca: u8,
    pub proto: u8,
    pub port: u16,
    pub b: A,
    pub cb: u8,
}

/// The storage form of an element (the model's [`Elem`] is family-neutral).
trait Keyed {
    fn key<A: Addr>(&self) -> Option<Key<A>>;
    fn from_key<A: Addr>(k: &Key<A>) -> Elem;
}

impl Keyed for Elem {
    fn key<A: Addr>(&self) -> Option<Key<A>> {
        let a = A::from_ip(self.a)?;
        let b = if self.cb == 0 {
            A::default()
        } else {
            A::from_ip(self.b)?
        };
        Some(Key {
            a: a.mask(self.ca),
            ca: self.ca,
            proto: self.proto,
            port: self.port,
            b: b.mask(self.cb),
            cb: self.cb,
        })
    }

    fn from_key<A: Addr>(k: &Key<A>) -> Elem {
        Elem {
            a: k.a.to_ip(),
            ca: k.ca,
            proto: k.proto,
            port: k.port,
            b: if k.cb == 0 {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                k.b.to_ip()
            },
            cb: k.cb,
        }
    }
}

/// A prefix-length pair present in a `hash:net*` set and how many
/// elements use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    ca: u8,
    cb: u8,
    count: u32,
}

/// Elements of a hash set of one family.
#[derive(Debug, Clone, Default)]
pub struct HashBody<A: Addr> {
    map: FastMap<Key<A>, ElemVal>,
    /// Most specific first.
    prefixes: Vec<Prefix>,
    comments: FastMap<Key<A>, Arc<str>>,
}

impl<A: Addr> HashBody<A> {
    fn with_capacity(n: usize) -> HashBody<A> {
        HashBody {
            map: FastMap::with_capacity(n),
            ..HashBody::default()
        }
    }

    fn prefix_add(&mut self, ca: u8, cb: u8) {
        match self.prefixes.iter_mut().find(|p| p.ca == ca && p.cb == cb) {
            Some(p) => p.count += 1,
            None => {
                self.prefixes.push(Prefix { ca, cb, count: 1 });
                self.prefixes
                    .sort_by_key(|p| std::cmp::Reverse((p.ca, p.cb)));
            }
        }
    }

    fn prefix_del(&mut self, ca: u8, cb: u8) {
        if let Some(i) = self.prefixes.iter().position(|p| p.ca == ca && p.cb == cb) {
            self.prefixes[i].count -= 1;
            if self.prefixes[i].count == 0 {
                self.prefixes.remove(i);
            }
        }
    }

    /// Longest-prefix lookup of a packet key (host addresses, `ca`/`cb`
    /// ignored): the first hit from most to least specific decides. A
    /// packet (`bytes` of it) counts on the element it hits; `ipset test`
    /// (`None`) counts nothing, as the kernel's userspace test does not
    /// (`ip_set_update_counter` skips an extension of `ULLONG_MAX` packets).
    fn lookup(
        &self,
        host: Key<A>,
        kind: SetKind,
        host_cidr: u8,
        now: u32,
        bytes: Option<u32>,
    ) -> Match {
        if !kind.has_nomatch() {
            let k = Key {
                a: host.a.mask(host_cidr),
                ca: host_cidr,
                b: host.b,
                cb: if kind.has_b() { A::BITS } else { 0 },
                ..host
            };
            return self.hit(&k, now, bytes);
        }
        for p in &self.prefixes {
            let k = Key {
                a: host.a.mask(p.ca),
                ca: p.ca,
                b: host.b.mask(p.cb),
                cb: p.cb,
                ..host
            };
            let m = self.hit(&k, now, bytes);
            if m != Match::Absent {
                return m;
            }
        }
        Match::Absent
    }

    fn hit(&self, k: &Key<A>, now: u32, bytes: Option<u32>) -> Match {
        match self.map.get(k) {
            Some(v) if !v.expired(now) => {
                if let Some(bytes) = bytes {
                    v.count(bytes);
                }
                if v.nomatch {
                    Match::NoMatch
                } else {
                    Match::Hit
                }
            }
            _ => Match::Absent,
        }
    }

    fn live(&self, k: &Key<A>, now: u32) -> Option<&ElemVal> {
        self.map.get(k).filter(|v| !v.expired(now))
    }

    fn insert(&mut self, k: Key<A>, v: ElemVal, comment: Option<Arc<str>>) {
        if self.map.insert(k, v).is_none() {
            self.prefix_add(k.ca, k.cb);
        }
        match comment {
            Some(c) => {
                self.comments.insert(k, c);
            }
            None => {
                self.comments.remove(&k);
            }
        }
    }

    fn remove(&mut self, k: &Key<A>) -> bool {
        if self.map.remove(k).is_some() {
            self.comments.remove(k);
            self.prefix_del(k.ca, k.cb);
            true
        } else {
            false
        }
    }
}

/// Elements of a `bitmap:port` set: one slot per port of the range.
#[derive(Debug, Clone, Default)]
pub struct PortBody {
    slots: Vec<Option<ElemVal>>,
    comments: FastMap<u16, Arc<str>>,
}

/// A member of a `list:set`.
#[derive(Debug, Clone)]
pub struct ListMember {
    pub id: super::SetId,
    pub val: ElemVal,
    pub comment: Option<Arc<str>>,
}

/// Members of a `list:set`, in order.
#[derive(Debug, Clone, Default)]
pub struct ListBody {
    pub members: Vec<ListMember>,
}

/// The elements of a set, by storage kind.
#[derive(Debug, Clone)]
pub enum Body {
    V4(HashBody<u32>),
    V6(HashBody<u128>),
    Ports(PortBody),
    List(ListBody),
}

/// A set: header and elements.
#[derive(Debug, Clone)]
pub struct IpSet {
    pub name: String,
    pub header: Header,
    pub body: Body,
}

/// One listed element with its extensions.
#[derive(Debug, Clone)]
pub struct Listed {
    pub elem: Elem,
    /// `list:set`: the member's name.
    pub member: Option<String>,
    pub val: ElemVal,
    pub comment: Option<Arc<str>>,
}

impl IpSet {
    pub fn new(name: String, header: Header) -> IpSet {
        let body = match header.kind {
            SetKind::BitmapPort => Body::Ports(PortBody {
                slots: vec![None; usize::from(header.range.1 - header.range.0) + 1],
                comments: FastMap::new(),
            }),
            SetKind::ListSet => Body::List(ListBody::default()),
            // `hashsize` is the initial table size, as in the kernel: a
            // restore that states it fills the table without rehashing.
            _ => {
                let cap = header.hashsize.min(header.maxelem) as usize;
                match header.family {
                    Family::Inet => Body::V4(HashBody::with_capacity(cap)),
                    Family::Inet6 => Body::V6(HashBody::with_capacity(cap)),
                }
            }
        };
        IpSet { name, header, body }
    }

    /// Elements stored, expired ones included until purged.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::V4(h) => h.map.len(),
            Body::V6(h) => h.map.len(),
            Body::Ports(p) => p.slots.iter().filter(|s| s.is_some()).count(),
            Body::List(l) => l.members.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate memory use, for `Size in memory:`.
    pub fn memsize(&self) -> usize {
        let base = 200;
        match &self.body {
            Body::V4(h) => base + h.map.capacity() * 33 + h.comments.len() * 48,
            Body::V6(h) => base + h.map.capacity() * 65 + h.comments.len() * 72,
            Body::Ports(p) => base + p.slots.len() * 24,
            Body::List(l) => base + l.members.len() * 32,
        }
    }

    /// Packet lookup of a hash or bitmap set (list:set is the table's).
    pub(crate) fn lookup_packet(&self, dirs: Dirs, pkt: &Packet, now: u32) -> Match {
        let kind = self.header.kind;
        match &self.body {
            Body::Ports(p) => {
                if pkt.proto != 6 && pkt.proto != 17 {
                    return Match::Absent;
                }
                let port = pkt.port(dirs.is_dst(0));
                let (first, last) = self.header.range;
                if port < first || port > last {
                    return Match::Absent;
                }
                match &p.slots[usize::from(port - first)] {
                    Some(v) if !v.expired(now) => {
                        v.count(pkt.bytes);
                        Match::Hit
                    }
                    _ => Match::Absent,
                }
            }
            Body::V4(h) => match packet_key::<u32>(kind, dirs, pkt) {
                Some(k) => h.lookup(k, kind, self.header.host_cidr(), now, Some(pkt.bytes)),
                None => Match::Absent,
            },
            Body::V6(h) => match packet_key::<u128>(kind, dirs, pkt) {
                Some(k) => h.lookup(k, kind, self.header.host_cidr(), now, Some(pkt.bytes)),
                None => Match::Absent,
            },
            Body::List(_) => Match::Absent,
        }
    }

    /// `ipset test` of one element: an element given with a prefix shorter
    /// than a host is tested as stored; a host is tested like a packet (the
    /// most specific match decides, so a `nomatch` carve-out answers "not
    /// in set" unless `nomatch` is asked for).
    pub fn test_elem(&self, e: &Elem, nomatch: bool, now: u32) -> bool {
        let kind = self.header.kind;
        let bits = self.header.family.bits();
        let host = e.ca == bits && (!kind.net_b() || e.cb == bits);
        match &self.body {
            Body::V4(h) => test_hash(h, kind, self.header.host_cidr(), e, host, nomatch, now),
            Body::V6(h) => test_hash(h, kind, self.header.host_cidr(), e, host, nomatch, now),
            Body::Ports(p) => {
                let slot = e
                    .port
                    .checked_sub(self.header.range.0)
                    .and_then(|i| p.slots.get(usize::from(i)));
                matches!(slot, Some(Some(v)) if !v.expired(now))
            }
            Body::List(_) => false,
        }
    }

    /// Adds one element. `Ok(false)` if it existed and `exist` is false.
    pub fn insert_elem(
        &mut self,
        e: &Elem,
        val: ElemVal,
        comment: Option<Arc<str>>,
        exist: bool,
        now: u32,
    ) -> Result<bool, Full> {
        let maxelem = self.header.maxelem as usize;
        match &mut self.body {
            Body::V4(h) => insert_hash(h, e, val, comment, exist, now, maxelem),
            Body::V6(h) => insert_hash(h, e, val, comment, exist, now, maxelem),
            Body::Ports(p) => {
                let i = usize::from(e.port - self.header.range.0);
                if matches!(&p.slots[i], Some(v) if !v.expired(now)) && !exist {
                    return Ok(false);
                }
                p.slots[i] = Some(val);
                match comment {
                    Some(c) => p.comments.insert(e.port, c),
                    None => p.comments.remove(&e.port),
                };
                Ok(true)
            }
            Body::List(_) => Ok(false),
        }
    }

    /// Deletes one element; false if it was not there.
    pub fn remove_elem(&mut self, e: &Elem, now: u32) -> bool {
        match &mut self.body {
            Body::V4(h) => remove_hash(h, e, now),
            Body::V6(h) => remove_hash(h, e, now),
            Body::Ports(p) => {
                let i = usize::from(e.port - self.header.range.0);
                let live = matches!(&p.slots[i], Some(v) if !v.expired(now));
                p.slots[i] = None;
                p.comments.remove(&e.port);
                live
            }
            Body::List(_) => false,
        }
    }

    /// Removes every element.
    pub fn flush(&mut self) {
        let fresh = IpSet::new(String::new(), self.header.clone());
        self.body = fresh.body;
    }

    /// Live elements, in storage order (list:set members with `member`
    /// unset: the store names them).
    pub fn elements(&self, now: u32) -> Vec<Listed> {
        let mut out = Vec::new();
        match &self.body {
            Body::V4(h) => list_hash(h, now, &mut out),
            Body::V6(h) => list_hash(h, now, &mut out),
            Body::Ports(p) => {
                for (i, s) in p.slots.iter().enumerate() {
                    if let Some(v) = s.as_ref().filter(|v| !v.expired(now)) {
                        let port = self.header.range.0 + i as u16;
                        let mut elem = Elem::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                        elem.port = port;
                        out.push(Listed {
                            elem,
                            member: None,
                            val: v.clone(),
                            comment: p.comments.get(&port).cloned(),
                        });
                    }
                }
            }
            Body::List(_) => {}
        }
        out
    }
}

/// The set is full (`maxelem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

fn packet_key<A: Addr>(kind: SetKind, dirs: Dirs, pkt: &Packet) -> Option<Key<A>> {
    let a = A::from_ip(pkt.addr(dirs.is_dst(0)))?;
    let mut k = Key {
        a,
        ca: A::BITS,
        ..Key::default()
    };
    if kind.has_port() {
        k.proto = pkt.proto;
        k.port = pkt.port(dirs.is_dst(1));
    }
    if kind.has_b() {
        k.b = A::from_ip(pkt.addr(dirs.is_dst(2)))?;
        k.cb = A::BITS;
    }
    Some(k)
}

fn test_hash<A: Addr>(
    h: &HashBody<A>,
    kind: SetKind,
    host_cidr: u8,
    e: &Elem,
    host: bool,
    nomatch: bool,
    now: u32,
) -> bool {
    let Some(k) = e.key::<A>() else {
        return false;
    };
    if host && kind.has_nomatch() {
        return match h.lookup(k, kind, host_cidr, now, None) {
            Match::Hit => !nomatch,
            Match::NoMatch => nomatch,
            Match::Absent => false,
        };
    }
    match h.live(&k, now) {
        Some(v) => v.nomatch == nomatch,
        None => false,
    }
}

fn insert_hash<A: Addr>(
    h: &mut HashBody<A>,
    e: &Elem,
    val: ElemVal,
    comment: Option<Arc<str>>,
    exist: bool,
    now: u32,
    maxelem: usize,
) -> Result<bool, Full> {
    let Some(k) = e.key::<A>() else {
        return Ok(false);
    };
    match h.map.get(&k) {
        Some(v) if !v.expired(now) && !exist => return Ok(false),
        Some(_) => {}
        None if h.map.len() >= maxelem => return Err(Full),
        None => {}
    }
    h.insert(k, val, comment);
    Ok(true)
}

fn remove_hash<A: Addr>(h: &mut HashBody<A>, e: &Elem, now: u32) -> bool {
    let Some(k) = e.key::<A>() else {
        return false;
    };
    let live = h.live(&k, now).is_some();
    h.remove(&k);
    live
}

fn list_hash<A: Addr>(h: &HashBody<A>, now: u32, out: &mut Vec<Listed>) {
    out.reserve(h.map.len());
    for (k, v) in &h.map {
        if v.expired(now) {
            continue;
        }
        out.push(Listed {
            elem: Elem::from_key(k),
            member: None,
            val: v.clone(),
            comment: h.comments.get(k).cloned(),
        });
    }
}
