//! `ipset list` and `ipset save` output, byte for byte as ipset 7.17
//! prints it (reference b.3): header options in ipset's order, hosts
//! without `/32`, ports as `proto:port`, list:set sets after the others.

use std::fmt::Write;

use dataplane::sets::{IpSet, Listed, SetKind, SetStore};

use super::elem::write_elem;

/// The `Header:` (and `create` line) options of a set.
pub fn header_text(set: &IpSet) -> String {
    let h = &set.header;
    let mut s = String::new();
    match h.kind {
        SetKind::BitmapPort => {
            let _ = write!(s, "range {}-{}", h.range.0, h.range.1);
        }
        SetKind::ListSet => {
            let _ = write!(s, "size {}", h.size);
        }
        _ => {
            let _ = write!(
                s,
                "family {} hashsize {} maxelem {}",
                h.family.name(),
                h.hashsize,
                h.maxelem
            );
            if let Some(m) = h.netmask {
                let _ = write!(s, " netmask {m}");
            }
        }
    }
    if let Some(t) = h.timeout {
        let _ = write!(s, " timeout {t}");
    }
    if h.counters {
        s.push_str(" counters");
    }
    if h.comment {
        s.push_str(" comment");
    }
    if h.kind.is_hash() {
        let _ = write!(
            s,
            " bucketsize {} initval 0x{:08x}",
            h.bucketsize, h.initval
        );
    }
    s
}

/// Appends one member as printed after `add NAME ` or under `Members:`.
fn write_member(out: &mut String, set: &IpSet, m: &Listed, now: u32) {
    let h = &set.header;
    match &m.member {
        Some(name) => out.push_str(name),
        None => write_elem(out, &m.elem, h),
    }
    if h.timeout.is_some() {
        let left = if m.val.expires == 0 {
            0
        } else {
            m.val.expires.saturating_sub(now)
        };
        let _ = write!(out, " timeout {left}");
    }
    if m.val.nomatch {
        out.push_str(" nomatch");
    }
    if h.counters {
        let (p, b) = m.val.counts();
        let _ = write!(out, " packets {p} bytes {b}");
    }
    if let Some(c) = &m.comment {
        let _ = write!(out, " comment \"{c}\"");
    }
}

/// The members of `set`, sorted if asked (`-sorted`), else in storage
/// order as the kernel dumps them.
fn members(store: &SetStore, set: &IpSet, sorted: bool, now: u32) -> Vec<Listed> {
    let mut elems = store.elements(set, now);
    if sorted && set.header.kind != SetKind::ListSet {
        elems.sort_by_key(|a| a.elem);
    }
    elems
}

/// Sets to print: the named one, or all with list:set sets last (the
/// kernel dumps them in a second pass).
pub fn selection<'a>(store: &'a SetStore, name: Option<&str>) -> Vec<&'a IpSet> {
    match name {
        Some(n) => store.get(n).into_iter().collect(),
        None => {
            let mut v: Vec<&IpSet> = store
                .iter()
                .map(|(_, s)| s)
                .filter(|s| s.header.kind != SetKind::ListSet)
                .collect();
            v.extend(
                store
                    .iter()
                    .map(|(_, s)| s)
                    .filter(|s| s.header.kind == SetKind::ListSet),
            );
            v
        }
    }
}

/// `ipset save` text.
pub fn save(store: &SetStore, sets: &[&IpSet], sorted: bool, now: u32) -> String {
    let mut out = String::new();
    for set in sets {
        let _ = writeln!(
            out,
            "create {} {} {}",
            set.name,
            set.header.kind.name(),
            header_text(set)
        );
        for m in members(store, set, sorted, now) {
            out.push_str("add ");
            out.push_str(&set.name);
            out.push(' ');
            write_member(&mut out, set, &m, now);
            out.push('\n');
        }
    }
    out
}

/// What `ipset list` prints: everything, names only (`-name`) or headers
/// only (`-terse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Full,
    Names,
    Terse,
}

/// `ipset list` text.
pub fn plain(store: &SetStore, sets: &[&IpSet], detail: Detail, sorted: bool, now: u32) -> String {
    let mut out = String::new();
    for (i, set) in sets.iter().enumerate() {
        if detail == Detail::Names {
            let _ = writeln!(out, "{}", set.name);
            continue;
        }
        if i > 0 {
            out.push('\n');
        }
        let refs = store.id(&set.name).map_or(0, |id| store.references(id));
        let members = members(store, set, sorted, now);
        let _ = write!(
            out,
            "Name: {}\nType: {}\nRevision: {}\nHeader: {}\nSize in memory: {}\nReferences: {}\nNumber of entries: {}\n",
            set.name,
            set.header.kind.name(),
            set.header.kind.revision(),
            header_text(set),
            set.memsize(),
            refs,
            members.len()
        );
        if detail == Detail::Terse {
            continue;
        }
        out.push_str("Members:\n");
        for m in &members {
            write_member(&mut out, set, m, now);
            out.push('\n');
        }
    }
    out
}
