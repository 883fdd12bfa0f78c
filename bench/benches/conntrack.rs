//! (placeholder: filled in by its owner)
fn main() {}
