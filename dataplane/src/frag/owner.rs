//! Which worker reassembles a datagram when there are several, so that it
//! is balanced on the worker owning its connection.
//!
//! Why this is not simply the connection's owner: only the first fragment
//! carries the ports the owner is computed from (`owner(client, client
//! port)`, [`crate::rss`]); a later one carries the source address, the
//! destination and the datagram's identification. So the fragments go to
//! the worker of their source and identification ([`fragment_owner`]),
//! which every fragment names alike: all fragments of one datagram meet
//! there, whichever queue RSS gave them. After reassembly that worker
//! knows the ports. Where their owner is another worker (about half the
//! datagrams with two workers), it cuts the datagram again and hands the
//! pieces over under an identification that leads to that owner
//! ([`ident_for`]): the owner reassembles them (its own by the same rule)
//! and balances the datagram, so its connection entry, the later whole
//! packets of the flow and the real server's answers (fragmented or not)
//! all meet on one worker.
//!
//! The identifications tried are the datagram's own with bits 8..15
//! (IPv4) or 24..31 (IPv6) changed: far from the identifications a client
//! uses next (Linux counts them up per destination), so that the new key
//! could only meet another datagram of the same client under reassembly
//! on the owner with hundreds of them in flight (it would then be
//! discarded as overlapping and counted, `frag_overlap`).

use std::net::IpAddr;

use crate::rss::Ownership;

/// The 16 bits of an identification that choose the worker: IPv4's
/// identification as it is, IPv6's 32 bits folded (both halves count).
#[inline]
pub fn ident_key(ident: u32) -> u16 {
    (ident ^ (ident >> 16)) as u16
}

/// The worker that reassembles the datagram `ident` from `src`.
#[inline]
pub fn fragment_owner(owners: &Ownership, src: IpAddr, ident: u32) -> usize {
    owners.owner(src, ident_key(ident))
}

/// An identification near `ident` (see the module docs) under which the
/// fragments of a datagram from `src` go to worker `want`, or `None` if
/// none of the 255 tried does (with the default redirection table, each
/// worker of up to 16 is among them: see the tests).
pub fn ident_for(owners: &Ownership, src: IpAddr, ident: u32, want: usize) -> Option<u32> {
    let shift = if src.is_ipv4() { 8 } else { 24 };
    (1..=255u32)
        .map(|k| ident ^ (k << shift))
        .find(|&id| fragment_owner(owners, src, id) == want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_key_of_an_ipv4_identification_is_itself() {
        for id in [0u32, 1, 0x1234, 0xffff] {
            assert_eq!(u32::from(ident_key(id)), id);
        }
        assert_ne!(
            ident_key(0x0001_0000),
            ident_key(0),
            "IPv6: the upper half counts"
        );
    }

    proptest! {
        /// Whatever the source, identification and wanted worker, the
        /// rewritten identification leads there, differs from the
        /// original only in the bits meant, and is found for every worker
        /// count up to 16.
        #[test]
        fn the_rewritten_identification_always_leads_to_the_wanted_worker(
            v6 in any::<bool>(),
            a in any::<u128>(),
            id in any::<u32>(),
            workers in 2usize..=16,
            want in 0usize..16,
        ) {
            let want = want % workers;
            let owners = Ownership::new(workers);
            let src: IpAddr = if v6 {
                std::net::Ipv6Addr::from(a).into()
            } else {
                std::net::Ipv4Addr::from(a as u32).into()
            };
            let id = if v6 { id } else { id & 0xffff };
            let new = ident_for(&owners, src, id, want);
            prop_assert!(new.is_some(), "{src} {id:#x} -> worker {want} of {workers}");
            let new = new.unwrap();
            prop_assert_eq!(fragment_owner(&owners, src, new), want);
            prop_assert_ne!(new, id);
            let mask = if v6 { 0xff00_0000 } else { 0xff00 };
            prop_assert_eq!(new & !mask, id & !mask);
            if !v6 {
                prop_assert!(new <= 0xffff, "an IPv4 identification is 16 bits");
            }
        }
    }
}
