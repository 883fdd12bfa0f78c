#!/usr/bin/env bash
# Hostile traffic through uvsd at full rate (bench/HOSTILE.md).
#
#   bench/scripts/hostile.sh [LOOPS] [SEED]      # default 200 loops, seed 1
#
# uvs-hostile writes its seeded capture (~47 k frames: bad lengths, IP and
# TCP options, all TCP flag combinations, ICMP errors quoting garbage and
# other flows, overlapping fragments, L2 oddities, byte-flipped copies,
# sound NAT/DR/TUN traffic) LOOPS times into a FIFO that uvsd's net_pcap
# port reads (rx_pcap): the port takes frames as fast as the worker polls,
# so the run goes at uvsd's full rate. What uvsd sends goes to a second
# FIFO, counted by `uvs-hostile --count-sent`. uvsd (release build) runs
# one worker on BENCH_DUT_CPU with the services of `uvs-hostile
# --print-rules`. At the end: the counters (`uvsadm --counters --json`),
# the ledger per worker (every frame taken in has one counted fate), the
# frames written and sent, the rate. Prints one JSON line on stdout.
# BENCH_LOCK=/tmp/uvs-e2e.lock takes that lock for the run.
# WORKERS=2 runs two workers (one per CPU) on a port with two queues: two
# FIFOs written with seeds SEED and SEED+1 (LOOPS each), two sent FIFOs;
# frames of a client the other worker owns are handed over through the
# per-pair ring.

source "$(dirname "$0")/common.sh"

loops=${1:-200}
seed=${2:-1}
workers=${WORKERS:-1}
case $workers in 1 | 2) ;; *) echo "WORKERS must be 1 or 2" >&2; exit 2 ;; esac
if [[ -n ${BENCH_LOCK:-} && -z ${BENCH_LOCKED:-} ]]; then
    BENCH_LOCKED=1 exec flock "$BENCH_LOCK" "$0" "$@"
fi
# BENCH_NO_BUILD=1: use the release binaries as they are (built beforehand,
# outside the lock).
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
    (cd "$BENCH_ROOT" && cargo build --release -q --bin uvsd --bin uvsadm -p uvsd &&
        cargo build --release -q -p uvs-pktgen --bin uvs-hostile) >&2
fi
UVSD=${UVSD:-$BENCH_ROOT/target/release/uvsd}
UVSADM=$BENCH_ROOT/target/release/uvsadm
HOSTILE=$BENCH_ROOT/target/release/uvs-hostile

work=$(mktemp -d /tmp/uvs-hostile.XXXXXX)
prefix=uvs-hostile-$$
uvsd_pid=
cleanup() {
    [[ -n $uvsd_pid ]] && kill "$uvsd_pid" 2>/dev/null && wait "$uvsd_pid" 2>/dev/null
    for p in ${gen_pids:-} ${sink_pids:-}; do kill "$p" 2>/dev/null; done
    rm -rf "/var/run/dpdk/$prefix"
    if [[ -n ${BENCH_KEEP_LOGS:-} ]]; then bench_log "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

dev="net_pcap_$prefix"
for ((q = 0; q < workers; q++)); do
    mkfifo "$work/rx$q.fifo" "$work/tx$q.fifo"
    dev+=",rx_pcap=$work/rx$q.fifo,tx_pcap=$work/tx$q.fifo"
done
if ((workers == 1)); then
    lcores="0@$BENCH_DUT_CPU,1@$BENCH_DUT_CPU" wlcores="[1]"
else
    lcores="0@$BENCH_DUT_CPU,1@$BENCH_DUT_CPU,2@$BENCH_GEN_CPU" wlcores="[1, 2]"
fi
"$HOSTILE" --out /dev/null --print-rules >"$work/hostile.rules"
{
    echo "[eal]"
    echo "args = [\"--lcores\", \"$lcores\", \"--main-lcore\", \"0\", \"--no-pci\", \"--no-huge\", \"-m\", \"512\", \"--file-prefix=$prefix\"]"
    echo "[workers]"
    echo "lcores = $wlcores"
    echo "conn_capacity = 65536"
    echo "[control]"
    echo "socket = \"$work/uvsadm.sock\""
    echo "rules = \"$work/hostile.rules\""
    echo
    "$HOSTILE" --out /dev/null --print-port "$dev" | sed "s/^name = \"hostile\"$/&\nqueues = $workers/"
} >"$work/uvsd.toml"

# Both FIFO ends first: DPDK opens them while uvsd starts.
gen_pids= sink_pids=
for ((q = 0; q < workers; q++)); do
    "$HOSTILE" --out "$work/tx$q.fifo" --count-sent >"$work/sent$q.json" &
    sink_pids+=" $!"
    taskset -c "$BENCH_GEN_CPU" "$HOSTILE" --out "$work/rx$q.fifo" --seed $((seed + q)) --loops "$loops" >"$work/written$q.json" &
    gen_pids+=" $!"
done
bench_log "uvsd: $workers worker(s), $loops loops of the capture (seed $seed..$((seed + workers - 1)))"
"$UVSD" --config "$work/uvsd.toml" >"$work/uvsd.log" 2>&1 </dev/null &
uvsd_pid=$!
t0=$(date +%s.%N)
for p in $gen_pids; do wait "$p"; done
gen_pids=
written=$(python3 -c 'import json,sys; print(sum(json.load(open(f))["frames_written"] for f in sys.argv[1:]))' "$work"/written*.json)
# Every frame written taken in, then two equal reads (at rest).
counters() { "$UVSADM" --socket "$work/uvsadm.sock" --counters --json; }
t1=
for _ in $(seq 1 600); do
    c=$(counters) || { bench_log "uvsadm failed"; cat "$work/uvsd.log" >&2; exit 1; }
    taken=$(python3 -c 'import json,sys; t=json.loads(sys.argv[1])["total"]; print(t["rx"]-t["handed_in"])' "$c")
    if ((taken >= written)); then t1=$(date +%s.%N); break; fi
    sleep 0.1
done
[[ -n $t1 ]] || { bench_log "uvsd took $taken of $written frames"; exit 1; }
prev=
for _ in $(seq 1 100); do
    c=$(counters)
    [[ $c == "$prev" ]] && break
    prev=$c
    sleep 0.3
done
"$UVSADM" --socket "$work/uvsadm.sock" -L -n >"$work/list.txt" || { bench_log "uvsadm -L -n failed"; exit 1; }
kill -TERM "$uvsd_pid"
wait "$uvsd_pid"
status=$?
uvsd_pid=
for p in $sink_pids; do wait "$p"; done
sink_pids=
echo "$c" >"$work/counters.json"
"$HOSTILE" --ledger --out "$work/counters.json" >"$work/ledger.json"
balanced=$?
python3 - "$work" "$t0" "$t1" "$status" "$balanced" <<'PY'
import json, sys
work = sys.argv[1]
t0, t1, status, balanced = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
load = lambda n: json.load(open(f"{work}/{n}"))
import glob
c, ledger = load("counters.json"), load("ledger.json")
def add(parts):
    """One JSON object of several (per queue): numbers added, nested dicts too."""
    out = {}
    for p in parts:
        for k, v in p.items():
            if isinstance(v, dict):
                out[k] = add([out.get(k, {}), v])
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed", "loops"):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    return out
written = add(json.load(open(f)) for f in sorted(glob.glob(f"{work}/written*.json")))
sent = add(json.load(open(f)) for f in sorted(glob.glob(f"{work}/sent*.json")))
total = c["total"]
secs = t1 - t0
fates = ledger["total"]["fates"]
print(json.dumps({
    "frames_written": written["frames_written"], "capture_frames": written["capture_frames"],
    "capture_bytes": written["capture_bytes"], "loops": written["loops"], "seed": written["seed"],
    "classes": written["classes"],
    "rx": total["rx"], "handed_in": total["handed_in"], "tx": total["tx"], "sent": sent,
    "seconds_to_take_all": round(secs, 2), "mpps": round(written["frames_written"] / secs / 1e6, 3),
    "ledger_total": {k: ledger["total"][k] for k in ["taken_in", "accounted", "unaccounted", "sends", "counted_twice"]},
    "unaccounted_per_worker": [w["unaccounted"] for w in ledger["per_worker"]],
    "uvsd_exit": status, "workers": c["workers"],
    "handed_over": total.get("handed_over"), "drop_handover_full": total.get("drop_handover_full"),
    "fates": dict(sorted(fates.items(), key=lambda kv: -kv[1])),
    "other": {k: total[k] for k in ["connections_created", "icmp_errors_sent", "icmp_errors_related",
              "datagrams_reassembled", "frag_evicted", "frag_timeout", "frag_datagram_not_served",
              "frag_datagram_refused", "queued_for_resolution", "drop_unresolved", "drop_pending_full",
              "drop_no_route", "trimmed_behind_ip_length", "drop_tx_full"]},
}))
ok = balanced == 0 and status == 0 and sent["frames"] == total["tx"] \
    and total["rx"] - total["handed_in"] == written["frames_written"]
sys.exit(0 if ok else 1)
PY
