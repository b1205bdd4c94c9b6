#!/usr/bin/env bash
# make bench: C_Sign throughput/latency of libvssm-pkcs11.so (against a local `vssm serve`, both
# release builds) and of SoftHSM2, in the same run on the same machine; plus the cold path.
# BENCH_SECONDS (default 5) per measurement. Client and server share the machine's cores.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${BENCH_SECONDS:-5}"
echo "building release binaries (first time: several minutes)..." >&2
# The shipped builds (`make vssm-release module-release`: static Swift runtime), one set of flags
# for both so neither rebuilds the other.
make -s vssm-release >/dev/null
make -s module-release >/dev/null
cc -O2 -Wall -I include -o .build-release/p11bench bench/p11bench.c -ldl -lpthread
cc -O2 -Wall -o .build-release/loadgen bench/loadgen.c -lssl -lcrypto
cc -O2 -Wall -o .build-release/floor bench/floor.c -lssl -lcrypto
B=.build-release/p11bench
L=.build-release/loadgen
export VSSM_BIN="$root/.build-release/release/vssm" MODULE="$root/dist/libvssm-pkcs11.so"
# Room for the 10,000 idle connections of the last case (the default cap is 1,024 per listener).
export VSSM_DEV_LIMITS='{"maxConnectionsAPI": 12000}'
source conformance/dev-env.sh >/dev/null 2>&1
trap vssm_dev_stop EXIT
"$VSSM_BIN" admin generate-key bench-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key bench-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null

if ! dpkg -s softhsm2 >/dev/null 2>&1; then
    echo "installing softhsm2 (the comparison module)..." >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq softhsm2 >/dev/null
fi
SOFTHSM=$(ls /usr/lib/softhsm/libsofthsm2.so 2>/dev/null || true)
[ -n "$SOFTHSM" ] || { echo "SoftHSM2 is not available"; exit 1; }
export SOFTHSM2_CONF="$VSSM_DEV_DIR/softhsm2.conf"
mkdir -p "$VSSM_DEV_DIR/softhsm"
printf 'directories.tokendir = %s/softhsm\nobjectstore.backend = file\nlog.level = ERROR\n' "$VSSM_DEV_DIR" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 1234 >/dev/null
pkcs11-tool --module "$SOFTHSM" --login --pin 1234 --keypairgen --key-type EC:prime256v1 --label bench-ec >/dev/null 2>&1
pkcs11-tool --module "$SOFTHSM" --login --pin 1234 --keypairgen --key-type rsa:2048 --label bench-rsa >/dev/null 2>&1

val() { sed -nE "s/.*(^| )$1=([0-9.]+).*/\2/p" <<< "$2"; }
echo
echo "CPU columns: microseconds of CPU time per signature, in the calling process (the module, or SoftHSM"
echo "itself) and in vssm serve (/proc/PID/stat before and after). Client and server share the cores."
printf '\n%-26s %-10s %10s %8s %8s %12s %12s\n' "case" "module" "signs/s" "p50 µs" "p99 µs" "module CPU" "server CPU"
declare -A tput p50
p99_8t=""
for spec in "ecdsa-p256 1t:bench-ec:ecdsa:1" "ecdsa-p256 8t:bench-ec:ecdsa:8" "rsa-2048 8t:bench-rsa:rsa:8"; do
    IFS=: read -r name label mech threads <<< "$spec"
    for m in vssm softhsm; do
        if [ "$m" = vssm ]; then
            out=$(P11BENCH_SERVER_PID="$VSSM_PID" $B "$MODULE" "$label" "$mech" "$threads" "$secs")
        else
            out=$($B "$SOFTHSM" "$label" "$mech" "$threads" "$secs" 1234)
        fi
        tput[$name/$m]=$(val signs_per_s "$out"); p50[$name/$m]=$(val p50_us "$out")
        [ "$name/$m" = "ecdsa-p256 8t/vssm" ] && p99_8t=$(val p99_us "$out")
        printf '%-26s %-10s %10s %8s %8s %12s %12s\n' "$name" "$m" "${tput[$name/$m]}" "${p50[$name/$m]}" "$(val p99_us "$out")" \
            "$(val module_cpu_us "$out")" "$(val server_cpu_us "$out")"
    done
done
# The floor: a C TLS client and server doing nothing but the exchange and a P-256 signature.
fl=$(.build-release/floor "$VSSM_DEV_DIR" 20000)
printf '%-26s %-10s %10s %8s %8s %12s %12s\n' "floor: C TLS + sign, 1t" "bare C" "" "$(val p50_us "$fl")" "$(val p99_us "$fl")" \
    "$(val client_cpu_us "$fl")" "$(val server_cpu_us "$fl")"
# Cold path: a fresh process loads the module, initialises, finds the key and signs once; the
# second pair logs in first (our user PIN is the admin password in this dev setup).
cv=$($B --cold "$MODULE" bench-ec ecdsa 15)
cs=$($B --cold "$SOFTHSM" bench-ec ecdsa 15 1234)
cvl=$($B --cold "$MODULE" bench-ec ecdsa 15 "$PIN")
csl=$($B --cold "$SOFTHSM" bench-ec ecdsa 15 1234)
printf '%-26s %-10s %10s %8s\n' "cold path (p50 of 15)" vssm "" "$(val cold_p50_us "$cv")"
printf '%-26s %-10s %10s %8s\n' "cold path (p50 of 15)" softhsm "" "$(val cold_p50_us "$cs")"
printf '%-26s %-10s %10s %8s\n' "cold + C_Login (p50 of 15)" vssm "" "$(val cold_p50_us "$cvl")"
printf '%-26s %-10s %10s %8s\n' "cold + C_Login (p50 of 15)" softhsm "" "$(val cold_p50_us "$csl")"
api_port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['api'])" "$VSSM_DEV_DIR/ports.json")
cf=$(.build-release/floor --cold "$VSSM_DEV_DIR" "$api_port" 15)
printf '%-26s %-10s %10s %8s   (OpenSSL init, context, key files, mTLS handshake, one exchange)\n' "floor: C TLS client start" "bare C" "" "$(val cold_tls_p50_us "$cf")"
# The service alone: a separate process (bench/loadgen.c) keeps 1,000 mTLS connections busy with
# ECDSA sign requests; the server's CPU time gives requests per second per server core.
echo
echo "service alone (load generator, 1,000 keep-alive mTLS connections, one ECDSA sign in flight each):"
lg=$(LOADGEN_SERVER_PID="$VSSM_PID" $L sign 127.0.0.1 "$api_port" bench-ec 1000 "$secs")
printf '  %s requests/s, p50 %s µs, p99 %s µs, server CPU %s µs/request = %s requests/s per server core\n' \
    "$(val requests_per_s "$lg")" "$(val p50_us "$lg")" "$(val p99_us "$lg")" "$(val server_cpu_us "$lg")" "$(val requests_per_server_core_s "$lg")"
# 10,000 idle keep-alive connections held open while 8 threads sign through the module.
echo "8 threads signing while 10,000 idle connections are held (opening them takes a few seconds)..."
idle_out="$VSSM_DEV_DIR/idle.out"
$L idle 127.0.0.1 "$api_port" bench-ec 10000 600 > "$idle_out" &
idle_pid=$!
for _ in $(seq 1 300); do grep -q idle_ready "$idle_out" && break; kill -0 "$idle_pid" 2>/dev/null || break; sleep 1; done
busy=$(P11BENCH_SERVER_PID="$VSSM_PID" $B "$MODULE" bench-ec ecdsa 8 "$secs")
kill "$idle_pid" 2>/dev/null; wait "$idle_pid" 2>/dev/null || true
printf '  idle connections ready: %s (still open at the end: %s)\n' "$(val idle_ready "$(cat "$idle_out")")" "$(val idle_open_at_end "$(cat "$idle_out")")"
printf '  %-24s %10s %8s %8s\n' "" "signs/s" "p50 µs" "p99 µs"
printf '  %-24s %10s %8s %8s\n' "without idle connections" "${tput[ecdsa-p256 8t/vssm]}" "${p50[ecdsa-p256 8t/vssm]}" "$p99_8t"
printf '  %-24s %10s %8s %8s\n' "with 10,000 idle" "$(val signs_per_s "$busy")" "$(val p50_us "$busy")" "$(val p99_us "$busy")"

ratio() { python3 -c "import sys; a,b=float(sys.argv[1] or 0),float(sys.argv[2] or 0); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
echo
echo "targets (issue 10):"
echo "  ECDSA 1 thread p50 vs SoftHSM:            $(ratio "${p50[ecdsa-p256 1t/vssm]}" "${p50[ecdsa-p256 1t/softhsm]}")x  (target <= 1.5; the bare C floor: $(ratio "$(val p50_us "$fl")" "${p50[ecdsa-p256 1t/softhsm]}")x)"
floor_tput=$(python3 -c "import sys; c=float(sys.argv[1] or 0)+float(sys.argv[2] or 0); print(f'{int(sys.argv[3])*1e6/c:.0f}' if c else 0)" "$(val client_cpu_us "$fl")" "$(val server_cpu_us "$fl")" "$(nproc)")
echo "  ECDSA 8 threads throughput vs SoftHSM:    $(ratio "${tput[ecdsa-p256 8t/vssm]}" "${tput[ecdsa-p256 8t/softhsm]}")x  (target >= 1.5; the bare C floor, $(nproc) cores / its CPU per signature: $(ratio "$floor_tput" "${tput[ecdsa-p256 8t/softhsm]}")x)"
echo "  RSA-2048 8 threads throughput vs SoftHSM: $(ratio "${tput[rsa-2048 8t/vssm]}" "${tput[rsa-2048 8t/softhsm]}")x  (target >= 1.0)"
echo "  cold path vs SoftHSM:                     $(ratio "$(val cold_p50_us "$cv")" "$(val cold_p50_us "$cs")")x  (target <= 1.5; a bare C TLS client's start alone: $(ratio "$(val cold_tls_p50_us "$cf")" "$(val cold_p50_us "$cs")")x)"
echo "  cold path with C_Login vs SoftHSM:        $(ratio "$(val cold_p50_us "$cvl")" "$(val cold_p50_us "$csl")")x  (target <= 2.0)"
echo "  8-thread p99 with 10,000 idle vs without: $(ratio "$(val p99_us "$busy")" "$p99_8t")x  (target <= 2.0)"
echo
echo "targets against the bare C floor (issue 21; the same run, the same machine):"
server_1t=$(val server_cpu_us "$(P11BENCH_SERVER_PID="$VSSM_PID" $B "$MODULE" bench-ec ecdsa 1 "$secs")")
echo "  ECDSA 1 thread p50 vs the floor's:              $(ratio "${p50[ecdsa-p256 1t/vssm]}" "$(val p50_us "$fl")")x  (target <= 1.3)"
echo "  ECDSA 8 threads vs the floor's capacity:         $(ratio "${tput[ecdsa-p256 8t/vssm]}" "$floor_tput")x  (target >= 0.9; floor: $floor_tput/s on $(nproc) cores)"
echo "  server CPU per signature vs the floor server's:  $(ratio "$server_1t" "$(val server_cpu_us "$fl")")x  (target <= 1.3; $server_1t vs $(val server_cpu_us "$fl") µs)"
echo "  cold path vs the floor's TLS client start:      $(ratio "$(val cold_p50_us "$cv")" "$(val cold_tls_p50_us "$cf")")x  (target <= 1.2)"
