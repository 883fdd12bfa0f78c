//! Raw DPDK bindings (filled in by the bring-up).
