//! Per-worker counters of the L2/L3 layer: what was answered, and every
//! drop by its reason.
//!
//! One writer (the worker) per set, relaxed load+store like
//! [`crate::stats`]; the control thread or the shutdown report reads them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::ParseError;

macro_rules! counters {
    ($($(#[$m:meta])* $v:ident => $s:literal,)*) => {
        /// What a counter counts. Drop reasons are the `Drop*` variants.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter { $($(#[$m])* $v,)* }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$v,)*];
            /// Stable snake_case name (logs, stats output, tests).
            pub const fn as_str(self) -> &'static str {
                match self { $(Counter::$v => $s,)* }
            }
        }
    };
}

counters! {
    /// Frames received.
    Rx => "rx",
    /// Frames a tx queue took (the kernel interfaces' too); what a full
    /// queue refused is `drop_tx_full` instead.
    Tx => "tx",
    /// ARP requests for our addresses answered.
    ArpReplied => "arp_replied",
    /// ARP requests we sent to resolve a next hop.
    ArpRequested => "arp_requested",
    /// Neighbour solicitations for our addresses answered.
    NdpAdvertised => "ndp_advertised",
    /// Neighbour solicitations we sent to resolve a next hop.
    NdpSolicited => "ndp_solicited",
    /// Neighbour entries learned or refreshed from ARP/NDP.
    NeighborLearned => "neighbor_learned",
    /// ICMP echo requests answered.
    IcmpEchoReplied => "icmp_echo_replied",
    /// ICMPv6 echo requests answered.
    Icmp6EchoReplied => "icmp6_echo_replied",
    /// Packets parked until their next hop resolves.
    Queued => "queued_for_resolution",
    /// Parked packets sent after resolution.
    Released => "released_after_resolution",
    /// Frames handed to the forwarding stage.
    Forwarded => "to_stage",
    /// Packets the forwarding stage sent on (rewritten, encapsulated, or
    /// turned into an ICMP error): one of the fates of a frame taken in.
    FromStage => "from_stage",
    /// Malformed frames (the parser's reason is counted separately).
    DropMalformed => "drop_malformed",
    /// 802.1ad (QinQ) and stacked tags, and 802.1Q tags that are not
    /// whole: the director is no VLAN bridge.
    DropVlan => "drop_vlan_tagged",
    /// 802.1Q frames of a VLAN not configured on the port they came in on.
    DropUnknownVlan => "drop_unknown_vlan",
    /// Unicast frames for another MAC (promiscuous ports).
    DropOtherMac => "drop_other_mac",
    /// ARP that is neither a request for our address nor a reply.
    DropArpOther => "drop_arp_not_for_us",
    /// ARP replies and NDP advertisements, consumed after learning.
    ConsumedNeighbor => "consumed_neighbor_reply",
    /// ICMP other than an echo request to us.
    DropIcmpOther => "drop_icmp_other",
    /// ICMPv6 other than echo/NS/NA to us (router advertisements...).
    DropIcmp6Other => "drop_icmp6_other",
    /// Bad IPv4 header checksum (any packet), or bad ICMP/ICMPv6 checksum
    /// of a message to us.
    DropChecksum => "drop_bad_checksum",
    /// NDP with a hop limit other than 255 (RFC 4861 7.1.1).
    DropNdpHopLimit => "drop_ndp_hop_limit",
    /// Fragmented ICMP to us.
    DropFragment => "drop_fragment",
    /// IP for one of our addresses that is not ICMP (nothing listens), a
    /// TCP reset or a protocol other than TCP/UDP to a VIP port without
    /// service, or traffic to a service the load balancer passed back.
    DropLocalOther => "drop_local_not_icmp",
    /// IP not for us, and no forwarding stage wanted it.
    DropNotLocal => "drop_not_local",
    /// No route to the destination.
    DropNoRoute => "drop_no_route",
    /// The queue of packets waiting for resolution was full.
    DropPendingFull => "drop_pending_full",
    /// The next hop did not answer ARP/NDP in time.
    DropUnresolved => "drop_unresolved",
    /// No mbuf for an ARP request or neighbour solicitation.
    DropNoBuffer => "drop_no_buffer",
    /// The tx queue was full.
    DropTxFull => "drop_tx_full",
    /// Neighbour table full: a new entry could not be stored.
    DropNeighborFull => "drop_neighbor_table_full",
    /// A frame arrived on a port with no L3 configuration.
    DropUnknownPort => "drop_unknown_port",
    /// Packets handed to the worker that owns their connection.
    HandedOver => "handed_over",
    /// Packets received from other workers (their connection is ours).
    HandedIn => "handed_in",
    /// Hand-overs lost because the owner's inbox was full.
    DropHandOverFull => "drop_handover_full",
    /// Copies of neighbour answers (ARP replies, neighbour advertisements)
    /// put on the other workers' rings so that they learn the neighbour
    /// too; the receivers count them in `handed_in`, beside the hand-overs.
    NeighborShared => "neighbor_shared",
    /// Reassembled datagrams handed to the worker owning their connection
    /// (in fragments, `fragments_handed_over`): balanced there, not here.
    DatagramsHandedOver => "datagrams_handed_over",
    /// The fragments of those datagrams put on the owner's ring: not
    /// frames taken in, so the receiver counts them in `handed_in` beside
    /// the hand-overs and `neighbor_shared`.
    FragmentsHandedOver => "fragments_handed_over",
    /// Frames handed to a port's kernel interface (the exception path).
    ToKernel => "to_kernel",
    /// Frames for the kernel lost because the worker's ring to the
    /// exception thread was full (included in `to_kernel`).
    DropKernelFull => "drop_kernel_full",
    /// Frames from a kernel interface sent out of their port.
    FromKernel => "from_kernel",
    /// TSC cycles the worker spent in its turns (every rx queue, the
    /// rings, the timers), whether they found packets or not.
    PollCycles => "poll_cycles",
    /// TSC cycles of the turns that took packets in: against
    /// `poll_cycles`, the share of the worker's time spent on traffic (a
    /// worker that is the bottleneck of a benchmark is near 1).
    BusyCycles => "busy_cycles",
    /// Turns that took packets in: `rx` over this is the mean burst a
    /// busy turn found (near the burst size: the queues never ran dry).
    BusyTurns => "busy_turns",
    /// Packets to a floating address this director does not hold (the
    /// VRRP BACKUP's VIPs), dropped before the load balancer.
    DropStandby => "drop_vip_standby",
    /// Gratuitous ARPs and unsolicited neighbour advertisements sent for
    /// floating addresses this director took.
    Announced => "vip_announced",
    /// TCP resets sent for a VIP port no service covers.
    TcpResetSent => "tcp_reset_sent",
    /// ICMP port unreachables sent for a UDP VIP port no service covers.
    PortUnreachableSent => "icmp_port_unreachable_sent",
    /// An answer of the director's own (a reset, a port unreachable, an
    /// echo reply for a VIP) over the worker's rate limit.
    DropRateLimited => "drop_rate_limited",
    /// IPv4 or IPv6 packets from a source no host may send from (zero
    /// network, broadcast, multicast, loopback).
    DropMartianSource => "drop_martian_source",
    /// IPv4 or IPv6 packets to the zero network or loopback.
    DropMartianDestination => "drop_martian_destination",
    /// Frames with bytes behind the IP packet (link padding), cut before
    /// anything else looked at them (not a drop).
    Trimmed => "trimmed_behind_ip_length",
    /// Fragments sent for reassembled datagrams larger than the MTU.
    FragmentsSent => "fragments_sent",
    /// A reassembled datagram larger than the egress MTU that may not be
    /// fragmented (IPv4 DF).
    DropFragNeeded => "drop_frag_needed",
    /// Packets for neither a service nor the director, routed on as a
    /// Linux router does ([`super::forward`]).
    Routed => "routed",
    /// ICMP time exceeded / ICMPv6 hop limit exceeded sent for a routed
    /// packet whose TTL ran out.
    TimeExceededSent => "icmp_time_exceeded_sent",
    /// ICMP network unreachable / ICMPv6 no route sent for a routed packet
    /// no route matches.
    NetUnreachableSent => "icmp_net_unreachable_sent",
    /// ICMP fragmentation needed / ICMPv6 packet too big sent for a routed
    /// packet larger than the egress MTU that may not be fragmented.
    TooBigSent => "icmp_too_big_sent",
    /// Routed packets that may not be forwarded: to a broadcast or
    /// link-local address, or from a link-local one.
    DropNotRoutable => "drop_not_routable",
    /// Routed packets whose TTL / hop limit ran out and that get no time
    /// exceeded (an ICMP error itself, a later fragment).
    DropTtlExpired => "drop_ttl_expired",
    /// Routed packets that needed an ICMP error (no route, too big) that
    /// could not be sent: no address on the receiving port toward the
    /// source, or an error about an error (dropped without a word, as
    /// Linux).
    DropRouterUnanswered => "drop_router_unanswered",
    /// Routed packets a SNAT/MASQUERADE rule maps whose worker has no
    /// free source port left on the address (existing mappings go on).
    DropSnatNoPort => "drop_snat_no_port",
    /// Routed packets a SNAT/MASQUERADE rule maps when the worker's
    /// mapping table is full.
    DropSnatTableFull => "drop_snat_table_full",
    /// Routed packets whose source a SNAT/MASQUERADE rule rewrote.
    SnatTranslated => "snat_translated",
}

const N: usize = Counter::ALL.len();

/// One worker's L2/L3 counters, plus parse errors by reason.
#[derive(Debug)]
#[repr(align(64))]
pub struct NetCounters {
    values: [AtomicU64; N],
    parse: [AtomicU64; ParseError::COUNT],
}

impl Default for NetCounters {
    fn default() -> Self {
        NetCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            parse: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl NetCounters {
    #[inline(always)]
    pub fn add(&self, c: Counter, n: u64) {
        let a = &self.values[c as usize];
        a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    #[inline(always)]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }
    #[inline(always)]
    pub fn parse_error(&self, e: ParseError) {
        let a = &self.parse[e.index()];
        a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.inc(Counter::DropMalformed);
    }
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }
    pub fn get_parse(&self, e: ParseError) -> u64 {
        self.parse[e.index()].load(Ordering::Relaxed)
    }
    /// Non-zero counters as `(name, value)`, parse errors as
    /// `malformed_<reason>`.
    pub fn nonzero(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = Counter::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), self.get(*c)))
            .collect();
        v.extend(
            ParseError::ALL
                .iter()
                .map(|e| (format!("malformed_{}", e.as_str()), self.get_parse(*e))),
        );
        v.retain(|(_, n)| *n != 0);
        v
    }
}
