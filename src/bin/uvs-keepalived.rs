//! uvs-keepalived: health checks for uvsd from an unchanged keepalived.conf.
//!
//! It reads the `virtual_server` parts of the file, configures uvsd's
//! services and real servers through the control socket (as uvsadm does),
//! runs keepalived's checkers and changes the table as keepalived would
//! change kernel IPVS. See `checker` for the parts and the README section
//! "Running UVS from a keepalived.conf".

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// keepalived's exit status for a configuration error (`keepalived -t`).
const CONFIG_ERROR: u8 = 5;

#[derive(Parser)]
#[command(
    name = "uvs-keepalived",
    version,
    about = "Health checks for uvsd from a keepalived.conf"
)]
struct Cli {
    /// The keepalived configuration file.
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    config: PathBuf,
    /// Only check the file, as `keepalived -t` does; exit 0 if it is good.
    #[arg(short = 't', long = "config-test")]
    config_test: bool,
    /// uvsd's control socket (default: UVS_SOCKET, then /run/uvs/uvsadm.sock).
    #[arg(long)]
    socket: Option<String>,
    /// Where the running checker keeps its status listing.
    #[arg(long, default_value = checker::run::DEFAULT_STATUS)]
    status_file: PathBuf,
    /// Print the running checker's status listing and exit.
    #[arg(long)]
    status: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.status {
        return match std::fs::read_to_string(&cli.status_file) {
            Ok(s) => {
                print!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "uvs-keepalived: no status at {} ({e}): is uvs-keepalived running?",
                    cli.status_file.display()
                );
                ExitCode::from(1)
            }
        };
    }
    if cli.config_test {
        return match checker::conf::load(&cli.config) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(CONFIG_ERROR)
            }
        };
    }
    let opts = checker::run::Options {
        config: cli.config,
        socket: control::client::socket_path(cli.socket, std::env::var("UVS_SOCKET").ok()),
        status_file: cli.status_file,
    };
    match checker::run::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(checker::run::RunError::Config(e)) => {
            eprintln!("{e}");
            eprintln!("uvs-keepalived: configuration refused; nothing was changed");
            ExitCode::from(CONFIG_ERROR)
        }
        Err(e) => {
            eprintln!("uvs-keepalived: {e}");
            ExitCode::from(1)
        }
    }
}
