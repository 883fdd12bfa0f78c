//! uvs-hostile: writes the hostile-traffic capture (see
//! `uvs_pktgen::hostile`) as a pcap file or stream, `--loops` times over,
//! for a `net_pcap` port of uvsd to replay (bench/HOSTILE.md).
//!
//! `--out` may be a FIFO: uvsd's `rx_pcap=` reads it as the frames are
//! written, so millions of frames pass without a file that size.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::PathBuf;

use clap::Parser;
use uvs_pktgen::hostile;

#[derive(Debug, Parser)]
#[command(about = "Write the hostile-traffic capture as pcap")]
struct Args {
    /// Where to write (a file, or a FIFO uvsd reads).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the capture (the same seed, the same bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many times the capture is written, one after the other.
    #[arg(long, default_value_t = 1)]
    loops: u64,
    /// Print the services as `uvsadm -R` input and exit.
    #[arg(long)]
    print_rules: bool,
    /// Print the uvsd port, routes and neighbours for DEVICE and exit.
    #[arg(long, value_name = "DEVICE")]
    print_port: Option<String>,
    /// Instead of writing: read the pcap stream at --out (what uvsd's
    /// `tx_pcap` wrote, a file or FIFO) to its end and print its frames by
    /// destination as JSON.
    #[arg(long)]
    count_sent: bool,
}

fn main() {
    let a = Args::parse();
    if a.print_rules {
        print!("{}", hostile::rules());
        return;
    }
    if let Some(dev) = &a.print_port {
        print!("{}", hostile::uvsd_port(dev));
        return;
    }
    if a.count_sent {
        let f = match std::fs::File::open(&a.out) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("uvs-hostile: {}: {e}", a.out.display());
                std::process::exit(1);
            }
        };
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        match hostile::count_sent(&mut r) {
            Ok(s) => println!(
                "{{\"frames\":{},\"to_servers\":{},\"to_gateway\":{},\"multicast\":{},\"other\":{}}}",
                s.frames, s.to_servers, s.to_gateway, s.multicast, s.other
            ),
            Err(e) => {
                eprintln!("uvs-hostile: reading {}: {e}", a.out.display());
                std::process::exit(1);
            }
        }
        return;
    }
    let cap = hostile::capture(a.seed);
    let file = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&a.out)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("uvs-hostile: {}: {e}", a.out.display());
            std::process::exit(1);
        }
    };
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let n = match hostile::write_pcap(&mut w, &cap.frames, a.loops) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("uvs-hostile: writing {}: {e}", a.out.display());
            std::process::exit(1);
        }
    };
    let classes: Vec<String> = cap
        .counts()
        .iter()
        .map(|(c, n)| format!("\"{}\":{n}", c.as_str()))
        .collect();
    println!(
        "{{\"seed\":{},\"capture_frames\":{},\"capture_bytes\":{},\"loops\":{},\"frames_written\":{n},\"classes\":{{{}}}}}",
        a.seed,
        cap.frames.len(),
        cap.bytes(),
        a.loops,
        classes.join(",")
    );
}
