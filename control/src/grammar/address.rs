//! Numbers, addresses and ports as ipvsadm reads them.
//!
//! ipvsadm leans on the C library for these, and its quirks are part of the
//! interface operators know: `strtol` accepts leading blanks and a sign,
//! `inet_aton` accepts `198.18` and octal/hex parts, an unbracketed IPv6
//! address never has a port, and a bracketed IPv4 address loses its port.
//! The functions here restate those rules in Rust, without calling libc.
//!
//! Names go through a [`Resolver`], so tests and the fuzzer never touch DNS:
//! [`SystemResolver`] resolves host names with the system resolver (first
//! IPv4 address, like `gethostbyname`) and service names from
//! `/etc/services` (like `getservbyname`); [`OfflineResolver`] resolves no
//! host names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::sync::OnceLock;

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Result of C `strtol`/`strtoul` on a whole string: `None` unless at least
/// one digit was read and nothing follows the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CNumber {
    negative: bool,
    magnitude: u128,
}

fn c_number_prefix(s: &str) -> Option<(CNumber, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        negative = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut magnitude: u128 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        // Saturate: anything this large overflows every C type used here.
        magnitude = magnitude
            .saturating_mul(10)
            .saturating_add(u128::from(b[i] - b'0'));
        i += 1;
    }
    if i == start {
        return None;
    }
    Some((
        CNumber {
            negative,
            magnitude,
        },
        i,
    ))
}

fn c_number(s: &str) -> Option<CNumber> {
    let (n, end) = c_number_prefix(s)?;
    (end == s.len()).then_some(n)
}

/// C `strtol` on a 64-bit `long`, saturating like it does on overflow.
fn strtol_value(n: CNumber) -> (i64, bool) {
    if n.negative {
        if n.magnitude > i64::MAX as u128 + 1 {
            (i64::MIN, true)
        } else {
            ((n.magnitude as i128).wrapping_neg() as i64, false)
        }
    } else if n.magnitude > i64::MAX as u128 {
        (i64::MAX, true)
    } else {
        (n.magnitude as i64, false)
    }
}

/// ipvsadm's `string_to_number`: the whole string must be a base-10 `long`
/// (leading blanks and a sign allowed) within `min..=max`.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    let (v, overflow) = strtol_value(c_number(s)?);
    (!overflow && min <= v && v <= max).then_some(v)
}

/// C `atoi` (glibc: `(int) strtol(s, NULL, 10)`): the leading number, 0 if
/// there is none; trailing text is ignored.
pub fn atoi(s: &str) -> i32 {
    match c_number_prefix(s) {
        Some((n, _)) => strtol_value(n).0 as i32,
        None => 0,
    }
}

/// ipvsadm's `parse_fwmark`: `strtol` on the whole string, stored in an
/// `unsigned long` and required to be 1..=u32::MAX (so every negative value
/// fails).
pub fn parse_fwmark(s: &str) -> Option<u32> {
    string_to_number(s, 1, i64::from(u32::MAX)).map(|v| v as u32)
}

/// glibc `inet_aton`: 1 to 4 parts, each decimal, octal (`0` prefix) or hex
/// (`0x`), the last part filling the remaining bytes; text after the address
/// is allowed only after a blank. Returns the address in host order.
pub fn inet_aton(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let mut parts: [u32; 3] = [0; 3];
    let mut nparts = 0usize;
    let mut i = 0usize;
    let val: u64;
    loop {
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        // strtoul(cp, &end, 0) starting at a digit.
        let (radix, start) = if b[i] == b'0'
            && i + 1 < b.len()
            && (b[i + 1] == b'x' || b[i + 1] == b'X')
            && i + 2 < b.len()
            && b[i + 2].is_ascii_hexdigit()
        {
            (16u64, i + 2)
        } else if b[i] == b'0' {
            (8u64, i)
        } else {
            (10u64, i)
        };
        let mut j = start;
        let mut v: u64 = 0;
        while j < b.len() {
            let d = match (b[j] as char).to_digit(radix as u32) {
                Some(d) => u64::from(d),
                None => break,
            };
            v = v.saturating_mul(radix).saturating_add(d);
            j += 1;
        }
        if v > 0xffff_ffff {
            return None;
        }
        i = j;
        if i < b.len() && b[i] == b'.' {
            if nparts > 2 || v > 0xff {
                return None;
            }
            parts[nparts] = v as u32;
            nparts += 1;
            i += 1;
        } else {
            val = v;
            break;
        }
    }
    if i < b.len() && !(b[i].is_ascii() && is_c_space(b[i])) {
        return None;
    }
    let max: [u64; 4] = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff];
    if val > max[nparts] {
        return None;
    }
    let mut addr = val as u32;
    for (k, p) in parts.iter().take(nparts).enumerate() {
        addr |= p << (24 - 8 * k);
    }
    Some(addr)
}

/// Looks names up: host names (IPv4 only) and service names.
pub trait Resolver {
    /// First IPv4 address of a host name (`gethostbyname`).
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr>;
    /// Port of a service name for `proto` (`tcp`, `udp`, `sctp`).
    fn service_port(&self, name: &str, proto: &str) -> Option<u16>;
}

/// One `/etc/services` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub names: Vec<String>,
    pub port: u16,
    pub proto: String,
}

/// Parses `/etc/services` text: `name port/proto [aliases...] [# comment]`.
/// Malformed lines are skipped, as the C library does.
pub fn parse_services(text: &str) -> Vec<ServiceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let mut names = vec![name.to_string()];
        names.extend(words.map(str::to_string));
        out.push(ServiceEntry {
            names,
            port,
            proto: proto.to_string(),
        });
    }
    out
}

/// First entry naming `name` for `proto`, in file order (`getservbyname`).
pub fn lookup_service(entries: &[ServiceEntry], name: &str, proto: &str) -> Option<u16> {
    entries
        .iter()
        .find(|e| e.proto == proto && e.names.iter().any(|n| n == name))
        .map(|e| e.port)
}

fn system_services() -> &'static [ServiceEntry] {
    static SERVICES: OnceLock<Vec<ServiceEntry>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        std::fs::read_to_string("/etc/services")
            .map(|t| parse_services(&t))
            .unwrap_or_default()
    })
}

/// The machine's resolver: `/etc/services` and the system host lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
        if name.is_empty() || name.contains('\0') {
            return None;
        }
        let addrs = (name, 0u16).to_socket_addrs().ok()?;
        addrs.into_iter().find_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
    }

    fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
        lookup_service(system_services(), name, proto)
    }
}

/// Resolves service names from `/etc/services` but no host names: for
/// fuzzing and property tests, which must not wait on DNS.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineResolver;

impl Resolver for OfflineResolver {
    fn host_v4(&self, _name: &str) -> Option<Ipv4Addr> {
        None
    }

    fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
        lookup_service(system_services(), name, proto)
    }
}

/// An address with the port if one was written (`SERVICE_PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// ipvsadm's `parse_service` for `-t/-u/--sctp-service/-r`. `proto` is the
/// protocol name used for service-name ports (`None` when the service's
/// protocol is not known yet: names then never resolve).
pub fn parse_host_port(
    text: &str,
    proto: Option<&str>,
    resolver: &dyn Resolver,
) -> Option<HostPort> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return None; // digits only, or empty
    }
    let mut addr_text = text;
    // Port text once a `:` separator has been found.
    let mut port_text: Option<&str> = None;
    if let Some(inner) = text.strip_prefix('[') {
        let (a, after) = inner.split_once(']')?;
        port_text = Some(after.strip_prefix(':')?);
        addr_text = a;
    }
    let addr = if let Ok(v6) = addr_text.parse::<Ipv6Addr>() {
        IpAddr::V6(v6)
    } else {
        // The port is after the last `:` of what is left; for a bracketed
        // address that is the text inside the brackets, so `[198.18.0.1]:80`
        // loses its port, as in ipvsadm.
        match addr_text.rfind(':') {
            Some(i) => {
                port_text = Some(&addr_text[i + 1..]);
                addr_text = &addr_text[..i];
            }
            None => port_text = None,
        }
        match inet_aton(addr_text) {
            Some(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            None => IpAddr::V4(resolver.host_v4(addr_text)?),
        }
    };
    let port = match port_text {
        None => None,
        Some(p) => Some(parse_port(p, proto, resolver)?),
    };
    Some(HostPort { addr, port })
}

/// A port number 0..=65535 or a service name for `proto`.
pub fn parse_port(text: &str, proto: Option<&str>, resolver: &dyn Resolver) -> Option<u16> {
    if let Some(n) = string_to_number(text, 0, 65535) {
        return Some(n as u16);
    }
    resolver.service_port(text, proto?)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stub;
    impl Resolver for Stub {
        fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
            (name == "vip.example").then_some(Ipv4Addr::new(198, 18, 0, 10))
        }
        fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
            match (name, proto) {
                ("http", "tcp") => Some(80),
                ("domain", "tcp" | "udp") => Some(53),
                _ => None,
            }
        }
    }

    #[test]
    fn strtol_rules() {
        assert_eq!(string_to_number("80", 0, 65535), Some(80));
        assert_eq!(string_to_number(" +80", 0, 65535), Some(80));
        assert_eq!(string_to_number("-0", 0, 65535), Some(0));
        assert_eq!(string_to_number("80 ", 0, 65535), None);
        assert_eq!(string_to_number("", 0, 65535), None);
        assert_eq!(string_to_number("-1", 0, 65535), None);
        assert_eq!(string_to_number("65536", 0, 65535), None);
        assert_eq!(string_to_number("0x10", 0, 65535), None);
        assert_eq!(string_to_number("99999999999999999999", 0, i64::MAX), None);
        assert_eq!(
            string_to_number("2147483647", 0, 2147483647),
            Some(2147483647)
        );
    }

    #[test]
    fn atoi_reads_a_prefix() {
        assert_eq!(atoi("64"), 64);
        assert_eq!(atoi(" 64abc"), 64);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi("-3"), -3);
    }

    #[test]
    fn fwmark_rules() {
        assert_eq!(parse_fwmark("1"), Some(1));
        assert_eq!(parse_fwmark("4294967295"), Some(u32::MAX));
        assert_eq!(parse_fwmark("4294967296"), None);
        assert_eq!(parse_fwmark("0"), None);
        assert_eq!(parse_fwmark("-1"), None);
        assert_eq!(parse_fwmark("1x"), None);
        assert_eq!(parse_fwmark(" +7"), Some(7));
        assert_eq!(parse_fwmark("-18446744073709551615"), None);
        assert_eq!(parse_fwmark("-4294967295"), None);
    }

    #[test]
    fn inet_aton_forms() {
        let a = |s: &str| inet_aton(s).map(Ipv4Addr::from);
        assert_eq!(a("198.18.0.1"), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(a("198.18"), Some(Ipv4Addr::new(198, 0, 0, 18)));
        assert_eq!(a("198.18.1"), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(a("0xc6.022.0.1"), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(a("3323068417"), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(a("198.18.0.1 trailing"), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(a("198.18.0.256"), None);
        assert_eq!(a("198.18.0.1."), None);
        assert_eq!(a("198.18.0.1x"), None);
        assert_eq!(a("08"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a(""), None);
        assert_eq!(a("198.18.65536"), None);
    }

    #[test]
    fn host_port_forms() {
        let p = |s: &str| parse_host_port(s, Some("tcp"), &Stub);
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(
            p("198.18.0.1:80"),
            Some(HostPort {
                addr: v4(198, 18, 0, 1),
                port: Some(80)
            })
        );
        assert_eq!(
            p("198.18.0.1"),
            Some(HostPort {
                addr: v4(198, 18, 0, 1),
                port: None
            })
        );
        assert_eq!(
            p("198.18.0.1:http"),
            Some(HostPort {
                addr: v4(198, 18, 0, 1),
                port: Some(80)
            })
        );
        assert_eq!(
            p("vip.example:domain"),
            Some(HostPort {
                addr: v4(198, 18, 0, 10),
                port: Some(53)
            })
        );
        assert_eq!(
            p("[2001:db8::1]:443"),
            Some(HostPort {
                addr: v6("2001:db8::1"),
                port: Some(443)
            })
        );
        // Unbracketed IPv6 never has a port.
        assert_eq!(
            p("2001:db8::1:80"),
            Some(HostPort {
                addr: v6("2001:db8::1:80"),
                port: None
            })
        );
        // Bracketed IPv4 loses its port.
        assert_eq!(
            p("[198.18.0.1]:80"),
            Some(HostPort {
                addr: v4(198, 18, 0, 1),
                port: None
            })
        );
        assert_eq!(p("80"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("[2001:db8::1]"), None);
        assert_eq!(p("[2001:db8::1]:"), None);
        assert_eq!(p("[2001:db8::1"), None);
        assert_eq!(p("198.18.0.1:65536"), None);
        assert_eq!(p("198.18.0.1:nosuch"), None);
        assert_eq!(p("unknown.example:80"), None);
        assert_eq!(parse_host_port("198.18.0.1:http", None, &Stub), None);
        assert_eq!(parse_host_port("198.18.0.1:http", Some("udp"), &Stub), None);
    }

    #[test]
    fn services_file_lookup() {
        let text = "# comment\nhttp\t\t80/tcp\t\twww\t# web\nhttp 80/udp\nbad line\nsip 5060/tcp\nsip 5061/tcp\n";
        let e = parse_services(text);
        assert_eq!(lookup_service(&e, "www", "tcp"), Some(80));
        assert_eq!(lookup_service(&e, "http", "udp"), Some(80));
        assert_eq!(lookup_service(&e, "sip", "tcp"), Some(5060));
        assert_eq!(lookup_service(&e, "sip", "udp"), None);
        assert_eq!(lookup_service(&e, "bad", "tcp"), None);
    }
}
