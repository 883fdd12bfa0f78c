//! TCP_CHECK: a connection that completes its handshake within
//! connect_timeout passes and is closed at once (no data).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::Outcome;
use crate::conf::Target;

/// Why a connection could not be made: our side (skip the round) or the
/// server's (a failure).
pub enum ConnectError {
    Local(io::Error),
    Remote(io::Error),
}

impl ConnectError {
    pub fn outcome(self, what: &str) -> Outcome {
        match self {
            ConnectError::Local(e) => Outcome::Skip(format!("{what}: {e}")),
            ConnectError::Remote(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Outcome::Fail(format!("{what}: timed out"))
            }
            ConnectError::Remote(e) => Outcome::Fail(format!("{what}: {e}")),
        }
    }
}

/// A connected socket to `t.addr` with the checker's socket options,
/// timeouts set to connect_timeout for later reads and writes.
pub fn connect(t: &Target) -> Result<Socket, ConnectError> {
    let s = Socket::new(
        Domain::for_address(t.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(ConnectError::Local)?;
    if let Some(m) = t.fwmark {
        s.set_mark(m).map_err(ConnectError::Local)?;
    }
    if let Some(i) = &t.bind_if {
        s.bind_device(Some(i.as_bytes()))
            .map_err(ConnectError::Local)?;
    }
    if t.bindto.is_some() || t.bind_port.is_some() {
        let any = if t.addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let from = SocketAddr::new(t.bindto.unwrap_or(any), t.bind_port.unwrap_or(0));
        s.bind(&from.into()).map_err(ConnectError::Local)?;
    }
    s.connect_timeout(&t.addr.into(), t.connect_timeout)
        .map_err(ConnectError::Remote)?;
    s.set_read_timeout(Some(t.connect_timeout))
        .map_err(ConnectError::Local)?;
    s.set_write_timeout(Some(t.connect_timeout))
        .map_err(ConnectError::Local)?;
    Ok(s)
}

pub fn check(t: &Target) -> Outcome {
    match connect(t) {
        Ok(_) => Outcome::Pass { dynamic: None },
        Err(e) => e.outcome(&format!("TCP connection to {}", t.addr)),
    }
}
