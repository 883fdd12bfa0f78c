//! Names the shutdown step uvsd is in, when one is slow.
//!
//! Why: a service manager (systemd's `TimeoutStopSec`, a test's stop
//! helper) waits a bounded time after SIGTERM and then SIGKILLs. A step
//! that hangs (a worker that does not return, a thread that does not join,
//! a system call that waits in the kernel, as closing a TAP does while the
//! kernel cannot take `rtnl_lock`) then leaves nothing in the log to say
//! where. A line written after the step would never come; so a watchdog
//! thread, told when each step begins, logs `shutdown_slow` while a step has
//! run longer than [`SLOW`], again every [`REPEAT`] while it still runs, and
//! the step's duration once it ended. A fast shutdown logs nothing.
//!
//! The watchdog only reads the clock and writes log lines: it takes no
//! lock of the daemon's, so it cannot be held up by the step it watches.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A step that runs longer than this is logged.
pub const SLOW: Duration = Duration::from_secs(1);

/// How often a step still running is logged again.
pub const REPEAT: Duration = Duration::from_secs(5);

/// The step name under which the whole shutdown's duration is reported
/// (from the first step's beginning to [`Steps::finish`]).
pub const TOTAL: &str = "total";

/// What the watchdog reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Slow {
    /// `step` is still running after `elapsed`.
    Running {
        step: &'static str,
        elapsed: Duration,
    },
    /// `step` ended after `took` (longer than the threshold).
    Took { step: &'static str, took: Duration },
}

/// The shutdown's steps, each named as it begins (see the module doc).
pub struct Steps {
    tx: Option<Sender<(&'static str, Instant)>>,
    watchdog: Option<JoinHandle<()>>,
    began: std::cell::Cell<bool>,
}

impl Steps {
    /// Starts the watchdog with the daemon's thresholds, logging through
    /// `log_event!`.
    pub fn start() -> Steps {
        Steps::with(SLOW, REPEAT, |s| match s {
            Slow::Running { step, elapsed } => crate::log_event!(
                crate::log::Level::Warn,
                "shutdown_slow",
                step = step,
                state = "running",
                seconds = format!("{:.1}", elapsed.as_secs_f64())
            ),
            Slow::Took { step, took } => crate::log_event!(
                crate::log::Level::Warn,
                "shutdown_slow",
                step = step,
                state = "done",
                seconds = format!("{:.1}", took.as_secs_f64())
            ),
        })
    }

    /// Starts a watchdog with thresholds `slow` and `repeat` that reports
    /// through `report`. Without a thread (one could not be started), the
    /// steps are not watched and the shutdown goes on.
    pub fn with(
        slow: Duration,
        repeat: Duration,
        report: impl FnMut(Slow) + Send + 'static,
    ) -> Steps {
        let (tx, rx) = mpsc::channel::<(&'static str, Instant)>();
        let watchdog = std::thread::Builder::new()
            .name("uvs-stopwatch".into())
            .spawn(move || watch(&rx, slow, repeat, report))
            .ok();
        Steps {
            tx: watchdog.as_ref().map(|_| tx),
            watchdog,
            began: std::cell::Cell::new(false),
        }
    }

    /// Whether a step began (the shutdown is under way).
    pub fn began(&self) -> bool {
        self.began.get()
    }

    /// Step `name` begins (the one before, if any, has ended).
    pub fn begin(&self, name: &'static str) {
        self.began.set(true);
        if let Some(tx) = &self.tx {
            let _ = tx.send((name, Instant::now()));
        }
    }

    /// The last step has ended: reports it if slow, ends the watchdog.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.tx = None;
        if let Some(t) = self.watchdog.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.end();
    }
}

/// The watchdog: follows the steps sent on `rx` until the sender goes.
fn watch(
    rx: &mpsc::Receiver<(&'static str, Instant)>,
    slow: Duration,
    repeat: Duration,
    mut report: impl FnMut(Slow),
) {
    // The step running, when it began, and when to report it next.
    let mut current: Option<(&'static str, Instant, Instant)> = None;
    // When the first step began (the whole shutdown is reported too).
    let mut first: Option<Instant> = None;
    loop {
        let wait = current.map_or(Duration::from_secs(3600), |(_, _, next)| {
            next.saturating_duration_since(Instant::now())
        });
        let received = rx.recv_timeout(wait);
        let now = Instant::now();
        match received {
            Err(RecvTimeoutError::Timeout) => {
                if let Some((step, began, next)) = current.as_mut() {
                    if now >= *next {
                        report(Slow::Running {
                            step,
                            elapsed: now - *began,
                        });
                        *next = now + repeat;
                    }
                }
                continue;
            }
            Ok(_) | Err(RecvTimeoutError::Disconnected) => {}
        }
        // A step ended: the one received began when it did.
        let end = received.as_ref().map_or(now, |&(_, began)| began);
        if let Some((step, began, _)) = current.take() {
            let took = end.saturating_duration_since(began);
            if took > slow {
                report(Slow::Took { step, took });
            }
        }
        match received {
            Ok((step, began)) => {
                first.get_or_insert(began);
                current = Some((step, began, began + slow));
            }
            Err(_) => {
                let took = first.map_or(Duration::ZERO, |f| now.saturating_duration_since(f));
                if took > slow {
                    report(Slow::Took { step: TOTAL, took });
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    fn watched() -> (Steps, Receiver<Slow>) {
        let (tx, rx) = mpsc::channel();
        let steps = Steps::with(
            Duration::from_millis(20),
            Duration::from_millis(20),
            move |s| {
                let _ = tx.send(s);
            },
        );
        (steps, rx)
    }

    #[test]
    fn a_step_that_hangs_is_named_while_it_hangs() {
        let (steps, rx) = watched();
        steps.begin("workers");
        // The step does not end until the watchdog has named it twice.
        for _ in 0..2 {
            match rx.recv().unwrap() {
                Slow::Running { step, elapsed } => {
                    assert_eq!(step, "workers");
                    assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
                }
                other => panic!("the step still runs: {other:?}"),
            }
        }
        steps.begin("ports");
        steps.finish();
        let rest: Vec<Slow> = rx.iter().collect();
        assert!(
            rest.iter().any(|s| matches!(s, Slow::Took { step: TOTAL, took } if *took >= Duration::from_millis(40))),
            "so is the whole shutdown's: {rest:?}"
        );
        assert!(
            rest.iter().any(|s| matches!(s, Slow::Took { step: "workers", took } if *took >= Duration::from_millis(40))),
            "the slow step's duration is reported when it ends: {rest:?}"
        );
    }

    #[test]
    fn fast_steps_report_nothing_and_finish_ends_the_watchdog() {
        let (tx, rx) = mpsc::channel();
        let steps = Steps::with(
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            move |s| {
                let _ = tx.send(s);
            },
        );
        assert!(!steps.began());
        for s in ["announce", "workers", "threads", "ports"] {
            steps.begin(s);
        }
        assert!(steps.began());
        steps.finish();
        // The watchdog thread returned (it dropped its end of the channel).
        assert_eq!(rx.iter().count(), 0);
    }
}
