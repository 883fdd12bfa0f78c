//! TCP connection states, the IPVS state tables and the per-state timeouts.
//!
//! Why tables: IPVS does not track TCP sequence numbers; it only classifies
//! each packet as one event (RST before SYN before FIN before ACK) and looks
//! the next state up in a table chosen by the packet's direction. Copying the
//! kernel's tables (reference 4.2) cell by cell is what makes our
//! `ipvsadm -L -c` states and ActiveConn/InActConn counts match a kernel
//! director's for the same traffic.

use super::Dir;
use crate::model::Timeouts;

/// TCP state numbers, as the kernel's `IP_VS_TCP_S_*`.
pub mod state {
    pub const NONE: u8 = 0;
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT: u8 = 4;
    pub const TIME_WAIT: u8 = 5;
    pub const CLOSE: u8 = 6;
    pub const CLOSE_WAIT: u8 = 7;
    pub const LAST_ACK: u8 = 8;
    pub const LISTEN: u8 = 9;
    pub const SYNACK: u8 = 10;
    /// Number of states.
    pub const COUNT: usize = 11;
}

use state::*;

/// State names exactly as `ipvsadm -L -c` prints them.
pub const NAMES: [&str; state::COUNT] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];

/// Default timeouts in seconds, per state (reference 4.2).
const DEFAULT_TIMEOUTS: [u32; state::COUNT] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];

/// TCP header flag bits as they appear in the flags byte.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// The name of a TCP state (`"NONE"` for an out-of-range number).
pub fn name(s: u8) -> &'static str {
    NAMES.get(usize::from(s)).copied().unwrap_or("NONE")
}

/// States counted as active connections (SYN_SENT, SYN_RECV and SYNACK since
/// Linux 4.8, and ESTABLISHED).
pub const fn is_active(s: u8) -> bool {
    matches!(s, ESTABLISHED | SYN_SENT | SYN_RECV | SYNACK)
}

/// Timeout of a state in seconds: `--set tcp` replaces ESTABLISHED and
/// `--set tcpfin` replaces FIN_WAIT; the others are fixed.
pub fn timeout_secs(s: u8, t: &Timeouts) -> u32 {
    match s {
        ESTABLISHED => t.tcp,
        FIN_WAIT => t.tcp_fin,
        _ => DEFAULT_TIMEOUTS.get(usize::from(s)).copied().unwrap_or(2),
    }
}

/// Whether a packet with these flags may create a connection (SYN without
/// RST), without `sloppy_tcp`.
pub const fn is_new_conn(tcp_flags: u8) -> bool {
    tcp_flags & flags::SYN != 0 && tcp_flags & flags::RST == 0
}

/// Whether a packet without a connection may be scheduled: a SYN without
/// RST, or with `sloppy_tcp` any packet without RST (the kernel's
/// `tcp_conn_schedule`).
pub const fn may_schedule(tcp_flags: u8, sloppy_tcp: bool) -> bool {
    tcp_flags & flags::RST == 0 && (sloppy_tcp || tcp_flags & flags::SYN != 0)
}

/// Packet event: index into a table row, [`EV_NONE`] when none of RST,
/// SYN, FIN, ACK is set (such a packet moves the connection to CLOSE).
/// Priority RST, SYN, FIN, ACK, as the kernel's `tcp_state_idx`.
const fn event(tcp_flags: u8) -> usize {
    if tcp_flags & flags::RST != 0 {
        EV_RST
    } else if tcp_flags & flags::SYN != 0 {
        EV_SYN
    } else if tcp_flags & flags::FIN != 0 {
        EV_FIN
    } else if tcp_flags & flags::ACK != 0 {
        EV_ACK
    } else {
        EV_NONE
    }
}

/// [`event`] of every combination of the four flags that matter, indexed
/// by [`event_index`]: one load instead of a chain of tests per packet.
const EVENTS: [u8; 32] = {
    let mut t = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        t[i] = event(i as u8) as u8;
        i += 1;
    }
    t
};

/// FIN, SYN, RST and ACK bits of the flag byte (ACK is bit 4).
const fn event_index(tcp_flags: u8) -> usize {
    (tcp_flags & (flags::FIN | flags::SYN | flags::RST | flags::ACK)) as usize
}

const EV_SYN: usize = 0;
const EV_FIN: usize = 1;
const EV_ACK: usize = 2;
const EV_RST: usize = 3;
/// No flag that counts: every state goes to CLOSE.
const EV_NONE: usize = 4;

/// Which table a packet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Client to server.
    Input = 0,
    /// Server to client through the director (NAT).
    Output = 1,
    /// Client to server on a connection that never showed an output packet.
    InputOnly = 2,
}

impl Table {
    /// The table for a packet in `dir` on a connection with NOOUTPUT set or
    /// not (the caller clears NOOUTPUT on the first output packet).
    pub const fn select(dir: Dir, nooutput: bool) -> Table {
        match dir {
            Dir::Out => Table::Output,
            Dir::In if nooutput => Table::InputOnly,
            Dir::In => Table::Input,
        }
    }
}

type Row = [u8; state::COUNT];
type Tab = [Row; 5];
/// The row of [`EV_NONE`].
const NONE_ROW: Row = [CLOSE; state::COUNT];

// Columns: NO ES SS SR FW TW CL CW LA LI SA. Rows: syn fin ack rst.
const SR: u8 = SYN_RECV;
const ES: u8 = ESTABLISHED;
const SS: u8 = SYN_SENT;
const FW: u8 = FIN_WAIT;
const TW: u8 = TIME_WAIT;
const CL: u8 = CLOSE;
const CW: u8 = CLOSE_WAIT;
const LA: u8 = LAST_ACK;
const LI: u8 = LISTEN;
const SA: u8 = SYNACK;

const NORMAL: [Tab; 3] = [
    // INPUT
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
        NONE_ROW,
    ],
    // OUTPUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
        NONE_ROW,
    ],
    // INPUT-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
        NONE_ROW,
    ],
];

/// The `secure_tcp` variant: the normal tables with the cells of reference
/// 4.2 changed.
const SECURE: [Tab; 3] = [
    // INPUT
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
        [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
        NONE_ROW,
    ],
    // OUTPUT
    [
        [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
        NONE_ROW,
    ],
    // INPUT-ONLY
    [
        [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
        NONE_ROW,
    ],
];

/// Whether the packet is the common one of an established connection: a
/// bare ACK (no RST, SYN or FIN) in ESTABLISHED, which every table (normal
/// and `secure_tcp`; input, output, input-only) leaves in ESTABLISHED, so
/// the caller may skip [`next_state`].
#[inline]
pub const fn stays_established(current: u8, tcp_flags: u8) -> bool {
    current == ESTABLISHED
        && tcp_flags & (flags::RST | flags::SYN | flags::FIN | flags::ACK) == flags::ACK
}

/// Next state for a packet with `tcp_flags` using `table`, from `current`.
pub fn next_state(current: u8, table: Table, tcp_flags: u8, secure: bool) -> u8 {
    let ev = usize::from(EVENTS[event_index(tcp_flags)]);
    let tabs = if secure { &SECURE } else { &NORMAL };
    let cur = usize::from(current).min(state::COUNT - 1);
    tabs[table as usize][ev][cur]
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;

    const ALL: [u8; state::COUNT] = [NONE, ES, SS, SR, FW, TW, CL, CW, LA, LI, SA];

    #[test]
    fn event_priority_is_rst_syn_fin_ack() {
        assert_eq!(
            next_state(ESTABLISHED, Table::Input, RST | SYN | FIN | ACK, false),
            CL
        );
        // SYN beats FIN and ACK: INPUT syn from ES stays ES, fin would give CW.
        assert_eq!(
            next_state(ESTABLISHED, Table::Input, SYN | FIN | ACK, false),
            ES
        );
        assert_eq!(next_state(ESTABLISHED, Table::Input, FIN | ACK, false), CW);
        assert_eq!(next_state(SYN_RECV, Table::Input, ACK, false), ES);
    }

    #[test]
    fn stays_established_agrees_with_every_table() {
        for s in ALL {
            for f in 0..=255u8 {
                if !stays_established(s, f) {
                    continue;
                }
                for t in [Table::Input, Table::Output, Table::InputOnly] {
                    for secure in [false, true] {
                        assert_eq!(next_state(s, t, f, secure), ES, "{t:?} {f:#x} {secure}");
                    }
                }
            }
        }
        assert!(stays_established(ES, ACK | 0x08 /* PSH */));
        assert!(!stays_established(ES, ACK | FIN));
        assert!(!stays_established(SR, ACK));
    }

    #[test]
    fn event_table_matches_the_priority_chain() {
        for f in 0..=255u8 {
            assert_eq!(usize::from(EVENTS[event_index(f)]), event(f), "{f:#x}");
        }
    }

    #[test]
    fn no_flags_closes_from_any_state() {
        for s in ALL {
            for t in [Table::Input, Table::Output, Table::InputOnly] {
                assert_eq!(next_state(s, t, 0, false), CLOSE);
                assert_eq!(next_state(s, t, 0x08 /* PSH */, true), CLOSE);
            }
        }
    }

    #[test]
    fn secure_table_differs_only_in_listed_cells() {
        let listed = [
            (Table::Input, SYN, SA, SA),
            (Table::Input, FIN, SA, SA),
            (Table::Input, ACK, SR, SR),
            (Table::Input, ACK, SA, SA),
            (Table::Input, RST, SA, CL),
            (Table::Output, SYN, SR, SA),
            (Table::Output, SYN, SA, SA),
            (Table::InputOnly, SYN, NONE, SA),
            (Table::InputOnly, SYN, FW, SA),
            (Table::InputOnly, SYN, TW, SA),
            (Table::InputOnly, SYN, CL, SA),
            (Table::InputOnly, SYN, CW, SA),
            (Table::InputOnly, SYN, LA, SA),
            (Table::InputOnly, SYN, LI, SA),
            (Table::InputOnly, SYN, SA, SA),
        ];
        for t in [Table::Input, Table::Output, Table::InputOnly] {
            for f in [SYN, FIN, ACK, RST] {
                for s in ALL {
                    let want = listed
                        .iter()
                        .find(|(lt, lf, ls, _)| *lt == t && *lf == f && *ls == s)
                        .map(|c| c.3)
                        .unwrap_or_else(|| next_state(s, t, f, false));
                    assert_eq!(next_state(s, t, f, true), want, "{t:?} {f:#x} {}", name(s));
                }
            }
        }
    }

    #[test]
    fn timeouts_per_state_and_overrides() {
        let d = Timeouts::default();
        let want = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];
        for s in ALL {
            assert_eq!(timeout_secs(s, &d), want[usize::from(s)], "{}", name(s));
        }
        let t = Timeouts {
            tcp: 3600,
            tcp_fin: 30,
            udp: 10,
        };
        assert_eq!(timeout_secs(ES, &t), 3600);
        assert_eq!(timeout_secs(FW, &t), 30);
        assert_eq!(timeout_secs(TW, &t), 120);
        assert_eq!(timeout_secs(CL, &t), 10);
    }

    #[test]
    fn active_states() {
        let active: Vec<&str> = ALL
            .iter()
            .filter(|s| is_active(**s))
            .map(|s| name(*s))
            .collect();
        assert_eq!(active, ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"]);
    }
}
