//! ipset's element syntax: parsing `add`/`del`/`test` entries for a set's
//! type (ranges and CIDRs expanded as the kernel expands them) and printing
//! elements the way `ipset list` and `ipset save` do.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::sets::{Elem, Family, Header, SetKind};

use super::Fail;

/// Protocol names ipset prints before a port (`tcp:80`, `vrrp:0`).
const PROTOCOLS: &[(u8, &str)] = &[
    (1, "icmp"),
    (2, "igmp"),
    (4, "ipencap"),
    (6, "tcp"),
    (17, "udp"),
    (33, "dccp"),
    (41, "ipv6"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (58, "ipv6-icmp"),
    (89, "ospf"),
    (103, "pim"),
    (112, "vrrp"),
    (132, "sctp"),
    (136, "udplite"),
];

/// ICMP names ipset knows (libipset icmp.c), as (name, type, code).
const ICMP: &[(&str, u8, u8)] = &[
    ("echo-reply", 0, 0),
    ("pong", 0, 0),
    ("network-unreachable", 3, 0),
    ("host-unreachable", 3, 1),
    ("protocol-unreachable", 3, 2),
    ("port-unreachable", 3, 3),
    ("fragmentation-needed", 3, 4),
    ("source-route-failed", 3, 5),
    ("network-unknown", 3, 6),
    ("host-unknown", 3, 7),
    ("network-prohibited", 3, 9),
    ("host-prohibited", 3, 10),
    ("TOS-network-unreachable", 3, 11),
    ("TOS-host-unreachable", 3, 12),
    ("communication-prohibited", 3, 13),
    ("host-precedence-violation", 3, 14),
    ("precedence-cutoff", 3, 15),
    ("source-quench", 4, 0),
    ("network-redirect", 5, 0),
    ("host-redirect", 5, 1),
    ("TOS-network-redirect", 5, 2),
    ("TOS-host-redirect", 5, 3),
    ("echo-request", 8, 0),
    ("ping", 8, 0),
    ("router-advertisement", 9, 0),
    ("router-solicitation", 10, 0),
    ("ttl-zero-during-transit", 11, 0),
    ("ttl-zero-during-reassembly", 11, 1),
    ("ip-header-bad", 12, 0),
    ("required-option-missing", 12, 1),
    ("timestamp-request", 13, 0),
    ("timestamp-reply", 14, 0),
    ("address-mask-request", 17, 0),
    ("address-mask-reply", 18, 0),
];

/// ICMPv6 names ipset knows (libipset icmpv6.c).
const ICMPV6: &[(&str, u8, u8)] = &[
    ("no-route", 1, 0),
    ("communication-prohibited", 1, 1),
    ("address-unreachable", 1, 3),
    ("port-unreachable", 1, 4),
    ("packet-too-big", 2, 0),
    ("ttl-zero-during-transit", 3, 0),
    ("ttl-zero-during-reassembly", 3, 1),
    ("bad-header", 4, 0),
    ("unknown-header-type", 4, 1),
    ("unknown-option", 4, 2),
    ("echo-request", 128, 0),
    ("ping", 128, 0),
    ("echo-reply", 129, 0),
    ("pong", 129, 0),
    ("router-solicitation", 133, 0),
    ("router-advertisement", 134, 0),
    ("neighbour-solicitation", 135, 0),
    ("neighbor-solicitation", 135, 0),
    ("neighbour-advertisement", 136, 0),
    ("neighbor-advertisement", 136, 0),
    ("redirect", 137, 0),
];

fn proto_number(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Some(n);
    }
    match name {
        "icmpv6" => return Some(58),
        "udplite" => return Some(136),
        _ => {}
    }
    PROTOCOLS.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
}

/// Writes a protocol's name, or its number when it has none.
fn write_proto_name(out: &mut String, p: u8) {
    let name = match p {
        58 => Some("icmpv6"),
        _ => PROTOCOLS.iter().find(|(n, _)| *n == p).map(|(_, s)| *s),
    };
    match name {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "{p}");
        }
    }
}

fn has_ports(p: u8) -> bool {
    matches!(p, 6 | 17 | 132 | 136)
}

fn syntax(msg: String) -> Fail {
    Fail::session(format!("Syntax error: {msg}"))
}

/// Parses an address of `family`.
pub fn parse_addr(s: &str, family: Family) -> Result<IpAddr, Fail> {
    match family {
        Family::Inet => s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
            syntax(format!(
                "cannot parse {s}: resolving to IPv4 address failed"
            ))
        }),
        Family::Inet6 => s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| {
            syntax(format!(
                "cannot parse {s}: resolving to IPv6 address failed"
            ))
        }),
    }
}

fn parse_cidr(s: &str, family: Family) -> Result<u8, Fail> {
    let max = family.bits();
    match s.parse::<u8>() {
        Ok(c) if c <= max => Ok(c),
        _ => Err(syntax(format!("'{s}' is out of range 0-{max}"))),
    }
}

/// An address part: `ip`, `ip/cidr` or `ip-ip`.
#[derive(Debug, Clone, Copy)]
enum AddrPart {
    Cidr(IpAddr, u8),
    Range(IpAddr, IpAddr),
}

fn parse_addr_part(s: &str, family: Family) -> Result<AddrPart, Fail> {
    if let Some((a, c)) = s.split_once('/') {
        return Ok(AddrPart::Cidr(
            parse_addr(a, family)?,
            parse_cidr(c, family)?,
        ));
    }
    // IPv6 addresses contain no '-', so a dash is a range for both.
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (parse_addr(a, family)?, parse_addr(b, family)?);
        return Ok(AddrPart::Range(a.min(b), a.max(b)));
    }
    Ok(AddrPart::Cidr(parse_addr(s, family)?, family.bits()))
}

/// A `[proto:]port[-port]` part: (proto, first, last).
fn parse_port_part(s: &str, family: Family, kind: SetKind) -> Result<(u8, u16, u16), Fail> {
    let (proto, word, port) = match s.split_once(':') {
        Some((p, rest)) => {
            let n = proto_number(p)
                .ok_or_else(|| syntax(format!("cannot parse '{p}' as a protocol")))?;
            (n, p, rest)
        }
        None => (6, "tcp", s),
    };
    if proto == 0 {
        return Err(syntax(format!("Unsupported protocol '{word}'")));
    }
    if proto == 1 || proto == 58 {
        let icmp6 = proto == 58;
        if (family == Family::Inet6) != icmp6 && kind != SetKind::BitmapPort {
            return Err(syntax(if icmp6 {
                "Protocol ICMPv6 can be used with family INET6 only".to_string()
            } else {
                "Protocol ICMP can be used with family INET only".to_string()
            }));
        }
        let v = parse_icmp(port, icmp6)?;
        return Ok((proto, v, v));
    }
    if !has_ports(proto) {
        if port != "0" {
            return Err(syntax(format!(
                "Protocol {word} can be used with pseudo port value 0 only."
            )));
        }
        return Ok((proto, 0, 0));
    }
    let num = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| syntax(format!("cannot parse '{p}' as a {word} port")))
    };
    let (a, b) = match port.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let p = num(port)?;
            (p, p)
        }
    };
    Ok((proto, a.min(b), a.max(b)))
}

fn parse_icmp(s: &str, v6: bool) -> Result<u16, Fail> {
    let table = if v6 { ICMPV6 } else { ICMP };
    if let Some((_, t, c)) = table.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(s)) {
        return Ok(u16::from(*t) << 8 | u16::from(*c));
    }
    let bad = || {
        Fail::session(format!(
            "Cannot parse {s} as an {} type/code.",
            if v6 { "ICMPv6" } else { "ICMP" }
        ))
    };
    let (t, c) = s.split_once('/').ok_or_else(bad)?;
    let t: u8 = t.parse().map_err(|_| bad())?;
    let c: u8 = c.parse().map_err(|_| bad())?;
    Ok(u16::from(t) << 8 | u16::from(c))
}

/// Writes an ICMP type and code by name, or as `TYPE/CODE`.
fn write_icmp(out: &mut String, v: u16, v6: bool) {
    let (t, c) = ((v >> 8) as u8, v as u8);
    let table = if v6 { ICMPV6 } else { ICMP };
    match table.iter().find(|(_, tt, cc)| *tt == t && *cc == c) {
        Some((n, _, _)) => out.push_str(n),
        None => {
            let _ = write!(out, "{t}/{c}");
        }
    }
}

/// Splits `a-b` (IPv4) into the fewest CIDR blocks covering it.
fn range_to_cidrs(a: u32, b: u32, out: &mut Vec<(u32, u8)>, limit: usize) -> Result<(), Fail> {
    let mut cur = u64::from(a);
    let end = u64::from(b);
    while cur <= end {
        let mut size = 32u8;
        while size > 0 {
            let block = 1u64 << (33 - u32::from(size));
            if cur % block != 0 || cur + block - 1 > end {
                break;
            }
            size -= 1;
        }
        out.push((cur as u32, size));
        if out.len() > limit {
            return Err(Fail::full());
        }
        cur += 1u64 << (32 - u32::from(size));
    }
    Ok(())
}

/// Expands an address part into (address, prefix) elements for a host
/// dimension (`net` false: every host, masked by `host_cidr`) or a net
/// dimension (`net` true).
fn expand_addr(
    part: AddrPart,
    net: bool,
    host_cidr: u8,
    family: Family,
    cmd: &str,
    kind: SetKind,
    limit: usize,
) -> Result<Vec<(IpAddr, u8)>, Fail> {
    let fam = family.name();
    match (part, family) {
        (AddrPart::Cidr(a, c), _) if net => {
            if c == 0 {
                return Err(Fail::session(
                    "The value of the CIDR parameter of the IP address is invalid".into(),
                ));
            }
            Ok(vec![(a, c)])
        }
        (AddrPart::Cidr(a, c), _) if c == family.bits() => {
            Ok(vec![(mask_ip(a, host_cidr), host_cidr)])
        }
        (AddrPart::Cidr(_, _), Family::Inet6) => Err(Fail::session(format!(
            "IP/CIDR range is not allowed in command {cmd} with set type {} and family {fam}",
            kind.name()
        ))),
        (AddrPart::Range(..), Family::Inet6) => Err(Fail::session(format!(
            "FROM-TO IP range is not allowed in command {cmd} with set type {} and family {fam}",
            kind.name()
        ))),
        (AddrPart::Cidr(a, c), Family::Inet) => {
            let a = ipv4(a);
            let first = a & mask4(c);
            let last = first | !mask4(c);
            hosts(first, last, host_cidr, limit)
        }
        (AddrPart::Range(a, b), Family::Inet) => {
            let (a, b) = (ipv4(a), ipv4(b));
            if net {
                let mut out = Vec::new();
                range_to_cidrs(a, b, &mut out, limit)?;
                Ok(out
                    .into_iter()
                    .map(|(x, c)| (IpAddr::V4(Ipv4Addr::from(x)), c))
                    .collect())
            } else {
                hosts(a, b, host_cidr, limit)
            }
        }
    }
}

/// `a` with the bits past `c` cleared.
fn mask_ip(a: IpAddr, c: u8) -> IpAddr {
    use dataplane::sets::Addr;
    match a {
        IpAddr::V4(v) => u32::from(v).mask(c).to_ip(),
        IpAddr::V6(v) => u128::from(v).mask(c).to_ip(),
    }
}

fn ipv4(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(_) => 0,
    }
}

fn mask4(c: u8) -> u32 {
    if c == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(c))
    }
}

/// Every host of `first..=last`, stepping by the netmask block.
fn hosts(first: u32, last: u32, host_cidr: u8, limit: usize) -> Result<Vec<(IpAddr, u8)>, Fail> {
    let step = 1u64 << (32 - u32::from(host_cidr));
    let mut out = Vec::new();
    let mut cur = u64::from(first & mask4(host_cidr));
    while cur <= u64::from(last) {
        out.push((IpAddr::V4(Ipv4Addr::from(cur as u32)), host_cidr));
        if out.len() > limit {
            return Err(Fail::full());
        }
        cur += step;
    }
    Ok(out)
}

/// Parses an entry of a hash or bitmap set for command `cmd`
/// (`add`/`del`/`test`), expanded into single elements (at most `limit`,
/// else "Hash is full").
pub fn parse_elems(text: &str, h: &Header, cmd: &str, limit: usize) -> Result<Vec<Elem>, Fail> {
    let kind = h.kind;
    let fam = h.family;
    if kind == SetKind::BitmapPort {
        let (_, a, b) = parse_port_part(text, fam, kind)?;
        if a < h.range.0 || b > h.range.1 {
            return Err(Fail::session(
                "Element is out of the range of the set".into(),
            ));
        }
        return Ok((a..=b)
            .map(|p| {
                let mut e = Elem::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                e.port = p;
                e
            })
            .collect());
    }
    let parts: Vec<&str> = text.split(',').collect();
    let dims = kind.dims();
    if parts.len() < dims {
        return Err(syntax(format!(
            "{} element is missing from {text}.",
            if parts.len() == 1 { "second" } else { "third" }
        )));
    }
    if parts.len() > dims {
        return Err(syntax(format!(
            "Elem separator in {text}, but settype {} supports none.",
            kind.name()
        )));
    }
    let a_part = parse_addr_part(parts[0], fam)?;
    let test = cmd == "test";
    let a_net = kind.net_a();
    let host_cidr = h.host_cidr();
    let avals = if test && !a_net {
        match a_part {
            AddrPart::Cidr(a, c) if c == fam.bits() => vec![(mask_ip(a, host_cidr), host_cidr)],
            _ => {
                return Err(Fail::session(format!(
                    "IP/CIDR range is not allowed in command test with set type {} and family {}",
                    kind.name(),
                    fam.name()
                )))
            }
        }
    } else {
        expand_addr(a_part, a_net, host_cidr, fam, cmd, kind, limit)?
    };
    if avals
        .iter()
        .any(|(a, c)| a.is_unspecified() && *c == fam.bits())
        && !a_net
    {
        return Err(Fail::session(
            "Null-valued element, cannot be stored in a hash type of set".into(),
        ));
    }
    let ports = if kind.has_port() {
        let (proto, a, b) = parse_port_part(parts[1], fam, kind)?;
        (a..=b).map(|p| (proto, p)).collect::<Vec<_>>()
    } else {
        vec![(0, 0)]
    };
    let bvals = if kind.has_b() {
        let part = parse_addr_part(parts[2], fam)?;
        expand_addr(part, kind.net_b(), fam.bits(), fam, cmd, kind, limit)?
    } else {
        vec![(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)]
    };
    let total = avals.len() * ports.len() * bvals.len();
    if total > limit {
        return Err(Fail::full());
    }
    let mut out = Vec::with_capacity(total);
    for &(a, ca) in &avals {
        for &(proto, port) in &ports {
            for &(b, cb) in &bvals {
                out.push(Elem {
                    a,
                    ca,
                    proto,
                    port,
                    b,
                    cb,
                });
            }
        }
    }
    Ok(out)
}

/// Writes an address, with its prefix length unless that is `host`.
fn write_addr(out: &mut String, a: IpAddr, c: u8, host: u8) {
    let _ = if c == host {
        write!(out, "{a}")
    } else {
        write!(out, "{a}/{c}")
    };
}

/// An element as `ipset list`/`save` print it.
pub fn elem_text(e: &Elem, h: &Header) -> String {
    let mut s = String::new();
    write_elem(&mut s, e, h);
    s
}

/// Appends [`elem_text`] to `out` (a listing writes every element into
/// one buffer).
pub fn write_elem(out: &mut String, e: &Elem, h: &Header) {
    let kind = h.kind;
    if kind == SetKind::BitmapPort {
        let _ = write!(out, "{}", e.port);
        return;
    }
    let bits = h.family.bits();
    let host = if kind.net_a() { bits } else { e.ca };
    write_addr(out, e.a, e.ca, host);
    if kind.has_port() {
        out.push(',');
        write_port(out, e.proto, e.port);
    }
    if kind.has_b() {
        out.push(',');
        write_addr(out, e.b, e.cb, bits);
    }
}

/// Writes a port with its protocol, `proto:port`.
fn write_port(out: &mut String, proto: u8, port: u16) {
    match proto {
        1 => {
            out.push_str("icmp:");
            write_icmp(out, port, false);
        }
        58 => {
            out.push_str("icmpv6:");
            write_icmp(out, port, true);
        }
        _ => {
            write_proto_name(out, proto);
            let _ = write!(out, ":{port}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(kind: SetKind) -> Header {
        Header::new(kind)
    }

    fn texts(s: &str, hd: &Header) -> Vec<String> {
        parse_elems(s, hd, "add", 1 << 20)
            .unwrap()
            .iter()
            .map(|e| elem_text(e, hd))
            .collect()
    }

    #[test]
    fn a_net_range_splits_into_the_fewest_cidrs() {
        assert_eq!(
            texts("198.18.0.1-198.18.0.6", &h(SetKind::HashNet)),
            ["198.18.0.1", "198.18.0.2/31", "198.18.0.4/31", "198.18.0.6"]
        );
    }

    #[test]
    fn host_types_expand_ranges_and_cidrs_into_hosts() {
        assert_eq!(
            texts("198.18.0.1/30", &h(SetKind::HashIp)),
            ["198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3"]
        );
        let mut m = h(SetKind::HashIp);
        m.netmask = Some(24);
        assert_eq!(texts("198.18.5.5", &m), ["198.18.5.0"]);
    }

    #[test]
    fn ports_print_with_their_protocol() {
        let hd = h(SetKind::HashIpPort);
        assert_eq!(texts("198.18.0.1,80", &hd), ["198.18.0.1,tcp:80"]);
        assert_eq!(texts("198.18.0.1,udp:53", &hd), ["198.18.0.1,udp:53"]);
        assert_eq!(
            texts("198.18.0.3,icmp:ping", &hd),
            ["198.18.0.3,icmp:echo-request"]
        );
        assert_eq!(texts("198.18.0.4,vrrp:0", &hd), ["198.18.0.4,vrrp:0"]);
        assert_eq!(
            texts("198.18.0.1,80-81", &hd),
            ["198.18.0.1,tcp:80", "198.18.0.1,tcp:81"]
        );
    }

    #[test]
    fn bad_elements_are_refused_with_ipsets_words() {
        let e = |s: &str, k| parse_elems(s, &h(k), "add", 1000).unwrap_err().message;
        assert_eq!(
            e("0.0.0.0", SetKind::HashIp),
            "Null-valued element, cannot be stored in a hash type of set"
        );
        assert_eq!(
            e("1.1.1.1/0", SetKind::HashNet),
            "The value of the CIDR parameter of the IP address is invalid"
        );
        assert!(e("198.18.0.0/15", SetKind::HashIp).starts_with("Hash is full"));
        assert!(e("nope", SetKind::HashIp).starts_with("Syntax error: cannot parse nope"));
        assert_eq!(
            e("198.18.0.1,vrrp:5", SetKind::HashIpPort),
            "Syntax error: Protocol vrrp can be used with pseudo port value 0 only."
        );
        assert_eq!(
            e("198.18.0.1,udp:x", SetKind::HashIpPort),
            "Syntax error: cannot parse 'x' as a udp port"
        );
        assert_eq!(
            e("198.18.0.1,icmp:9/x", SetKind::HashIpPort),
            "Cannot parse 9/x as an ICMP type/code."
        );
        let mut v6 = h(SetKind::HashIpPort);
        v6.family = Family::Inet6;
        assert_eq!(
            parse_elems("2001:db8::1,icmp:ping", &v6, "add", 10)
                .unwrap_err()
                .message,
            "Syntax error: Protocol ICMP can be used with family INET only"
        );
    }
}
