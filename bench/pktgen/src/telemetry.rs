//! A client for a peer DPDK process's telemetry socket.
//!
//! Why: the device under test (testpmd or uvsd) is another process, and
//! net_memif resets its counters when the peer leaves, so its stdout at
//! exit is no record of the measurement window. Its telemetry socket
//! (`/var/run/dpdk/<prefix>/dpdk_telemetry.v2`, SOCK_SEQPACKET) answers
//! `/ethdev/stats,<port>` with a JSON object at any time; the generator
//! reads it at the start and the end of its window.

use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::net::{
    connect, recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType,
};

/// Largest reply (the telemetry library's output limit is 16 KiB).
const MAX_REPLY: usize = 16384;

/// Why telemetry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry socket {path}: {err}")]
    Io {
        path: String,
        err: rustix::io::Errno,
    },
    #[error("telemetry reply to {cmd} is not the expected JSON: {reply}")]
    Reply { cmd: String, reply: String },
}

/// A connection to one telemetry socket.
#[derive(Debug)]
pub struct Telemetry {
    fd: OwnedFd,
    path: String,
    buf: Vec<u8>,
    /// The peer's process id, from the greeting.
    pub pid: Option<u32>,
}

/// The ethdev counters the benchmark uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EthStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub imissed: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

impl EthStats {
    /// Counters of `self` minus `earlier` (saturating: a reset counts as 0).
    pub fn since(&self, earlier: &EthStats) -> EthStats {
        EthStats {
            ipackets: self.ipackets.saturating_sub(earlier.ipackets),
            opackets: self.opackets.saturating_sub(earlier.opackets),
            imissed: self.imissed.saturating_sub(earlier.imissed),
            oerrors: self.oerrors.saturating_sub(earlier.oerrors),
            rx_nombuf: self.rx_nombuf.saturating_sub(earlier.rx_nombuf),
        }
    }

    /// Parses the reply to `/ethdev/stats,N`.
    pub fn from_reply(reply: &str) -> Option<EthStats> {
        let v: serde_json::Value = serde_json::from_str(reply).ok()?;
        let s = v.get("/ethdev/stats")?;
        let n = |k: &str| s.get(k).and_then(serde_json::Value::as_u64);
        Some(EthStats {
            ipackets: n("ipackets")?,
            opackets: n("opackets")?,
            imissed: n("imissed").unwrap_or(0),
            oerrors: n("oerrors").unwrap_or(0),
            rx_nombuf: n("rx_nombuf").unwrap_or(0),
        })
    }
}

impl Telemetry {
    /// Connects and reads the greeting.
    pub fn connect(path: &Path) -> Result<Telemetry, TelemetryError> {
        let p = path.display().to_string();
        let io = |err| TelemetryError::Io {
            path: p.clone(),
            err,
        };
        let fd = socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).map_err(io)?;
        let addr = SocketAddrUnix::new(path).map_err(io)?;
        connect(&fd, &addr).map_err(io)?;
        let mut t = Telemetry {
            fd,
            path: p.clone(),
            buf: vec![0; MAX_REPLY],
            pid: None,
        };
        // {"version": ..., "pid": ..., "max_output_len": ...}
        let greeting = t.read()?;
        t.pid = serde_json::from_str::<serde_json::Value>(&greeting)
            .ok()
            .and_then(|v| v.get("pid")?.as_u64())
            .and_then(|p| u32::try_from(p).ok());
        Ok(t)
    }

    fn read(&mut self) -> Result<String, TelemetryError> {
        let (n, _) = recv(&self.fd, &mut self.buf[..], RecvFlags::empty()).map_err(|err| {
            TelemetryError::Io {
                path: self.path.clone(),
                err,
            }
        })?;
        Ok(String::from_utf8_lossy(&self.buf[..n]).into_owned())
    }

    /// Sends `cmd` and returns the raw reply.
    pub fn query(&mut self, cmd: &str) -> Result<String, TelemetryError> {
        send(&self.fd, cmd.as_bytes(), SendFlags::empty()).map_err(|err| TelemetryError::Io {
            path: self.path.clone(),
            err,
        })?;
        self.read()
    }

    /// The counters of ethdev `port`.
    pub fn eth_stats(&mut self, port: u16) -> Result<EthStats, TelemetryError> {
        let cmd = format!("/ethdev/stats,{port}");
        let reply = self.query(&cmd)?;
        EthStats::from_reply(&reply).ok_or(TelemetryError::Reply { cmd, reply })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stats_reply_and_subtracts() {
        let r = r#"{"/ethdev/stats": {"ipackets": 1000, "opackets": 990, "ibytes": 60000,
            "obytes": 59400, "imissed": 3, "ierrors": 0, "oerrors": 1, "rx_nombuf": 0,
            "q_ipackets": [1000]}}"#;
        let s = EthStats::from_reply(r).unwrap();
        assert_eq!(
            (s.ipackets, s.opackets, s.imissed, s.oerrors),
            (1000, 990, 3, 1)
        );
        let before = EthStats {
            ipackets: 400,
            opackets: 1000,
            ..EthStats::default()
        };
        let d = s.since(&before);
        assert_eq!((d.ipackets, d.opackets), (600, 0));
    }

    #[test]
    fn refuses_other_replies() {
        assert_eq!(EthStats::from_reply(r#"{"/ethdev/stats": null}"#), None);
        assert_eq!(EthStats::from_reply("not json"), None);
        assert_eq!(EthStats::from_reply(r#"{"/ethdev/list": [0]}"#), None);
    }
}
