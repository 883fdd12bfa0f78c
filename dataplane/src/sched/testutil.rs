//! Helpers for the scheduler tests: destination lists, counters, a scripted
//! random source.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{SchedInput, SchedRng, Scheduler};
use crate::model::{dest_flags, Dest, DestConfig, DestShared, ForwardMethod};

/// A destination `addr:port` with `weight`, as `-a` creates it.
pub(crate) fn dest(addr: &str, port: u16, weight: i32) -> Dest {
    let cfg = DestConfig {
        addr: addr.parse().expect("test address"),
        port,
        method: ForwardMethod::Route,
        weight,
        u_threshold: 0,
        l_threshold: 0,
    };
    Dest {
        shared: Arc::new(DestShared::new(&cfg)),
        config: cfg,
    }
}

/// A list in kernel order (first = most recently added), port 80.
pub(crate) fn list(spec: &[(&str, i32)]) -> Vec<Dest> {
    spec.iter().map(|(a, w)| dest(a, 80, *w)).collect()
}

/// `-e` with a new weight: same shared state, new config; `last_weight`
/// follows the kernel rule (kept when the new weight is 0).
pub(crate) fn edit_weight(d: &Dest, w: i32) -> Dest {
    let mut cfg = d.config.clone();
    cfg.weight = w;
    d.shared.weight.store(w, Ordering::Relaxed);
    if w != 0 {
        d.shared.last_weight.store(w, Ordering::Relaxed);
    }
    Dest {
        config: cfg,
        shared: Arc::clone(&d.shared),
    }
}

pub(crate) fn conns(d: &Dest, active: u32, inactive: u32) {
    d.shared.activeconns.store(active, Ordering::Relaxed);
    d.shared.inactconns.store(inactive, Ordering::Relaxed);
}

pub(crate) fn set_overload(d: &Dest, on: bool) {
    if on {
        d.shared
            .flags
            .fetch_or(dest_flags::OVERLOAD, Ordering::Relaxed);
    } else {
        d.shared
            .flags
            .fetch_and(!dest_flags::OVERLOAD, Ordering::Relaxed);
    }
}

/// Returns the scripted values in order, then starts again.
pub(crate) struct Scripted {
    vals: Vec<u32>,
    pos: usize,
}

impl Scripted {
    pub(crate) fn new(vals: &[u32]) -> Scripted {
        Scripted {
            vals: vals.to_vec(),
            pos: 0,
        }
    }
}

impl SchedRng for Scripted {
    fn next_u32(&mut self) -> u32 {
        let v = self.vals[self.pos % self.vals.len()];
        self.pos += 1;
        v
    }
}

/// A TCP packet from `src:sport` to `dst` at time `now`.
pub(crate) fn pick_full(
    s: &mut dyn Scheduler,
    dests: &[Dest],
    src: &str,
    sport: u16,
    dst: &str,
    now: u64,
) -> Option<usize> {
    let mut rng = Scripted::new(&[0]);
    let mut input = SchedInput {
        src: src.parse::<IpAddr>().expect("test address"),
        src_port: sport,
        dst: dst.parse::<IpAddr>().expect("test address"),
        protocol: 6,
        now,
        rng: &mut rng,
    };
    s.schedule(dests, &mut input)
}

/// A TCP packet from 198.18.0.1:40000 to the VIP 198.18.0.100.
pub(crate) fn pick(s: &mut dyn Scheduler, dests: &[Dest]) -> Option<usize> {
    pick_full(s, dests, "198.18.0.1", 40000, "198.18.0.100", 0)
}

/// `n` picks, as indices.
pub(crate) fn picks(s: &mut dyn Scheduler, dests: &[Dest], n: usize) -> Vec<Option<usize>> {
    (0..n).map(|_| pick(s, dests)).collect()
}
