//! Tells systemd that the daemon is ready, and later that it is stopping
//! (`Type=notify` units).
//!
//! The protocol is one datagram, `READY=1` or `STOPPING=1`, to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`);
//! that is all of libsystemd's `sd_notify` the daemon needs, so it is
//! written out here instead of linking libsystemd. Without the variable
//! (not started by systemd) nothing is sent.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Tells systemd the daemon is ready, if systemd asked; a failure is
/// logged (systemd then times the start out, which says more than we can).
pub fn ready() {
    send_logged("READY=1");
}

/// Tells systemd the daemon is stopping (a signal came), if systemd asked.
pub fn stopping() {
    send_logged("STOPPING=1");
}

fn send_logged(state: &str) {
    if let Err(e) = notify(state) {
        crate::log_event!(
            crate::log::Level::Warn,
            "notify",
            state = state,
            error = e.to_string()
        );
    }
}

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`. `Ok(false)` when
/// the variable is not set.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let path = path.to_string_lossy().into_owned();
    send_to(&path, state)?;
    Ok(true)
}

/// Sends one datagram to `path` (`@name`: the abstract socket `name`).
fn send_to(path: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("uvs-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("notify.sock");
        let _ = std::fs::remove_file(&p);
        let rx = UnixDatagram::bind(&p).unwrap();
        send_to(p.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("uvs-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&format!("@{name}"), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
