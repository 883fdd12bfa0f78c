//! The probes: one call runs one check against one real server and says
//! how it went. Each call is blocking and bounded in time
//! (`connect_timeout` for every wait of a connection, `misc_timeout` for a
//! script), so the runtime can give every checker a thread of its own and
//! a hanging server or script can delay only its own checker.

pub mod http;
pub mod misc;
pub mod tcp;

use crate::conf::{CheckKind, Checker};

/// How one probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed; `dynamic` is a misc_dynamic weight (exit - 2).
    Pass { dynamic: Option<u32> },
    /// The check failed, and why (counted by the state machine).
    Fail(String),
    /// The probe could not be made here (no socket, bind failed): as in
    /// keepalived, not counted; the check runs again after delay_loop.
    Skip(String),
}

/// Runs one probe of checker `c`; `url` chooses the HTTP/SSL URL.
pub fn run(c: &Checker, url: usize) -> Outcome {
    match &c.kind {
        CheckKind::Tcp(t) => tcp::check(t),
        CheckKind::Http(h) => http::check(h, url),
        CheckKind::Misc(m) => misc::check(m),
    }
}
