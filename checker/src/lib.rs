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

/// Fuzzing entry point (shared by `fuzz/fuzz_targets/keepalived.rs` and
/// a property test): the bytes are a keepalived.conf; when the parser
/// accepts it, the same bytes drive every virtual server's state machine
/// (each byte one probe result: which checker, pass or fail, a dynamic
/// weight) and every action becomes an ipvsadm line. Nothing may panic.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = conf::parse_text("fuzz.conf", &text) else {
        return;
    };
    for vs in &cfg.virtual_servers {
        let (mut st, start) = state::VsState::start(vs);
        let mut acts = start;
        for &b in data.iter().take(256) {
            if st.checkers.is_empty() {
                break;
            }
            let ci = usize::from(b) % st.checkers.len();
            let dynamic = (b & 0x40 != 0).then_some(u32::from(b));
            acts.extend(st.on_result(vs, ci, b & 0x80 == 0, dynamic, "fuzz").0);
        }
        acts.extend(st.shutdown(vs));
        let mut status = String::new();
        st.status(vs, &mut status);
        for svc in &vs.services {
            let _ = director::service_argv(vs, *svc, false);
            for a in &acts {
                let _ = director::action_argv(vs, *svc, a);
            }
        }
    }
}
