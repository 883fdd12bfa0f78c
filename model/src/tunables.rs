//! The kernel's IPVS tunables (`/proc/sys/net/ipv4/vs/*`): names, defaults,
//! allowed values, and the `name = value` text `sysctl` prints.
//!
//! Why one table here: the config file's `[sysctl]` table, `uvsadm
//! --sysctl` and the engine must agree on every name, default and range,
//! and an operator moving from LVS expects the kernel's. So each tunable is
//! one row of [`TUNABLES`] (name, default, range, what UVS does with it),
//! the values travel as one small `Copy` struct ([`Tunables`]) inside the
//! configuration snapshot (workers pick them up between bursts like the
//! services: no lock on the packet path), and both the config parser and
//! the control socket validate through [`Tunables::set`].
//!
//! Values: the kernel takes any integer for its on/off switches (non-zero
//! is on); UVS takes exactly 0 or 1 there, so a typo cannot switch
//! something on by accident. The defence modes take 0..=3 as in the kernel
//! (`proc_do_defense_mode`), `conn_reuse_mode` its two bits (0..=3).
//!
//! Known kernel tunables UVS has no use for (sync daemon, conntrack,
//! estimator threads) are refused with a message that says so
//! ([`TunableError::Unsupported`]), not as unknown names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The prefix `sysctl` shows before every IPVS tunable.
pub const SYSCTL_PREFIX: &str = "net.ipv4.vs.";

/// One tunable, indexing [`Tunables`] and [`TUNABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tunable {
    AmDroprate,
    Amemthresh,
    CacheBypass,
    ConnReuseMode,
    DropEntry,
    DropPacket,
    ExpireNodestConn,
    ExpireQuiescentTemplate,
    IgnoreTunneled,
    NatIcmpSend,
    PmtuDisc,
    RunEstimation,
    ScheduleIcmp,
    SecureTcp,
    SloppySctp,
    SloppyTcp,
    Synproxy,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct TunableDef {
    pub tunable: Tunable,
    /// The kernel's file name under `/proc/sys/net/ipv4/vs/`.
    pub name: &'static str,
    pub default: i32,
    pub min: i32,
    pub max: i32,
    /// What the value does in UVS (one line, for docs and errors).
    pub meaning: &'static str,
}

const fn row(
    tunable: Tunable,
    name: &'static str,
    default: i32,
    min: i32,
    max: i32,
    meaning: &'static str,
) -> TunableDef {
    TunableDef {
        tunable,
        name,
        default,
        min,
        max,
        meaning,
    }
}

/// Number of tunables.
pub const COUNT: usize = 17;

/// Every tunable, in the kernel's alphabetical `sysctl` order; indexed by
/// `Tunable as usize`.
#[rustfmt::skip]
pub const TUNABLES: [TunableDef; COUNT] = [
    row(Tunable::AmDroprate, "am_droprate", 10, 0, i32::MAX,
        "drop_packet mode 3 drops one new-connection packet in this many"),
    row(Tunable::Amemthresh, "amemthresh", 1024, 0, i32::MAX,
        "free connection-table entries (per worker) below which modes 1 and 2 defend"),
    row(Tunable::CacheBypass, "cache_bypass", 0, 0, 1,
        "fwmark services only; UVS has no fwmark traffic, so no effect"),
    row(Tunable::ConnReuseMode, "conn_reuse_mode", 1, 0, 3,
        "a SYN reusing a TIME_WAIT/CLOSE entry (bit 1; FIN_WAIT of DR/TUN: bit 2) is rescheduled"),
    row(Tunable::DropEntry, "drop_entry", 0, 0, 3,
        "0 off, 1/2 when short of entries, 3 always: randomly drop half-open and idle entries"),
    row(Tunable::DropPacket, "drop_packet", 0, 0, 3,
        "0 off, 1/2 when short of entries, 3 always: drop some new-connection packets"),
    row(Tunable::ExpireNodestConn, "expire_nodest_conn", 0, 0, 1,
        "connections of a deleted real server are removed at once (0: dropped until they time out)"),
    row(Tunable::ExpireQuiescentTemplate, "expire_quiescent_template", 0, 0, 1,
        "persistence templates of a weight-0 real server are ignored, clients move"),
    row(Tunable::IgnoreTunneled, "ignore_tunneled", 0, 0, 1,
        "UVS never decapsulates, so tunnelled packets are never re-balanced anyway; no effect"),
    row(Tunable::NatIcmpSend, "nat_icmp_send", 0, 0, 1,
        "a NAT reply from a real server without a connection gets ICMP port unreachable"),
    row(Tunable::PmtuDisc, "pmtu_disc", 1, 0, 1,
        "copy DF into tunnel headers and answer too-big DF packets (0: fragment tunnel packets)"),
    row(Tunable::RunEstimation, "run_estimation", 1, 0, 1,
        "rate estimation for --rate and --stats (0: rates stay as they are)"),
    row(Tunable::ScheduleIcmp, "schedule_icmp", 0, 0, 1,
        "an ICMP error quoting an unknown connection to a service is scheduled"),
    row(Tunable::SecureTcp, "secure_tcp", 0, 0, 3,
        "0 off, 1/2 when short of entries, 3 always: the stricter TCP state table"),
    row(Tunable::SloppySctp, "sloppy_sctp", 0, 0, 1,
        "any SCTP packet without a connection but an ABORT is scheduled, not only an INIT"),
    row(Tunable::SloppyTcp, "sloppy_tcp", 0, 0, 1,
        "any non-RST TCP packet without a connection is scheduled, not only a SYN"),
    row(Tunable::Synproxy, "synproxy", 0, 0, 1,
        "UVS extension: every TCP service whose real servers are all NAT gets the SYN proxy (-j)"),
];

/// Kernel IPVS tunables UVS refuses, with why.
const UNSUPPORTED: [(&str, &str); 14] = [
    (
        "backup_only",
        "the connection sync daemon is not supported yet",
    ),
    ("conntrack", "UVS has no netfilter connection tracking"),
    ("debug_level", "UVS has no IPVS debug log"),
    ("est_cpulist", "the estimator runs on the control thread"),
    ("est_nice", "the estimator runs on the control thread"),
    ("lblc_expiration", "not configurable in UVS"),
    ("lblcr_expiration", "not configurable in UVS"),
    ("snat_reroute", "UVS routes NAT replies itself"),
    (
        "sync_persist_mode",
        "the connection sync daemon is not supported yet",
    ),
    (
        "sync_ports",
        "the connection sync daemon is not supported yet",
    ),
    (
        "sync_qlen_max",
        "the connection sync daemon is not supported yet",
    ),
    (
        "sync_refresh_period",
        "the connection sync daemon is not supported yet",
    ),
    (
        "sync_retries",
        "the connection sync daemon is not supported yet",
    ),
    (
        "sync_threshold",
        "the connection sync daemon is not supported yet",
    ),
];

impl Tunable {
    pub fn def(self) -> &'static TunableDef {
        &TUNABLES[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The tunable called `name`, with or without the `net.ipv4.vs.`
    /// prefix (`/` separators, as `sysctl` accepts, too).
    pub fn lookup(name: &str) -> Result<Tunable, TunableError> {
        let n = short_name(name);
        if let Some(d) = TUNABLES.iter().find(|d| d.name == n) {
            return Ok(d.tunable);
        }
        match UNSUPPORTED.iter().find(|(u, _)| *u == n) {
            Some((u, why)) => Err(TunableError::Unsupported(u, why)),
            None => Err(TunableError::Unknown(name.to_string())),
        }
    }
}

/// `name` without the `net.ipv4.vs.` (or `net/ipv4/vs/`) prefix.
fn short_name(name: &str) -> &str {
    name.strip_prefix(SYSCTL_PREFIX)
        .or_else(|| name.strip_prefix("net/ipv4/vs/"))
        .unwrap_or(name)
}

/// Why a tunable name or value was refused. The `Display` text is the
/// one-line message the operator sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunableError {
    /// No IPVS tunable has this name.
    #[error("unknown IPVS tunable `{0}' (uvsadm --sysctl lists them)")]
    Unknown(String),
    /// The kernel has it; UVS does not use it.
    #[error("IPVS tunable `{0}' is not supported by UVS: {1}")]
    Unsupported(&'static str, &'static str),
    /// The value is not a whole number in the tunable's range.
    #[error("invalid value `{value}' for {name}: expected {}", range_text(*.min, *.max))]
    BadValue {
        name: &'static str,
        value: String,
        min: i32,
        max: i32,
    },
    /// `NAME=VALUE` was expected.
    #[error("expected NAME=VALUE, got `{0}'")]
    NotAssignment(String),
}

fn range_text(min: i32, max: i32) -> String {
    match (min, max) {
        (0, 1) => "0 or 1".into(),
        (lo, i32::MAX) => format!("a whole number from {lo}"),
        (lo, hi) => format!("a whole number from {lo} to {hi}"),
    }
}

/// Every tunable's value: a small `Copy` array, carried by the snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunables {
    values: [i32; COUNT],
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            values: std::array::from_fn(|i| TUNABLES[i].default),
        }
    }
}

impl fmt::Debug for Tunables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (d, v) in TUNABLES.iter().zip(self.values) {
            m.entry(&d.name, &v);
        }
        m.finish()
    }
}

impl Tunables {
    #[inline]
    pub fn get(&self, t: Tunable) -> i32 {
        self.values[t as usize]
    }

    #[inline]
    fn on(&self, t: Tunable) -> bool {
        self.get(t) != 0
    }

    /// Parses `value` for `name` and sets it; on error nothing changed.
    pub fn set(&mut self, name: &str, value: &str) -> Result<Tunable, TunableError> {
        let t = Tunable::lookup(name)?;
        let d = t.def();
        let v = value
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|v| (d.min..=d.max).contains(v))
            .ok_or_else(|| TunableError::BadValue {
                name: d.name,
                value: value.to_string(),
                min: d.min,
                max: d.max,
            })?;
        self.values[t as usize] = v;
        Ok(t)
    }

    /// [`Tunables::set`] for a whole number (the config file's TOML
    /// integers).
    pub fn set_int(&mut self, name: &str, value: i64) -> Result<Tunable, TunableError> {
        self.set(name, &value.to_string())
    }

    /// Parses `NAME=VALUE` (as `sysctl -w` takes it) and sets it.
    pub fn assign(&mut self, text: &str) -> Result<Tunable, TunableError> {
        let (n, v) = text
            .split_once('=')
            .ok_or_else(|| TunableError::NotAssignment(text.to_string()))?;
        self.set(n.trim(), v)
    }

    /// One line as `sysctl` prints it: `net.ipv4.vs.NAME = VALUE`.
    pub fn line(&self, t: Tunable) -> String {
        format!("{SYSCTL_PREFIX}{} = {}\n", t.name(), self.get(t))
    }

    /// Every tunable, one `sysctl` line each, in name order.
    pub fn lines(&self) -> String {
        TUNABLES.iter().map(|d| self.line(d.tunable)).collect()
    }

    // Typed views the engine reads.

    #[inline]
    pub fn expire_nodest_conn(&self) -> bool {
        self.on(Tunable::ExpireNodestConn)
    }
    #[inline]
    pub fn expire_quiescent_template(&self) -> bool {
        self.on(Tunable::ExpireQuiescentTemplate)
    }
    #[inline]
    pub fn conn_reuse_mode(&self) -> u8 {
        self.get(Tunable::ConnReuseMode) as u8
    }
    #[inline]
    pub fn sloppy_tcp(&self) -> bool {
        self.on(Tunable::SloppyTcp)
    }
    #[inline]
    pub fn sloppy_sctp(&self) -> bool {
        self.on(Tunable::SloppySctp)
    }
    #[inline]
    pub fn schedule_icmp(&self) -> bool {
        self.on(Tunable::ScheduleIcmp)
    }
    #[inline]
    pub fn nat_icmp_send(&self) -> bool {
        self.on(Tunable::NatIcmpSend)
    }
    #[inline]
    pub fn pmtu_disc(&self) -> bool {
        self.on(Tunable::PmtuDisc)
    }
    #[inline]
    pub fn run_estimation(&self) -> bool {
        self.on(Tunable::RunEstimation)
    }
    #[inline]
    pub fn synproxy(&self) -> bool {
        self.on(Tunable::Synproxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_table_is_indexed_by_the_enum_and_sorted_by_name() {
        for (i, d) in TUNABLES.iter().enumerate() {
            assert_eq!(d.tunable as usize, i, "{}", d.name);
            assert!((d.min..=d.max).contains(&d.default), "{}", d.name);
        }
        for w in TUNABLES.windows(2) {
            assert!(w[0].name < w[1].name);
        }
    }

    #[test]
    fn defaults_are_the_kernels() {
        let t = Tunables::default();
        let want = [
            ("am_droprate", 10),
            ("amemthresh", 1024),
            ("cache_bypass", 0),
            ("conn_reuse_mode", 1),
            ("drop_entry", 0),
            ("drop_packet", 0),
            ("expire_nodest_conn", 0),
            ("expire_quiescent_template", 0),
            ("ignore_tunneled", 0),
            ("nat_icmp_send", 0),
            ("pmtu_disc", 1),
            ("run_estimation", 1),
            ("schedule_icmp", 0),
            ("secure_tcp", 0),
            ("sloppy_sctp", 0),
            ("sloppy_tcp", 0),
            ("synproxy", 0),
        ];
        for (n, v) in want {
            assert_eq!(t.get(Tunable::lookup(n).unwrap()), v, "{n}");
        }
    }

    #[test]
    fn lines_are_what_sysctl_prints() {
        let mut t = Tunables::default();
        t.assign("expire_nodest_conn=1").unwrap();
        let text = t.lines();
        assert_eq!(text.lines().count(), COUNT);
        assert!(text.starts_with("net.ipv4.vs.am_droprate = 10\n"));
        assert!(text.contains("\nnet.ipv4.vs.expire_nodest_conn = 1\n"));
        assert!(text.ends_with("net.ipv4.vs.sloppy_tcp = 0\nnet.ipv4.vs.synproxy = 0\n"));
    }

    #[test]
    fn names_with_the_sysctl_prefix_or_slashes_are_the_same() {
        for n in [
            "sloppy_tcp",
            "net.ipv4.vs.sloppy_tcp",
            "net/ipv4/vs/sloppy_tcp",
        ] {
            assert_eq!(Tunable::lookup(n), Ok(Tunable::SloppyTcp));
        }
    }

    #[test]
    fn bad_names_and_values_say_why_and_change_nothing() {
        let mut t = Tunables::default();
        let before = t;
        let cases = [
            ("nosuch", "1", "unknown IPVS tunable `nosuch' (uvsadm --sysctl lists them)"),
            (
                "sync_threshold",
                "3",
                "IPVS tunable `sync_threshold' is not supported by UVS: the connection sync daemon is not supported yet",
            ),
            ("sloppy_tcp", "2", "invalid value `2' for sloppy_tcp: expected 0 or 1"),
            ("sloppy_tcp", "", "invalid value `' for sloppy_tcp: expected 0 or 1"),
            ("secure_tcp", "4", "invalid value `4' for secure_tcp: expected a whole number from 0 to 3"),
            ("amemthresh", "-1", "invalid value `-1' for amemthresh: expected a whole number from 0"),
            ("amemthresh", "1x", "invalid value `1x' for amemthresh: expected a whole number from 0"),
            ("conn_reuse_mode", "99999999999", "invalid value `99999999999' for conn_reuse_mode: expected a whole number from 0 to 3"),
        ];
        for (n, v, msg) in cases {
            assert_eq!(t.set(n, v).unwrap_err().to_string(), msg);
            assert_eq!(t, before);
        }
        assert_eq!(
            t.assign("sloppy_tcp").unwrap_err().to_string(),
            "expected NAME=VALUE, got `sloppy_tcp'"
        );
    }

    proptest! {
        /// Any value in range is taken and printed back as given; anything
        /// else is refused and changes nothing.
        #[test]
        fn set_then_line_round_trips(i in 0..COUNT, v in -5i64..5_000_000i64) {
            let d = &TUNABLES[i];
            let mut t = Tunables::default();
            let before = t;
            let r = t.assign(&format!("{}{}={v}", SYSCTL_PREFIX, d.name));
            if (i64::from(d.min)..=i64::from(d.max)).contains(&v) {
                prop_assert_eq!(r, Ok(d.tunable));
                prop_assert_eq!(t.line(d.tunable), format!("net.ipv4.vs.{} = {v}\n", d.name));
            } else {
                prop_assert!(r.is_err());
                prop_assert_eq!(t, before);
            }
        }
    }
}
