//! Persistence templates (`-p`, `-M`): the key a new connection's template
//! is looked up by, its validity check, and the destination port rules.
//!
//! Why templates are table entries: as in the kernel, a template is a
//! connection-table entry with the TEMPLATE flag, so it expires through the
//! same wheel, is listed by `-L -c` (state NONE/ASSURED, client port 0) and
//! counts in PersistConn. It cannot expire while it controls connections
//! (re-armed with 60 s instead, in [`ConnTable::expire`]).
//!
//! With several workers a client's connections are spread over them, so
//! each worker's template refers to one director-wide template
//! ([`super::shared`]): a worker without a template of its own takes the
//! destination another worker's names ([`adopt_shared`]) before it
//! schedules.

use super::shared::{SharedRef, SharedTemplates};
use super::{ConnAddr, ConnId, ConnKey, ConnTable, Sysctls, IPPROTO_IP};
use crate::model::{Dest, DestShared, Family, ServiceConfig, ServiceKey};

/// FTP control port: persistent FTP services key templates on port 0.
pub const FTP_PORT: u16 = 21;

/// A template key and how its destination port is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateKey {
    pub key: ConnKey,
    /// True: the template's dport is the destination's port; false: 0.
    pub dport_from_dest: bool,
}

/// `client` masked with the service's persistence granularity: IPv4 ANDed
/// with the netmask (host-order `u32`), IPv6 truncated to the prefix length.
pub fn mask_client(client: ConnAddr, netmask: u32) -> ConnAddr {
    let mut b = client.0;
    if client.is_v4() {
        let m = netmask.to_be_bytes();
        for k in 0..4 {
            b[12 + k] &= m[k];
        }
    } else {
        let plen = netmask.min(128) as usize;
        for (k, byte) in b.iter_mut().enumerate() {
            let lo = k * 8;
            if plen <= lo {
                *byte = 0;
            } else if plen < lo + 8 {
                *byte &= 0xffu8 << (8 - (plen - lo));
            }
        }
    }
    ConnAddr(b)
}

/// The template key for a packet of a persistent service (reference 4.5):
/// `proto`, `client`, `vaddr`, `vport` are the packet's.
///
/// * packet port == service port, not FTP: `(proto, client&mask, 0, VIP,
///   vport)`, dport = destination's port;
/// * FTP (port 21) or a port-0 service: `(proto, client&mask, 0, VIP, 0)`,
///   dport 0;
/// * fwmark service: `(IP, client&mask, 0, fwmark as address, 0)`, dport 0.
pub fn template_key(
    svc: &ServiceConfig,
    proto: u8,
    client: ConnAddr,
    vaddr: ConnAddr,
    vport: u16,
) -> TemplateKey {
    let snet = mask_client(client, svc.netmask);
    let (fwmark, svc_port) = match svc.key {
        ServiceKey::Addr { port, .. } => (None, port),
        ServiceKey::Fwmark { mark, family } => (Some((mark, family)), 0),
    };
    if let Some((mark, family)) = fwmark {
        let m = mark.to_be_bytes();
        let addr = match family {
            Family::V4 => ConnAddr::from_v4(m),
            Family::V6 => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&m);
                ConnAddr(b)
            }
        };
        return TemplateKey {
            key: ConnKey::new(IPPROTO_IP, snet, 0, addr, 0),
            dport_from_dest: false,
        };
    }
    if vport == svc_port && svc_port != FTP_PORT {
        TemplateKey {
            key: ConnKey::new(proto, snet, 0, vaddr, vport),
            dport_from_dest: true,
        }
    } else {
        TemplateKey {
            key: ConnKey::new(proto, snet, 0, vaddr, 0),
            dport_from_dest: false,
        }
    }
}

/// Destination port of a connection of a persistent service: the
/// destination's port if the packet's port is the service port and the
/// destination's port is non-zero, else the packet's port.
pub fn persistent_conn_dport(svc_port: u16, packet_vport: u16, dest_port: u16) -> u16 {
    if packet_vport == svc_port && dest_port != 0 {
        dest_port
    } else {
        packet_vport
    }
}

/// Whether a template naming `d` may still take new connections: its
/// destination is in the service (not deleted) and, with
/// `expire_quiescent_template`, not quiescent. Weight 0 and OVERLOAD alone
/// do not invalidate a template.
pub fn template_dest_valid(d: &DestShared, sysctls: &Sysctls) -> bool {
    d.is_available() && !(sysctls.expire_quiescent_template && d.weight() == 0)
}

/// The director-wide template for `k` (several workers), if another worker
/// holds a valid one: a reference on it and the index of its destination
/// in `dests`. One whose destination is no longer valid (deleted: not in
/// the list; or quiescent, see [`template_dest_valid`]) is neutralised for
/// every worker and `None` comes back: the caller schedules.
pub fn adopt_shared(
    shared: &SharedTemplates,
    k: &ConnKey,
    dests: &[Dest],
    sysctls: &Sysctls,
) -> Option<(SharedRef, usize)> {
    let r = shared.acquire(k)?;
    match shared_dest(&r, dests) {
        Some(i) if template_dest_valid(&dests[i].shared, sysctls) => Some((r, i)),
        _ => {
            shared.neutralise(r.slot);
            shared.release(r.slot);
            None
        }
    }
}

/// The index in `dests` of the destination a director-wide template names.
pub fn shared_dest(r: &SharedRef, dests: &[Dest]) -> Option<usize> {
    let addr = r.daddr.to_ip();
    dests
        .iter()
        .position(|d| d.config.addr == addr && d.config.port == r.dport)
}

impl ConnTable {
    /// The valid template with key `k`, if any. A template whose
    /// destination was deleted (or, with `expire_quiescent_template`, has
    /// weight 0) is neutralised so it never matches again, and `None` is
    /// returned: the caller schedules and creates a new template. Weight 0
    /// and OVERLOAD alone do not invalidate a template. With several
    /// workers the director-wide template it refers to is neutralised with
    /// it, and a template whose director-wide one another worker
    /// neutralised is no longer valid either.
    pub fn find_template(&mut self, k: &ConnKey) -> Option<ConnId> {
        let i = self.lookup_template(k)?;
        let c = self.get(ConnId(i));
        let slot = c.shared_slot();
        let valid = c
            .dest()
            .is_some_and(|d| template_dest_valid(d, self.sysctls()))
            && match (slot, self.shared_templates()) {
                (Some(s), Some(t)) => t.is_current(s),
                _ => true,
            };
        if valid {
            Some(ConnId(i))
        } else {
            if let (Some(s), Some(t)) = (slot, self.shared_templates()) {
                t.neutralise(s);
            }
            self.neutralise(i);
            None
        }
    }
}
