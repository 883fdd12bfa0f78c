//! ipvsadm 1.31's command line -> [`Command`], validated completely, with
//! ipvsadm's error messages and exit statuses.
//!
//! Why a faithful copy rather than a nicer parser: operators' scripts and
//! `ipvsadm-save` files are written against ipvsadm's exact behaviour,
//! quirks included (bundled short options, an optional `-p` value, `-r`
//! copying the service port, `-E`/`-e` resetting what is not given, the
//! first fault in ipvsadm's internal option order being the one reported).
//!
//! Layout:
//! * [`options`]: the option table and a popt-like tokenizer;
//! * [`address`]: numbers, `host[:port]`, `inet_aton`, name lookups;
//! * [`mod@parse`]: the per-option state machine and post-parse checks;
//! * [`validate`]: per-command allowed/required options, list conflicts,
//!   the tunnel option matrix and scheduler flags;
//! * [`error`]: the error type, [`GrammarError`].
//!
//! Deliberate differences from ipvsadm, all extensions or documented
//! choices:
//! * `--json` (long form only) is accepted with `-L`/`-l` and `--counters`
//!   and nowhere else (`Illegal 'json' option with the '<cmd>' command`).
//! * `--counters [--json]` (long form only) shows the running director's
//!   per-worker counters; nothing else may follow it.
//! * `--sysctl [NAME[=VALUE]]` (long form only) lists, shows or sets the
//!   IPVS tunables; nothing may follow it, and names and values are checked
//!   here against `uvs_model::tunables`.
//! * [`split_client_options`] strips a leading `--socket PATH` for uvsadm.
//! * `-R`: `parse(["-R"])` returns `Command::Restore(vec![])`; the client
//!   reads stdin and fills it with [`parse_restore`]. A popt error on a
//!   restore line aborts the restore too (ipvsadm would skip the line), and
//!   nothing of a rejected restore is applied.
//! * `-b ,` (a flag list with no flag) crashes ipvsadm; here it is
//!   ``invalid scheduler flag `,'``.
//! * The help hint always names `ipvsadm`, whatever `argv[0]` was.
//!
//! Where reference section 1 and ipvsadm's source disagree, the source wins
//! (each case has a test):
//! * A second command (`-A ... -E`, or `-h`/`-v` after the command) gives
//!   ``invalid option `<word>'`` (exit 2), naming the argv word popt consumed
//!   last: ipvsadm's option loop has no case for commands, so the "multiple
//!   commands specified" message the reference quotes cannot be reached.
//! * `--syncid` is accepted (and ignored) with `-L`, as ipvsadm's option
//!   table allows it.
//! * In `-R` input every word `ipvsadm` is dropped, not only a leading one.

pub mod address;
pub mod error;
pub mod options;
pub mod parse;
pub mod validate;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use address::{OfflineResolver, Resolver, SystemResolver};
pub use error::{GrammarError, TRY_HELP};

use crate::command::Command;

/// What `-v` prints (followed by a newline).
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)";

/// Parses one ipvsadm command line; `args` excludes `argv[0]`. No arguments
/// means `-L` (names resolved). Host names and service names are resolved
/// with the system resolver.
pub fn parse(args: &[String]) -> Result<Command, GrammarError> {
    parse::parse_command(args, &SystemResolver, false)
}

/// [`parse()`] with a chosen resolver (tests and fuzzing use
/// [`OfflineResolver`] so that no lookup waits on DNS).
pub fn parse_with(args: &[String], resolver: &dyn Resolver) -> Result<Command, GrammarError> {
    parse::parse_command(args, resolver, false)
}

/// Splits one `-R` input line into words as ipvsadm's `config_stream_read`
/// does: on spaces, tabs and carriage returns, dropping every word that is
/// exactly `ipvsadm` (ipvsadm drops it wherever it appears, which in
/// practice is the leading program name of saved lines).
pub fn restore_words(line: &str) -> Vec<String> {
    line.split([' ', '\t', '\r'])
        .filter(|w| !w.is_empty() && *w != "ipvsadm")
        .map(str::to_string)
        .collect()
}

/// Parses `ipvsadm -R` input (e.g. `ipvsadm-save` output) into the commands
/// to apply, in order.
///
/// * Lines are split with [`restore_words`]; empty lines are skipped.
/// * Lines whose first word starts with `#` are skipped, as the
///   `ipvsadm-restore` wrapper removes comment lines before ipvsadm sees
///   them (ipvsadm's own comment detection never triggers: it looks for `#`
///   in the delimiter after a word). A `#` later in a line is an ordinary
///   word, as in ipvsadm.
/// * Every line is checked as a command line; `-R` inside restore input is
///   refused with the "Try `ipvsadm -h'" hint (exit 255), as ipvsadm does.
/// * The first rejected line aborts the whole restore: the error keeps
///   ipvsadm's message and exit status and carries the line number in
///   [`GrammarError::line`].
/// * `-h`/`-v` end ipvsadm's restore (it prints and exits 0): the returned
///   list ends with that command and later lines are not read.
pub fn parse_restore(text: &str) -> Result<Vec<Command>, GrammarError> {
    parse_restore_with(text, &SystemResolver)
}

/// [`parse_restore`] with a chosen resolver.
pub fn parse_restore_with(
    text: &str,
    resolver: &dyn Resolver,
) -> Result<Vec<Command>, GrammarError> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let words = restore_words(line);
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let cmd = parse::parse_command(&words, resolver, true).map_err(|e| e.at_line(i + 1))?;
        let stop = matches!(cmd, Command::Help | Command::Version);
        out.push(cmd);
        if stop {
            break;
        }
    }
    Ok(out)
}

/// Strips uvsadm's own leading `--socket PATH` / `--socket=PATH` (a UVS
/// extension, given before the ipvsadm command). Returns the socket path if
/// one was given and the remaining ipvsadm arguments. A `--socket` with no
/// path after it is left in place, so that parsing reports it.
pub fn split_client_options(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut socket = None;
    let mut rest = args;
    loop {
        match rest.first().map(String::as_str) {
            Some("--socket") if rest.len() >= 2 => {
                socket = Some(rest[1].clone());
                rest = &rest[2..];
            }
            Some(w) if w.starts_with("--socket=") => {
                socket = Some(w["--socket=".len()..].to_string());
                rest = &rest[1..];
            }
            _ => break,
        }
    }
    (socket, rest.to_vec())
}

/// What `-h` prints to stdout (exit status 0).
pub fn usage() -> &'static str {
    USAGE
}

const USAGE: &str = "\
ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)
Usage:
  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  ipvsadm -D virtual-service
  ipvsadm -C
  ipvsadm -R
  ipvsadm -S [-n]
  ipvsadm -a|e virtual-service -r server-address [options]
  ipvsadm -d virtual-service -r server-address
  ipvsadm -L|l [virtual-service] [options]
  ipvsadm -Z [virtual-service]
  ipvsadm --set tcp tcpfin udp
  ipvsadm --start-daemon {master|backup} [daemon_options]
  ipvsadm --stop-daemon {master|backup}
  ipvsadm --sysctl [name[=value]]
  ipvsadm --counters [--json]
  ipvsadm --add-laddr|--del-laddr -t|u|f service-address -z local-address
  ipvsadm --get-laddr [-t|u|f service-address]
  ipvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add a virtual service
  --edit-service    -E        replace a virtual service's settings
  --delete-service  -D        remove a virtual service and its real servers
  --clear           -C        remove every virtual service
  --restore         -R        read commands from standard input
  --save            -S        print the rules in the form -R reads
  --add-server      -a        add a real server to a virtual service
  --edit-server     -e        replace a real server's settings
  --delete-server   -d        remove a real server from a virtual service
  --list            -L|-l     list virtual services (all, or the one given)
  --zero            -Z        reset the counters of one or all services
  --set tcp tcpfin udp        set the connection timeouts (0 keeps a value)
  --start-daemon              start the connection synchronisation daemon
  --stop-daemon               stop the connection synchronisation daemon
  --sysctl [name[=value]]     list, show or set the IPVS tunables (UVS extension)
  --counters [--json]         every worker's packet and drop counters (UVS extension)
  --add-laddr       -P        add a FULLNAT local address to a service (DPVS)
  --del-laddr       -Q        remove a FULLNAT local address (DPVS)
  --get-laddr       -G        list FULLNAT local addresses and their use (DPVS)
  --help            -h        print this help
  --version         -v        print the version

virtual-service:
  --tcp-service|-t  service-address   host[:port], protocol TCP
  --udp-service|-u  service-address   host[:port], protocol UDP
  --sctp-service    service-address   host[:port], protocol SCTP
  --fwmark-service|-f fwmark          firewall mark (integer above 0)

Options:
  --ipv6         -6                   the fwmark service is IPv6
  --scheduler    -s scheduler         rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,
                                      wlc when not given
  --pe            engine              persistence engine: sip
  --persistent   -p [timeout]         keep a client on one server (360 s by default)
  --netmask      -M netmask           persistence granularity: IPv4 mask or IPv6 prefix length
  --real-server  -r server-address    host (and port) of the real server
  --gatewaying   -g                   direct routing (the default)
  --ipip         -i                   IP tunnelling
  --masquerading -m                   NAT
  --fullnat      -b                   FULLNAT (DPVS; -b only with -a/-e): the client's
                                      address replaced by a local address
  --toa                               FULLNAT: client address in the TOA TCP option
                                      (UVS extension, with -A/-E)
  --laddr        -z local-address     FULLNAT local address (--add-laddr, --del-laddr)
  --ifname       -F ifname            accepted with --add-laddr/--del-laddr, unused
  --tun-type      type                ipip|gue|gre, ipip when not given
  --tun-port      port                GUE destination port
  --tun-nocsum                        no tunnel checksum (the default)
  --tun-csum                          tunnel checksum
  --tun-remcsum                       remote checksum offload (gue only)
  --weight       -w weight            capacity of the real server, 0 to quiesce it (default 1)
  --u-threshold  -x uthreshold        most connections the server takes (0: no limit)
  --l-threshold  -y lthreshold        connections below which it takes more again
  --connection   -c                   list the connection table
  --timeout                           list the timeouts of tcp tcpfin udp
  --daemon                            list the synchronisation daemon state
  --stats                             list with counters
  --rate                              list with rates
  --thresholds                        list with thresholds
  --persistent-conn                   list with persistence templates
  --tun-info                          list with tunnel settings
  --nosort                            keep the table's order in listings
  --sort                              sort listings (the default; no effect)
  --numeric      -n                   print addresses and ports as numbers
  --exact        -X                   print whole numbers in --stats and --rate
  --json                              machine-readable listing (UVS extension)
  --ops          -o                   one-packet scheduling (UDP and fwmark services)
  --sched-flags  -b flags             scheduler flags, comma-separated:
                                      flag-1..flag-3, sh-fallback, sh-port,
                                      mh-fallback, mh-port
  --synproxy     -j enable|disable    SYN proxy with SYN cookies (TCP, NAT servers only;
                                      DPVS's option, UVS extension)
Daemon Options:
  --syncid sid                        sync daemon id (0..255, default 0)
  --sync-maxlen length                largest sync message payload
  --mcast-interface interface         multicast interface of the sync daemon
  --mcast-group address               sync multicast group (default 224.0.0.81)
  --mcast-port port                   sync multicast port (default 8848)
  --mcast-ttl ttl                     sync multicast TTL (default 1)
";

/// Fuzzing entry point (shared by `fuzz/fuzz_targets/grammar.rs` and a
/// property test): the first byte picks command line or `-R` input, the
/// rest is split into words at NUL bytes and blanks (lossy UTF-8). Parsing
/// must never panic, and every error must carry ipvsadm's exit status.
pub fn fuzz_one(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let result = if mode & 1 == 0 {
        let args: Vec<String> = text
            .split(['\0', ' ', '\n'])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        parse_with(&args, &OfflineResolver).map(|_| ())
    } else {
        parse_restore_with(&text, &OfflineResolver).map(|_| ())
    };
    if let Err(e) = result {
        assert!(e.exit_code == 2 || e.exit_code == 255);
        assert!(!e.message.is_empty());
    }
}
