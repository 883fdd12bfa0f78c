//! uvsd: the UVS daemon (filled in by the bring-up).
fn main() {
    eprintln!("uvsd: not built yet");
    std::process::exit(2);
}
