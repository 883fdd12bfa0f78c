//! uvsadm: the ipvsadm-compatible client (filled in with the control socket).
fn main() {
    eprintln!("uvsadm: not built yet");
    std::process::exit(2);
}
