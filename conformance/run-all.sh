#!/usr/bin/env bash
# Runs every conformance scenario against real `vssm serve` nodes; prints a total line.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
total_pass=0; total_fail=0; broken=()
for s in "$here"/keyservice/[0-9]*.sh "$here"/module/[0-9]*.sh "$here"/consumers/[0-9]*.sh; do
    echo "== $(basename "$s")"
    out=$(bash "$s" 2>&1); rc=$?
    echo "$out" | grep -vE '^(Creating RPC|dev-env: vssm serve)'
    line=$(echo "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
    p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    total_pass=$((total_pass + ${p:-0})); total_fail=$((total_fail + ${f:-0}))
    if [ $rc -ne 0 ] || [ -z "$line" ]; then broken+=("$(basename "$s")"); [ -z "$line" ] && total_fail=$((total_fail + 1)); fi
done
[ ${#broken[@]} -gt 0 ] && echo "failing scenarios: ${broken[*]}"
echo "conformance: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ ${#broken[@]} -eq 0 ]
