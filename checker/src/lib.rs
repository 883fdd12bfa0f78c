//! uvs-keepalived: UVS's health checks, configured by an unchanged
//! keepalived.conf.
//!
//! keepalived drives kernel IPVS through netlink, so it cannot drive UVS.
//! This crate takes its place: [`conf`] reads the `virtual_server`,
//! `virtual_server_group` and `real_server` blocks with keepalived's
//! defaults and checks, [`state`] is keepalived's checker state machine,
//! real-server aggregation, quorum and sorry server as pure logic (tested
//! with a fake clock), [`probe`] runs TCP_CHECK, HTTP_GET, SSL_GET and
//! MISC_CHECK, [`director`] turns the state machine's actions into
//! ipvsadm commands on uvsd's control socket, and [`run`] ties them
//! together in the `uvs-keepalived` daemon.

pub mod conf;
pub mod director;
pub mod probe;
pub mod run;
pub mod state;

/// One log line on stderr, with a UTC time stamp: every state change and
/// every problem is one such line.
pub fn log(line: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (s, ms) = (now.as_secs(), now.subsec_millis());
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    eprintln!("{h:02}:{m:02}:{sec:02}.{ms:03} uvs-keepalived: {line}");
}
