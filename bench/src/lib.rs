//! UVS benchmark helpers (shared by the benches and the traffic generator).
