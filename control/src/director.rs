//! The director's command executor: what "the kernel plus ipvsadm" is for a
//! running uvsd.
//!
//! A request (argv, and stdin for `-R`) is parsed by [`crate::grammar`] with
//! ipvsadm's messages and exit codes, executed against the
//! [`ConfigStore`] with the kernel's semantics and errors, and answered with
//! ipvsadm's output bytes from [`crate::format`]. Every accepted change
//! produces a new immutable snapshot that is handed to the data plane
//! through [`Dataplane::publish`]; a rejected command changes nothing.
//!
//! Locking: the store sits behind one mutex, held only while a command
//! reads or changes it. Listings capture what they need under the lock and
//! format (and resolve names) after releasing it.
//!
//! What UVS refuses that ipvsadm would accept, each with a clear message:
//! the `sip` persistence engine (the kernel's ENOENT text). The connection sync
//! daemons (`--start-daemon`, `--stop-daemon`, `-L --daemon`) are the data
//! plane's ([`Dataplane::start_daemon`]); one without them refuses clearly.

use std::sync::{Arc, Mutex, MutexGuard};

use uvs_model::ops::ConfigOp;

use dataplane::config::ConfigStore;
use dataplane::rules::tables::RuleTables;
use dataplane::snapshot::Snapshot;
use uvs_model::model::ConnEntry;

use crate::command::{Command, DaemonConfig, DaemonState, ListKind, SysctlRequest};
use crate::format::{self, DaemonStatus, ListSources, Listing, Resolver};
use crate::grammar::{self, GrammarError};
use crate::proto::{Request, Response, Tool};
use crate::reload::{self, ReloadSummary};
use crate::server::Executor;
use uvs_model::tunables::{Tunable, Tunables, TUNABLES};

/// What the executor needs from the data plane.
pub trait Dataplane: Send + Sync {
    /// Makes `snapshot` the configuration the workers use.
    fn publish(&self, snapshot: Arc<Snapshot>);
    /// Every connection and template the workers hold (for `-L -c`).
    fn connections(&self) -> Vec<ConnEntry>;
    /// The connection table size shown as `size=` in listings.
    fn conn_tab_size(&self) -> u32;
    /// Frees what older snapshots only the data plane kept alive (called
    /// before each change: see `dataplane::lb::ConfigCell::reclaim`).
    fn reclaim(&self) {}
    /// `--start-daemon`; the refusal carries ipvsadm's text and status.
    fn start_daemon(&self, _cfg: &DaemonConfig) -> Result<(), Refusal> {
        Err(no_sync_daemon())
    }
    /// `--stop-daemon`.
    fn stop_daemon(&self, _state: DaemonState) -> Result<(), Refusal> {
        Err(no_sync_daemon())
    }
    /// `--counters`: every worker's counters, `None` when the data plane
    /// has none to show (not running yet).
    fn counters(&self) -> Option<format::counters::CounterTable> {
        None
    }
    /// The running sync daemons (`-L --daemon`), with the kernel's
    /// defaults filled in.
    fn daemons(&self) -> Vec<DaemonStatus> {
        Vec::new()
    }
}

/// What a data plane without sync daemons answers.
fn no_sync_daemon() -> Refusal {
    Refusal::new(
        UNSUPPORTED,
        "uvsd: the connection synchronisation daemon is not supported by this data plane",
    )
}

/// Exit status ipvsadm uses when the kernel refuses a change.
pub const KERNEL_ERROR: i32 = 255;
/// Exit status of a failed listing (ipvsadm exits 1 there).
const LIST_ERROR: i32 = 1;
/// Exit status for what UVS refuses on its own.
const UNSUPPORTED: i32 = 2;
/// Exit status of a bad command line (ipvsadm's `fail(2, ...)`).
const CMDLINE_ERROR: i32 = 2;

/// Runs ipvsadm commands against the configuration store.
pub struct Director<D: Dataplane> {
    store: Mutex<ConfigStore>,
    /// The packet rules (iptables); compiled into the store on change.
    rules: Mutex<RuleState>,
    dataplane: D,
    names: Box<dyn Resolver + Send + Sync>,
    hosts: Box<dyn grammar::Resolver + Send + Sync>,
}

impl<D: Dataplane> std::fmt::Debug for Director<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director").finish_non_exhaustive()
    }
}

/// Why a command was not carried out: the text and status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    /// stderr text, newline-terminated.
    pub message: String,
}

impl Refusal {
    /// A refusal with ipvsadm's exit status `code` and stderr text.
    pub fn new(code: i32, message: impl Into<String>) -> Refusal {
        let mut message = message.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        Refusal { code, message }
    }
}

impl From<GrammarError> for Refusal {
    fn from(e: GrammarError) -> Refusal {
        let mut msg = e.message.clone();
        if let Some(line) = e.line {
            msg.push_str(&format!("\n(restore input line {line})"));
        }
        Refusal::new(e.exit_code, msg)
    }
}

/// The store operation of a modifying command; `None` for the others.
pub(crate) fn to_op(cmd: &Command) -> Option<&ConfigOp> {
    match cmd {
        Command::Config(op) => Some(op),
        _ => None,
    }
}

impl<D: Dataplane> Director<D> {
    /// A director with an empty configuration, resolving names with the
    /// system's resolver.
    pub fn new(dataplane: D) -> Director<D> {
        Director::with_resolvers(
            dataplane,
            Box::new(format::SystemResolver::new()),
            Box::new(grammar::SystemResolver),
        )
    }

    /// A director with chosen resolvers (tests use offline ones).
    pub fn with_resolvers(
        dataplane: D,
        names: Box<dyn Resolver + Send + Sync>,
        hosts: Box<dyn grammar::Resolver + Send + Sync>,
    ) -> Director<D> {
        Director::with_store(dataplane, names, hosts, ConfigStore::new())
    }

    /// A director with chosen resolvers that starts from `store` (the
    /// `control` fuzz target's copy of an empty store: see
    /// [`ConfigStore::copy_without_workers`]).
    pub fn with_store(
        dataplane: D,
        names: Box<dyn Resolver + Send + Sync>,
        hosts: Box<dyn grammar::Resolver + Send + Sync>,
        store: ConfigStore,
    ) -> Director<D> {
        dataplane.publish(store.snapshot());
        Director {
            store: Mutex::new(store),
            rules: Mutex::default(),
            dataplane,
            names,
            hosts,
        }
    }

    pub fn dataplane(&self) -> &D {
        &self.dataplane
    }

    fn store(&self) -> MutexGuard<'_, ConfigStore> {
        // A panic while holding the lock cannot leave a half-applied change
        // (ops apply to a copy first), so a poisoned lock is still sound.
        match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The current configuration snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store().snapshot()
    }

    /// Advances the rate estimators; call every 2 seconds.
    pub fn tick_estimators(&self) {
        // Set timeouts count in seconds of this clock (see sets::clock).
        dataplane::sets::clock::refresh();
        self.store().tick_estimators();
    }

    /// The store operations of a rules file, every line checked.
    fn rules_ops(&self, text: &str) -> Result<Vec<ConfigOp>, Refusal> {
        let cmds = grammar::parse_restore_with(text, self.hosts.as_ref())?;
        let mut ops = Vec::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            match cmd {
                Command::Config(op) => ops.push(op),
                _ => {
                    return Err(Refusal::new(
                        UNSUPPORTED,
                        format!(
                            "uvsd: rules command {} is not a configuration change",
                            i + 1
                        ),
                    ))
                }
            }
        }
        Ok(ops)
    }

    /// Makes the service table the one the rules file `text` describes
    /// (uvsd's reload, see [`crate::reload`]): services and real servers
    /// that stay keep their counters and connections. All or nothing: a
    /// file with any refused line changes nothing.
    pub fn reload_rules(&self, text: &str) -> Result<ReloadSummary, Refusal> {
        let ops = self.rules_ops(text)?;
        self.dataplane.reclaim();
        let mut desired = ConfigStore::new();
        desired.apply_all(&ops).map_err(|(i, e)| {
            Refusal::new(KERNEL_ERROR, format!("{e}\n(rules command {})", i + 1))
        })?;
        let mut store = self.store();
        let (mut plan, summary) = reload::plan(&store.snapshot(), &desired.snapshot());
        plan.extend(
            ops.into_iter()
                .filter(|o| matches!(o, ConfigOp::SetTimeouts { .. })),
        );
        if plan.is_empty() {
            return Ok(summary);
        }
        store
            .apply_all(&plan)
            .map_err(|(_, e)| Refusal::new(KERNEL_ERROR, e.to_string()))?;
        self.dataplane.publish(store.snapshot());
        Ok(summary)
    }

    /// Applies ipvsadm-save text (the config's `rules` file) before the
    /// ports start. All or nothing: any refused line fails the whole load.
    pub fn load_rules(&self, text: &str) -> Result<(), Refusal> {
        let ops = self.rules_ops(text)?;
        self.dataplane.reclaim();
        let mut store = self.store();
        store.apply_all(&ops).map_err(|(i, e)| {
            Refusal::new(KERNEL_ERROR, format!("{e}\n(rules command {})", i + 1))
        })?;
        self.dataplane.publish(store.snapshot());
        Ok(())
    }

    /// Runs one parsed command; `stdin` is the restore input. Returns what
    /// ipvsadm would print and its exit status.
    pub fn run(&self, cmd: &Command, stdin: Option<&str>) -> Response {
        if let Some(op) = to_op(cmd) {
            self.dataplane.reclaim();
            let mut store = self.store();
            return match store.apply(op) {
                Ok(()) => {
                    self.dataplane.publish(store.snapshot());
                    Response::ok(String::new())
                }
                Err(e) => refuse(KERNEL_ERROR, e.to_string()),
            };
        }
        match cmd {
            Command::Sysctl(req) => self.sysctl(req),
            Command::Counters { json } => match self.dataplane.counters() {
                Some(t) if *json => Response::ok(format::counters::json(&t)),
                Some(t) => Response::ok(format::counters::text(&t)),
                None => refuse(KERNEL_ERROR, "uvsd: no worker is running yet"),
            },
            Command::GetLocal(key) => match format::laddrs(&self.snapshot(), key.as_ref()) {
                Ok(text) => Response::ok(text),
                Err(e) => refuse(LIST_ERROR, e.to_string()),
            },
            Command::Help => Response::ok(grammar::usage().to_string()),
            Command::Version => Response::ok(format!("{}\n", grammar::VERSION_LINE)),
            Command::Save { numeric } => {
                let listing = self.capture();
                Response::ok(format::save(&listing, *numeric, self.names.as_ref()))
            }
            Command::List(opts) => {
                // Only a service listing reads the services (the others
                // would pay for capturing the whole table for nothing).
                let (listing, timeouts) = match opts.kind {
                    ListKind::Services(_) => (self.capture(), self.store().timeouts()),
                    _ => (Listing::default(), self.store().timeouts()),
                };
                let conns = match opts.kind {
                    ListKind::Connections { .. } => self.dataplane.connections(),
                    _ => Vec::new(),
                };
                let daemons = match opts.kind {
                    ListKind::Daemon => self.dataplane.daemons(),
                    _ => Vec::new(),
                };
                let src = ListSources {
                    listing: &listing,
                    timeouts,
                    conns: &conns,
                    daemons: &daemons,
                };
                match format::list(&src, opts, self.names.as_ref()) {
                    Ok(text) => Response::ok(text),
                    Err(e) => refuse(LIST_ERROR, e.to_string()),
                }
            }
            Command::Restore(given) => match stdin {
                Some(text) => match grammar::parse_restore_with(text, self.hosts.as_ref()) {
                    Ok(cmds) => self.restore(&cmds),
                    Err(e) => Refusal::from(e).into(),
                },
                None => self.restore(given),
            },
            Command::StartDaemon(cfg) => match self.dataplane.start_daemon(cfg) {
                Ok(()) => Response::ok(String::new()),
                Err(r) => r.into(),
            },
            Command::StopDaemon(state) => match self.dataplane.stop_daemon(*state) {
                Ok(()) => Response::ok(String::new()),
                Err(r) => r.into(),
            },
            // Modifying commands were handled above.
            _ => refuse(UNSUPPORTED, "uvsd: command not supported"),
        }
    }

    /// `-R`: every line was parsed already (a client-side error aborted the
    /// whole restore before anything changed). Then the lines run in order
    /// as ipvsadm runs them: a kernel error is printed and the next line
    /// still runs, and the status is the last line's. Workers get one
    /// snapshot at the end.
    fn restore(&self, cmds: &[Command]) -> Response {
        let mut all = Response::default();
        let mut changed = false;
        self.dataplane.reclaim();
        for cmd in cmds {
            let r = match to_op(cmd) {
                Some(op) => match self.store().apply(op) {
                    Ok(()) => {
                        changed = true;
                        Response::ok(String::new())
                    }
                    Err(e) => refuse(KERNEL_ERROR, e.to_string()),
                },
                None => self.run(cmd, None),
            };
            all.stdout.push_str(&r.stdout);
            all.stderr.push_str(&r.stderr);
            all.code = r.code;
        }
        if changed {
            let store = self.store();
            self.dataplane.publish(store.snapshot());
        }
        all
    }

    /// `--sysctl`: lists, shows or sets the IPVS tunables. A set prints the
    /// new line, as `sysctl -w` does, and reaches the workers in the next
    /// snapshot like any configuration change.
    fn sysctl(&self, req: &SysctlRequest) -> Response {
        let lookup = |n: &str| Tunable::lookup(n).map_err(|e| refuse(CMDLINE_ERROR, e.to_string()));
        match req {
            SysctlRequest::List => Response::ok(self.store().tunables().lines()),
            SysctlRequest::Get(n) => match lookup(n) {
                Ok(t) => Response::ok(self.store().tunables().line(t)),
                Err(r) => r,
            },
            SysctlRequest::Set(n, v) => {
                let t = match lookup(n) {
                    Ok(t) => t,
                    Err(r) => return r,
                };
                let mut store = self.store();
                match store.apply(&ConfigOp::SetTunable(t, *v)) {
                    Ok(()) => {
                        self.dataplane.publish(store.snapshot());
                        Response::ok(store.tunables().line(t))
                    }
                    Err(_) => refuse(
                        CMDLINE_ERROR,
                        Tunables::default()
                            .set(n, &v.to_string())
                            .err()
                            .map_or_else(|| format!("invalid value for {n}"), |e| e.to_string()),
                    ),
                }
            }
        }
    }

    /// The config file's `[sysctl]` table, before the ports start: every
    /// tunable is set, all or nothing.
    pub fn set_tunables(&self, t: &Tunables) -> Result<(), Refusal> {
        let ops: Vec<ConfigOp> = TUNABLES
            .iter()
            .map(|d| ConfigOp::SetTunable(d.tunable, t.get(d.tunable)))
            .collect();
        let mut store = self.store();
        store
            .apply_all(&ops)
            .map_err(|(_, e)| Refusal::new(KERNEL_ERROR, e.to_string()))?;
        self.dataplane.publish(store.snapshot());
        Ok(())
    }

    /// Every service and destination with its counters and rates, as
    /// `-L -n --stats` shows them (the metrics endpoint reads it too).
    pub fn capture(&self) -> Listing {
        let store = self.store();
        Listing::capture(
            &store.snapshot(),
            &store.stats_view(),
            self.dataplane.conn_tab_size(),
        )
    }

    /// Parses and runs an ipset command line (`uvsset`); a change to the
    /// sets reaches the workers in the next snapshot, published at once
    /// (once for a whole restore).
    pub fn handle_ipset(&self, argv: &[String], stdin: Option<&str>) -> Response {
        self.dataplane.reclaim();
        let mut store = self.store();
        let before = store.generation();
        let (resp, _) = crate::ipset::execute(&mut store, argv, stdin);
        // Also after a refused command: ipset keeps what a range add did
        // before the element that failed, and so do the workers.
        if store.generation() != before {
            self.dataplane.publish(store.snapshot());
        }
        resp
    }

    /// Parses and runs a request as ipvsadm would, returning what it prints.
    pub fn handle(&self, argv: &[String], stdin: Option<&str>) -> Response {
        match grammar::parse_with(argv, self.hosts.as_ref()) {
            Ok(cmd) => self.run(&cmd, stdin),
            Err(e) => Refusal::from(e).into(),
        }
    }
}

impl<D: Dataplane> Director<D> {
    /// Runs an iptables, iptables-save or iptables-restore command line
    /// (the program named `program`, `uvstables`). An accepted change of
    /// the rules is compiled against the current sets and published with
    /// the services; the sets the rules name are held, so ipset cannot
    /// destroy them while a rule uses them.
    pub fn handle_iptables(&self, program: &str, argv: &[String], stdin: Option<&str>) -> Response {
        use crate::iptables::{self, Tool};
        let Some((tool, family)) = Tool::from_program(program) else {
            return refuse(UNSUPPORTED, format!("uvsd: unknown program `{program}'"));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Lock order: rules, then the store.
        let mut rules = match self.rules.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        self.dataplane.reclaim();
        let mut store = self.store();
        let out = iptables::execute(
            &mut rules.tables,
            store.sets(),
            tool,
            family,
            argv,
            stdin,
            &iptables::ctime(now),
        );
        if out.changed {
            let sets = store.sets_mut();
            for id in rules.held.drain(..) {
                sets.release(id);
            }
            rules.held = rules
                .tables
                .set_names()
                .iter()
                .filter_map(|n| sets.hold(n).ok())
                .collect();
            self.compile_rules(&rules, &mut store);
        }
        out.response
    }

    /// Names the director's interfaces for `-i` (the daemon calls this
    /// once its ports are up; until then `-i` rules match nothing) and
    /// recompiles the rules with them.
    pub fn set_interfaces(&self, ifaces: dataplane::rules::Interfaces) {
        let mut rules = match self.rules.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        rules.ifaces = ifaces;
        self.dataplane.reclaim();
        let mut store = self.store();
        self.compile_rules(&rules, &mut store);
    }

    /// The addresses of the director's ports (the daemon calls this once
    /// its ports are up): MASQUERADE of an IPVS connection needs a local
    /// address, with per-worker port pools, for each of them.
    pub fn set_port_addrs(&self, addrs: Vec<std::net::IpAddr>) {
        let mut rules = match self.rules.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        rules.port_addrs = addrs;
        self.dataplane.reclaim();
        let mut store = self.store();
        self.compile_rules(&rules, &mut store);
    }

    /// Compiles the rules against the current sets and interfaces and
    /// publishes them.
    fn compile_rules(&self, rules: &RuleState, store: &mut ConfigStore) {
        let program = dataplane::rules::Program::compile(
            &rules.tables.v4,
            &rules.tables.v6,
            &crate::iptables::CompileNames(store.sets(), &rules.ifaces),
        );
        let nat = dataplane::snat::NatRules::compile(
            &rules.tables.v4,
            &rules.tables.v6,
            &crate::iptables::CompileNames(store.sets(), &rules.ifaces),
        );
        if nat.masquerade_ranges().next().is_some() {
            // Ports for IPVS connections the nat rules masquerade (their
            // pools are built by the workers between bursts, once).
            for a in &rules.port_addrs {
                store.ensure_local(*a);
            }
        }
        store.set_nat(Arc::new(nat));
        store.set_rules(Arc::new(program));
        self.dataplane.publish(store.snapshot());
    }
}

/// The rules, the set references they hold, and the interface names
/// `-i` resolves against.
#[derive(Debug, Default)]
struct RuleState {
    tables: RuleTables,
    held: Vec<dataplane::sets::SetId>,
    ifaces: dataplane::rules::Interfaces,
    /// The ports' addresses ([`Director::set_port_addrs`]).
    port_addrs: Vec<std::net::IpAddr>,
}

fn refuse(code: i32, message: impl Into<String>) -> Response {
    Refusal::new(code, message).into()
}

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Response {
        Response::err(r.code, r.message)
    }
}

impl<D: Dataplane> Executor for Director<D> {
    fn execute(&self, req: &Request) -> Response {
        match req.tool {
            Tool::Ipvsadm => self.handle(&req.argv, req.stdin.as_deref()),
            Tool::Ipset => self.handle_ipset(&req.argv, req.stdin.as_deref()),
            Tool::Iptables => match req.argv.split_first() {
                Some((program, args)) => self.handle_iptables(program, args, req.stdin.as_deref()),
                None => refuse(UNSUPPORTED, "uvsd: an iptables request names its program"),
            },
        }
    }
}

/// A data plane with no workers: keeps the last snapshot. Used by tests and
/// by tools that only need the configuration language.
#[derive(Debug, Default)]
pub struct NoDataplane {
    pub last: Mutex<Option<Arc<Snapshot>>>,
}

impl Dataplane for NoDataplane {
    fn publish(&self, snapshot: Arc<Snapshot>) {
        if let Ok(mut g) = self.last.lock() {
            *g = Some(snapshot);
        }
    }
    fn connections(&self) -> Vec<ConnEntry> {
        Vec::new()
    }
    fn conn_tab_size(&self) -> u32 {
        4096
    }
}
