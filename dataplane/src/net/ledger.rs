//! The accounting identity of a worker's counters: every frame a worker
//! takes in (`rx`, which includes what other workers handed to it) has
//! exactly one fate, and each fate has a counter.
//!
//! Why a ledger: a load balancer is judged by what it loses without
//! saying so. Counters alone do not show a path that forgets to count;
//! their sum does. With the worker at rest (nothing in its rings or
//! queues),
//!
//! ```text
//! rx = sent_on + answered + handed_over + to_kernel + consumed
//!      + every drop of a frame taken in, by reason
//! ```
//!
//! where *sent_on* is what the load-balancing stage sent on
//! (`from_stage`) and what the director routed as a router (`routed`, or
//! the ICMP error that replaced it), *answered* the
//! director's own answers (ARP and neighbour advertisements, echo
//! replies, resets, port unreachables), *consumed* the neighbour replies
//! learned and the fragments taken for reassembly. What happens after a
//! frame's fate (a routed packet then waiting for ARP, a full tx queue, a
//! reassembled datagram's own fate) is counted too, but on the sending
//! side or per datagram, not here: [`role`] says which counter is which,
//! and a counter no one classified is [`Role::Unclassified`] (the daemon's
//! tests refuse one).
//!
//! The load balancer counts a reassembled datagram it drops under its
//! reason (`lb_drop_*`) and, as a datagram, `frag_datagram_refused`; its
//! fragments were already counted one by one as `fragments_received`, so
//! the ledger takes those drops out again.

use super::Counter;
use crate::frag::FragDrop;
use crate::lb::LbDrop;

/// What a counter is to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Frames taken in (`rx`).
    TakenIn,
    /// One fate of a frame taken in.
    Fate,
    /// Counted in a fate as well, taken out of the sum (datagram-level
    /// drops the load balancer also counted under its reason).
    Counted,
    /// Not a fate: what was sent, learned or parked afterwards, a detail
    /// of another counter, a gauge, or a datagram-level count.
    Outside,
    /// A name this module does not know: a counter added without saying
    /// where its packets go.
    Unclassified,
}

/// The fates among the stack's counters.
const STACK_FATES: &[Counter] = &[
    Counter::DropUnknownPort,
    Counter::DropMalformed,
    Counter::DropOtherMac,
    Counter::DropVlan,
    Counter::DropUnknownVlan,
    Counter::DropArpOther,
    Counter::ConsumedNeighbor,
    Counter::ArpReplied,
    Counter::NdpAdvertised,
    Counter::DropNdpHopLimit,
    Counter::DropFragment,
    Counter::DropChecksum,
    Counter::DropIcmpOther,
    Counter::DropIcmp6Other,
    Counter::DropStandby,
    Counter::DropMartianSource,
    Counter::DropMartianDestination,
    Counter::DropLocalOther,
    Counter::DropNotLocal,
    Counter::DropRateLimited,
    Counter::IcmpEchoReplied,
    Counter::Icmp6EchoReplied,
    Counter::TcpResetSent,
    Counter::PortUnreachableSent,
    Counter::FromStage,
    Counter::Routed,
    Counter::TimeExceededSent,
    Counter::NetUnreachableSent,
    Counter::TooBigSent,
    Counter::DropNotRoutable,
    Counter::DropTtlExpired,
    Counter::DropRouterUnanswered,
    Counter::DropSnatNoPort,
    Counter::DropSnatTableFull,
    Counter::HandedOver,
    Counter::ToKernel,
];

/// Fragment drops that count one fragment taken in (the others count
/// whole datagrams).
const FRAG_FATES: &[FragDrop] = &[
    FragDrop::Overlap,
    FragDrop::Duplicate,
    FragDrop::TooManyFragments,
    FragDrop::BadLength,
    FragDrop::Malformed,
    FragDrop::OfDiscarded,
];

/// Names of the load balancer's own counts (`WorkerSample::named` in the
/// daemon) that are fates.
const LB_FATES: &[&str] = &["fragments_received"];

/// Names of the load balancer's own counts that are not fates.
const LB_OUTSIDE: &[&str] = &[
    "connections_created",
    "icmp_errors_sent",
    "icmp_errors_related",
    "datagrams_reassembled",
    "path_mtus_learned",
    "toa_skipped",
    "synproxy_cookies_sent",
    "synproxy_cookies_ok",
    "synproxy_cookies_bad",
    "synproxy_server_syns",
    "synproxy_opened",
    "defense_dropped_half_open",
    "defense_dropped_idle",
    "conn_table_entries",
    "conn_table_capacity",
];

/// The role of the counter named `name` (as `uvsadm --counters` names it).
pub fn role(name: &str) -> Role {
    if name == Counter::Rx.as_str() {
        return Role::TakenIn;
    }
    if let Some(c) = Counter::ALL.iter().find(|c| c.as_str() == name) {
        return if STACK_FATES.contains(c) {
            Role::Fate
        } else {
            Role::Outside
        };
    }
    if let Some(r) = FragDrop::ALL.iter().find(|r| r.as_str() == name) {
        return match r {
            FragDrop::Refused => Role::Counted,
            r if FRAG_FATES.contains(r) => Role::Fate,
            _ => Role::Outside,
        };
    }
    if let Some(r) = name.strip_prefix("lb_drop_") {
        return if LbDrop::ALL.iter().any(|d| d.as_str() == r) {
            Role::Fate
        } else {
            Role::Unclassified
        };
    }
    if let Some(r) = name.strip_prefix("malformed_") {
        return if crate::wire::ParseError::ALL.iter().any(|e| e.as_str() == r) {
            Role::Outside
        } else {
            Role::Unclassified
        };
    }
    if LB_FATES.contains(&name) {
        return Role::Fate;
    }
    if LB_OUTSIDE.contains(&name) {
        return Role::Outside;
    }
    Role::Unclassified
}

/// One worker's (or the sum of all workers') ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Frames taken in.
    pub taken_in: u64,
    /// The sum of the fates.
    pub accounted: u64,
    /// Every non-zero fate, by name (minus [`Role::Counted`] ones, shown
    /// with their count negated in `counted`).
    pub fates: Vec<(String, u64)>,
    /// Datagram-level drops taken out of the sum.
    pub counted: Vec<(String, u64)>,
    /// Names no one classified (see [`Role::Unclassified`]).
    pub unclassified: Vec<String>,
}

impl Ledger {
    /// The ledger of `named` counters (name, value).
    pub fn of<'a>(named: impl IntoIterator<Item = (&'a str, u64)>) -> Ledger {
        let mut l = Ledger::default();
        let mut minus = 0u64;
        for (name, v) in named {
            match role(name) {
                Role::TakenIn => l.taken_in += v,
                Role::Fate => {
                    l.accounted += v;
                    if v != 0 {
                        l.fates.push((name.to_string(), v));
                    }
                }
                Role::Counted => {
                    minus += v;
                    if v != 0 {
                        l.counted.push((name.to_string(), v));
                    }
                }
                Role::Outside => {}
                Role::Unclassified => l.unclassified.push(name.to_string()),
            }
        }
        l.accounted = l.accounted.wrapping_sub(minus);
        l
    }

    /// Frames taken in that no fate counts (negative: counted twice).
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.taken_in) - i128::from(self.accounted)
    }
}

/// The sending side's balance: every frame the worker set out to send
/// (what the stage routed, its own answers and neighbour requests, the
/// reassembled datagrams it forwarded, not those it handed to another
/// worker) was taken by a tx queue, refused
/// by a full one, had no route, found the resolution queue full, or was
/// parked for resolution (then sent, counted in `tx`, or dropped as
/// `drop_unresolved`).
///
/// Exact while no forwarded datagram had to be fragmented
/// (`fragments_sent` = 0: a fragmented datagram leaves as several frames
/// and is not counted per datagram) and the neighbour table never filled
/// (`drop_neighbor_table_full` also counts neighbours not learned);
/// [`Sends::of`] gives `None` otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sends {
    /// Frames set out to be sent.
    pub attempted: u64,
    /// Their outcomes: tx, refused, unroutable, parked.
    pub outcomes: u64,
}

impl Sends {
    pub fn of<'a>(named: impl IntoIterator<Item = (&'a str, u64)>) -> Option<Sends> {
        let named: Vec<(&str, u64)> = named.into_iter().collect();
        let get = |n: &str| named.iter().find(|(k, _)| *k == n).map_or(0, |(_, v)| *v);
        if get(Counter::FragmentsSent.as_str()) != 0 || get(Counter::DropNeighborFull.as_str()) != 0
        {
            return None;
        }
        let c = |c: Counter| get(c.as_str());
        // A datagram handed to its connection's owner is sent (and
        // counted reassembled) there.
        let datagrams = get("datagrams_reassembled")
            .wrapping_sub(get(FragDrop::Refused.as_str()))
            .wrapping_sub(get(FragDrop::NotServed.as_str()))
            .wrapping_sub(c(Counter::DatagramsHandedOver));
        let attempted = c(Counter::FromStage)
            + c(Counter::Routed)
            + c(Counter::TimeExceededSent)
            + c(Counter::NetUnreachableSent)
            + c(Counter::TooBigSent)
            + c(Counter::ArpReplied)
            + c(Counter::NdpAdvertised)
            + c(Counter::IcmpEchoReplied)
            + c(Counter::Icmp6EchoReplied)
            + c(Counter::TcpResetSent)
            + c(Counter::PortUnreachableSent)
            + c(Counter::ArpRequested)
            + c(Counter::NdpSolicited)
            + c(Counter::Announced)
            + c(Counter::FromKernel)
            + datagrams;
        let outcomes = (c(Counter::Tx)
            + c(Counter::DropTxFull)
            + c(Counter::DropNoRoute)
            + c(Counter::DropPendingFull)
            + c(Counter::DropFragNeeded)
            + c(Counter::Queued))
        .wrapping_sub(c(Counter::Released));
        Some(Sends {
            attempted,
            outcomes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stack_counter_has_a_role() {
        for c in Counter::ALL {
            assert_ne!(role(c.as_str()), Role::Unclassified, "{c:?}");
        }
        for r in FragDrop::ALL {
            assert_ne!(role(r.as_str()), Role::Unclassified, "{r:?}");
        }
        for r in LbDrop::ALL {
            assert_eq!(role(&format!("lb_drop_{}", r.as_str())), Role::Fate);
        }
        assert_eq!(role("lb_drop_nonsense"), Role::Unclassified);
        assert_eq!(role("something_new"), Role::Unclassified);
    }

    #[test]
    fn the_ledger_sums_fates_and_takes_refused_datagrams_out() {
        let named = [
            ("rx", 10),
            ("tx", 99),
            ("from_stage", 4),
            ("drop_malformed", 2),
            ("malformed_truncated", 2),
            ("fragments_received", 3),
            ("lb_drop_no_connection", 2),
            ("frag_datagram_refused", 1),
            ("frag_timeout", 5),
        ];
        let l = Ledger::of(named);
        assert_eq!(l.taken_in, 10);
        assert_eq!(l.accounted, 10);
        assert_eq!(l.unaccounted(), 0);
        assert!(l.unclassified.is_empty());
        assert_eq!(Ledger::of([("rx", 3), ("from_stage", 1)]).unaccounted(), 2);
        assert_eq!(Ledger::of([("rx", 1), ("what", 1)]).unclassified, ["what"]);
    }

    #[test]
    fn sends_balance_parked_frames_and_step_aside_for_fragmented_datagrams() {
        let named = [
            ("from_stage", 10),
            ("icmp_echo_replied", 2),
            ("arp_requested", 1),
            ("datagrams_reassembled", 4),
            ("frag_datagram_refused", 1),
            ("datagrams_handed_over", 1),
            ("fragments_handed_over", 3),
            ("tx", 9),
            ("drop_no_route", 1),
            ("queued_for_resolution", 4),
            ("released_after_resolution", 2),
        ];
        let s = Sends::of(named).unwrap();
        assert_eq!(
            s,
            Sends {
                attempted: 15,
                outcomes: 12
            }
        );
        assert_eq!(Sends::of([("fragments_sent", 2)]), None);
    }
}
