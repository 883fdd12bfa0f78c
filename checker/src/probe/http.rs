//! HTTP_GET and SSL_GET: one URL per probe, keepalived's request bytes,
//! the response read to EOF, status code and MD5 digest of the body.
//!
//! Request (keepalived's check_http.c): `GET <path> HTTP/1.x`,
//! `User-Agent: KeepAliveClient`, `Connection: close` for 1.1 and 1.0C,
//! `Host`. Status = the three digits after the status line's first space
//! (anything else is a failure: a server answering garbage fails its
//! check). Body = the bytes after the first blank line, at most
//! Content-Length of them when that header is present. SSL_GET does not
//! verify the server's certificate, as keepalived does not by default; it
//! sends SNI only with `enable_sni`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use super::Outcome;
use crate::conf::{Http, HttpProtocol, Url};

/// Headers larger than this are garbage, not a health answer.
const MAX_HEADER: usize = 64 << 10;
/// A body larger than this fails the check rather than tying the checker
/// up (keepalived hashes any length; a health URL is small).
const MAX_BODY: u64 = 64 << 20;

/// keepalived's request bytes for one URL.
pub fn request(h: &Http, url: &Url) -> String {
    let (version, close) = match h.protocol {
        HttpProtocol::V10 => ("1.0", false),
        HttpProtocol::V10Close => ("1.0", true),
        HttpProtocol::V11 => ("1.1", true),
    };
    format!(
        "GET {} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{}Host: {}\r\n\r\n",
        url.path,
        if close { "Connection: close\r\n" } else { "" },
        url.host
    )
}

/// What a response says, read from a stream to its end.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// MD5 of the body, lowercase hex.
    pub digest: String,
}

/// Reads a response to EOF (or Content-Length), hashing the body as it
/// comes. Errors: an unreadable stream or garbage.
pub fn read_response<R: Read>(r: &mut R) -> Result<Response, String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let mut md5 = Md5::new();
    let mut body_len: u64 = 0;
    let mut limit: Option<u64> = None;
    let mut status = None;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // TLS servers often close without close_notify: that is EOF.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && status.is_some() => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out reading the response".into())
            }
            Err(e) => return Err(format!("reading the response: {e}")),
        };
        let mut chunk = &buf[..n];
        if status.is_none() {
            head.extend_from_slice(chunk);
            let Some(end) = find(&head, b"\r\n\r\n") else {
                if head.len() > MAX_HEADER {
                    return Err("no end of headers in the first 64 KiB".into());
                }
                continue;
            };
            let (s, l) = parse_head(&head[..end])?;
            status = Some(s);
            limit = l;
            let rest = head[end + 4..].to_vec();
            let take = limit.map_or(rest.len(), |l| rest.len().min(l as usize));
            md5.update(&rest[..take]);
            body_len += take as u64;
            chunk = &[];
        }
        let room = limit.map_or(u64::MAX, |l| l - body_len);
        let take = (chunk.len() as u64).min(room) as usize;
        md5.update(&chunk[..take]);
        body_len += take as u64;
        if body_len > MAX_BODY {
            return Err("body larger than 64 MiB".into());
        }
        if limit.is_some_and(|l| body_len >= l) {
            break;
        }
    }
    let Some(status) = status else {
        return Err(if head.is_empty() {
            "empty response".into()
        } else {
            "no HTTP response header".into()
        });
    };
    let digest = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Response { status, digest })
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

/// The status code and Content-Length of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, Option<u64>), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    if !first.starts_with("HTTP/") {
        return Err(format!("not an HTTP status line: {:?}", truncate(first)));
    }
    let code = first
        .split_once(' ')
        .map(|(_, rest)| rest.trim_start())
        .filter(|r| r.len() >= 3 && r.as_bytes()[..3].iter().all(u8::is_ascii_digit))
        .and_then(|r| r[..3].parse().ok())
        .ok_or_else(|| format!("no status code in {:?}", truncate(first)))?;
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Ok((code, len))
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Whether a response passes `url`'s expectations, and if not, why.
pub fn judge(url: &Url, r: &Response) -> Result<(), String> {
    if !url
        .status
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&r.status))
    {
        return Err(format!("status code {}", r.status));
    }
    if let Some(want) = &url.digest {
        if *want != r.digest {
            return Err(format!("digest {} instead of {want}", r.digest));
        }
    }
    Ok(())
}

pub fn check(h: &Http, url_index: usize) -> Outcome {
    let Some(url) = h.urls.get(url_index).or(h.urls.first()) else {
        return Outcome::Skip("no url".into());
    };
    let what = format!(
        "{} http{}://{}{}",
        if h.tls { "SSL_GET" } else { "HTTP_GET" },
        if h.tls { "s" } else { "" },
        h.target.addr,
        url.path
    );
    let sock = match super::tcp::connect(&h.target) {
        Ok(s) => s,
        Err(e) => return e.outcome(&what),
    };
    let stream: TcpStream = sock.into();
    let req = request(h, url);
    let res = if h.tls {
        let conn = match tls_connection(h, url) {
            Ok(c) => c,
            Err(e) => return Outcome::Skip(format!("{what}: {e}")),
        };
        let mut tls = StreamOwned::new(conn, stream);
        exchange(&mut tls, &req)
    } else {
        let mut s = stream;
        exchange(&mut s, &req)
    };
    match res.and_then(|r| judge(url, &r)) {
        Ok(()) => Outcome::Pass { dynamic: None },
        Err(e) => Outcome::Fail(format!("{what}: {e}")),
    }
}

fn exchange<S: Read + Write>(s: &mut S, req: &str) -> Result<Response, String> {
    s.write_all(req.as_bytes())
        .and_then(|()| s.flush())
        .map_err(|e| format!("sending the request: {e}"))?;
    read_response(s)
}

fn tls_connection(h: &Http, url: &Url) -> Result<ClientConnection, String> {
    // With enable_sni and a host name, send it; otherwise name the server
    // by address (rustls sends no SNI for an address).
    let host = url
        .host
        .rsplit_once(':')
        .map_or(url.host.as_str(), |(h, _)| h);
    let name = match (h.sni, host.parse::<IpAddr>()) {
        (true, Err(_)) => ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
        _ => ServerName::IpAddress(h.target.addr.ip().into()),
    };
    ClientConnection::new(tls_config(), name).map_err(|e| e.to_string())
}

/// One client configuration for every SSL_GET: no certificate check.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth()
                });
            // The ring provider supports the default versions; should that
            // ever fail, a config without TLS 1.2 is still better than none.
            Arc::new(config.unwrap_or_else(|_| {
                ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))))
                    .with_no_client_auth()
            }))
        })
        .clone()
}

/// keepalived's SSL_GET does not verify certificates unless configured
/// with a CA; UVS does the same. Handshake signatures are still checked,
/// so the TLS session itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
