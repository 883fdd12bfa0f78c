# Shared by the memif scenario scripts: paths, memory mode, waiting, clean-up.
# Sourced, not run. Every scenario starts one device under test (testpmd or
# uvsd) as the memif server on BENCH_DUT_CPU and uvs-pktgen as the memif client
# on BENCH_GEN_CPU, one core each, and removes everything it created on exit.

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DUT_CPU=${BENCH_DUT_CPU:-1}
BENCH_GEN_CPU=${BENCH_GEN_CPU:-0}
PKTGEN=${PKTGEN:-$BENCH_ROOT/target/release/uvs-pktgen}
# hugepages (default when at least 256 x 2 MB are free) or nohuge.
BENCH_MEM=${BENCH_MEM:-auto}

bench_log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# Builds the generator once (release) if it is not there.
bench_build_pktgen() {
    if [[ ! -x $PKTGEN ]]; then
        bench_log "building uvs-pktgen (release)"
        (cd "$BENCH_ROOT" && cargo build --release -q -p uvs-pktgen) >&2
    fi
}

# EAL memory arguments. Hugepages need a mounted hugetlbfs (dpdk-notes.md);
# --huge-unlink leaves no map_* files behind. --no-huge is copy-mode only and
# roughly halves mbuf-heavy throughput; it is never combined with --in-memory.
bench_mem_args() {
    local mode=$BENCH_MEM free
    if [[ $mode == auto ]]; then
        free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
        if [[ ${free:-0} -ge 256 ]] && mountpoint -q /dev/hugepages; then mode=hugepages; else mode=nohuge; fi
    fi
    case $mode in
        hugepages) echo "--huge-unlink" ;;
        nohuge) echo "--no-huge -m 512" ;;
        *) echo "BENCH_MEM must be auto, hugepages or nohuge" >&2; return 2 ;;
    esac
}

bench_mem_mode() {
    case "$(bench_mem_args)" in --no-huge*) echo nohuge ;; *) echo hugepages ;; esac
}

# A private work directory and file prefixes for one scenario run.
bench_setup() {
    BENCH_ID="uvsb$$"
    BENCH_WORK=$(mktemp -d "/tmp/${BENCH_ID}.XXXX")
    BENCH_SOCK="$BENCH_WORK/memif.sock"
    BENCH_DUT_PREFIX="${BENCH_ID}-dut"
    BENCH_GEN_PREFIX="${BENCH_ID}-gen"
    BENCH_DUT_PID=""
    trap bench_teardown EXIT
    trap 'exit 130' INT TERM
}

# Stops the device under test (by its pid only) and removes what EAL left.
bench_teardown() {
    if [[ -n ${BENCH_DUT_PID:-} ]] && kill -0 "$BENCH_DUT_PID" 2>/dev/null; then
        kill -INT "$BENCH_DUT_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$BENCH_DUT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BENCH_DUT_PID" 2>/dev/null || true
        wait "$BENCH_DUT_PID" 2>/dev/null || true
    fi
    rm -rf "/var/run/dpdk/${BENCH_DUT_PREFIX:-none}" "/var/run/dpdk/${BENCH_GEN_PREFIX:-none}"
    rm -f /dev/hugepages/"${BENCH_DUT_PREFIX:-none}"map_* /dev/hugepages/"${BENCH_GEN_PREFIX:-none}"map_*
    if [[ -n ${BENCH_WORK:-} && -d $BENCH_WORK ]]; then
        if [[ -n ${BENCH_KEEP_LOGS:-} ]]; then bench_log "logs kept in $BENCH_WORK"; else rm -rf "$BENCH_WORK"; fi
    fi
}

# Waits up to $1 seconds for the command after it to succeed; gives up early
# when the DUT (BENCH_DUT_PID) has exited.
bench_wait() {
    local t=$1 i
    shift
    for ((i = 0; i < t * 10; i++)); do
        "$@" 2>/dev/null && return 0
        if [[ -n ${BENCH_DUT_PID:-} ]] && ! kill -0 "$BENCH_DUT_PID" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# Waits up to $2 seconds for file $1 (the DUT's telemetry socket) to appear.
bench_wait_file() { bench_wait "${2:-20}" test -e "$1"; }

# Waits up to $3 seconds for a line matching $2 in file $1 (the DUT's log).
bench_wait_line() { bench_wait "${3:-20}" grep -q -- "$2" "$1"; }

# Runs the generator as memif client against the DUT; prints its JSON line.
# Arguments: generator options (they override the defaults set here).
bench_run_pktgen() {
    local mem
    mem=$(bench_mem_args)
    # shellcheck disable=SC2086
    "$PKTGEN" \
        --device "net_memif0,role=client,socket=$BENCH_SOCK,mac=02:00:00:00:00:10" \
        --peer-telemetry "/var/run/dpdk/$BENCH_DUT_PREFIX/dpdk_telemetry.v2" \
        "$@" \
        -- --lcores "0@$BENCH_GEN_CPU" --main-lcore 0 --no-pci \
        --file-prefix="$BENCH_GEN_PREFIX" $mem --log-level=lib.eal:warning
}

# Starts UVSD ($1) with one worker on the DUT CPU, a net_null port and its
# control socket at $BENCH_WORK/uvsadm.sock, and waits for it to be ready:
# the daemon the control-plane benchmarks (control.sh, sets.sh) talk to.
bench_start_null_uvsd() {
    cat >"$BENCH_WORK/uvsd.toml" <<CONF
    [eal]
    args = ["--lcores", "0@$BENCH_GEN_CPU,1@$BENCH_DUT_CPU", "--main-lcore", "0", "--no-pci", "--no-huge", "-m", "512", "--file-prefix=$BENCH_DUT_PREFIX"]

    [workers]
    lcores = [1]
    conn_capacity = 65536

    [control]
    socket = "$BENCH_WORK/uvsadm.sock"

    [[port]]
    name = "null"
    device = "net_null0"
    queues = 1
    mac = "02:00:00:00:00:01"
    addresses = ["198.18.0.1/15"]
CONF

    "$1" --config "$BENCH_WORK/uvsd.toml" >"$BENCH_WORK/uvsd.log" 2>&1 </dev/null &
    BENCH_DUT_PID=$!
    if ! bench_wait_line "$BENCH_WORK/uvsd.log" "uvsd: ready" 60; then
        cat "$BENCH_WORK/uvsd.log" >&2
        echo "uvsd did not report ready" >&2
        exit 1
    fi
}
