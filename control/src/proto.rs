//! The control socket's wire format.
//!
//! Why this shape: uvsadm must behave exactly like ipvsadm, including its
//! messages and exit codes, and the daemon must validate every command itself
//! (it cannot trust a client). So the client sends the command line as it
//! was typed, and the daemon parses, validates, executes and answers with
//! what ipvsadm would have printed and its exit status. The client stays a
//! thin pipe, and any tool that can write JSON to a Unix socket can drive
//! the daemon.
//!
//! Framing, both directions: a 4-byte big-endian length `N`, then `N` bytes
//! of UTF-8 JSON. One request and one response per frame; a connection may
//! carry several requests in sequence.
//!
//! ```text
//! request:  {"argv": ["-A", "-t", "198.18.0.10:80", "-s", "rr"], "stdin": null}
//! response: {"code": 0, "stdout": "", "stderr": ""}
//! ```
//!
//! `argv` excludes the program name; `"tool": "ipset"` makes it an ipset
//! command line (`uvsset`, see [`Tool`]). `stdin` carries standard input for
//! `-R`/`--restore` (the client reads it, since the daemon has no terminal).
//! Requests larger than [`MAX_REQUEST`] are refused without being read
//! whole; responses are bounded by [`MAX_RESPONSE`].

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest request frame accepted: an ipset restore of a million-entry
/// blocklist is about 30 MB.
pub const MAX_REQUEST: usize = 64 << 20;
/// Largest response frame a client accepts (a connection listing of a busy
/// director is large).
pub const MAX_RESPONSE: usize = 512 << 20;

/// What the client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
    #[serde(default)]
    pub stdin: Option<String>,
    /// The command language of `argv`; absent means ipvsadm's.
    #[serde(default, skip_serializing_if = "Tool::is_ipvsadm")]
    pub tool: Tool,
}

/// The command languages the daemon speaks: `"tool": "ipset"` in a
/// request selects ipset's (uvsset); without it, ipvsadm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    #[default]
    Ipvsadm,
    Ipset,
    /// iptables and its save/restore, for either family (`uvstables`):
    /// `argv[0]` is the program name (`iptables`, `ip6tables-save`, ...),
    /// which selects the program and the family.
    Iptables,
}

impl Tool {
    pub fn is_ipvsadm(&self) -> bool {
        *self == Tool::Ipvsadm
    }
}

/// What the daemon answers: ipvsadm's output and exit status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Response {
    pub fn ok(stdout: String) -> Response {
        Response {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    pub fn err(code: i32, stderr: impl Into<String>) -> Response {
        Response {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}

/// Errors reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The frame is larger than allowed.
    #[error("frame of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    /// The frame is not valid JSON of the expected shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Writes one frame holding `msg` as JSON.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    w.write_all(&out)?;
    w.flush()
}

/// Reads one frame of at most `limit` bytes and decodes it.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    limit: usize,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > limit {
        return Err(FrameError::TooLarge(n, limit));
    }
    // Grown as bytes arrive: a peer that claims a large frame and sends
    // little costs what it sent, not what it claimed.
    let mut body = Vec::with_capacity(n.min(64 << 10));
    r.take(n as u64).read_to_end(&mut body)?;
    if body.len() < n {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_a_frame() {
        let req = Request {
            argv: vec!["-L".into(), "-n".into()],
            stdin: None,
            tool: Tool::Ipset,
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(&buf[..4], &((buf.len() - 4) as u32).to_be_bytes());
        let back: Request = read_frame(&mut &buf[..], MAX_REQUEST).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_the_body() {
        let mut buf = (MAX_REQUEST as u32 + 1).to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        let r: Result<Request, _> = read_frame(&mut &buf[..], MAX_REQUEST);
        assert!(matches!(r, Err(FrameError::TooLarge(n, _)) if n == MAX_REQUEST + 1));
    }

    #[test]
    fn a_frame_shorter_than_its_length_is_an_error() {
        let mut buf = (MAX_REQUEST as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(b"{\"argv\":[]}");
        let r: Result<Request, _> = read_frame(&mut &buf[..], MAX_REQUEST);
        assert!(
            matches!(&r, Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{r:?}"
        );
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{{{");
        let r: Result<Request, _> = read_frame(&mut &buf[..], MAX_REQUEST);
        assert!(matches!(r, Err(FrameError::Malformed(_))));
        let r: Result<Request, _> = read_frame(&mut &b""[..], MAX_REQUEST);
        assert!(matches!(r, Err(FrameError::Closed)));
    }
}
