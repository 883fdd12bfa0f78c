#!/usr/bin/env bash
# The control plane against a running uvsd (bench/CONTROL.md): uvsd on one
# net_null port (no traffic, one worker polling), driven over its control
# socket by ctlbench with the requests uvsadm sends: a generated restore,
# single -A/-D/-a/-e/-d round trips, -L -n, -S -n and -L -n -c.
#
#   flock /tmp/uvs-e2e.lock bench/scripts/control.sh [ctlbench options...]
#   e.g. ... control.sh --services 20000 --dests 100000 --ops 50
#
# UVSD=path selects the daemon binary (default: target/release/uvsd, built
# if missing); ctlbench is built (release) if missing.

source "$(dirname "$0")/common.sh"

UVSD=${UVSD:-$BENCH_ROOT/target/release/uvsd}
CTLBENCH=${CTLBENCH:-$BENCH_ROOT/target/release/examples/ctlbench}
if [[ ! -x $UVSD ]]; then
    bench_log "building uvsd (release)"
    (cd "$BENCH_ROOT" && cargo build --release -q --bin uvsd) >&2
fi
if [[ ! -x $CTLBENCH ]]; then
    bench_log "building ctlbench (release)"
    (cd "$BENCH_ROOT" && cargo build --release -q -p control --example ctlbench) >&2
fi
bench_setup

bench_start_null_uvsd "$UVSD"
"$CTLBENCH" socket --socket "$BENCH_WORK/uvsadm.sock" "$@"
