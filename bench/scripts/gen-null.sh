#!/usr/bin/env bash
# The generator's own ceiling, single process: uvs-pktgen sends into net_null
# (which drops what it is given and hands out empty frames on receive) on
# BENCH_GEN_CPU. If this is not far above the memif figures, the generator,
# not the forwarder, is what the memif scenarios measure.
#
#   bench/scripts/gen-null.sh [generator options...]

source "$(dirname "$0")/common.sh"
bench_build_pktgen
bench_setup
mem=$(bench_mem_args)
# shellcheck disable=SC2086
out=$("$PKTGEN" --device "net_null0,size=64" --expect any --label gen-null "$@" \
    -- --lcores "0@$BENCH_GEN_CPU" --main-lcore 0 --no-pci \
    --file-prefix="$BENCH_GEN_PREFIX" $mem --log-level=lib.eal:warning)
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["dut"]="none (net_null)"; r["mem"]=sys.argv[2]; print(json.dumps(r))' \
    "$out" "$(bench_mem_mode)"
