#!/usr/bin/env bash
# One uvsd measurement: uvsd load-balances a VIP (NAT, DR or TUN) on one
# net_memif port (one-armed: clients and real servers behind the same port),
# driven by uvs-pktgen, which checks the rewrite on what comes back.
#
#   bench/scripts/memif-uvsd.sh nat|dr|tun [generator options...]
#   e.g. bench/scripts/memif-uvsd.sh nat --proto tcp --flows 1000000 --duration 5
#
# The daemon config (the DESIGN.md contract) and its ipvsadm-save rules are
# written into the run's work directory: uvsd is the memif server on
# BENCH_DUT_CPU (control on lcore 0, one worker on lcore 1, both on that CPU,
# as testpmd in memif-testpmd.sh), real servers 198.18.1.11.. have static
# neighbour entries, the generator is the client on BENCH_GEN_CPU. Pass the
# same generator options as to memif-testpmd.sh to get comparable figures.
# UVSD=path selects the daemon binary (default: target/release/uvsd, built
# if missing). BENCH_SERVERS sets the number of real servers (default 4),
# BENCH_SCHED the scheduler (default rr; with sh or mh the generator checks
# that each client reached the server that scheduler picks), BENCH_TUN the
# TUN encapsulation (ipip, gre or gue:PORT; default ipip). BENCH_EXPECT=any
# switches the generator's check of what comes back off (it then counts
# every frame as valid), to see whether checking holds the generator back.
#
# --replies (a generator option, NAT only): the generator also plays the
# real servers and answers every request; uvsd routes the answers to the
# clients (198.18.128.0/17) through the generator (198.18.0.2, its MAC),
# and the generator counts the answers that came back as round trips.
#
# --flood N / --handshake (generator options, TCP NAT; bench/SYNFLOOD.md):
# uvsd routes the clients (198.18.128.0/17) and the spoofed sources
# (--flood-clients, default 198.19.0.0/16) through the generator, so SYN-ACKs
# and cookies come back to it, and after the run the JSON line gets uvsd's
# counters (`uvsadm --counters --json`: table fill, cookies, refusals) as
# "dut_counters". BENCH_SYSCTL="synproxy=1 drop_entry=1 ..." writes those
# tunables into the config's [sysctl] table; UVS_CONN_CAPACITY sets the
# table size (default 16 Mi).

source "$(dirname "$0")/common.sh"

method=${1:-}
case $method in nat) flag=-m ;; dr) flag=-g ;; tun) flag=-i ;;
    *) echo "usage: $0 nat|dr|tun [uvs-pktgen options]" >&2; exit 2 ;; esac
shift

# The protocol and VIP the generator will use decide the service.
proto=udp vip=198.18.0.100:80 replies= flood= flood_clients=198.19.0.0/16
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --replies) replies=1 ;;
        --flood | --handshake) flood=1 replies=1 ;;
        --flood-clients) flood_clients=${args[i + 1]} ;;
        --flood-clients=*) flood_clients=${args[i]#--flood-clients=} ;;
        --proto) proto=${args[i + 1]} ;;
        --proto=*) proto=${args[i]#--proto=} ;;
        --vip) vip=${args[i + 1]} ;;
        --vip=*) vip=${args[i]#--vip=} ;;
    esac
done
case $proto in tcp) pflag=-t ;; udp) pflag=-u ;; *) echo "bad --proto $proto" >&2; exit 2 ;; esac

UVSD=${UVSD:-$BENCH_ROOT/target/release/uvsd}
if [[ ! -x $UVSD ]]; then
    bench_log "building uvsd (release)"
    (cd "$BENCH_ROOT" && cargo build --release -q --bin uvsd) >&2
fi
bench_build_pktgen
bench_setup
servers=${BENCH_SERVERS:-4}
scheduler=${BENCH_SCHED:-rr}
tunnel=${BENCH_TUN:-ipip}
if [[ $method == tun ]]; then
    case $tunnel in
        ipip) ;;
        gre) flag="-i --tun-type gre" ;;
        gue:*) flag="-i --tun-type gue --tun-port ${tunnel#gue:}" ;;
        *) echo "bad BENCH_TUN $tunnel (ipip, gre or gue:PORT)" >&2; exit 2 ;;
    esac
fi

{
    echo "-A $pflag $vip -s $scheduler"
    for ((s = 0; s < servers; s++)); do
        echo "-a $pflag $vip -r 198.18.1.$((11 + s)):${vip##*:} $flag -w 1"
    done
} >"$BENCH_WORK/bench.rules"

read -r -a mem <<<"$(bench_mem_args)"
{
    echo "[eal]"
    printf 'args = ["--lcores", "0@%s,1@%s", "--main-lcore", "0", "--no-pci", "--file-prefix=%s"' \
        "$BENCH_DUT_CPU" "$BENCH_DUT_CPU" "$BENCH_DUT_PREFIX"
    for m in "${mem[@]}"; do printf ', "%s"' "$m"; done
    echo "]"
    echo
    echo "[workers]"
    echo "lcores = [1]"
    # Room for every connection a run creates: with --mode new every packet
    # opens one, and TCP SYN_RECV entries live 60 s (UDP 300 s), so a table
    # of the default 1 Mi entries fills within the first second and new
    # flows are then refused (counted as table_full) for the rest of the run.
    echo "conn_capacity = ${UVS_CONN_CAPACITY:-16777216}"
    echo
    echo "[control]"
    echo "socket = \"$BENCH_WORK/uvsadm.sock\""
    echo "rules = \"$BENCH_WORK/bench.rules\""
    echo
    echo "[[port]]"
    echo 'name = "bench"'
    echo "device = \"net_memif0,role=server,socket=$BENCH_SOCK\""
    echo "queues = 1"
    echo 'mac = "02:00:00:00:00:01"'
    echo 'addresses = ["198.18.0.1/15"]'
    for ((s = 0; s < servers; s++)); do
        echo
        echo "[[neighbor]]"
        echo "ip = \"198.18.1.$((11 + s))\""
        printf 'mac = "02:00:00:00:01:%02x"\n' $((11 + s))
    done
    if [[ -n $replies ]]; then
        # The answers go to the clients through the generator.
        echo
        echo "[[route]]"
        echo 'to = "198.18.128.0/17"'
        echo 'via = "198.18.0.2"'
        echo
        echo "[[neighbor]]"
        echo 'ip = "198.18.0.2"'
        echo 'mac = "02:00:00:00:00:10"'
    fi
    if [[ -n $flood ]]; then
        # The spoofed sources are routed to the generator too: their
        # SYN-ACKs (cookies, or real servers' answers) come back to it.
        echo
        echo "[[route]]"
        echo "to = \"$flood_clients\""
        echo 'via = "198.18.0.2"'
    fi
    if [[ -n ${BENCH_SYSCTL:-} ]]; then
        echo
        echo "[sysctl]"
        for kv in $BENCH_SYSCTL; do echo "${kv%%=*} = ${kv#*=}"; done
    fi
} >"$BENCH_WORK/uvsd.toml"

"$UVSD" --config "$BENCH_WORK/uvsd.toml" >"$BENCH_WORK/uvsd.log" 2>&1 </dev/null &
BENCH_DUT_PID=$!
if ! bench_wait_file "/var/run/dpdk/$BENCH_DUT_PREFIX/dpdk_telemetry.v2" 30; then
    cat "$BENCH_WORK/uvsd.toml" "$BENCH_WORK/uvsd.log" >&2
    echo "uvsd did not start" >&2
    exit 1
fi
# The generator may start only when the workers run: before launching them
# uvsd builds each worker's connection table (conn_capacity entries, 2.3 GB
# at 16 Mi), which can take seconds; a generator started earlier measures a
# window in which uvsd forwarded little or nothing (seen as near-zero and
# two-thirds-rate runs before this wait existed).
t0=$(date +%s.%N)
if ! bench_wait_line "$BENCH_WORK/uvsd.log" "uvsd: ready" 120; then
    cat "$BENCH_WORK/uvsd.log" >&2
    echo "uvsd did not report ready" >&2
    exit 1
fi
ready_s=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$(date +%s.%N)")
sleep 0.5
# uvsd's busy share over the generator's run (warm-up included): its
# worker's `busy_cycles` against `poll_cycles` (README, "Counters"), read
# before and after; "dut_busy_share" in the JSON line, and "dut_mean_burst"
# (received packets over busy turns: near 32 when the queue never ran dry),
# null without uvsadm.
UVSADM=${UVSADM:-$BENCH_ROOT/target/release/uvsadm}
dut_counters() { "$UVSADM" --socket "$BENCH_WORK/uvsadm.sock" --counters --json 2>/dev/null || echo null; }
before=$(dut_counters)
out=$(bench_run_pktgen --dst-mac 02:00:00:00:00:01 --expect "${BENCH_EXPECT:-$method}" --label "uvsd-$method" \
    --servers "$servers" --scheduler "$scheduler" --tunnel "$tunnel" "$@") || {
    tail -20 "$BENCH_WORK/uvsd.log" >&2
    exit 1
}
after=$(dut_counters)
counters=null
if [[ -n $flood ]]; then
    counters=$after
fi
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["dut"]=sys.argv[2]; r["mem"]=sys.argv[3]; r["dut_ready_wait_s"]=float(sys.argv[4]); r["dut_counters"]=json.loads(sys.argv[5]); r["sysctl"]=sys.argv[6]; r["conn_capacity"]=int(sys.argv[7])
b, a = json.loads(sys.argv[8]), json.loads(sys.argv[9])
d = lambda k: a["total"][k] - b["total"][k]
r["dut_busy_share"] = round(d("busy_cycles") / d("poll_cycles"), 4) if a and b and d("poll_cycles") > 0 else None
r["dut_mean_burst"] = round(d("rx") / d("busy_turns"), 2) if a and b and d("busy_turns") > 0 else None
print(json.dumps(r))' \
    "$out" "uvsd-$method" "$(bench_mem_mode)" "$ready_s" "$counters" "${BENCH_SYSCTL:-}" "${UVS_CONN_CAPACITY:-16777216}" "$before" "$after"
