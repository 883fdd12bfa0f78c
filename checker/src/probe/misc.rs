//! MISC_CHECK and the notify scripts: a program run without a shell,
//! bounded in time.
//!
//! Exit 0 passes; without misc_dynamic anything else fails; with it, 1
//! fails and 2..=255 passes with the weight `status - 2`. A script still
//! running at misc_timeout fails: its whole process group (it runs in a
//! group of its own, so whatever it started goes too) gets SIGTERM, and
//! SIGKILL two seconds later, as keepalived does.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::{CommandExt, ExitStatusExt};

use rustix::process::{kill_process_group, Pid, Signal};

use super::Outcome;
use crate::conf::{Misc, Script};

/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How often a running script is looked at.
const POLL: Duration = Duration::from_millis(20);

/// How a bounded run ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// Still running at the deadline; killed.
    TimedOut,
}

/// Starts `script` in a process group of its own, nothing on stdin and
/// its output discarded.
pub fn spawn(script: &Script) -> std::io::Result<Child> {
    let (prog, args) = script
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    Command::new(prog)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Waits for `child` until `timeout`, killing its group if it overruns.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Ended> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Ended::Exited(st));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    let group = Pid::from_child(child);
    let _ = kill_process_group(group, Signal::TERM);
    let grace = Instant::now() + KILL_GRACE;
    while Instant::now() < grace {
        if child.try_wait()?.is_some() {
            // The leader is gone; stragglers of its group still get KILL.
            let _ = kill_process_group(group, Signal::KILL);
            return Ok(Ended::TimedOut);
        }
        std::thread::sleep(POLL);
    }
    let _ = kill_process_group(group, Signal::KILL);
    child.wait()?;
    Ok(Ended::TimedOut)
}

/// The verdict of a script's exit status.
pub fn verdict(st: ExitStatus, dynamic: bool) -> Outcome {
    match (st.code(), dynamic) {
        (Some(0), _) => Outcome::Pass { dynamic: None },
        (Some(c @ 2..=255), true) => Outcome::Pass {
            dynamic: Some(c as u32 - 2),
        },
        (Some(c), _) => Outcome::Fail(format!("exited with status {c}")),
        (None, _) => Outcome::Fail(format!(
            "killed by signal {}",
            st.signal().unwrap_or_default()
        )),
    }
}

pub fn check(m: &Misc) -> Outcome {
    let what = format!("MISC_CHECK '{}'", m.script);
    let mut child = match spawn(&m.script) {
        Ok(c) => c,
        // A script that cannot start is a failed check: the operator sees
        // it in the log and the server is not trusted blindly.
        Err(e) => return Outcome::Fail(format!("{what}: cannot run: {e}")),
    };
    match wait_bounded(&mut child, m.timeout) {
        Ok(Ended::Exited(st)) => match verdict(st, m.dynamic) {
            Outcome::Fail(why) => Outcome::Fail(format!("{what}: {why}")),
            o => o,
        },
        Ok(Ended::TimedOut) => Outcome::Fail(format!(
            "{what}: still running after {} s, killed",
            m.timeout.as_secs()
        )),
        Err(e) => Outcome::Fail(format!("{what}: {e}")),
    }
}

/// Runs a notify or quorum script in the background (bounded by
/// `timeout`, reaped); a failure to start or a bad exit is logged.
pub fn notify(script: &Script, timeout: Duration) {
    let script = script.clone();
    std::thread::spawn(move || match spawn(&script) {
        Ok(mut c) => match wait_bounded(&mut c, timeout) {
            Ok(Ended::Exited(st)) if st.success() => {}
            Ok(Ended::Exited(st)) => crate::log(&format!("notify script '{script}': {st}")),
            Ok(Ended::TimedOut) => crate::log(&format!(
                "notify script '{script}': still running after {} s, killed",
                timeout.as_secs()
            )),
            Err(e) => crate::log(&format!("notify script '{script}': {e}")),
        },
        Err(e) => crate::log(&format!("notify script '{script}': cannot run: {e}")),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn misc(cmd: &[&str], timeout: u64, dynamic: bool) -> Misc {
        Misc {
            script: Script {
                argv: cmd.iter().map(|s| s.to_string()).collect(),
            },
            timeout: Duration::from_secs(timeout),
            dynamic,
        }
    }

    #[test]
    fn exit_codes_decide_and_misc_dynamic_sets_weights() {
        assert_eq!(
            check(&misc(&["true"], 5, false)),
            Outcome::Pass { dynamic: None }
        );
        assert!(matches!(
            check(&misc(&["false"], 5, false)),
            Outcome::Fail(_)
        ));
        let exit = |c: u8, d| check(&misc(&["sh", "-c", &format!("exit {c}")], 5, d));
        assert!(matches!(exit(7, false), Outcome::Fail(m) if m.contains("status 7")));
        assert!(matches!(exit(1, true), Outcome::Fail(_)));
        assert_eq!(exit(2, true), Outcome::Pass { dynamic: Some(0) });
        assert_eq!(exit(255, true), Outcome::Pass { dynamic: Some(253) });
        assert!(
            matches!(check(&misc(&["/nonexistent/x"], 5, false)), Outcome::Fail(m) if m.contains("cannot run"))
        );
    }

    #[test]
    fn a_hanging_script_and_its_children_are_killed_at_misc_timeout() {
        let dir = std::env::temp_dir().join(format!("uvs-misc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("child.pid");
        // The script starts a child that ignores nothing and sleeps, then
        // waits; both must be gone after the check.
        let body = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let t0 = Instant::now();
        let out = check(&misc(&["sh", "-c", &body], 1, false));
        assert!(
            matches!(&out, Outcome::Fail(m) if m.contains("killed")),
            "{out:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the checker was held up"
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let proc = format!("/proc/{}", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(10);
        // Reaped by init (or a zombie until then): not running any more.
        let running = || {
            std::fs::read_to_string(format!("{proc}/stat"))
                .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
                .unwrap_or(false)
        };
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!running(), "the script's child survived");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_script_ignoring_sigterm_is_killed() {
        let out = check(&misc(&["sh", "-c", "trap '' TERM; sleep 300"], 1, false));
        assert!(
            matches!(&out, Outcome::Fail(m) if m.contains("killed")),
            "{out:?}"
        );
    }
}
