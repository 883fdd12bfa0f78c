#!/usr/bin/env bash
# Kills uvsd's memif peer again and again while traffic flows, and checks
# that uvsd survives every kill and takes the peer back each time.
#
#   bench/scripts/memif-peer-kills.sh [KILLS]        (default 100)
#
# uvsd is the memif server (a NAT service over 4 real servers, as in
# memif-uvsd.sh); each round starts uvs-pktgen as the memif client, waits
# until uvsd receives its packets (the peer connected), lets traffic flow for
# BENCH_KILL_AFTER seconds (default 1), SIGKILLs the generator and checks
# that uvsd is still running. At the end uvsd is stopped with SIGTERM and
# must exit 0. Prints one JSON line: kills survived, peers whose packets
# uvsd received (one per round: it took every new peer), link-up lines
# logged (uvsd looks once a second, so a fast reconnection may not show),
# uvsd's exit status and the fatal lines of its log (none expected).
# UVSD / PKTGEN select the binaries (default: the debug builds, built if
# missing). BENCH_MEM as in common.sh (nohuge keeps the hugepages free).

given_pktgen=${PKTGEN:-}
source "$(dirname "$0")/common.sh"

kills=${1:-100}
after=${BENCH_KILL_AFTER:-1}
UVSD=${UVSD:-$BENCH_ROOT/target/debug/uvsd}
PKTGEN=${given_pktgen:-$BENCH_ROOT/target/debug/uvs-pktgen}
[[ -x $UVSD ]] || (cd "$BENCH_ROOT" && cargo build -q --bin uvsd) >&2
[[ -x $PKTGEN ]] || (cd "$BENCH_ROOT" && cargo build -q -p uvs-pktgen) >&2
bench_setup
read -r -a mem <<<"$(bench_mem_args)"

{
    echo "-A -u 198.18.0.100:80 -s rr"
    for s in 11 12 13 14; do echo "-a -u 198.18.0.100:80 -r 198.18.1.$s:80 -m"; done
} >"$BENCH_WORK/kills.rules"
{
    echo "[eal]"
    printf 'args = ["--lcores", "0@%s,1@%s", "--main-lcore", "0", "--no-pci", "--file-prefix=%s"' \
        "$BENCH_DUT_CPU" "$BENCH_DUT_CPU" "$BENCH_DUT_PREFIX"
    for m in "${mem[@]}"; do printf ', "%s"' "$m"; done
    echo "]"
    echo "[workers]"
    echo "lcores = [1]"
    echo "conn_capacity = 65536"
    echo "[control]"
    echo "socket = \"$BENCH_WORK/uvsadm.sock\""
    echo "rules = \"$BENCH_WORK/kills.rules\""
    echo "[[port]]"
    echo 'name = "memif"'
    echo "device = \"net_memif0,role=server,socket=$BENCH_SOCK\""
    echo 'mac = "02:00:00:00:00:01"'
    echo 'addresses = ["198.18.0.1/15"]'
    for s in 11 12 13 14; do
        printf '[[neighbor]]\nip = "198.18.1.%s"\nmac = "02:00:00:00:01:%s"\n' "$s" "$s"
    done
} >"$BENCH_WORK/uvsd.toml"

log=$BENCH_WORK/uvsd.log
"$UVSD" --config "$BENCH_WORK/uvsd.toml" >"$log" 2>&1 </dev/null &
BENCH_DUT_PID=$!
bench_wait_line "$log" "uvsd: ready" 120 || { cat "$log" >&2; exit 1; }

# Packets uvsd received so far: SIGUSR1 makes it log its counters.
rx_now() {
    kill -USR1 "$BENCH_DUT_PID"
    sleep 0.2
    grep -o "worker 0 counters: rx=[0-9]*" "$log" | tail -1 | sed 's/.*rx=//;s/^$/0/' || echo 0
}
more_rx() { local n; n=$(rx_now); [[ ${n:-0} -gt $1 ]]; }
ups() { grep -c "port memif link up" "$log" || true; }
survived=0
connected=0
for ((k = 1; k <= kills; k++)); do
    before=$(rx_now)
    "$PKTGEN" --device "net_memif0,role=client,socket=$BENCH_SOCK,mac=02:00:00:00:00:10" \
        --dst-mac 02:00:00:00:00:01 --duration 3600 --warmup 0 --link-wait 30 \
        -- --lcores "0@$BENCH_GEN_CPU" --main-lcore 0 --no-pci \
        --file-prefix="$BENCH_GEN_PREFIX" "${mem[@]}" --log-level=lib.eal:warning \
        >"$BENCH_WORK/gen.log" 2>&1 &
    gen=$!
    # The new peer is connected when uvsd receives its packets.
    if ! bench_wait 30 more_rx "$before"; then
        bench_log "kill $k: the peer did not connect"
        kill -KILL "$gen" 2>/dev/null || true
        break
    fi
    connected=$k
    sleep "$after"
    kill -KILL "$gen"
    wait "$gen" 2>/dev/null || true
    rm -rf "/var/run/dpdk/$BENCH_GEN_PREFIX" /dev/hugepages/"${BENCH_GEN_PREFIX}"map_* 2>/dev/null || true
    sleep 0.2
    if ! kill -0 "$BENCH_DUT_PID" 2>/dev/null; then
        bench_log "kill $k: uvsd died"
        break
    fi
    survived=$k
    ((k % 10 == 0)) && bench_log "$k kills survived"
done

status=dead
if kill -0 "$BENCH_DUT_PID" 2>/dev/null; then
    kill -TERM "$BENCH_DUT_PID"
    wait "$BENCH_DUT_PID" && status=0 || status=$?
    BENCH_DUT_PID=
else
    wait "$BENCH_DUT_PID" 2>/dev/null || true
    BENCH_DUT_PID=
fi
fatal=$(grep -E "fatal|panicked|Segmentation" "$log" | head -3 | tr '\n' ' ' || true)
python3 -c 'import json,sys; print(json.dumps({"kills": int(sys.argv[1]), "survived": int(sys.argv[2]), "peers_served": int(sys.argv[3]), "link_up_lines": int(sys.argv[4]), "uvsd_exit": sys.argv[5], "fatal": sys.argv[6]}))' \
    "$kills" "$survived" "$connected" "$(ups)" "$status" "$fatal"
[[ $survived == "$kills" && $status == 0 ]]
