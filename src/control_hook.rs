//! Where the control plane plugs into the daemon.
//!
//! The `[control]` section is parsed and validated by [`crate::config`];
//! the Unix-socket server (ipvsadm commands, `rules` applied before traffic)
//! is wired here by its own change: [`start`] receives the section and the
//! running ports and returns a handle the daemon stops at shutdown, after
//! the workers. Until then it starts nothing.

use crate::config::Control;
use crate::daemon::Running;

/// A running control plane.
#[derive(Debug, Default)]
pub struct ControlHandle {
    _private: (),
}

impl ControlHandle {
    /// Stops the control plane (closes the socket, joins its thread).
    pub fn stop(self) {}
}

/// Starts the control plane for `control` over the running ports.
pub fn start(control: &Control, running: &Running) -> Result<ControlHandle, String> {
    let _ = (control, running.ports.len());
    Ok(ControlHandle::default())
}
