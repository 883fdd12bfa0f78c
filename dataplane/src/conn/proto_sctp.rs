//! SCTP association states, the IPVS state tables and the per-state
//! timeouts (the kernel's `ip_vs_proto_sctp.c`; facts in
//! `docs/reference/sctp.md`).
//!
//! Why tables, as for TCP: IPVS does not follow verification tags or TSNs;
//! it classifies each packet by its first chunk into one event (an ABORT
//! bundled right behind a COOKIE ECHO or COOKIE ACK counts as the ABORT)
//! and looks the next state up in a table chosen by the packet's direction.
//! Copying the kernel's tables cell by cell is what makes `ipvsadm -L -c`
//! states, ActiveConn/InActConn and the entries' lifetimes match a kernel
//! director's for the same traffic.
//!
//! The event travels through the connection table's per-packet calls in the
//! byte that carries TCP's flags ([`crate::conn::ConnTable::on_packet`]):
//! one classification per packet, made by the load-balancing stage from the
//! chunk headers ([`event`]).

use super::Dir;
use crate::wire::sctp::{chunk, SctpPacket};

/// SCTP state numbers, as the kernel's `IP_VS_SCTP_S_*` (also their
/// numbers in sync messages).
pub mod state {
    pub const NONE: u8 = 0;
    /// First client INIT seen, waiting for the server's INIT ACK.
    pub const INIT1: u8 = 1;
    /// A further client INIT seen.
    pub const INIT: u8 = 2;
    /// The server's INIT ACK seen, waiting for the client's COOKIE ECHO.
    pub const COOKIE_SENT: u8 = 3;
    /// The client's COOKIE ECHO seen, waiting for the server's COOKIE ACK.
    pub const COOKIE_REPLIED: u8 = 4;
    /// The server started the association (its INIT), waiting for the
    /// client's INIT ACK.
    pub const COOKIE_WAIT: u8 = 5;
    /// The client's INIT ACK seen, waiting for the server's COOKIE ECHO.
    pub const COOKIE: u8 = 6;
    /// The server's COOKIE ECHO seen, waiting for the client's COOKIE ACK.
    pub const COOKIE_ECHOED: u8 = 7;
    pub const ESTABLISHED: u8 = 8;
    pub const SHUTDOWN_SENT: u8 = 9;
    pub const SHUTDOWN_RECEIVED: u8 = 10;
    pub const SHUTDOWN_ACK_SENT: u8 = 11;
    /// The INIT was answered with an ABORT.
    pub const REJECTED: u8 = 12;
    pub const CLOSED: u8 = 13;
    /// Number of states.
    pub const COUNT: usize = 14;
}

/// Packet events, as the kernel's `IP_VS_SCTP_*` event numbers: the rows
/// of the tables.
pub mod event {
    /// DATA, SACK, HEARTBEAT, HEARTBEAT ACK, ECNE, CWR and any chunk type
    /// the kernel does not list.
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const COOKIE_ECHO: u8 = 3;
    pub const COOKIE_ACK: u8 = 4;
    pub const SHUTDOWN: u8 = 5;
    pub const SHUTDOWN_ACK: u8 = 6;
    pub const SHUTDOWN_COMPLETE: u8 = 7;
    pub const ERROR: u8 = 8;
    pub const ABORT: u8 = 9;
    /// Number of events.
    pub const COUNT: usize = 10;
}

use state::*;

/// State names exactly as `ipvsadm -L -c` prints them (the kernel's
/// `sctp_state_name_table`).
pub const NAMES: [&str; state::COUNT] = [
    "NONE",
    "INIT1",
    "INIT",
    "C-SENT",
    "C-REPLIED",
    "C-WAIT",
    "COOKIE",
    "C-ECHOED",
    "ESTABLISHED",
    "S-SENT",
    "S-RECEIVED",
    "S-ACK-SENT",
    "REJECTED",
    "CLOSED",
];

/// The kernel's `IP_VS_SCTP_MAX_RTO`: (60 + 1) s.
const MAX_RTO: u32 = 61;

/// Default timeouts in seconds, per state. ipvsadm's `--set` does not
/// reach them (it sets only TCP and UDP), so they are fixed.
const TIMEOUTS: [u32; state::COUNT] = [
    2,       // NONE
    4,       // INIT1: (0 + 3 + 1) s, a dropped INIT is forgotten fast
    MAX_RTO, // INIT
    MAX_RTO, // COOKIE_SENT
    MAX_RTO, // COOKIE_REPLIED
    MAX_RTO, // COOKIE_WAIT
    MAX_RTO, // COOKIE
    MAX_RTO, // COOKIE_ECHOED
    900,     // ESTABLISHED: 15 min
    MAX_RTO, // SHUTDOWN_SENT
    MAX_RTO, // SHUTDOWN_RECEIVED
    MAX_RTO, // SHUTDOWN_ACK_SENT
    4,       // REJECTED: (0 + 3 + 1) s
    MAX_RTO, // CLOSED
];

/// The name of an SCTP state (`"NONE"` for an out-of-range number).
pub fn name(s: u8) -> &'static str {
    NAMES.get(usize::from(s)).copied().unwrap_or("NONE")
}

/// Only ESTABLISHED counts as an active connection.
pub const fn is_active(s: u8) -> bool {
    s == ESTABLISHED
}

/// Timeout of a state in seconds (2 s, as NONE, out of range).
pub fn timeout_secs(s: u8) -> u32 {
    TIMEOUTS.get(usize::from(s)).copied().unwrap_or(2)
}

/// The event of a chunk type (the kernel's `sctp_events`).
pub const fn chunk_event(chunk_type: u8) -> u8 {
    match chunk_type {
        chunk::INIT => event::INIT,
        chunk::INIT_ACK => event::INIT_ACK,
        chunk::ABORT => event::ABORT,
        chunk::SHUTDOWN => event::SHUTDOWN,
        chunk::SHUTDOWN_ACK => event::SHUTDOWN_ACK,
        chunk::ERROR => event::ERROR,
        chunk::COOKIE_ECHO => event::COOKIE_ECHO,
        chunk::COOKIE_ACK => event::COOKIE_ACK,
        chunk::SHUTDOWN_COMPLETE => event::SHUTDOWN_COMPLETE,
        _ => event::DATA,
    }
}

/// The event of an SCTP packet (`l4`: common header and chunks, bounded by
/// the IP length), as the kernel's `set_sctp_state` classifies it: the
/// first chunk's, except that an ABORT right behind a first COOKIE ECHO or
/// COOKIE ACK makes it ABORT (RFC 9260 3.3.7: control chunks may precede
/// an ABORT in one packet). `None` when the packet carries no chunk header.
pub fn event(l4: &[u8]) -> Option<u8> {
    let p = SctpPacket::new_checked(l4).ok()?;
    let (first, len) = p.chunk_at(0)?;
    if matches!(first, chunk::COOKIE_ECHO | chunk::COOKIE_ACK) && len >= 4 {
        let next = (usize::from(len) + 3) & !3;
        if let Some((chunk::ABORT, _)) = p.chunk_at(next) {
            return Some(event::ABORT);
        }
    }
    Some(chunk_event(first))
}

/// Whether a packet with this event starts a connection in the sense of
/// `conn_reuse_mode` and `expire_nodest_conn` (the kernel's `is_new_conn`:
/// an INIT).
pub const fn is_new_conn(ev: u8) -> bool {
    ev == event::INIT
}

/// Whether a packet without a connection may be scheduled: an INIT, or
/// with `sloppy_sctp` any packet but an ABORT (the kernel's
/// `sctp_conn_schedule`).
pub const fn may_schedule(ev: u8, sloppy_sctp: bool) -> bool {
    ev == event::INIT || (sloppy_sctp && ev != event::ABORT)
}

/// `conn_reuse_mode`: an INIT may replace an entry in CLOSED (the kernel's
/// `is_new_conn_expected`).
pub const fn reuse_expected(s: u8) -> bool {
    s == CLOSED
}

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
type Tab = [Row; event::COUNT];

const I1: u8 = INIT1;
const IN: u8 = INIT;
const CS: u8 = COOKIE_SENT;
const CR: u8 = COOKIE_REPLIED;
const CW: u8 = COOKIE_WAIT;
const CO: u8 = COOKIE;
const CE: u8 = COOKIE_ECHOED;
const ES: u8 = ESTABLISHED;
const SS: u8 = SHUTDOWN_SENT;
const SR: u8 = SHUTDOWN_RECEIVED;
const SA: u8 = SHUTDOWN_ACK_SENT;
const RJ: u8 = REJECTED;
const CL: u8 = CLOSED;

// Columns: NO I1 IN CS CR CW CO CE ES SS SR SA RJ CL. Rows: the events in
// their order (data, init, init-ack, cookie-echo, cookie-ack, shutdown,
// shutdown-ack, shutdown-complete, error, abort).
const TABLES: [Tab; 3] = [
    // INPUT
    [
        [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [I1, IN, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, IN, IN],
        [CW, CW, CW, CS, CR, CO, CO, CE, ES, SS, SR, SA, RJ, CL],
        [CR, IN, IN, CR, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [ES, I1, IN, CS, CR, CW, CO, ES, ES, SS, SR, SA, RJ, CL],
        [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
        [CL, IN, IN, CS, CR, CW, CO, CE, ES, CL, SR, CL, RJ, CL],
        [CL, CL, CL, CS, CR, CW, CO, CE, ES, SS, SR, CL, RJ, CL],
        [CL, I1, IN, CS, CR, CW, CO, CL, ES, SS, SR, SA, RJ, CL],
        [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
    // OUTPUT
    [
        [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [CW, CW, CW, CW, CW, CW, CW, CW, ES, CW, CW, CW, CW, CW],
        [CS, CS, CS, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [CE, CE, CE, CE, CE, CE, CE, CE, ES, SS, SR, SA, RJ, CL],
        [ES, ES, ES, ES, ES, ES, ES, ES, ES, SS, SR, SA, RJ, CL],
        [SS, SS, SS, SS, SS, SS, SS, SS, SS, SS, SR, SA, RJ, CL],
        [SA, SA, SA, SA, SA, CW, CO, CE, ES, SA, SA, SA, RJ, CL],
        [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        [ES, I1, IN, CS, CR, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
        [I1, IN, IN, IN, IN, IN, CO, CE, ES, SS, SR, SA, IN, IN],
        [CE, CE, CE, CE, CE, CE, CO, CE, ES, SS, SR, SA, RJ, CL],
        [ES, ES, ES, ES, ES, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
        [ES, I1, IN, ES, ES, CW, ES, ES, ES, SS, SR, SA, RJ, CL],
        [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
        [CL, IN, IN, CS, CR, CW, CO, CE, CL, CL, SR, CL, RJ, CL],
        [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, CL, CL, RJ, CL],
        [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
        [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
    ],
];

/// Next state for a packet with event `ev` using `table`, from `current`
/// (out-of-range numbers are clamped: never a panic).
pub fn next_state(current: u8, table: Table, ev: u8) -> u8 {
    let ev = usize::from(ev).min(event::COUNT - 1);
    let cur = usize::from(current).min(state::COUNT - 1);
    TABLES[table as usize][ev][cur]
}

#[cfg(test)]
mod tests {
    use super::event as ev;
    use super::*;

    /// An SCTP packet: common header (ports 5000 -> 80, tag, zero CRC)
    /// followed by `chunks`.
    fn packet(chunks: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x13, 0x88, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0];
        for c in chunks {
            p.extend_from_slice(c);
        }
        p
    }

    const INIT: &[u8] = &[1, 0, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 7];
    const COOKIE_ECHO_5: &[u8] = &[10, 0, 0, 5, 0xaa, 0, 0, 0]; // length 5, padded to 8
    const COOKIE_ACK: &[u8] = &[11, 0, 0, 4];
    const ABORT: &[u8] = &[6, 0, 0, 4];
    const SACK: &[u8] = &[3, 0, 0, 16, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0, 0, 0];

    #[test]
    fn event_is_the_first_chunks() {
        assert_eq!(event(&packet(&[INIT])), Some(ev::INIT));
        assert_eq!(event(&packet(&[SACK, ABORT])), Some(ev::DATA));
        assert_eq!(event(&packet(&[ABORT])), Some(ev::ABORT));
        assert_eq!(event(&packet(&[&[200, 0, 0, 4]])), Some(ev::DATA));
        assert_eq!(event(&packet(&[])), None);
        assert_eq!(event(&[0u8; 11]), None);
    }

    #[test]
    fn abort_behind_a_cookie_chunk_wins() {
        assert_eq!(
            event(&packet(&[COOKIE_ECHO_5, ABORT])),
            Some(ev::ABORT),
            "next chunk found at the padded length"
        );
        assert_eq!(event(&packet(&[COOKIE_ACK, ABORT])), Some(ev::ABORT));
        assert_eq!(event(&packet(&[COOKIE_ACK, SACK])), Some(ev::COOKIE_ACK));
        assert_eq!(event(&packet(&[COOKIE_ACK])), Some(ev::COOKIE_ACK));
        // A chunk length below 4 does not lead to a second chunk.
        assert_eq!(
            event(&packet(&[&[11, 0, 0, 0], ABORT])),
            Some(ev::COOKIE_ACK)
        );
        // Only behind the cookie chunks.
        assert_eq!(event(&packet(&[SACK, ABORT])), Some(ev::DATA));
    }

    #[test]
    fn chunk_events_follow_the_kernels_list() {
        let want = [
            (0, ev::DATA),
            (1, ev::INIT),
            (2, ev::INIT_ACK),
            (3, ev::DATA),
            (4, ev::DATA),
            (5, ev::DATA),
            (6, ev::ABORT),
            (7, ev::SHUTDOWN),
            (8, ev::SHUTDOWN_ACK),
            (9, ev::ERROR),
            (10, ev::COOKIE_ECHO),
            (11, ev::COOKIE_ACK),
            (12, ev::DATA),
            (13, ev::DATA),
            (14, ev::SHUTDOWN_COMPLETE),
            (15, ev::DATA),
            (0xc1, ev::DATA), // ASCONF
        ];
        for (t, e) in want {
            assert_eq!(chunk_event(t), e, "chunk type {t}");
        }
    }

    /// Runs `steps` of (direction, event) from NONE on a NAT connection
    /// (NOOUTPUT clear) or a DR/TUN one (NOOUTPUT set until an output
    /// packet), returning the state names after each step.
    fn run(nooutput: bool, steps: &[(Dir, u8)]) -> Vec<&'static str> {
        let mut s = NONE;
        let mut noout = nooutput;
        steps
            .iter()
            .map(|&(d, e)| {
                let t = Table::select(d, noout && d == Dir::In);
                if d == Dir::Out {
                    noout = false;
                }
                s = next_state(s, t, e);
                name(s)
            })
            .collect()
    }

    #[test]
    fn nat_association_setup_and_shutdown() {
        use Dir::{In, Out};
        let got = run(
            false,
            &[
                (In, ev::INIT),
                (Out, ev::INIT_ACK),
                (In, ev::COOKIE_ECHO),
                (Out, ev::COOKIE_ACK),
                (In, ev::DATA),
                (Out, ev::DATA),
                (In, ev::SHUTDOWN),
                (Out, ev::SHUTDOWN_ACK),
                (In, ev::SHUTDOWN_COMPLETE),
            ],
        );
        assert_eq!(
            got,
            [
                "INIT1",
                "C-SENT",
                "C-REPLIED",
                "ESTABLISHED",
                "ESTABLISHED",
                "ESTABLISHED",
                "S-RECEIVED",
                "S-ACK-SENT",
                "CLOSED"
            ]
        );
    }

    #[test]
    fn dr_association_seen_from_the_client_side_only() {
        use Dir::In;
        let got = run(
            true,
            &[
                (In, ev::INIT),
                (In, ev::COOKIE_ECHO),
                (In, ev::DATA),
                (In, ev::SHUTDOWN),
                (In, ev::SHUTDOWN_COMPLETE),
            ],
        );
        assert_eq!(
            got,
            [
                "INIT1",
                "ESTABLISHED",
                "ESTABLISHED",
                "S-RECEIVED",
                "CLOSED"
            ],
            "INPUT-ONLY: the client's COOKIE ECHO is taken as the server's acceptance"
        );
        // A second INIT (the first was lost) moves INIT1 to INIT.
        assert_eq!(
            run(true, &[(In, ev::INIT), (In, ev::INIT)]),
            ["INIT1", "INIT"]
        );
        // Mid-association traffic (sloppy_sctp) on an INPUT-ONLY entry.
        assert_eq!(
            run(true, &[(In, ev::DATA), (In, ev::SHUTDOWN)]),
            ["ESTABLISHED", "S-RECEIVED"]
        );
    }

    #[test]
    fn rejected_init_and_abort() {
        use Dir::{In, Out};
        assert_eq!(
            run(false, &[(In, ev::INIT), (Out, ev::ABORT)]),
            ["INIT1", "REJECTED"]
        );
        assert_eq!(
            run(
                false,
                &[(In, ev::INIT), (Out, ev::INIT_ACK), (In, ev::ABORT)]
            ),
            ["INIT1", "C-SENT", "CLOSED"]
        );
        // A new INIT revives a REJECTED or CLOSED entry.
        assert_eq!(next_state(REJECTED, Table::Input, ev::INIT), state::INIT);
        assert_eq!(next_state(CLOSED, Table::Input, ev::INIT), state::INIT);
    }

    #[test]
    fn server_started_association() {
        use Dir::{In, Out};
        assert_eq!(
            run(
                false,
                &[
                    (Out, ev::INIT),
                    (In, ev::INIT_ACK),
                    (Out, ev::COOKIE_ECHO),
                    (In, ev::COOKIE_ACK)
                ]
            ),
            ["C-WAIT", "COOKIE", "C-ECHOED", "ESTABLISHED"]
        );
    }

    #[test]
    fn abort_closes_everything_but_a_waiting_cookie() {
        for t in [Table::Input, Table::InputOnly] {
            for s in 0..state::COUNT as u8 {
                let want = if s == COOKIE_WAIT { REJECTED } else { CLOSED };
                assert_eq!(next_state(s, t, ev::ABORT), want, "{t:?} {}", name(s));
            }
        }
        for s in 0..state::COUNT as u8 {
            let want = if s == INIT1 { REJECTED } else { CLOSED };
            assert_eq!(next_state(s, Table::Output, ev::ABORT), want);
        }
    }

    #[test]
    fn timeouts_per_state() {
        let want = [2, 4, 61, 61, 61, 61, 61, 61, 900, 61, 61, 61, 4, 61];
        for s in 0..state::COUNT as u8 {
            assert_eq!(timeout_secs(s), want[usize::from(s)], "{}", name(s));
        }
        assert_eq!(timeout_secs(200), 2);
    }

    #[test]
    fn only_established_is_active() {
        let active: Vec<&str> = (0..state::COUNT as u8)
            .filter(|s| is_active(*s))
            .map(name)
            .collect();
        assert_eq!(active, ["ESTABLISHED"]);
    }

    #[test]
    fn scheduling_and_reuse() {
        assert!(may_schedule(ev::INIT, false));
        assert!(!may_schedule(ev::DATA, false));
        assert!(!may_schedule(ev::COOKIE_ECHO, false));
        assert!(may_schedule(ev::DATA, true));
        assert!(may_schedule(ev::SHUTDOWN, true));
        assert!(!may_schedule(ev::ABORT, true));
        assert!(is_new_conn(ev::INIT) && !is_new_conn(ev::INIT_ACK));
        assert!(reuse_expected(CLOSED) && !reuse_expected(REJECTED));
    }

    #[test]
    fn out_of_range_inputs_never_panic() {
        for s in [0u8, 13, 14, 255] {
            for e in [0u8, 9, 10, 255] {
                for t in [Table::Input, Table::Output, Table::InputOnly] {
                    assert!(usize::from(next_state(s, t, e)) < state::COUNT);
                }
            }
        }
        assert_eq!(name(14), "NONE");
    }
}
