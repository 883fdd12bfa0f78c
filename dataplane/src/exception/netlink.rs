//! The kernel interface's addresses and routes, set at start-up over
//! rtnetlink (what `ip address add` and `ip route add` send).
//!
//! Why by hand: four message kinds (find an interface's index, add an
//! address, add or delete a route) do not justify an async netlink stack; the
//! messages are built by pure functions tested byte for byte, and the
//! socket is socket2's (safe). Nothing here runs on the packet path.

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::net::Prefix;

const AF_NETLINK: i32 = 16;
const NETLINK_ROUTE: i32 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
/// No duplicate address detection: the address is the port's, already
/// in use by uvsd on the same link.
const IFA_F_NODAD: u8 = 0x02;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
/// rtm_table when the table is given in RTA_TABLE (numbers above 255).
const RT_TABLE_UNSPEC: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTPROT_STATIC: u8 = 4;
const RTN_UNICAST: u8 = 1;

/// A netlink message: header (length filled in by [`Msg::finish`]), a
/// fixed family header, then attributes, each padded to 4 bytes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family_header: &[u8]) -> Msg {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(family_header);
        Msg(v)
    }
    fn attr(mut self, kind: u16, data: &[u8]) -> Msg {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// RTM_GETLINK for the interface called `name`.
fn getlink_message(seq: u32, name: &str) -> Vec<u8> {
    let ifinfo = [0u8; 16];
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    Msg::new(RTM_GETLINK, 0, seq, &ifinfo)
        .attr(IFLA_IFNAME, &n)
        .finish()
}

/// RTM_GETADDR dump of every address of every interface (like `ip
/// address show`). A dump is not acknowledged: it ends with NLMSG_DONE.
fn getaddr_message(seq: u32) -> Vec<u8> {
    let mut m = Msg::new(RTM_GETADDR, NLM_F_DUMP, seq, &[0u8; 8]).finish();
    let flags = NLM_F_REQUEST | NLM_F_DUMP;
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m
}

/// The (interface index, address) pairs of one datagram of an RTM_GETADDR
/// dump answering `seq`, appended to `out`. Returns whether the dump is
/// complete (NLMSG_DONE seen). An address is IFA_LOCAL when present (the
/// interface's own address on point-to-point links), else IFA_ADDRESS.
fn parse_addresses(buf: &[u8], seq: u32, out: &mut Vec<(u32, IpAddr)>) -> io::Result<bool> {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let u32_at = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let len = u32_at(off) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a truncated rtnetlink message",
            ));
        }
        if u32_at(off + 8) == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR if len >= 20 => {
                    let err = u32_at(off + 16) as i32;
                    return Err(io::Error::from_raw_os_error(-err));
                }
                RTM_NEWADDR if len >= 24 => {
                    let family = buf[off + 16];
                    let index = u32_at(off + 20);
                    let (mut local, mut address) = (None, None);
                    let mut a = off + 24;
                    while a + 4 <= off + len {
                        let alen = usize::from(u16::from_ne_bytes([buf[a], buf[a + 1]]));
                        let akind = u16::from_ne_bytes([buf[a + 2], buf[a + 3]]);
                        if alen < 4 || a + alen > off + len {
                            break;
                        }
                        let data = &buf[a + 4..a + alen];
                        let ip = match (family, data.len()) {
                            (AF_INET, 4) => {
                                Some(IpAddr::from(<[u8; 4]>::try_from(data).unwrap_or_default()))
                            }
                            (AF_INET6, 16) => {
                                Some(IpAddr::from(<[u8; 16]>::try_from(data).unwrap_or_default()))
                            }
                            _ => None,
                        };
                        match akind {
                            IFA_LOCAL => local = ip,
                            IFA_ADDRESS => address = ip,
                            _ => {}
                        }
                        a += alen.next_multiple_of(4);
                    }
                    if let Some(ip) = local.or(address) {
                        out.push((index, ip));
                    }
                }
                _ => {}
            }
        }
        off += len.next_multiple_of(4);
    }
    Ok(false)
}

/// RTM_NEWADDR: `p` on interface `index` (like `ip address replace p dev
/// ...`), without duplicate address detection.
fn address_message(seq: u32, index: u32, p: &Prefix) -> Vec<u8> {
    let mut ifa = vec![family(p.addr), p.len, IFA_F_NODAD, 0];
    ifa.extend_from_slice(&index.to_ne_bytes());
    let a = octets(p.addr);
    Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq, &ifa)
        .attr(IFA_LOCAL, &a)
        .attr(IFA_ADDRESS, &a)
        .attr(IFA_FLAGS, &u32::from(IFA_F_NODAD).to_ne_bytes())
        .finish()
}

/// RTM_NEWROUTE: `to` via `via` out of interface `index` (like `ip route
/// replace to via via dev ...`).
fn route_message(seq: u32, index: u32, to: &Prefix, via: IpAddr) -> Vec<u8> {
    let rtm = [
        family(to.addr),
        to.len,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        0,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq, &rtm);
    if to.len > 0 {
        m = m.attr(RTA_DST, &octets(to.addr));
    }
    m.attr(RTA_GATEWAY, &octets(via))
        .attr(RTA_OIF, &index.to_ne_bytes())
        .finish()
}

/// RTM_NEWROUTE or RTM_DELROUTE (`add`): the host route to `addr` out of
/// interface `index` in routing table `table`, no gateway (like `ip route
/// replace|del ADDR dev ... table TABLE proto static scope link`). The
/// announcer's routes (`src/announce.rs`): a routing daemon exports them.
fn host_route_message(seq: u32, add: bool, index: u32, table: u32, addr: IpAddr) -> Vec<u8> {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    let rtm = [
        family(addr),
        len,
        0,
        0,
        RT_TABLE_UNSPEC,
        RTPROT_STATIC,
        RT_SCOPE_LINK,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let (kind, flags) = if add {
        (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE)
    } else {
        (RTM_DELROUTE, 0)
    };
    Msg::new(kind, flags, seq, &rtm)
        .attr(RTA_TABLE, &table.to_ne_bytes())
        .attr(RTA_DST, &octets(addr))
        .attr(RTA_OIF, &index.to_ne_bytes())
        .finish()
}

/// What the kernel answered to message `seq`: `Ok(Some(index))` for a
/// link, `Ok(None)` for an acknowledgement, the kernel's error otherwise.
fn parse_reply(buf: &[u8], seq: u32) -> io::Result<Option<u32>> {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let u32_at = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let len = u32_at(off) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            break;
        }
        if u32_at(off + 8) == seq {
            match kind {
                NLMSG_ERROR if len >= 20 => {
                    let err = u32_at(off + 16) as i32;
                    return if err == 0 {
                        Ok(None)
                    } else {
                        Err(io::Error::from_raw_os_error(-err))
                    };
                }
                RTM_NEWLINK if len >= 32 => return Ok(Some(u32_at(off + 20))),
                _ => {}
            }
        }
        off += len.next_multiple_of(4);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no answer from the kernel's rtnetlink",
    ))
}

/// An rtnetlink socket of the current network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let sock = Socket::new(
            Domain::from(AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_ROUTE)),
        )?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(Netlink { sock, seq: 0 })
    }

    fn call(&mut self, msg: impl FnOnce(u32) -> Vec<u8>) -> io::Result<Option<u32>> {
        self.seq += 1;
        let m = msg(self.seq);
        self.sock.send(&m)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = (&self.sock).read(&mut buf)?;
            match parse_reply(&buf[..n], self.seq) {
                Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
                r => return r,
            }
        }
    }

    /// The index of interface `name`.
    pub fn index(&mut self, name: &str) -> io::Result<u32> {
        self.call(|seq| getlink_message(seq, name))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such interface"))
    }

    /// Adds (or replaces) address `p` on interface `index`.
    pub fn add_address(&mut self, index: u32, p: &Prefix) -> io::Result<()> {
        self.call(|seq| address_message(seq, index, p)).map(|_| ())
    }

    /// Every address of every interface of the namespace, with the
    /// interface's index.
    pub fn addresses(&mut self) -> io::Result<Vec<(u32, IpAddr)>> {
        self.seq += 1;
        let seq = self.seq;
        self.sock.send(&getaddr_message(seq))?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut out = Vec::new();
        loop {
            let n = (&self.sock).read(&mut buf)?;
            if parse_addresses(&buf[..n], seq, &mut out)? {
                return Ok(out);
            }
        }
    }

    /// Adds (or replaces) the route to `to` via `via` out of `index`.
    pub fn add_route(&mut self, index: u32, to: &Prefix, via: IpAddr) -> io::Result<()> {
        self.call(|seq| route_message(seq, index, to, via))
            .map(|_| ())
    }

    /// Adds (or replaces) the host route to `addr` out of `index` in
    /// routing table `table`.
    pub fn add_host_route(&mut self, index: u32, table: u32, addr: IpAddr) -> io::Result<()> {
        self.call(|seq| host_route_message(seq, true, index, table, addr))
            .map(|_| ())
    }

    /// Deletes the host route of [`Self::add_host_route`].
    pub fn del_host_route(&mut self, index: u32, table: u32, addr: IpAddr) -> io::Result<()> {
        self.call(|seq| host_route_message(seq, false, index, table, addr))
            .map(|_| ())
    }
}

/// Tells the kernel not to take addresses or routes from router
/// advertisements on interface `name` (its addresses are the port's, and
/// an address uvsd does not know would be unreachable), and not to run
/// duplicate address detection there: the port's addresses are in use by
/// uvsd already, and with TAP ports the port's own TAP, with the same MAC
/// and so the same link-local address, may share the namespace at start.
pub fn quiet_ipv6(name: &str) -> io::Result<()> {
    for key in ["accept_ra", "autoconf", "accept_dad"] {
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{key}"), "0")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn an_ipv4_address_message_is_what_ip_address_add_sends() {
        let p: Prefix = "198.18.0.1/24".parse().unwrap();
        let m = address_message(7, 5, &p);
        let mut want = vec![];
        want.extend_from_slice(&ne32(16 + 8 + 8 + 8 + 8));
        want.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
        want.extend_from_slice(&(0x1u16 | 0x4 | 0x100 | 0x400).to_ne_bytes());
        want.extend_from_slice(&ne32(7));
        want.extend_from_slice(&ne32(0));
        want.extend_from_slice(&[2, 24, 2, 0]);
        want.extend_from_slice(&ne32(5));
        for kind in [IFA_LOCAL, IFA_ADDRESS] {
            want.extend_from_slice(&8u16.to_ne_bytes());
            want.extend_from_slice(&kind.to_ne_bytes());
            want.extend_from_slice(&[198, 18, 0, 1]);
        }
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&IFA_FLAGS.to_ne_bytes());
        want.extend_from_slice(&ne32(2));
        assert_eq!(m, want);
    }

    #[test]
    fn messages_are_padded_and_sized() {
        let p: Prefix = "2001:db8::1/64".parse().unwrap();
        let m = address_message(1, 3, &p);
        assert_eq!(m.len(), 16 + 8 + 20 + 20 + 8);
        assert_eq!(m[16], AF_INET6);
        let m = getlink_message(1, "uvs0");
        // "uvs0\0" is 5 bytes: the attribute is 9 long, padded to 12.
        assert_eq!(m.len(), 16 + 16 + 12);
        assert_eq!(&m[32..34], &9u16.to_ne_bytes());
        let to: Prefix = "0.0.0.0/0".parse().unwrap();
        let m = route_message(1, 3, &to, "198.18.0.254".parse().unwrap());
        assert_eq!(m.len(), 16 + 12 + 8 + 8, "a default route has no RTA_DST");
        let to: Prefix = "198.19.0.0/16".parse().unwrap();
        let m = route_message(1, 3, &to, "198.18.0.254".parse().unwrap());
        assert_eq!(m.len(), 16 + 12 + 8 + 8 + 8);
    }

    #[test]
    fn host_routes_name_their_table_and_interface() {
        let m = host_route_message(9, true, 3, 100, "198.19.0.10".parse().unwrap());
        let mut want = vec![];
        want.extend_from_slice(&ne32(16 + 12 + 8 + 8 + 8));
        want.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        want.extend_from_slice(
            &(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE).to_ne_bytes(),
        );
        want.extend_from_slice(&ne32(9));
        want.extend_from_slice(&ne32(0));
        want.extend_from_slice(&[AF_INET, 32, 0, 0, 0, RTPROT_STATIC, 253, 1, 0, 0, 0, 0]);
        for (kind, value) in [
            (RTA_TABLE, ne32(100).to_vec()),
            (RTA_DST, vec![198, 19, 0, 10]),
            (RTA_OIF, ne32(3).to_vec()),
        ] {
            want.extend_from_slice(&8u16.to_ne_bytes());
            want.extend_from_slice(&kind.to_ne_bytes());
            want.extend_from_slice(&value);
        }
        assert_eq!(m, want);
        let m = host_route_message(10, false, 3, 100, "2001:db8::10".parse().unwrap());
        assert_eq!(&m[4..6], &RTM_DELROUTE.to_ne_bytes());
        assert_eq!(&m[6..8], &(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        assert_eq!((m[16], m[17]), (AF_INET6, 128));
        assert_eq!(m.len(), 16 + 12 + 8 + 20 + 8);
    }

    fn reply(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![];
        v.extend_from_slice(&ne32(16 + body.len() as u32));
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&ne32(seq));
        v.extend_from_slice(&ne32(0));
        v.extend_from_slice(body);
        v
    }

    /// An RTM_NEWADDR as the kernel sends it in a dump: ifaddrmsg, then
    /// IFA_ADDRESS (and IFA_LOCAL for IPv4), IFA_LABEL for IPv4.
    fn newaddr(seq: u32, family: u8, index: u32, addr: &[u8], local: bool) -> Vec<u8> {
        let mut body = vec![family, 24, 0x80, 0];
        body.extend_from_slice(&ne32(index));
        let mut attr = |kind: u16, data: &[u8]| {
            body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize(body.len().next_multiple_of(4), 0);
        };
        attr(IFA_ADDRESS, addr);
        if local {
            attr(IFA_LOCAL, addr);
            attr(3, b"uvs0\0");
        }
        reply(RTM_NEWADDR, seq, &body)
    }

    #[test]
    fn an_address_dump_request_asks_for_a_dump_without_ack() {
        let m = getaddr_message(9);
        assert_eq!(m.len(), 16 + 8);
        assert_eq!(&m[4..6], &RTM_GETADDR.to_ne_bytes());
        assert_eq!(&m[6..8], &0x301u16.to_ne_bytes());
        assert_eq!(&m[8..12], &ne32(9));
        assert_eq!(&m[16..], &[0; 8], "every family, every interface");
    }

    #[test]
    fn address_dumps_give_index_and_address_until_done() {
        let mut d = newaddr(5, AF_INET, 7, &[198, 18, 0, 100], true);
        d.extend(newaddr(
            5,
            AF_INET6,
            7,
            &"2001:db8::100"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            false,
        ));
        d.extend(newaddr(4, AF_INET, 8, &[198, 18, 9, 9], true));
        let mut out = vec![];
        assert!(!parse_addresses(&d, 5, &mut out).unwrap(), "not done yet");
        assert_eq!(
            out,
            vec![
                (7, "198.18.0.100".parse().unwrap()),
                (7, "2001:db8::100".parse().unwrap())
            ],
            "another sequence's message is not ours"
        );
        let done = reply(NLMSG_DONE, 5, &[0; 4]);
        assert!(parse_addresses(&done, 5, &mut out).unwrap());
        let mut e = (-1i32).to_ne_bytes().to_vec();
        e.extend_from_slice(&[0; 16]);
        assert!(parse_addresses(&reply(NLMSG_ERROR, 5, &e), 5, &mut out).is_err());
        // Truncated: an error, never a panic.
        for cut in 1..d.len() {
            let mut o = vec![];
            let _ = parse_addresses(&d[..cut], 5, &mut o);
        }
    }

    #[test]
    fn replies_are_acks_errors_or_links() {
        let ack = reply(NLMSG_ERROR, 3, &[0; 20]);
        assert_eq!(parse_reply(&ack, 3).unwrap(), None);
        let mut e = (-17i32).to_ne_bytes().to_vec();
        e.extend_from_slice(&[0; 16]);
        let err = parse_reply(&reply(NLMSG_ERROR, 3, &e), 3).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(17));
        let mut link = vec![0u8; 4];
        link.extend_from_slice(&ne32(42));
        link.extend_from_slice(&[0; 8]);
        assert_eq!(
            parse_reply(&reply(RTM_NEWLINK, 3, &link), 3).unwrap(),
            Some(42)
        );
        assert!(
            parse_reply(&ack, 4).is_err(),
            "another message's answer is not ours"
        );
        assert!(parse_reply(&ack[..10], 3).is_err());
    }
}
