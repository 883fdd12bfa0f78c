//! Address and port text as ipvsadm prints it, numeric (`-n`) or resolved.
//!
//! Why a [`Resolver`] trait: without `-n` ipvsadm asks the system for host
//! names (reverse DNS) and service names (`/etc/services`). Listings must be
//! testable without a network and independent of the machine's files, so the
//! formatters take the lookups as a trait object; [`SystemResolver`] is the
//! real one, tests use their own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use uvs_model::model::Protocol;

/// Name lookups used when `-n` is not given.
pub trait Resolver {
    /// Reverse lookup of an address; `None` prints it numerically.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// Service name of a port for a protocol (`80`/TCP -> `http`).
    fn service(&self, port: u16, protocol: Protocol) -> Option<String>;
}

/// Resolves nothing: every address and port prints numerically.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl Resolver for NoNames {
    fn host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

/// The system's lookups: reverse DNS through the C library's `getnameinfo`
/// with `NI_NAMEREQD` (a name or nothing, as `gethostbyaddr`), and the
/// services database read from `/etc/services` once, when created.
#[derive(Debug, Clone, Default)]
pub struct SystemResolver {
    services: HashMap<(u16, &'static str), String>,
}

impl SystemResolver {
    pub fn new() -> SystemResolver {
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        SystemResolver {
            services: parse_services(&text),
        }
    }
}

fn proto_word(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// `/etc/services` -> (port, protocol) -> first name listed for it, as
/// `getservbyport` returns the first matching line.
pub fn parse_services(text: &str) -> HashMap<(u16, &'static str), String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(pp)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let proto = match proto {
            "tcp" => "tcp",
            "udp" => "udp",
            "sctp" => "sctp",
            _ => continue,
        };
        map.entry((port, proto)).or_insert_with(|| name.to_string());
    }
    map
}

impl Resolver for SystemResolver {
    fn host(&self, addr: IpAddr) -> Option<String> {
        dns_lookup::lookup_addr(&addr).ok()
    }
    fn service(&self, port: u16, protocol: Protocol) -> Option<String> {
        self.services.get(&(port, proto_word(protocol))).cloned()
    }
}

/// An address as glibc's `inet_ntop` writes it. Differs from Rust's
/// `Display` for IPv4-compatible IPv6 addresses (`::198.18.0.1`).
pub fn ntop(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => ntop6(a),
    }
}

fn ntop6(a: &Ipv6Addr) -> String {
    let s = a.segments();
    // glibc prints the embedded IPv4 form when the longest zero run is
    // exactly words 0..6 (IPv4-compatible), or 0..5 followed by ffff.
    if s[..6] == [0; 6] && s[6] != 0 {
        let [.., a6, b6, c6, d6] = a.octets();
        return format!("::{a6}.{b6}.{c6}.{d6}");
    }
    a.to_string()
}

/// ipvsadm's `addrport_to_anyname`: `a.b.c.d:port` or `[v6]:port`,
/// names instead of numbers unless `numeric`, `proto` selects the services
/// table (`None`: no port names, as for fwmark templates). The text is cut to
/// 59 bytes like ipvsadm's 60-byte buffer.
pub fn addrport(
    addr: &IpAddr,
    port: u16,
    proto: Option<Protocol>,
    numeric: bool,
    resolver: &dyn Resolver,
) -> String {
    let (host, serv) = if numeric {
        (ntop(addr), port.to_string())
    } else {
        (
            resolver.host(*addr).unwrap_or_else(|| ntop(addr)),
            proto
                .and_then(|p| resolver.service(port, p))
                .unwrap_or_else(|| port.to_string()),
        )
    };
    let mut s = match addr {
        IpAddr::V4(_) => format!("{host}:{serv}"),
        IpAddr::V6(_) => format!("[{host}]:{serv}"),
    };
    cut(&mut s, 59);
    s
}

/// Truncates to at most `n` bytes (on a character boundary).
pub fn cut(s: &mut String, n: usize) {
    if s.len() > n {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file_first_name_wins_and_comments_are_skipped() {
        let map = parse_services(
            "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb\nwww-alt 80/tcp\nhttp 80/udp\nsip 5060/sctp\nbad x/tcp\n",
        );
        assert_eq!(map.get(&(80, "tcp")).map(String::as_str), Some("http"));
        assert_eq!(map.get(&(80, "udp")).map(String::as_str), Some("http"));
        assert_eq!(map.get(&(5060, "sctp")).map(String::as_str), Some("sip"));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn ntop_matches_glibc() {
        let f = |s: &str| ntop(&s.parse().unwrap());
        assert_eq!(f("2001:db8::1"), "2001:db8::1");
        assert_eq!(f("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(f("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(f("::"), "::");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::c612:1"), "::198.18.0.1");
        assert_eq!(f("::ffff:198.18.0.1"), "::ffff:198.18.0.1");
    }

    #[test]
    fn long_names_are_cut_like_the_60_byte_buffer() {
        struct Long;
        impl Resolver for Long {
            fn host(&self, _: IpAddr) -> Option<String> {
                Some("h".repeat(70))
            }
            fn service(&self, _: u16, _: Protocol) -> Option<String> {
                None
            }
        }
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let s = addrport(&a, 80, Some(Protocol::Tcp), false, &Long);
        assert_eq!(s, "h".repeat(59));
    }
}
