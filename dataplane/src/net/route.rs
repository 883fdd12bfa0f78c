//! The route table: connected prefixes of the ports plus static routes.
//!
//! Small (tens of entries) and read-only on the fast path, so a linear
//! longest-prefix match over a vector beats any trie here and allocates
//! nothing.

use std::net::IpAddr;

use super::Prefix;

/// One route: `prefix` is reached through `port`, directly (`via` is
/// `None`: connected) or through the gateway `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    pub via: Option<IpAddr>,
    pub port: u16,
}

/// Longest-prefix-match table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Adds a route; the most specific match wins, ties go to the first.
    pub fn add(&mut self, r: Route) {
        self.routes.push(r);
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `dst`.
    pub fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        let mut best: Option<&Route> = None;
        for r in &self.routes {
            if r.prefix.contains(dst) && best.is_none_or(|b| r.prefix.len > b.prefix.len) {
                best = Some(r);
            }
        }
        best
    }

    /// `(port, next hop)` for `dst`: the gateway, or `dst` when connected.
    pub fn next_hop(&self, dst: IpAddr) -> Option<(u16, IpAddr)> {
        self.lookup(dst).map(|r| (r.port, r.via.unwrap_or(dst)))
    }

    /// The port whose connected prefix holds `ip` (where a gateway lives).
    pub fn connected_port(&self, ip: IpAddr) -> Option<u16> {
        let mut best: Option<&Route> = None;
        for r in self.routes.iter().filter(|r| r.via.is_none()) {
            if r.prefix.contains(ip) && best.is_none_or(|b| r.prefix.len > b.prefix.len) {
                best = Some(r);
            }
        }
        best.map(|r| r.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_gateway_is_the_next_hop() {
        let mut t = RouteTable::new();
        t.add(Route {
            prefix: p("198.18.0.0/24"),
            via: None,
            port: 0,
        });
        t.add(Route {
            prefix: p("198.18.1.0/24"),
            via: None,
            port: 1,
        });
        t.add(Route {
            prefix: p("0.0.0.0/0"),
            via: Some("198.18.0.254".parse().unwrap()),
            port: 0,
        });
        t.add(Route {
            prefix: p("198.19.0.0/16"),
            via: Some("198.18.1.2".parse().unwrap()),
            port: 1,
        });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.next_hop(ip("198.18.1.7")), Some((1, ip("198.18.1.7"))));
        assert_eq!(t.next_hop(ip("198.19.5.5")), Some((1, ip("198.18.1.2"))));
        assert_eq!(t.next_hop(ip("198.18.2.9")), Some((0, ip("198.18.0.254"))));
        assert_eq!(t.next_hop(ip("2001:db8::1")), None, "no v6 route");
        assert_eq!(t.connected_port(ip("198.18.1.2")), Some(1));
        assert_eq!(t.connected_port(ip("198.19.0.1")), None);
    }
}
