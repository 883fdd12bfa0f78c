//! The sets of a director and the operations on them, with the kernel's
//! semantics and ipset's messages.
//!
//! Each command changes the store at once, as the kernel does: ipset has no
//! transactions (a restore that fails on line N keeps lines 1..N-1). The
//! workers see the changes when the control plane publishes the next
//! snapshot ([`SetStore::table`]): sets not touched since the last snapshot
//! are shared with it (`Arc`), a touched set is copied once per snapshot.

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap as FastMap;

use super::set::{ElemCounters, Full, Listed};
use super::{Body, Elem, ElemVal, Header, IpSet, ListMember, SetId, SetKind, SetTable, NO_EXPIRY};
use uvs_model::sets::{check_elem, check_opts, AddOpts, Entry, SetError, SetOp, MAX_SETS};

/// The director's sets.
#[derive(Debug, Clone, Default)]
pub struct SetStore {
    slots: Vec<Option<Arc<IpSet>>>,
    names: FastMap<String, SetId>,
    /// References per slot: list:set memberships and rules.
    refs: Vec<u32>,
}

impl SetStore {
    pub fn new() -> SetStore {
        SetStore::default()
    }

    /// The sets as the workers see them. Costs one `Arc` per set: the
    /// sets themselves are shared until changed.
    pub fn table(&self) -> Arc<SetTable> {
        Arc::new(SetTable {
            slots: self.slots.clone(),
            names: self.names.clone(),
        })
    }

    /// The slot of `name`.
    pub fn id(&self, name: &str) -> Option<SetId> {
        self.names.get(name).copied()
    }

    pub fn get(&self, name: &str) -> Option<&IpSet> {
        self.id(name).and_then(|id| self.slot(id))
    }

    fn slot(&self, id: SetId) -> Option<&IpSet> {
        self.slots.get(usize::from(id)).and_then(|s| s.as_deref())
    }

    /// Name of the set in slot `id`.
    pub fn name_of(&self, id: SetId) -> Option<&str> {
        self.slot(id).map(|s| s.name.as_str())
    }

    /// How many references slot `id` has (list:set members and rules).
    pub fn references(&self, id: SetId) -> u32 {
        self.refs.get(usize::from(id)).copied().unwrap_or(0)
    }

    /// Takes a reference on `name` for a rule: it cannot be destroyed
    /// until [`SetStore::release`].
    pub fn hold(&mut self, name: &str) -> Result<SetId, SetError> {
        let id = self.id(name).ok_or(SetError::NoSet)?;
        self.refs[usize::from(id)] += 1;
        Ok(id)
    }

    /// Drops a reference taken by [`SetStore::hold`].
    pub fn release(&mut self, id: SetId) {
        if let Some(r) = self.refs.get_mut(usize::from(id)) {
            *r = r.saturating_sub(1);
        }
    }

    /// Sets in slot order, with their slot.
    pub fn iter(&self) -> impl Iterator<Item = (SetId, &IpSet)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_deref().map(|s| (i as SetId, s)))
    }

    /// Live elements of a set, list:set members named.
    pub fn elements(&self, set: &IpSet, now: u32) -> Vec<Listed> {
        if let Body::List(l) = &set.body {
            return l
                .members
                .iter()
                .filter(|m| !m.val.expired(now))
                .map(|m| Listed {
                    elem: Elem::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
                    member: self.name_of(m.id).map(str::to_string),
                    val: m.val.clone(),
                    comment: m.comment.clone(),
                })
                .collect();
        }
        set.elements(now)
    }

    fn touch(&mut self, id: SetId) -> &mut IpSet {
        let slot = self.slots[usize::from(id)]
            .as_mut()
            .expect("touch of an empty slot");
        Arc::make_mut(slot)
    }

    /// Tests an entry (`ipset test`): true if in the set.
    pub fn test(
        &self,
        name: &str,
        entry: &Entry,
        nomatch: bool,
        now: u32,
    ) -> Result<bool, SetError> {
        let set = self.get(name).ok_or(SetError::NoSet)?;
        match entry {
            Entry::Elems(elems) => Ok(elems.iter().all(|e| set.test_elem(e, nomatch, now))),
            Entry::Member { name: member, at } => {
                let Body::List(l) = &set.body else {
                    return Ok(false);
                };
                let mid = self.id(member).ok_or(SetError::MemberMissing)?;
                let pos = l
                    .members
                    .iter()
                    .position(|m| m.id == mid && !m.val.expired(now));
                let Some(pos) = pos else {
                    return Ok(false);
                };
                match at {
                    None => Ok(true),
                    Some((before, other)) => {
                        let oid = self.id(other).ok_or(SetError::NameRef)?;
                        let next = if *before {
                            l.members.get(pos + 1)
                        } else {
                            pos.checked_sub(1).and_then(|p| l.members.get(p))
                        };
                        Ok(next.is_some_and(|m| m.id == oid))
                    }
                }
            }
        }
    }

    /// Executes one change. `exist` is `-exist`.
    pub fn apply(&mut self, op: &SetOp, exist: bool, now: u32) -> Result<(), SetError> {
        match op {
            SetOp::Create { name, header } => self.create(name, header, exist),
            SetOp::Add { name, entry, opts } => self.add(name, entry, opts, exist, now),
            SetOp::Del { name, entry } => self.del(name, entry, exist, now),
            SetOp::Destroy(name) => self.destroy(name.as_deref()),
            SetOp::Flush(name) => self.flush(name.as_deref()),
            SetOp::Rename(from, to) => self.rename(from, to),
            SetOp::Swap(a, b) => self.swap(a, b),
        }
    }

    fn create(&mut self, name: &str, header: &Header, exist: bool) -> Result<(), SetError> {
        if let Some(old) = self.get(name) {
            let same = Header {
                initval: old.header.initval,
                ..header.clone()
            } == old.header;
            return if exist && same {
                Ok(())
            } else {
                Err(SetError::Exists)
            };
        }
        let free = self.slots.iter().position(Option::is_none);
        let id = match free {
            Some(i) => i,
            None if self.slots.len() < MAX_SETS => {
                self.slots.push(None);
                self.refs.push(0);
                self.slots.len() - 1
            }
            None => return Err(SetError::MaxSets),
        };
        self.slots[id] = Some(Arc::new(IpSet::new(name.to_string(), header.clone())));
        self.refs[id] = 0;
        self.names.insert(name.to_string(), id as SetId);
        Ok(())
    }

    fn add(
        &mut self,
        name: &str,
        entry: &Entry,
        opts: &AddOpts,
        exist: bool,
        now: u32,
    ) -> Result<(), SetError> {
        let id = self.id(name).ok_or(SetError::NoSet)?;
        let header = self
            .slot(id)
            .map(|s| s.header.clone())
            .ok_or(SetError::NoSet)?;
        let val = element_value(&header, opts, now)?;
        let comment = opts.comment.as_deref().map(Arc::<str>::from);
        match entry {
            Entry::Elems(elems) => {
                for e in elems {
                    check_elem(&header, e)?;
                }
                let set = self.touch(id);
                for e in elems {
                    let v = ElemVal {
                        counters: val.counters.as_ref().map(|c| {
                            Arc::new(ElemCounters {
                                packets: c
                                    .packets
                                    .load(std::sync::atomic::Ordering::Relaxed)
                                    .into(),
                                bytes: c.bytes.load(std::sync::atomic::Ordering::Relaxed).into(),
                            })
                        }),
                        ..val.clone()
                    };
                    match set.insert_elem(e, v, comment.clone(), exist, now) {
                        Ok(true) => {}
                        Ok(false) => return Err(SetError::ElemExists),
                        Err(Full) => return Err(SetError::HashFull),
                    }
                }
                Ok(())
            }
            Entry::Member { name: member, at } => {
                let mid = self.id(member).ok_or(SetError::MemberMissing)?;
                if self
                    .slot(mid)
                    .is_some_and(|s| s.header.kind == SetKind::ListSet)
                {
                    return Err(SetError::Loop);
                }
                let at = match at {
                    Some((before, other)) => {
                        Some((*before, self.id(other).ok_or(SetError::NameRef)?))
                    }
                    None => None,
                };
                let size = header.size as usize;
                let set = self.touch(id);
                let Body::List(l) = &mut set.body else {
                    return Err(SetError::Other("not a list:set".into()));
                };
                l.members.retain(|m| m.id == mid || !m.val.expired(now));
                if let Some(pos) = l.members.iter().position(|m| m.id == mid) {
                    if !exist {
                        return Err(SetError::ElemExists);
                    }
                    l.members[pos].val = val;
                    l.members[pos].comment = comment;
                    return Ok(());
                }
                let pos = match at {
                    None => l.members.len(),
                    Some((before, oid)) => {
                        let p = l
                            .members
                            .iter()
                            .position(|m| m.id == oid)
                            .ok_or(SetError::RefNotMember)?;
                        if before {
                            p
                        } else {
                            p + 1
                        }
                    }
                };
                if l.members.len() >= size.max(1) {
                    return Err(SetError::ListFull);
                }
                l.members.insert(
                    pos,
                    ListMember {
                        id: mid,
                        val,
                        comment,
                    },
                );
                self.refs[usize::from(mid)] += 1;
                Ok(())
            }
        }
    }

    fn del(&mut self, name: &str, entry: &Entry, exist: bool, now: u32) -> Result<(), SetError> {
        let id = self.id(name).ok_or(SetError::NoSet)?;
        let header = self
            .slot(id)
            .map(|s| s.header.clone())
            .ok_or(SetError::NoSet)?;
        match entry {
            Entry::Elems(elems) => {
                for e in elems {
                    check_elem(&header, e)?;
                }
                let set = self.touch(id);
                for e in elems {
                    if !set.remove_elem(e, now) && !exist {
                        return Err(SetError::ElemMissing);
                    }
                }
                Ok(())
            }
            Entry::Member { name: member, at } => {
                let mid = self.id(member).ok_or(SetError::MemberMissing)?;
                let oid = match at {
                    Some((b, other)) => Some((*b, self.id(other).ok_or(SetError::NameRef)?)),
                    None => None,
                };
                let set = self.touch(id);
                let Body::List(l) = &mut set.body else {
                    return Err(SetError::Other("not a list:set".into()));
                };
                let pos = l.members.iter().position(|m| m.id == mid);
                let ok = match (pos, oid) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(p), Some((before, oid))) => {
                        let next = if before {
                            l.members.get(p + 1)
                        } else {
                            p.checked_sub(1).and_then(|q| l.members.get(q))
                        };
                        match next {
                            Some(m) if m.id == oid => {}
                            _ => return Err(SetError::RefNotMember),
                        }
                        true
                    }
                };
                if !ok {
                    return if exist {
                        Ok(())
                    } else {
                        Err(SetError::ElemMissing)
                    };
                }
                if let Some(p) = pos {
                    l.members.remove(p);
                }
                self.release(mid);
                Ok(())
            }
        }
    }

    fn destroy(&mut self, name: Option<&str>) -> Result<(), SetError> {
        let ids: Vec<SetId> = match name {
            Some(n) => vec![self.id(n).ok_or(SetError::NoSet)?],
            None => self.iter().map(|(id, _)| id).collect(),
        };
        // A set held by a rule, or by a list that is not destroyed with it,
        // stops the whole command (the kernel checks before destroying).
        for &id in &ids {
            let held_by_lists: u32 = if name.is_none() {
                self.list_refs_to(id)
            } else {
                0
            };
            if self.references(id) > held_by_lists {
                return Err(SetError::Busy);
            }
        }
        for id in ids {
            if let Some(set) = self.slots[usize::from(id)].take() {
                if let Body::List(l) = &set.body {
                    for m in &l.members {
                        if let Some(r) = self.refs.get_mut(usize::from(m.id)) {
                            *r = r.saturating_sub(1);
                        }
                    }
                }
                self.names.remove(&set.name);
            }
        }
        Ok(())
    }

    /// References on `id` held by list:set members.
    fn list_refs_to(&self, id: SetId) -> u32 {
        self.iter()
            .filter_map(|(_, s)| match &s.body {
                Body::List(l) => Some(l.members.iter().filter(|m| m.id == id).count() as u32),
                _ => None,
            })
            .sum()
    }

    fn flush(&mut self, name: Option<&str>) -> Result<(), SetError> {
        let ids: Vec<SetId> = match name {
            Some(n) => vec![self.id(n).ok_or(SetError::NoSet)?],
            None => self.iter().map(|(id, _)| id).collect(),
        };
        for id in ids {
            let released: Vec<SetId> = match &self.slot(id).map(|s| &s.body) {
                Some(Body::List(l)) => l.members.iter().map(|m| m.id).collect(),
                _ => Vec::new(),
            };
            for m in released {
                self.release(m);
            }
            self.touch(id).flush();
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), SetError> {
        let id = self.id(from).ok_or(SetError::NoSet)?;
        if self.names.contains_key(to) {
            return Err(SetError::RenameExists);
        }
        if self.references(id) > 0 {
            return Err(SetError::RenameReferenced);
        }
        self.names.remove(from);
        self.names.insert(to.to_string(), id);
        self.touch(id).name = to.to_string();
        Ok(())
    }

    fn swap(&mut self, a: &str, b: &str) -> Result<(), SetError> {
        let ia = self.id(a).ok_or(SetError::NoSet)?;
        let ib = self.id(b).ok_or(SetError::SwapNoSecond)?;
        let (ta, tb) = (
            self.slot(ia).map(|s| (s.header.kind, s.header.family)),
            self.slot(ib).map(|s| (s.header.kind, s.header.family)),
        );
        if ta != tb {
            return Err(SetError::SwapType);
        }
        if ia == ib {
            return Ok(());
        }
        self.slots.swap(usize::from(ia), usize::from(ib));
        // Names stay with their slots (rules reference slots).
        self.touch(ia).name = a.to_string();
        self.touch(ib).name = b.to_string();
        Ok(())
    }
}

/// The element value an `add` with `opts` stores.
fn element_value(h: &Header, opts: &AddOpts, now: u32) -> Result<ElemVal, SetError> {
    check_opts(h, opts)?;
    let timeout = opts.timeout.or(h.timeout).unwrap_or(0);
    let expires = if timeout == 0 {
        NO_EXPIRY
    } else {
        now.saturating_add(timeout)
    };
    let counters = h.counters.then(|| {
        Arc::new(ElemCounters {
            packets: opts.packets.unwrap_or(0).into(),
            bytes: opts.bytes.unwrap_or(0).into(),
        })
    });
    Ok(ElemVal {
        expires,
        nomatch: opts.nomatch,
        counters,
    })
}
