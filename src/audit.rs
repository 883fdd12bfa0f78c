//! Every uvsadm command that can change the director, in the log: who
//! changed what is the first question after an incident.
//!
//! [`Audited`] wraps the director as the control socket's executor and
//! logs one `command` event per request after it ran: the argv, the exit
//! status, and the first line of the refusal when there is one. Listings,
//! `-S`, `-h`, `-v` and `--counters` change nothing and are logged at debug
//! level only.
//! The socket is root-only (or a named group's), so this is an audit trail,
//! not a path traffic can flood.

use std::sync::Arc;

use control::proto::{Request, Response};
use control::server::Executor;

use crate::control_hook::UvsDirector;
use crate::log::Level;
use crate::log_event;

/// The director, logging what it is asked to do.
#[derive(Debug)]
pub struct Audited(pub Arc<UvsDirector>);

/// Whether an ipvsadm argv only reads (its command is the first word,
/// possibly bundled with options: `-Ln`).
pub fn reads_only(argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return true;
    };
    matches!(
        first.as_str(),
        "--list" | "--save" | "--help" | "--version" | "--counters"
    ) || ["-L", "-l", "-S", "-h", "-v"]
        .iter()
        .any(|c| first.starts_with(c))
}

impl Executor for Audited {
    fn execute(&self, req: &Request) -> Response {
        let resp = self.0.execute(req);
        let level = if reads_only(&req.argv) {
            Level::Debug
        } else {
            Level::Info
        };
        if crate::log::enabled(level) {
            let error = resp.stderr.lines().next().unwrap_or("").to_string();
            log_event!(
                level,
                "command",
                argv = req.argv.join(" "),
                status = resp.code.max(0) as u32,
                error = error
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn listings_read_and_changes_do_not() {
        for r in [
            "-L -n",
            "-Ln",
            "-l",
            "--list -t 1.2.3.4:80",
            "-S -n",
            "-Sn",
            "--save",
            "-h",
            "-v",
            "--counters --json",
            "",
        ] {
            assert!(reads_only(&argv(r)), "{r}");
        }
        for w in [
            "-A -t 198.18.0.1:80",
            "-a -t 198.18.0.1:80 -r 198.18.1.1",
            "-C",
            "-Z",
            "--set 1 2 3",
            "-R",
            "-E -t x",
        ] {
            assert!(!reads_only(&argv(w)), "{w}");
        }
    }
}
