//! ICMP echo (RFC 792) for the director's own IPv4 addresses.
//!
//! The request is turned into the reply in place (same identifier,
//! sequence and data) and routed back to its source: the reply resolves its
//! next hop like any packet, so a client behind a gateway gets its answer
//! through that gateway. Checksums are verified first and recomputed.

use std::net::IpAddr;

use super::stack::{Io, Stack};
use super::Counter;
use crate::buf::PacketBuf;
use crate::wire::icmp::{kind, Icmpv4Packet};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{Fragment, PacketMeta};

/// TTL of the replies we originate (Linux's default).
pub(super) const REPLY_TTL: u8 = 64;

pub(super) fn input<B: PacketBuf>(
    st: &mut Stack<B>,
    mut buf: B,
    meta: &PacketMeta,
    now: u64,
    io: &mut impl Io<B>,
) {
    if meta.fragment != Fragment::No {
        return st.drop_buf(buf, Counter::DropFragment);
    }
    let (l3, l4, end) = (
        usize::from(meta.l3_offset),
        usize::from(meta.l4_offset),
        meta.l3_end(),
    );
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (meta.src, meta.dst) else {
        return st.drop_buf(buf, Counter::DropMalformed);
    };
    let verdict = {
        let d = buf.data_mut();
        let ip_ok = Ipv4Packet::new_checked(&d[l3..end]).is_ok_and(|p| p.verify_checksum());
        match Icmpv4Packet::new_checked(&mut d[l4..end]) {
            Err(_) => Err(Counter::DropMalformed),
            Ok(_) if !ip_ok => Err(Counter::DropChecksum),
            Ok(p) if !p.verify_checksum() => Err(Counter::DropChecksum),
            Ok(p) if p.msg_type() != kind::ECHO_REQUEST || p.msg_code() != 0 => {
                Err(Counter::DropIcmpOther)
            }
            Ok(mut p) => {
                p.set_msg_type(kind::ECHO_REPLY);
                p.fill_checksum();
                Ok(())
            }
        }
    };
    if let Err(why) = verdict {
        return st.drop_buf(buf, why);
    }
    {
        let d = buf.data_mut();
        let mut ip = Ipv4Packet::new_unchecked(&mut d[l3..end]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(REPLY_TTL);
        ip.fill_checksum();
    }
    let pad = buf.len() - end;
    buf.trim(pad);
    st.counters().inc(Counter::IcmpEchoReplied);
    st.send_ip(buf, IpAddr::V4(src), now, io);
}
