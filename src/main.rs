//! uvsd: the UVS daemon. Reads its config, owns the DPDK ports, runs the
//! workers, reloads on SIGHUP and stops cleanly on SIGTERM, SIGINT or
//! SIGQUIT (see `daemon`).
//!
//! Start-up errors print one line on stderr and exit with status 1; no
//! input ever produces a panic trace (a panic hook keeps even an internal
//! error to one line).

mod announce;
mod audit;
mod config;
mod control_hook;
mod daemon;
mod floating;
mod instance;
mod kernel_side;
mod log;
mod metrics;
mod notify;
mod reload;
mod shutdown;
mod telemetry;
mod version;

use std::path::PathBuf;

use clap::Parser;

/// UVS: a userspace (DPDK) virtual server driven by ipvsadm commands.
#[derive(Debug, Parser)]
#[command(name = "uvsd", version = version::BUILD)]
struct Args {
    /// The daemon's TOML config (see README: "Config").
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("uvsd: internal error: {msg}{at}");
    }));
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            fail(&format!("{first} (usage: uvsd --config FILE)"));
        }
    };
    let Some(path) = args.config else {
        fail("no config given (usage: uvsd --config FILE)");
    };
    let validated = match config::Config::load(&path) {
        Ok(v) => v,
        Err(e) => fail(&e.to_string()),
    };
    log::init(validated.raw.log);
    if let Err(e) = daemon::run(validated, &path) {
        fail(&e);
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("uvsd: {msg}");
    std::process::exit(1);
}
