#!/usr/bin/env bash
# One reference measurement: dpdk-testpmd forwards (io or macswap) between
# the two directions of one net_memif port, driven by uvs-pktgen.
#
#   bench/scripts/memif-testpmd.sh io|macswap [generator options...]
#   e.g. bench/scripts/memif-testpmd.sh macswap --proto tcp --flows 1000 --duration 5
#
# testpmd is the memif server on BENCH_DUT_CPU (main and forwarding lcore on
# the same CPU: --lcores '0@C,1@C' --main-lcore 1), with 16384 mbufs (the
# default pool does not fit beside a second DPDK process). The generator is
# the client on BENCH_GEN_CPU. Prints the generator's JSON line with "dut"
# and "mem" added; testpmd's counters in it ("peer") come from its telemetry
# during the window, since memif resets them when the client leaves.

source "$(dirname "$0")/common.sh"

fwd=${1:-}
case $fwd in io | macswap) shift ;; *) echo "usage: $0 io|macswap [uvs-pktgen options]" >&2; exit 2 ;; esac

bench_build_pktgen
bench_setup
mem=$(bench_mem_args)
# shellcheck disable=SC2086
dpdk-testpmd --lcores "0@$BENCH_DUT_CPU,1@$BENCH_DUT_CPU" --main-lcore 1 --no-pci \
    --file-prefix="$BENCH_DUT_PREFIX" $mem \
    --vdev "net_memif0,role=server,socket=$BENCH_SOCK,mac=02:00:00:00:00:02" \
    -- --total-num-mbufs=16384 --forward-mode="$fwd" --port-topology=loop \
    --auto-start --stats-period 3600 >"$BENCH_WORK/testpmd.log" 2>&1 </dev/null &
BENCH_DUT_PID=$!
if ! bench_wait_file "/var/run/dpdk/$BENCH_DUT_PREFIX/dpdk_telemetry.v2" 30; then
    cat "$BENCH_WORK/testpmd.log" >&2
    echo "testpmd did not start" >&2
    exit 1
fi
sleep 0.5
out=$(bench_run_pktgen --dst-mac 02:00:00:00:00:02 --expect "$fwd" --label "testpmd-$fwd" "$@") || {
    tail -20 "$BENCH_WORK/testpmd.log" >&2
    exit 1
}
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["dut"]=sys.argv[2]; r["mem"]=sys.argv[3]; print(json.dumps(r))' \
    "$out" "testpmd-$fwd" "$(bench_mem_mode)"
