//! The order of flows on the wire.
//!
//! Why apart from the loop: which packet opens a flow and which belongs to
//! an established one decides what the device under test does (a
//! connection lookup or a scheduling decision), so it is tested here
//! without DPDK.

use crate::template::{TCP_ACK, TCP_SYN};

/// The command-line options that choose the schedule, shared by
/// `uvs-pktgen` and `uvs-loop` so both generate the same traffic.
#[derive(Debug, Clone, clap::Args)]
pub struct ScheduleArgs {
    /// established: the same `--flows` flows over and over (TCP ACKs after
    /// one SYN per flow); new: every packet a new flow (TCP SYN / new UDP
    /// tuple); mixed: established with every `--new-every`-th packet new.
    #[arg(long, default_value = "established", value_parser = ["established", "new", "mixed"])]
    pub mode: String,
    /// Number of established flows (1 k .. 10 M).
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// In mixed mode, one packet in this many opens a new flow.
    #[arg(long, default_value_t = 10)]
    pub new_every: u64,
}

impl ScheduleArgs {
    /// The schedule these options ask for over a client space of `space`
    /// tuples, established flows visited in order when `sequential`, else
    /// scattered ([`crate::flows::stride`]).
    pub fn schedule(&self, space: u64, sequential: bool) -> Result<Schedule, String> {
        let step = crate::flows::stride(self.flows, sequential);
        Schedule::new(&self.mode, self.flows, step, self.new_every, space)
    }
}

/// Which flow the next packet belongs to, and its TCP flags.
///
/// Established flows are numbers `0..flows`, visited with a stride; the
/// first round opens them (SYN), later rounds are ACKs. New flows are
/// numbers from `flows` up through the rest of the flow space, then round.
#[derive(Debug, Clone)]
pub struct Schedule {
    flows: u64,
    step: u64,
    next_est: u64,
    opening_left: u64,
    new_base: u64,
    new_span: u64,
    next_new: u64,
    new_every: u64,
    until_new: u64,
}

impl Schedule {
    /// The schedule of `mode` (`established`, `new` or `mixed`).
    pub fn new(
        mode: &str,
        flows: u64,
        step: u64,
        new_every: u64,
        space: u64,
    ) -> Result<Schedule, String> {
        let (est, new_every) = match mode {
            "established" => (flows, 0),
            "new" => (0, 1),
            "mixed" => (flows, new_every.max(1)),
            _ => {
                return Err(format!(
                    "mode must be established, new or mixed, got {mode:?}"
                ))
            }
        };
        if mode != "new" && (est == 0 || est >= space || step == 0 || step >= est.max(2)) {
            return Err(format!(
                "{est} established flows (step {step}) do not fit a flow space of {space}"
            ));
        }
        Ok(Schedule {
            flows: est,
            step: step % est.max(1),
            next_est: 0,
            opening_left: est,
            new_base: est,
            new_span: space - est,
            next_new: 0,
            new_every,
            until_new: new_every.max(1),
        })
    }

    /// Whether every established flow has been opened (sent once).
    pub fn opened(&self) -> bool {
        self.opening_left == 0
    }

    /// The next packet's flow number and TCP flags.
    #[inline(always)]
    pub fn next_packet(&mut self) -> (u64, u8) {
        let new = match self.new_every {
            0 => false,
            1 => true,
            _ => {
                self.until_new -= 1;
                if self.until_new == 0 {
                    self.until_new = self.new_every;
                    true
                } else {
                    false
                }
            }
        };
        if new && self.opening_left == 0 {
            let f = self.new_base + self.next_new;
            self.next_new += 1;
            if self.next_new == self.new_span {
                self.next_new = 0;
            }
            return (f, TCP_SYN);
        }
        let f = self.next_est;
        self.next_est += self.step;
        if self.next_est >= self.flows {
            self.next_est -= self.flows;
        }
        if self.opening_left > 0 {
            self.opening_left -= 1;
            (f, TCP_SYN)
        } else {
            (f, TCP_ACK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::stride;
    use std::collections::HashSet;

    const SPACE: u64 = 1 << 20;

    #[test]
    fn established_opens_each_flow_once_then_acks() {
        let n = 1000;
        let mut s = Schedule::new("established", n, stride(n, false), 0, SPACE).unwrap();
        let mut opened = HashSet::new();
        for _ in 0..n {
            assert!(!s.opened());
            let (f, flags) = s.next_packet();
            assert_eq!(flags, TCP_SYN);
            assert!(f < n);
            assert!(opened.insert(f), "flow {f} opened twice");
        }
        assert!(s.opened());
        let mut again = HashSet::new();
        for _ in 0..n {
            let (f, flags) = s.next_packet();
            assert_eq!(flags, TCP_ACK);
            again.insert(f);
        }
        assert_eq!(again, opened);
    }

    #[test]
    fn new_mode_never_repeats_a_flow_before_the_space_is_used() {
        let mut s = Schedule::new("new", 0, 1, 0, SPACE).unwrap();
        assert!(s.opened());
        let mut seen = HashSet::new();
        for _ in 0..50_000 {
            let (f, flags) = s.next_packet();
            assert_eq!(flags, TCP_SYN);
            assert!(seen.insert(f));
        }
    }

    #[test]
    fn mixed_opens_one_new_flow_in_k_outside_the_established_ones() {
        let (n, k) = (100, 4);
        let mut s = Schedule::new("mixed", n, stride(n, false), k, SPACE).unwrap();
        for _ in 0..n {
            s.next_packet();
        }
        let (mut new, mut est) = (0, 0);
        for _ in 0..4000 {
            match s.next_packet() {
                (f, TCP_SYN) => {
                    assert!(f >= n, "a new flow reused established flow {f}");
                    new += 1;
                }
                (f, _) => {
                    assert!(f < n);
                    est += 1;
                }
            }
        }
        assert_eq!((new, est), (1000, 3000));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Schedule::new("burst", 10, 1, 0, SPACE).is_err());
        assert!(Schedule::new("established", 0, 1, 0, SPACE).is_err());
        assert!(Schedule::new("established", SPACE, 1, 0, SPACE).is_err());
        assert!(Schedule::new("mixed", 10, 0, 3, SPACE).is_err());
        assert!(Schedule::new("established", 1, 1, 0, SPACE).is_ok());
    }
}
