//! The daemon's event log: one line per event, in a form an operator can
//! search and a program can parse.
//!
//! Why our own ~300 lines rather than `tracing` and a subscriber: the daemon
//! logs a few dozen events in its whole life, all from the main and control
//! threads (never a worker: nothing on the packet path logs), and needs
//! exactly two line formats and two targets. A hand-written writer keeps the
//! lines byte-stable (tests and scripts match them), adds no dependency to
//! audit, and cannot be switched on inside a worker by accident.
//!
//! Formats (`[log] format`):
//! * `kv` (default): `uvsd: EVENT level=LEVEL key=value ...`. EVENT is a
//!   stable word (`ready`, `port`, `counters`...); values with a space, a
//!   quote, `=` or nothing in them are double-quoted with `\"`, `\\`, `\n`
//!   escapes, so every line splits the same way. The `uvsd: ready` line that
//!   scripts wait for is the `ready` event in this format.
//! * `json`: one object per line, `{"ts":"2026-01-01T00:00:00.000Z",
//!   "level":"info","event":"ready",...}`; numbers stay numbers.
//!
//! Targets (`[log] target`): `stderr` (journald keeps it under systemd), or
//! `syslog`: datagrams to `/dev/log` (journald or rsyslog) with facility
//! daemon and the event's severity; if `/dev/log` cannot be reached the
//! lines go to stderr, and the first line says why.
//!
//! Events a remote peer can trigger at will (bad scrapes of the metrics
//! endpoint) go through a [`RateLimit`], so traffic cannot flood the log.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl Level {
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// syslog severity (RFC 5424 section 6.2.1).
    const fn syslog(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Kv,
    Json,
}

/// Where lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    Stderr,
    Syslog,
}

/// `[log]` in the daemon's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub target: Target,
    /// Events below this severity are not written.
    #[serde(default)]
    pub level: Level,
}

/// A field's value: text or a number (JSON keeps numbers unquoted).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Num(u64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Text(s.clone())
    }
}
macro_rules! num_value {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Num(n as u64)
            }
        }
    )*};
}
num_value!(u8, u16, u32, u64, usize);

/// Formats one event in the `kv` form (without the newline).
pub fn kv_line(level: Level, event: &str, fields: &[(&str, Value)]) -> String {
    let mut s = format!("uvsd: {event} level={}", level.as_str());
    for (k, v) in fields {
        s.push(' ');
        s.push_str(k);
        s.push('=');
        match v {
            Value::Num(n) => {
                let _ = write!(s, "{n}");
            }
            Value::Text(t) => kv_text(&mut s, t),
        }
    }
    s
}

fn kv_text(out: &mut String, t: &str) {
    let plain = !t.is_empty()
        && t.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(t);
        return;
    }
    out.push('"');
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats one event as a JSON object (without the newline). `ts` is the
/// time in milliseconds since the Unix epoch.
pub fn json_line(ts_ms: u64, level: Level, event: &str, fields: &[(&str, Value)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("ts".into(), rfc3339_ms(ts_ms).into());
    m.insert("level".into(), level.as_str().into());
    m.insert("event".into(), event.into());
    for (k, v) in fields {
        let v = match v {
            Value::Num(n) => serde_json::Value::from(*n),
            Value::Text(t) => serde_json::Value::from(t.as_str()),
        };
        m.insert((*k).to_string(), v);
    }
    serde_json::Value::Object(m).to_string()
}

/// `2026-12-03T07:40:56.123Z` from milliseconds since the epoch (UTC, the
/// civil-from-days algorithm of Howard Hinnant's date library).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Where syslog (journald's or rsyslog's) listens.
const SYSLOG_SOCKET: &str = "/dev/log";

fn connect_syslog(path: &str) -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    Ok(s)
}

/// One syslog datagram: RFC 3164 without a timestamp (the receiver stamps
/// it), facility daemon (3), tag `uvsd[PID]`. The kv form drops its own
/// `uvsd: ` (the tag says it).
fn syslog_datagram(level: Level, line: &str, pid: u32) -> String {
    let body = line.strip_prefix("uvsd: ").unwrap_or(line);
    format!("<{}>uvsd[{pid}]: {body}", 3 * 8 + level.syslog())
}

/// The process-wide writer.
struct Logger {
    cfg: LogConfig,
    /// `/dev/log`, when the target is syslog and it could be reached.
    syslog: Option<UnixDatagram>,
    lock: Mutex<()>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// The defaults (kv, stderr, info) until [`init`] runs.
fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        cfg: LogConfig::default(),
        syslog: None,
        lock: Mutex::new(()),
    })
}

/// Sets the format, target and level from the config. Only the first call
/// counts (it is made once, right after the config is read).
pub fn init(cfg: LogConfig) {
    let mut why = None;
    let syslog = match cfg.target {
        Target::Stderr => None,
        Target::Syslog => match connect_syslog(SYSLOG_SOCKET) {
            Ok(s) => Some(s),
            Err(e) => {
                why = Some(e.to_string());
                None
            }
        },
    };
    let _ = LOGGER.set(Logger {
        cfg,
        syslog,
        lock: Mutex::new(()),
    });
    if let Some(e) = why {
        write(
            Level::Warn,
            "log_target",
            &[
                ("target", "syslog".into()),
                ("error", e.into()),
                ("using", "stderr".into()),
            ],
        );
    }
}

/// Whether events at `level` are written (to skip building costly fields).
pub fn enabled(level: Level) -> bool {
    level <= logger().cfg.level
}

/// Writes one event (if its level is enabled).
pub fn write(level: Level, event: &str, fields: &[(&str, Value)]) {
    let l = logger();
    if level > l.cfg.level {
        return;
    }
    let line = match l.cfg.format {
        Format::Kv => kv_line(level, event, fields),
        Format::Json => {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            json_line(ms, level, event, fields)
        }
    };
    let _g = l.lock.lock();
    if let Some(s) = &l.syslog {
        let msg = syslog_datagram(level, &line, std::process::id());
        if s.send(msg.as_bytes()).is_ok() {
            return;
        }
    }
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// `log!(Level::Info, "ready", workers = 2, lcores = "1,2")`.
#[macro_export]
macro_rules! log_event {
    ($level:expr, $event:expr $(, $k:ident = $v:expr)* $(,)?) => {
        $crate::log::write($level, $event, &[$((stringify!($k), $crate::log::Value::from($v))),*])
    };
}

/// At most `burst` events per `period`; the rest are counted and reported
/// with the next event let through.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    period: Duration,
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(burst: u32, period: Duration) -> RateLimit {
        RateLimit {
            burst,
            period,
            window: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log now, and say `n` events were suppressed before this
    /// one; `None`: suppressed (counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.window {
            Some(start) if now.duration_since(start) < self.period => {}
            _ => {
                self.window = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keeps_the_ready_line_and_quotes_what_would_split() {
        let l = kv_line(
            Level::Info,
            "ready",
            &[("workers", 2u32.into()), ("lcores", "1,2".into())],
        );
        assert_eq!(l, "uvsd: ready level=info workers=2 lcores=1,2");
        assert!(l.starts_with("uvsd: ready"));
        let l = kv_line(
            Level::Warn,
            "x",
            &[
                ("why", "two words".into()),
                ("q", "say \"hi\"\nbye".into()),
                ("e", "".into()),
                ("eq", "a=b".into()),
            ],
        );
        assert_eq!(
            l,
            r#"uvsd: x level=warn why="two words" q="say \"hi\"\nbye" e="" eq="a=b""#
        );
        assert_eq!(l.lines().count(), 1);
    }

    #[test]
    fn json_is_one_object_with_typed_values() {
        let l = json_line(
            1_764_747_656_123,
            Level::Error,
            "port",
            &[("name", "client".into()), ("queues", 2u16.into())],
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["ts"], "2025-12-03T07:40:56.123Z");
        assert_eq!(v["level"], "error");
        assert_eq!(v["event"], "port");
        assert_eq!(v["name"], "client");
        assert_eq!(v["queues"], 2);
        assert!(!l.contains('\n'));
    }

    #[test]
    fn syslog_gets_the_severity_and_the_tag() {
        let dir = std::env::temp_dir().join(format!("uvs-syslog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let tx = connect_syslog(path.to_str().unwrap()).unwrap();
        let line = kv_line(Level::Warn, "notify", &[("error", "refused".into())]);
        tx.send(syslog_datagram(Level::Warn, &line, 42).as_bytes())
            .unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "<28>uvsd[42]: notify level=warn error=refused"
        );
        let json = json_line(0, Level::Error, "x", &[]);
        assert!(syslog_datagram(Level::Error, &json, 1).starts_with("<27>uvsd[1]: {"));
        assert!(connect_syslog(dir.join("none").to_str().unwrap()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates_match_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn rate_limit_lets_a_burst_through_then_counts() {
        let mut r = RateLimit::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        // Next window: the first event reports what was dropped.
        assert_eq!(r.allow(t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(r.allow(t0 + Duration::from_secs(11)), Some(0));
    }

    #[test]
    fn config_names_its_choices() {
        let c: LogConfig =
            toml::from_str("format = \"json\"\ntarget = \"syslog\"\nlevel = \"debug\"").unwrap();
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.target, Target::Syslog);
        assert_eq!(c.level, Level::Debug);
        assert!(toml::from_str::<LogConfig>("format = \"xml\"").is_err());
        assert!(toml::from_str::<LogConfig>("colour = true").is_err());
    }
}
