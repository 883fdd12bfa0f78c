//! The state machine under a fake clock: a tiny event loop stands in for
//! the runtime, probes are answered by a function of time, and every
//! action is recorded with the time it happened.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::conf::parse_text;

const HEAD: &str = "global_defs {\n enable_script_security\n script_user root\n}\n";

fn vs_of(text: &str) -> VirtualServer {
    parse_text("t.conf", &format!("{HEAD}{text}"))
        .unwrap()
        .virtual_servers
        .remove(0)
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

/// Runs checkers from t=1 s (keepalived's bootstrap delay, no warmup) to
/// `until`; `up(checker, t)` answers probes. Returns (time, action) pairs
/// after the start-up actions.
fn simulate(
    vs: &VirtualServer,
    until: f64,
    up: impl Fn(usize, Duration) -> bool,
) -> (VsState, Vec<Action>, Vec<(Duration, Action)>) {
    let (mut st, start) = VsState::start(vs);
    let mut due: BTreeMap<(Duration, usize), ()> = BTreeMap::new();
    for ci in 0..st.checkers.len() {
        due.insert((s(1.0), ci), ());
    }
    let mut log = Vec::new();
    while let Some(((t, ci), ())) = due.pop_first() {
        if t > s(until) {
            break;
        }
        let ok = up(ci, t);
        let (acts, next) = st.on_result(vs, ci, ok, None, "test");
        log.extend(acts.into_iter().map(|a| (t, a)));
        due.insert((t + next, ci), ());
    }
    (st, start, log)
}

fn table_changes(log: &[(Duration, Action)]) -> Vec<(f64, Action)> {
    log.iter()
        .filter(|(_, a)| !matches!(a, Action::Log(_)))
        .map(|(t, a)| (t.as_secs_f64(), a.clone()))
        .collect()
}

const TWO_TCP: &str = "virtual_server 198.18.0.100 80 {
 delay_loop 10
 lb_algo rr
 lb_kind NAT
 protocol TCP
 real_server 198.18.1.11 80 {
  TCP_CHECK {
   retry 2
   delay_before_retry 1
  }
 }
 real_server 198.18.1.12 80 {
  weight 2
  TCP_CHECK {
  }
 }
}";

#[test]
fn servers_start_alive_and_are_installed_at_once() {
    let vs = vs_of(TWO_TCP);
    let (st, start) = VsState::start(&vs);
    assert!(st.quorum_up);
    let adds: Vec<_> = start
        .iter()
        .filter(|a| !matches!(a, Action::Log(_)))
        .cloned()
        .collect();
    assert_eq!(
        adds,
        [Action::Add(Dest::Real(0), 1), Action::Add(Dest::Real(1), 2)]
    );
}

#[test]
fn a_server_that_stops_goes_after_retry_plus_one_failures_and_returns_on_one_success() {
    let vs = vs_of(TWO_TCP);
    // rs1 (checker 0) stops answering at t=20 and comes back at t=55.
    let (_, _, log) = simulate(&vs, 80.0, |ci, t| ci != 0 || t < s(20.0) || t >= s(55.0));
    // Probes at 1, 11, 21 (fail), 22 (fail), 23 (fail: 3rd = retry+1) ->
    // removed at 23; down probes every delay_loop: 33, 43, 53 fail, 63 ok.
    assert_eq!(
        table_changes(&log),
        [
            (23.0, Action::Del(Dest::Real(0))),
            (63.0, Action::Add(Dest::Real(0), 1))
        ]
    );
}

#[test]
fn the_first_failure_after_start_takes_a_checker_down_without_retries() {
    let vs = vs_of(TWO_TCP);
    let (_, _, log) = simulate(&vs, 5.0, |ci, _| ci != 0);
    assert_eq!(table_changes(&log), [(1.0, Action::Del(Dest::Real(0)))]);
}

#[test]
fn alpha_servers_wait_for_a_first_success() {
    let vs = vs_of(&TWO_TCP.replace(" delay_loop 10", " delay_loop 10\n alpha"));
    let (st, start) = VsState::start(&vs);
    assert!(
        start.iter().all(|a| matches!(a, Action::Log(_))),
        "{start:?}"
    );
    assert!(!st.quorum_up);
    let (_, _, log) = simulate(&vs, 5.0, |_, _| true);
    assert_eq!(
        table_changes(&log),
        [
            (1.0, Action::Add(Dest::Real(0), 1)),
            (1.0, Action::Add(Dest::Real(1), 2))
        ]
    );
}

#[test]
fn inhibit_on_failure_sets_weight_zero_instead_of_removing() {
    let vs = vs_of(&TWO_TCP.replace(" delay_loop 10", " delay_loop 10\n inhibit_on_failure"));
    let (_, _, log) = simulate(&vs, 70.0, |ci, t| ci != 0 || t < s(20.0) || t >= s(55.0));
    assert_eq!(
        table_changes(&log),
        [
            (23.0, Action::Edit(Dest::Real(0), 0)),
            (63.0, Action::Edit(Dest::Real(0), 1))
        ]
    );
}

#[test]
fn sorry_server_serves_while_every_server_is_down_and_leaves_when_one_returns() {
    let text = TWO_TCP.replace(
        " delay_loop 10",
        " delay_loop 10\n sorry_server 198.18.1.13 80",
    );
    let vs = vs_of(&text);
    let (st, _, log) = simulate(&vs, 40.0, |_, t| t < s(10.0) || t >= s(30.0));
    assert_eq!(
        table_changes(&log),
        [
            // rs2 fails at 11 and at its one retry, 12.
            (12.0, Action::Del(Dest::Real(1))),
            // rs1 retries twice: 11, 12, 13.
            (13.0, Action::Del(Dest::Real(0))),
            (13.0, Action::Add(Dest::Sorry, 1)),
            // rs2, down, is probed every delay_loop: 22, 32.
            (32.0, Action::Del(Dest::Sorry)),
            (32.0, Action::Add(Dest::Real(1), 2)),
            (33.0, Action::Add(Dest::Real(0), 1)),
        ]
    );
    assert!(st.quorum_up && !st.sorry_active);
}

#[test]
fn quorum_with_hysteresis_damps_flapping() {
    // Three servers of weight 1, quorum 2, hysteresis 1: lost below 1
    // (i.e. at 0), gained again only at 3.
    let text = "virtual_server 198.18.0.100 80 {
 delay_loop 10
 lb_algo rr
 lb_kind NAT
 protocol TCP
 quorum 2
 hysteresis 1
 quorum_up /bin/up
 quorum_down /bin/down
 real_server 198.18.1.11 80 {
  TCP_CHECK {
  }
 }
 real_server 198.18.1.12 80 {
  TCP_CHECK {
  }
 }
 real_server 198.18.1.13 80 {
  TCP_CHECK {
  }
 }
}";
    let vs = vs_of(text);
    let notifies = |log: &[(Duration, Action)]| -> Vec<(f64, String)> {
        log.iter()
            .filter_map(|(t, a)| match a {
                Action::Notify(s) => Some((t.as_secs_f64(), s.to_string())),
                _ => None,
            })
            .collect()
    };
    // Two servers die at 10 (sum 1: no loss, 1 + 1 >= 2), the third at
    // 30 (sum 0: lost at its second failure, 32); two return at 50 (seen
    // at 52; sum 2 < 3: still lost), the third at 70 (seen at 72: gained).
    let (_, _, log) = simulate(&vs, 80.0, |ci, t| match ci {
        0 | 1 => !(s(10.0)..s(50.0)).contains(&t),
        _ => !(s(30.0)..s(70.0)).contains(&t),
    });
    assert_eq!(
        notifies(&log),
        [(32.0, "/bin/down".into()), (72.0, "/bin/up".into())]
    );
}

#[test]
fn misc_dynamic_sets_the_weight_from_the_exit_status() {
    let text = "virtual_server 198.18.0.100 80 {
 lb_algo rr
 lb_kind NAT
 protocol TCP
 real_server 198.18.1.11 80 {
  weight 5
  MISC_CHECK {
   misc_path /bin/true
   misc_dynamic
  }
 }
}";
    let vs = vs_of(text);
    let (mut st, _) = VsState::start(&vs);
    let (acts, _) = st.on_result(&vs, 0, true, Some(10), "");
    assert!(acts.contains(&Action::Edit(Dest::Real(0), 10)), "{acts:?}");
    assert_eq!(st.rs[0].weight(), 10);
    let (acts, _) = st.on_result(&vs, 0, true, Some(10), "");
    assert!(acts.is_empty(), "same weight: nothing to do: {acts:?}");
}

#[test]
fn http_urls_are_fetched_one_per_round_and_a_failed_one_is_polled_alone() {
    let text = "virtual_server 198.18.0.100 80 {
 delay_loop 10
 lb_algo rr
 lb_kind NAT
 protocol TCP
 real_server 198.18.1.11 80 {
  HTTP_GET {
   url {
    path /a
   }
   url {
    path /b
   }
   retry 0
   delay_before_retry 20
  }
 }
}";
    let vs = vs_of(text);
    let (mut st, _) = VsState::start(&vs);
    let urls_and_next = |st: &mut VsState, ok: bool| {
        let url = st.checkers[0].2.url();
        let (_, next) = st.on_result(&vs, 0, ok, None, "");
        (url, next.as_secs())
    };
    assert_eq!(urls_and_next(&mut st, true), (0, 10));
    assert_eq!(urls_and_next(&mut st, true), (1, 10));
    assert_eq!(urls_and_next(&mut st, true), (0, 10));
    // /b fails: down at once (retry 0); then only /b, every max(10, 20).
    assert_eq!(urls_and_next(&mut st, false), (1, 20));
    assert!(!st.rs[0].alive);
    assert_eq!(urls_and_next(&mut st, false), (1, 20));
    // /b answers: a new pass from /a; up only once the pass is complete.
    assert_eq!(urls_and_next(&mut st, true), (1, 10));
    assert!(!st.rs[0].alive);
    assert_eq!(urls_and_next(&mut st, true), (0, 10));
    assert!(!st.rs[0].alive);
    assert_eq!(urls_and_next(&mut st, true), (1, 10));
    assert!(st.rs[0].alive);
}

#[test]
fn fast_recovery_fetches_the_rest_of_a_recovering_pass_at_once() {
    let text = "virtual_server 198.18.0.100 80 {
 delay_loop 10
 alpha
 lb_algo rr
 lb_kind NAT
 protocol TCP
 real_server 198.18.1.11 80 {
  HTTP_GET {
   url {
    path /a
   }
   url {
    path /b
   }
   url {
    path /c
   }
   fast_recovery
  }
 }
}";
    let vs = vs_of(text);
    let (mut st, _) = VsState::start(&vs);
    let next = |st: &mut VsState| st.on_result(&vs, 0, true, None, "").1.as_secs();
    // Down at start (alpha): /a and /b are followed at once, /c completes
    // the pass (up), then the normal pace.
    assert_eq!([next(&mut st), next(&mut st)], [0, 0]);
    assert!(!st.rs[0].alive);
    assert_eq!(next(&mut st), 10);
    assert!(st.rs[0].alive);
    assert_eq!(next(&mut st), 10);
}

#[test]
fn omega_runs_down_scripts_at_shutdown() {
    let text = "virtual_server 198.18.0.100 80 {
 lb_algo rr
 lb_kind NAT
 protocol TCP
 omega
 quorum_down /bin/qd
 real_server 198.18.1.11 80 {
  notify_down /bin/nd
 }
}";
    let vs = vs_of(text);
    let (st, _) = VsState::start(&vs);
    let names: Vec<String> = st
        .shutdown(&vs)
        .iter()
        .map(|a| match a {
            Action::Notify(s) => s.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["/bin/nd", "/bin/qd"]);
    let no_omega = vs_of(&text.replace(" omega\n", ""));
    assert!(VsState::start(&no_omega).0.shutdown(&no_omega).is_empty());
}

mod invariants {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A virtual server of 1-4 real servers with random weights, checker
    /// counts, inhibit, alpha, quorum, hysteresis and sorry server.
    fn config() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec((0u32..5, 1usize..3, any::<bool>(), any::<bool>()), 1..5),
            any::<bool>(),
            0u64..3,
        )
            .prop_map(|(rss, sorry, hyst)| {
                let total: u64 = rss.iter().map(|r| u64::from(r.0)).sum();
                let quorum = total.clamp(1, 3);
                let hyst = hyst.min(quorum - 1);
                let mut t = format!(
                    "virtual_server 198.18.0.100 80 {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n quorum {quorum}\n hysteresis {hyst}\n{}",
                    if sorry { " sorry_server 198.18.1.99 80\n" } else { "" }
                );
                for (i, (w, checks, inhibit, alpha)) in rss.iter().enumerate() {
                    t += &format!(" real_server 198.18.1.{} 80 {{\n  weight {w}\n", 10 + i);
                    if *inhibit {
                        t += "  inhibit_on_failure\n";
                    }
                    if *alpha {
                        t += "  alpha\n";
                    }
                    for _ in 0..*checks {
                        t += "  TCP_CHECK {\n  }\n";
                    }
                    t += " }\n";
                }
                // Keep quorum reachable, as keepalived requires.
                if total == 0 {
                    t = t.replace("weight 0", "weight 1");
                }
                t + "}\n"
            })
    }

    proptest! {
        /// Whatever the probes say, the table the actions build is
        /// consistent: nothing added twice, nothing edited or deleted that
        /// is not there; live servers are served at their weight unless the
        /// sorry server stands in, and then no real server takes traffic.
        #[test]
        fn the_table_follows_the_state(
            text in config(),
            results in proptest::collection::vec((0usize..16, any::<bool>()), 0..80),
        ) {
            let vs = match parse_text("p", &text) {
                Ok(mut c) => c.virtual_servers.remove(0),
                Err(e) => return Err(TestCaseError::reject(e.to_string())),
            };
            let (mut st, start) = VsState::start(&vs);
            let mut table: HashMap<Dest, u32> = HashMap::new();
            let apply = |acts: &[Action], table: &mut HashMap<Dest, u32>| -> Result<(), TestCaseError> {
                for a in acts {
                    match a {
                        Action::Add(d, w) => prop_assert!(table.insert(*d, *w).is_none(), "{a:?} twice"),
                        Action::Edit(d, w) => prop_assert!(table.insert(*d, *w).is_some(), "{a:?} of nothing"),
                        Action::Del(d) => prop_assert!(table.remove(d).is_some(), "{a:?} of nothing"),
                        _ => {}
                    }
                }
                Ok(())
            };
            apply(&start, &mut table)?;
            for (c, ok) in results {
                let ci = c % st.checkers.len().max(1);
                if st.checkers.is_empty() {
                    break;
                }
                let (acts, _) = st.on_result(&vs, ci, ok, None, "p");
                apply(&acts, &mut table)?;
                for (i, r) in st.rs.iter().enumerate() {
                    let w = table.get(&Dest::Real(i)).copied();
                    if st.sorry_active {
                        prop_assert!(w.unwrap_or(0) == 0, "rs{i} serves beside the sorry server");
                    } else if r.alive {
                        prop_assert_eq!(w, Some(r.weight()), "live rs{} not served", i);
                    } else if vs.real_servers[i].inhibit {
                        prop_assert_eq!(w, Some(0));
                    } else {
                        prop_assert_eq!(w, None, "dead rs{} still in the table", i);
                    }
                }
                prop_assert_eq!(st.sorry_active, table.get(&Dest::Sorry).is_some_and(|w| *w > 0));
            }
        }
    }
}
