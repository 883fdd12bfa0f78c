//! keepalived's checker state machine, real-server aggregation, quorum and
//! sorry server, as pure logic.
//!
//! Why pure: the timing rules (the first failure after start takes a
//! checker down at once, `retry + 1` failures afterwards, nothing retried
//! while down) and the quorum/hysteresis/sorry-server rules are what an
//! operator relies on, and they must be testable without sockets or a real
//! clock. The runtime feeds probe results in and carries out the
//! [`Action`]s that come back (ipvsadm commands, notify scripts, log
//! lines); it also owns the clock, using the delay each result returns.
//!
//! Version choice: keepalived up to 2.3.2 (Debian's 2.2.7 included) still
//! ran `retry` probes spaced by `delay_before_retry` while a TCP checker
//! was already down; later versions (and this code) probe a down checker
//! once per `delay_loop` (HTTP/SSL: per `max(delay_loop,
//! delay_before_retry)`). Recovery is then seen within one delay_loop.

use std::fmt::Write as _;
use std::time::Duration;

use crate::conf::{CheckKind, Checker, Script, VirtualServer};

/// A checker's verdict changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

/// One checker: keepalived's `is_up`, `has_run`, `retry_it`, and for
/// HTTP/SSL the URL cursor (one URL per round; up after a full pass).
#[derive(Debug, Clone)]
pub struct CheckerState {
    pub is_up: bool,
    has_run: bool,
    retry_it: u32,
    retry: u32,
    delay_loop: Duration,
    delay_before_retry: Duration,
    urls: usize,
    cursor: usize,
    failed_url: Option<usize>,
    http: bool,
    fast_recovery: bool,
}

impl CheckerState {
    pub fn new(c: &Checker) -> CheckerState {
        let (urls, http, fast_recovery) = match &c.kind {
            CheckKind::Http(h) => (h.urls.len().max(1), true, h.fast_recovery),
            _ => (1, false, false),
        };
        CheckerState {
            is_up: !c.alpha,
            has_run: false,
            // keepalived starts with retry_it = retry: the first failure
            // after start takes the checker down without retries.
            retry_it: c.timing.retry,
            retry: c.timing.retry,
            delay_loop: c.timing.delay_loop,
            delay_before_retry: c.timing.delay_before_retry,
            urls,
            cursor: 0,
            failed_url: None,
            http,
            fast_recovery,
        }
    }

    /// The URL the next probe fetches (always 0 for other checkers).
    pub fn url(&self) -> usize {
        self.failed_url.unwrap_or(self.cursor)
    }

    /// Takes one probe result; returns the transition it causes, if any,
    /// and the delay before the next probe.
    pub fn on_result(&mut self, ok: bool) -> (Option<Transition>, Duration) {
        let mut transition = None;
        let next;
        if ok {
            self.retry_it = 0;
            let probed = self.url();
            if self.failed_url.take().is_some() {
                // A failed URL answers again: the pass starts over.
                self.cursor = usize::from(probed == 0);
            } else {
                self.cursor += 1;
            }
            let pass_done = self.cursor >= self.urls;
            if pass_done {
                self.cursor = 0;
            }
            if pass_done && (!self.is_up || !self.has_run) {
                if !self.is_up {
                    transition = Some(Transition::Up);
                }
                self.is_up = true;
            }
            // fast_recovery: a pass that is to bring the checker up goes
            // on at once.
            next = if self.fast_recovery && !self.is_up && !pass_done {
                Duration::ZERO
            } else {
                self.delay_loop
            };
        } else if self.is_up || !self.has_run {
            if self.retry_it >= self.retry {
                self.retry_it = 0;
                if self.is_up {
                    transition = Some(Transition::Down);
                }
                self.is_up = false;
                self.failed_url = Some(self.url());
                next = self.down_delay();
            } else {
                self.retry_it += 1;
                next = self.delay_before_retry;
            }
        } else {
            self.failed_url = Some(self.url());
            next = self.down_delay();
        }
        self.has_run = true;
        (transition, next)
    }

    fn down_delay(&self) -> Duration {
        if self.http {
            self.delay_loop.max(self.delay_before_retry)
        } else {
            self.delay_loop
        }
    }
}

/// Which destination an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// Index into the virtual server's `real_servers`.
    Real(usize),
    Sorry,
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `-a` the destination to every service of the virtual server.
    Add(Dest, u32),
    /// `-e`: change its weight.
    Edit(Dest, u32),
    /// `-d`.
    Del(Dest),
    /// Run a notify or quorum script (not waited for).
    Notify(Script),
    /// One log line.
    Log(String),
}

/// One real server: keepalived's `alive`, `set`, `num_failed_checkers`.
#[derive(Debug, Clone)]
pub struct RsState {
    pub alive: bool,
    /// In the director's table (possibly at weight 0).
    pub set: bool,
    failed: usize,
    base_weight: u32,
    /// misc_dynamic contributions, one per checker (None: not set).
    dynamic: Vec<Option<u32>>,
}

impl RsState {
    /// Configured weight plus the dynamic MISC_CHECK contributions
    /// (`status - 2 - weight` each), clamped as IPVS would.
    pub fn weight(&self) -> u32 {
        let base = i64::from(self.base_weight);
        let w = self
            .dynamic
            .iter()
            .flatten()
            .fold(base, |acc, d| acc + i64::from(*d) - base);
        w.clamp(0, 2_147_483_647) as u32
    }
}

/// A virtual server's live state.
#[derive(Debug, Clone)]
pub struct VsState {
    pub rs: Vec<RsState>,
    /// (real server index, checker index within it, state).
    pub checkers: Vec<(usize, usize, CheckerState)>,
    pub quorum_up: bool,
    pub sorry_active: bool,
    sorry_set: bool,
    quorum: u64,
    hysteresis: u64,
}

impl VsState {
    /// The state at start and the actions that install it: alive servers
    /// (and inhibited ones at weight 0), unless quorum is not reached and
    /// a sorry server stands in for them.
    pub fn start(vs: &VirtualServer) -> (VsState, Vec<Action>) {
        let mut checkers = Vec::new();
        let rs = vs
            .real_servers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut failed = 0;
                for (j, c) in r.checkers.iter().enumerate() {
                    let st = CheckerState::new(c);
                    if !st.is_up {
                        failed += 1;
                    }
                    checkers.push((i, j, st));
                }
                RsState {
                    alive: failed == 0,
                    set: false,
                    failed,
                    base_weight: r.weight,
                    dynamic: vec![None; r.checkers.len()],
                }
            })
            .collect();
        let mut st = VsState {
            rs,
            checkers,
            quorum_up: false,
            sorry_active: false,
            sorry_set: false,
            quorum: vs.quorum,
            hysteresis: vs.hysteresis,
        };
        let mut acts = Vec::new();
        st.quorum_up = st.live_weight() >= st.quorum + st.hysteresis;
        if !st.quorum_up {
            acts.push(Action::Log(format!(
                "VS {}: quorum not reached at start ({} < {})",
                vs.name,
                st.live_weight(),
                st.quorum + st.hysteresis
            )));
        }
        // Without a sorry server, quorum only decides which scripts run:
        // the servers are served either way.
        if st.quorum_up || vs.sorry.is_none() {
            for i in 0..st.rs.len() {
                if st.rs[i].alive {
                    st.install(vs, i, &mut acts);
                } else if vs.real_servers[i].inhibit {
                    st.uninstall(vs, i, &mut acts);
                }
            }
            if vs.sorry.as_ref().is_some_and(|s| s.inhibit) {
                acts.push(Action::Add(Dest::Sorry, 0));
                st.sorry_set = true;
            }
        } else {
            for i in 0..st.rs.len() {
                if vs.real_servers[i].inhibit {
                    st.uninstall(vs, i, &mut acts);
                }
            }
            st.activate_sorry(vs, &mut acts);
        }
        (st, acts)
    }

    /// Σ effective weights of the live servers.
    pub fn live_weight(&self) -> u64 {
        self.rs
            .iter()
            .filter(|r| r.alive)
            .map(|r| u64::from(r.weight()))
            .sum()
    }

    /// Takes the result of checker `ci` (an index into `checkers`);
    /// `dynamic` is a misc_dynamic weight (`status - 2`) on success.
    /// Returns the actions and the delay before this checker's next probe.
    pub fn on_result(
        &mut self,
        vs: &VirtualServer,
        ci: usize,
        ok: bool,
        dynamic: Option<u32>,
        why: &str,
    ) -> (Vec<Action>, Duration) {
        let mut acts = Vec::new();
        let (ri, cj, ref mut cs) = self.checkers[ci];
        let (transition, next) = cs.on_result(ok);
        let rs_cfg = &vs.real_servers[ri];
        let what = format!(
            "{} of real server {} in VS {}",
            rs_cfg.checkers[cj].kind.name(),
            rs_name(vs, ri),
            vs.name
        );
        match transition {
            Some(Transition::Down) => {
                acts.push(Action::Log(format!("{what}: failed ({why}), checker down")));
                let rs = &mut self.rs[ri];
                let was_alive = rs.failed == 0;
                rs.failed += 1;
                if was_alive {
                    rs.alive = false;
                    self.rs_changed(vs, ri, &mut acts);
                }
            }
            Some(Transition::Up) => {
                acts.push(Action::Log(format!("{what}: success, checker up")));
                let rs = &mut self.rs[ri];
                let becomes_alive = rs.failed <= 1;
                rs.failed = rs.failed.saturating_sub(1);
                if becomes_alive && !rs.alive {
                    rs.alive = true;
                    self.rs_changed(vs, ri, &mut acts);
                }
            }
            None if !ok && rs_cfg.checkers[cj].log_all_failures => {
                acts.push(Action::Log(format!("{what}: failed ({why})")));
            }
            None => {}
        }
        if ok && matches!(&rs_cfg.checkers[cj].kind, CheckKind::Misc(m) if m.dynamic) {
            let old = self.rs[ri].weight();
            self.rs[ri].dynamic[cj] = dynamic;
            let new = self.rs[ri].weight();
            if old != new {
                acts.push(Action::Log(format!(
                    "real server {} in VS {}: weight {old} -> {new} (misc_dynamic)",
                    rs_name(vs, ri),
                    vs.name
                )));
                if self.rs[ri].alive && self.rs[ri].set && !self.sorry_active {
                    acts.push(Action::Edit(Dest::Real(ri), new));
                }
                self.update_quorum(vs, &mut acts);
            }
        }
        (acts, next)
    }

    /// A real server became alive or dead.
    fn rs_changed(&mut self, vs: &VirtualServer, i: usize, acts: &mut Vec<Action>) {
        let r = &vs.real_servers[i];
        let alive = self.rs[i].alive;
        if !self.sorry_active {
            if alive {
                self.install(vs, i, acts);
            } else {
                self.uninstall(vs, i, acts);
            }
        } else {
            acts.push(Action::Log(format!(
                "real server {} in VS {}: {} (the sorry server is serving; applied when quorum returns)",
                rs_name(vs, i),
                vs.name,
                if alive { "up" } else { "down" }
            )));
        }
        let script = if alive { &r.notify_up } else { &r.notify_down };
        if let Some(s) = script {
            acts.push(Action::Notify(s.clone()));
        }
        self.update_quorum(vs, acts);
    }

    fn install(&mut self, vs: &VirtualServer, i: usize, acts: &mut Vec<Action>) {
        let w = self.rs[i].weight();
        let verb = if self.rs[i].set {
            acts.push(Action::Edit(Dest::Real(i), w));
            "weight restored"
        } else {
            acts.push(Action::Add(Dest::Real(i), w));
            "added"
        };
        self.rs[i].set = true;
        acts.push(Action::Log(format!(
            "real server {} in VS {}: up, {verb} (weight {w})",
            rs_name(vs, i),
            vs.name
        )));
    }

    fn uninstall(&mut self, vs: &VirtualServer, i: usize, acts: &mut Vec<Action>) {
        let verb = if vs.real_servers[i].inhibit {
            if self.rs[i].set {
                acts.push(Action::Edit(Dest::Real(i), 0));
            } else {
                acts.push(Action::Add(Dest::Real(i), 0));
            }
            self.rs[i].set = true;
            "weight 0 (inhibit_on_failure)"
        } else if self.rs[i].set {
            acts.push(Action::Del(Dest::Real(i)));
            self.rs[i].set = false;
            "removed"
        } else {
            return;
        };
        let state = if self.rs[i].alive {
            "quorum lost"
        } else {
            "down"
        };
        acts.push(Action::Log(format!(
            "real server {} in VS {}: {state}, {verb}",
            rs_name(vs, i),
            vs.name
        )));
    }

    fn activate_sorry(&mut self, vs: &VirtualServer, acts: &mut Vec<Action>) {
        let Some(sorry) = &vs.sorry else {
            return;
        };
        if self.sorry_set {
            acts.push(Action::Edit(Dest::Sorry, 1));
        } else {
            acts.push(Action::Add(Dest::Sorry, 1));
        }
        self.sorry_set = true;
        self.sorry_active = true;
        acts.push(Action::Log(format!(
            "VS {}: sorry server {} in service",
            vs.name, sorry.addr
        )));
    }

    fn update_quorum(&mut self, vs: &VirtualServer, acts: &mut Vec<Action>) {
        let sum = self.live_weight();
        if self.quorum_up && (sum == 0 || sum + self.hysteresis < self.quorum) {
            self.quorum_up = false;
            acts.push(Action::Log(format!(
                "VS {}: lost quorum ({sum} < {} - {})",
                vs.name, self.quorum, self.hysteresis
            )));
            if let Some(s) = &vs.quorum_down {
                acts.push(Action::Notify(s.clone()));
            }
            if vs.sorry.is_some() {
                for i in 0..self.rs.len() {
                    if self.rs[i].alive {
                        self.uninstall(vs, i, acts);
                    }
                }
                self.activate_sorry(vs, acts);
            }
        } else if !self.quorum_up && sum >= self.quorum + self.hysteresis {
            self.quorum_up = true;
            acts.push(Action::Log(format!(
                "VS {}: gained quorum ({sum} >= {} + {})",
                vs.name, self.quorum, self.hysteresis
            )));
            if let Some(s) = &vs.quorum_up {
                acts.push(Action::Notify(s.clone()));
            }
            if self.sorry_active {
                self.sorry_active = false;
                if vs.sorry.as_ref().is_some_and(|s| s.inhibit) {
                    acts.push(Action::Edit(Dest::Sorry, 0));
                } else {
                    acts.push(Action::Del(Dest::Sorry));
                    self.sorry_set = false;
                }
                acts.push(Action::Log(format!(
                    "VS {}: sorry server out of service",
                    vs.name
                )));
                for i in 0..self.rs.len() {
                    if self.rs[i].alive {
                        self.install(vs, i, acts);
                    }
                }
            }
        }
    }

    /// What `omega` asks for at shutdown: the down scripts of live
    /// servers and the quorum_down script.
    pub fn shutdown(&self, vs: &VirtualServer) -> Vec<Action> {
        let mut acts = Vec::new();
        if !vs.omega {
            return acts;
        }
        for (i, r) in self.rs.iter().enumerate() {
            if r.alive {
                if let Some(s) = &vs.real_servers[i].notify_down {
                    acts.push(Action::Notify(s.clone()));
                }
            }
        }
        if self.quorum_up {
            if let Some(s) = &vs.quorum_down {
                acts.push(Action::Notify(s.clone()));
            }
        }
        acts
    }

    /// The status listing of this virtual server (see the README).
    pub fn status(&self, vs: &VirtualServer, out: &mut String) {
        let _ = writeln!(
            out,
            "VS {} {} quorum {} (live weight {}, quorum {}, hysteresis {}){}",
            vs.name,
            match vs.protocol {
                crate::conf::Protocol::Tcp => "TCP",
                crate::conf::Protocol::Udp => "UDP",
                crate::conf::Protocol::Sctp => "SCTP",
            },
            if self.quorum_up { "up" } else { "down" },
            self.live_weight(),
            self.quorum,
            self.hysteresis,
            match (&vs.sorry, self.sorry_active) {
                (Some(s), true) => format!(" sorry server {} serving", s.addr),
                (Some(s), false) => format!(" sorry server {} idle", s.addr),
                (None, _) => String::new(),
            }
        );
        for (i, r) in self.rs.iter().enumerate() {
            let checks: Vec<String> = self
                .checkers
                .iter()
                .filter(|(ri, _, _)| *ri == i)
                .map(|(_, cj, c)| {
                    format!(
                        "{} {}",
                        vs.real_servers[i].checkers[*cj].kind.name(),
                        if c.is_up { "up" } else { "down" }
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  RS {} {} weight {} {}{}",
                rs_name(vs, i),
                if r.alive { "alive" } else { "dead" },
                r.weight(),
                if r.set { "in table" } else { "not in table" },
                if checks.is_empty() {
                    String::new()
                } else {
                    format!(": {}", checks.join(", "))
                }
            );
        }
    }
}

/// `IP:PORT` (IPv6 in brackets), or the bare address when the real
/// server takes each service's port.
pub fn rs_name(vs: &VirtualServer, i: usize) -> String {
    let r = &vs.real_servers[i];
    match (r.addr, r.port) {
        (a, Some(p)) => std::net::SocketAddr::new(a, p).to_string(),
        (a, None) => a.to_string(),
    }
}

#[cfg(test)]
mod tests;
