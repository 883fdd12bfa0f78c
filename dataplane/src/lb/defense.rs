//! The kernel's memory defences (`drop_entry`, `drop_packet`, `secure_tcp`,
//! driven by `amemthresh` and `am_droprate`), per worker.
//!
//! The kernel re-evaluates them once a second (`update_defense_level`):
//! mode 0 is off, 3 is always on, and 1/2 switch on while available memory
//! is below `amemthresh` pages (the kernel then shows 2, and 1 again when
//! memory is back). What runs out in UVS is not kernel memory but the
//! connection table, which is allocated once at start: so "available
//! memory" is this worker's free connection-table entries, and
//! `amemthresh` counts entries. A worker decides from its own table alone
//! (no shared state, nothing on the packet path but a counter), and the
//! value `uvsadm --sysctl` shows is the one set: 1 stays 1 while a worker
//! defends.
//!
//! * `drop_packet`: one new-connection packet in `rate` is dropped, where
//!   `rate = amemthresh / (amemthresh - free)` in modes 1/2 and
//!   `am_droprate` in mode 3 (`ip_vs_todrop`).
//! * `drop_entry`: [`crate::conn::ConnTable::random_drop`] over 1/32 of the
//!   table each second.
//! * `secure_tcp`: the stricter TCP state table
//!   ([`crate::conn::proto_tcp`]) while in force.
//!
//! What `drop_entry` removes is counted ([`DefenseCounters`]): a removed
//! connection's next client segment is not lost silently (the stack
//! answers it with a reset, `tcp_reset_sent`, as Linux's does), but only
//! these counters say why the connection was gone.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::conn::{RandomDrop, Sysctls};
use crate::tunables::{Tunable, Tunables};

/// How often the defence is re-evaluated (the kernel's
/// `DEFENSE_TIMER_PERIOD`).
pub const DEFENSE_PERIOD_MS: u64 = 1000;

/// Connections the `drop_entry` defence removed, by kind (written by the
/// worker once a second, read by the control thread).
#[derive(Debug, Default)]
pub struct DefenseCounters {
    /// Half-open ones (TCP SYN_RECV or SYNACK, SCTP INIT1 or INIT): under
    /// a spoofed flood mostly the flood's, but also real clients caught
    /// between their SYN and their ACK.
    pub half_open: AtomicU64,
    /// Established (or UDP) ones idle 60 s or more with 1..=8 client
    /// packets.
    pub idle: AtomicU64,
}

impl DefenseCounters {
    /// Adds one pass's removals.
    pub fn count(&self, d: RandomDrop) {
        for (c, n) in [(&self.half_open, d.half_open), (&self.idle, d.idle)] {
            if n > 0 {
                c.store(
                    c.load(Ordering::Relaxed).wrapping_add(n as u64),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Every counter by the name `uvsadm --counters` and telemetry give it.
    pub fn named(&self) -> [(&'static str, u64); 2] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("defense_dropped_half_open", g(&self.half_open)),
            ("defense_dropped_idle", g(&self.idle)),
        ]
    }
}

/// One worker's defence state.
#[derive(Debug, Clone)]
pub struct Defense {
    /// The tunables of the current snapshot.
    pub tunables: Tunables,
    /// When [`Defense::update`] runs next (ms).
    pub(super) next_check: u64,
    /// `drop_entry` in force.
    pub dropentry: bool,
    /// Drop one new-connection packet in this many (0: none).
    pub drop_rate: i32,
    drop_counter: i32,
    /// `secure_tcp` in force.
    pub secure: bool,
    /// `todrop_entry`'s counters, one per client packet count.
    pub(super) todrop_counters: [i8; 9],
}

impl Defense {
    pub fn new(now: u64) -> Defense {
        Defense {
            tunables: Tunables::default(),
            next_check: now,
            dropentry: false,
            drop_rate: 0,
            drop_counter: 0,
            secure: false,
            todrop_counters: [0; 9],
        }
    }

    /// The kernel's `update_defense_level`, with `free` free entries.
    pub fn update(&mut self, free: i64) {
        let t = &self.tunables;
        let thresh = i64::from(t.get(Tunable::Amemthresh).max(0));
        let nomem = free < thresh;
        let mode = |x: Tunable| match t.get(x) {
            0 => false,
            3 => true,
            _ => nomem,
        };
        self.dropentry = mode(Tunable::DropEntry);
        self.secure = mode(Tunable::SecureTcp);
        let rate = match t.get(Tunable::DropPacket) {
            0 => 0,
            3 => t.get(Tunable::AmDroprate),
            _ if nomem => (thresh / (thresh - free).max(1)) as i32,
            _ => 0,
        };
        if rate != self.drop_rate {
            self.drop_counter = rate;
        }
        self.drop_rate = rate;
    }

    /// `ip_vs_todrop`: whether to drop this new-connection packet.
    #[inline]
    pub fn todrop(&mut self) -> bool {
        if self.drop_rate == 0 {
            return false;
        }
        self.drop_counter -= 1;
        if self.drop_counter > 0 {
            return false;
        }
        self.drop_counter = self.drop_rate;
        true
    }

    /// The connection table's switches under these tunables and this
    /// defence state.
    pub fn sysctls(&self) -> Sysctls {
        let t = &self.tunables;
        Sysctls {
            expire_nodest_conn: t.expire_nodest_conn(),
            expire_quiescent_template: t.expire_quiescent_template(),
            conn_reuse_mode: t.conn_reuse_mode(),
            secure_tcp: self.secure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, i64)]) -> Defense {
        let mut d = Defense::new(0);
        for (n, v) in pairs {
            d.tunables.set_int(n, *v).unwrap();
        }
        d
    }

    #[test]
    fn off_by_default_whatever_the_table_holds() {
        let mut d = with(&[]);
        d.update(0);
        assert!(!d.dropentry && !d.secure && d.drop_rate == 0);
        assert!(!(0..100).any(|_| d.todrop()));
    }

    #[test]
    fn mode_3_is_always_on_and_drops_one_in_am_droprate() {
        let mut d = with(&[
            ("drop_packet", 3),
            ("drop_entry", 3),
            ("secure_tcp", 3),
            ("am_droprate", 4),
        ]);
        d.update(1 << 20);
        assert!(d.dropentry && d.secure);
        let dropped = (0..40).filter(|_| d.todrop()).count();
        assert_eq!(dropped, 10);
    }

    #[test]
    fn modes_1_and_2_follow_free_entries_against_amemthresh() {
        for m in [1, 2] {
            let mut d = with(&[
                ("drop_packet", m),
                ("drop_entry", m),
                ("secure_tcp", m),
                ("amemthresh", 1000),
            ]);
            d.update(1000);
            assert!(!d.dropentry && !d.secure && d.drop_rate == 0, "mode {m}");
            // 750 free of a 1000 threshold: rate 1000 / 250 = 4.
            d.update(750);
            assert!(d.dropentry && d.secure, "mode {m}");
            assert_eq!(d.drop_rate, 4);
            assert_eq!((0..40).filter(|_| d.todrop()).count(), 10);
            // Nothing free: every new connection's packet is dropped.
            d.update(0);
            assert_eq!(d.drop_rate, 1);
            assert!((0..5).all(|_| d.todrop()));
            d.update(5000);
            assert!(!d.dropentry && !d.secure && d.drop_rate == 0);
        }
    }

    #[test]
    fn the_table_switches_follow_the_tunables() {
        let mut d = with(&[
            ("expire_nodest_conn", 1),
            ("expire_quiescent_template", 1),
            ("conn_reuse_mode", 3),
        ]);
        let s = d.sysctls();
        assert!(s.expire_nodest_conn && s.expire_quiescent_template && !s.secure_tcp);
        assert_eq!(s.conn_reuse_mode, 3);
        d.tunables.set("secure_tcp", "3").unwrap();
        d.update(0);
        assert!(d.sysctls().secure_tcp);
    }
}
