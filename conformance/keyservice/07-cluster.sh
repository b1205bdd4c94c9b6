#!/usr/bin/env bash
# A cluster (issue 12): 3 etcd members and 3 vssm nodes sharing sealed state in etcd
# (conformance/cluster-env.sh). Keys made through one node sign through another at once; 8 threads
# sign through the module for 60 s while a node and then an etcd member are killed with kill -9;
# deletions stay deleted across restarts; nodes join from peers with credentials, revoked ones
# cannot; k-of-n shares bootstrap a node; backups move between the cluster and a single node.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/cluster-env.sh" || exit 1
trap 'vssm_cluster_stop; [ -n "${SINGLE_PID:-}" ] && kill "$SINGLE_PID" 2>/dev/null' EXIT
D="$VSSM_CLUSTER_DIR"
W="$D/work"; mkdir -p "$W"
read -r -a URLS <<< "$VSSM_NODE_URLS"
read -r -a EPIDS <<< "$ETCD_PIDS"
node_pid() { cat "$D/n$1/pid"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# REST call to a node: rest URL PATH JSON (prints the body, then the status)
rest() { rest_to "$1" "$VSSM_CLIENT_CERT" "$VSSM_CLIENT_KEY" "$2" "$3"; }
sign_status() { rest "$1" /REST/v1/asymmetric/sign "{\"keyName\":\"$2\",\"algorithm\":\"SHA256withECDSA\",\"input\":\"Y2x1c3Rlcg==\"}" | tail -1; }
cc -O2 -I "$CONFORMANCE_DIR/../include" -o "$W/p11bench" "$CONFORMANCE_DIR/../bench/p11bench.c" -ldl -lpthread \
    || { echo "cannot build p11bench"; exit 1; }

# --- a key made through node 1 signs through node 3 within a second ---------------------------------
"$VSSM_BIN" admin generate-key made-on-1 --url "${URLS[0]}" --type ASYMMETRIC --spec EC --size 256 >/dev/null
t0=$(ms); st=""
while [ "$(( $(ms) - t0 ))" -lt 3000 ]; do st=$(sign_status "${URLS[2]}" made-on-1); [ "$st" = 200 ] && break; sleep 0.02; done
elapsed=$(( $(ms) - t0 ))
check "a key generated through node 1 signs through node 3 within 1 s (took $elapsed ms)" test "$st" = 200 -a "$elapsed" -le 1000
check "etcd holds the key sealed (no key name in clear)" bash -c \
    "ETCDCTL_API=3 etcdctl --endpoints '${ETCD_ENDPOINTS// /,}' --cacert '$D/etcd-pki/ca.pem' --cert '$D/etcd-pki/client.pem' --key '$D/etcd-pki/client-key.pem' get --prefix /vssm/ -w json | python3 -c '
import base64, json, sys
kvs = json.load(sys.stdin).get(\"kvs\", [])
assert any(base64.b64decode(k[\"key\"]).endswith(b\"k/ASYMMETRIC/made-on-1\") for k in kvs)
assert not any(b\"made-on-1\" in base64.b64decode(k[\"value\"]) for k in kvs)'"

# --- 8 threads for 60 s through the module; kill -9 a node, then an etcd member ----------------------
"$VSSM_BIN" admin generate-key chaos-ec --url "${URLS[1]}" --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$W/p11bench" "$MODULE" chaos-ec ecdsa 8 60 "$PIN" > "$W/chaos.out" 2> "$W/chaos.err" &
bench=$!
sleep 15
kill -9 "$(node_pid 1)"
sleep 5
out=$(rest "${URLS[1]}" /REST/v1/admin/generatekey "{\"adminPassword\":\"$PIN\",\"keyName\":\"while-n1-down\",\"keyType\":\"ASYMMETRIC\",\"keySpec\":\"EC\",\"keySize\":\"256\"}")
check "with node 1 dead, node 2 still creates keys" test "$(tail -1 <<< "$out")" = 200
sleep 10
kill -9 "${EPIDS[0]}"
sleep 5
out=$(rest "${URLS[2]}" /REST/v1/admin/generatekey "{\"adminPassword\":\"$PIN\",\"keyName\":\"while-e1-down\",\"keyType\":\"ASYMMETRIC\",\"keySpec\":\"EC\",\"keySize\":\"256\"}")
check "with an etcd member dead too (2 of 3 keep quorum), node 3 still creates keys" test "$(tail -1 <<< "$out")" = 200
wait "$bench"; rc=$?
result=$(cat "$W/chaos.out")
echo "       chaos run: $result"
check "8 threads x 60 s through the module while node 1 and etcd member 1 were killed: 0 failed signatures" \
    bash -c "[ $rc -eq 0 ] && grep -q ' errors=0 ' <<< '$result' && ! grep -q 'signs=0 ' <<< '$result'"

# --- etcd without quorum: signatures go on from each node's view, writes fail cleanly -------------------
kill -STOP "${EPIDS[1]}"   # with member 1 dead, one of three left: no quorum
out=$(rest "${URLS[2]}" /REST/v1/admin/generatekey "{\"adminPassword\":\"$PIN\",\"keyName\":\"no-quorum\",\"keyType\":\"ASYMMETRIC\",\"keySpec\":\"EC\",\"keySize\":\"256\"}")
check "without etcd quorum a write fails cleanly with 503" test "$(tail -1 <<< "$out")" = 503
check "... while node 3 still signs from its view" test "$(sign_status "${URLS[2]}" chaos-ec)" = 200
check "... and so does node 2" test "$(sign_status "${URLS[1]}" made-on-1)" = 200
kill -CONT "${EPIDS[1]}"
ok=0
for _ in $(seq 1 50); do
    out=$(rest "${URLS[2]}" /REST/v1/admin/generatekey "{\"adminPassword\":\"$PIN\",\"keyName\":\"quorum-back\",\"keyType\":\"ASYMMETRIC\",\"keySpec\":\"EC\",\"keySize\":\"256\"}")
    [ "$(tail -1 <<< "$out")" = 200 ] && { ok=1; break; }
    sleep 0.2
done
check "with quorum back, writes succeed again" test "$ok" = 1

# --- node 1 comes back by joining; a deleted key is gone everywhere and stays gone ------------------
vssm_cluster_start_node 1; rc=$?  # (in this shell: it exports the new URLs)
check "node 1 restarts and joins again from its peers" test "$rc" = 0
read -r -a URLS <<< "$VSSM_NODE_URLS"
"$VSSM_BIN" admin generate-key doomed --url "${URLS[0]}" --type ASYMMETRIC --spec EC --size 256 >/dev/null
check "the key to delete signs through node 3" test "$(sign_status "${URLS[2]}" doomed)" = 200
out=$(rest "${URLS[1]}" /REST/v1/ext/deletekey "{\"adminPassword\":\"$PIN\",\"keyName\":\"doomed\",\"keyType\":\"ASYMMETRIC\"}")
check "deleted through node 2" test "$(tail -1 <<< "$out")" = 200
sleep 0.5
gone() { local u; for u in "${URLS[@]}"; do [ "$(sign_status "$u" doomed)" = 404 ] || return 1; "$VSSM_BIN" admin list-keys --url "$u" | grep -q ' doomed$' && return 1; done; return 0; }
check "the deleted key is gone on every node (sign 404, not listed)" gone
for n in 1 2 3; do kill -9 "$(node_pid "$n")"; wait "$(node_pid "$n")" 2>/dev/null; done
# The first comes back with the RPC key (no node runs to join from), the others join it.
_vssm_cluster_serve 1 --bootstrap-key "$D/rpc-key.pem" && _vssm_cluster_export
for n in 2 3; do vssm_cluster_start_node "$n"; done
read -r -a URLS <<< "$VSSM_NODE_URLS"
check "after every node restarted (kill -9), the deleted key is still gone everywhere" gone
check "... and the other keys are all there (made-on-1 signs through node 2)" test "$(sign_status "${URLS[1]}" made-on-1)" = 200

# --- with node 1 down, admin goes to the next node; a 4th node joins from peers -----------------------
kill -9 "$(node_pid 1)"; wait "$(node_pid 1)" 2>/dev/null
out=$(VSSM_URL="${VSSM_NODE_URLS// /,}" "$VSSM_BIN" admin list-keys 2>&1)
check "vssm admin with every node's URL (node 1, the first, is down) answers from the next" grep -q ' made-on-1$' <<< "$out"
out=$("$VSSM_BIN" admin list-keys --url "${URLS[0]}" --url "${URLS[2]}" 2>&1)
check "... and so with --url repeated" grep -q ' made-on-1$' <<< "$out"
vssm_cluster_add_node; rc=$?
check "vssm_cluster_add_node: a 4th node joins from its peers while node 1 is down" test "$rc" = 0 -a "$(wc -w <<< "$VSSM_NODE_PIDS")" = 4
vssm_cluster_start_node 1 || echo "node 1 did not come back"
read -r -a URLS <<< "$VSSM_NODE_URLS"
check "the 4th node signs with the cluster's keys" test "$(sign_status "${URLS[3]}" chaos-ec)" = 200
joined=$(cat "$D"/n[123]/state/audit.jsonl "$D"/n[123]/audit.jsonl 2>/dev/null | grep -c '"principal":"node:n4".*"route":"/REST/v1/ext/internal/join"' || true)
check "the join is in the serving node's audit trail" test "${joined:-0}" -ge 1
"$VSSM_BIN" admin node add n9 --out "$D/n9.credential" >/dev/null
check "vssm admin node remove revokes a credential" "$VSSM_BIN" admin node remove n9
mkdir -p "$D/n9"
vssm_serve_bg "$D/n9/serve.log" --config "$D/config.json" --state-dir "$D/n9" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --join "https://127.0.0.1:$(_vssm_cluster_port 2 bootstrapSlave)" \
    --join-credential "$D/n9.credential"
n9=$VSSM_SERVE_PID
for _ in $(seq 1 100); do kill -0 "$n9" 2>/dev/null || break; sleep 0.1; done
check "a node with a revoked credential cannot join (it exits, refused)" bash -c \
    "! kill -0 $n9 2>/dev/null && grep -q 'join failed.*refused' '$D/n9/serve.log'"
kill "$n9" 2>/dev/null; rm -rf "$D/n9"
# A credential works once: the 4th node's, used, does not let another node in (issue 20).
mkdir -p "$D/n7"
vssm_serve_bg "$D/n7/serve.log" --config "$D/config.json" --state-dir "$D/n7" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --join "https://127.0.0.1:$(_vssm_cluster_port 2 bootstrapSlave)" --join-credential "$D/n4.credential"
n7=$VSSM_SERVE_PID
for _ in $(seq 1 100); do kill -0 "$n7" 2>/dev/null || break; sleep 0.1; done
check "a used join credential is refused the second time" bash -c "! kill -0 $n7 2>/dev/null && grep -q 'join failed.*refused' '$D/n7/serve.log'"
kill "$n7" 2>/dev/null; rm -rf "$D/n7"
# Guessing at the join endpoint is throttled and aggregated in the audit trail, not one record each.
slave=$(_vssm_cluster_port 3 bootstrapSlave)
before=$(cat "$D"/n3/audit.jsonl 2>/dev/null | grep -c 'ext/internal/join' || true)
codes=$(for i in $(seq 1 30); do curl -sk -o /dev/null -w '%{http_code} ' "https://127.0.0.1:$slave/REST/v1/ext/internal/join" -d "{\"name\":\"n3\",\"secret\":\"$(head -c 32 /dev/urandom | base64 -w0)\"}"; done)
after=$(cat "$D"/n3/audit.jsonl 2>/dev/null | grep -c 'ext/internal/join' || true)
check "30 guessed join secrets: refused (403), then throttled (429)" bash -c "grep -q 403 <<< '$codes' && grep -q 429 <<< '$codes'"
check "... and aggregated in the audit trail ($((after - before)) records for 30 attempts)" test "$((after - before))" -le 3
check "... the aggregate record counts them" grep -q 'refused join attempt(s) from 127.0.0.1' "$D/n3/audit.jsonl"

# --- a node whose clock is 10 minutes fast stops stamping keys (issue 20) ----------------------------
# It compares its clock with etcd's (the Date of etcd's answers): minutes fast, its deletions would
# outrank keys made later elsewhere and its keys would outlive later deletions.
"$VSSM_BIN" admin node add n8 --out "$D/n8.credential" >/dev/null
mkdir -p "$D/n8"
VSSM_SERVE_WRAP="env FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f +600s" vssm_serve_bg "$D/n8/serve.log" --config "$D/config.json" \
    --state-dir "$D/n8" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 \
    --ports-file "$D/n8/ports.json" --join "https://127.0.0.1:$(_vssm_cluster_port 2 bootstrapSlave)" --join-credential "$D/n8.credential"
n8=$VSSM_SERVE_PID
# The faketime command forks: the node is its child (killing faketime alone left the node running,
# and a node spinning under libfaketime once ate a core for the rest of CI).
n8node=""
for _ in $(seq 1 50); do n8node=$(pgrep -P "$n8" | head -1); [ -n "$n8node" ] && break; sleep 0.1; done
for _ in $(seq 1 100); do grep -q "clock is out of step" "$D/n8/serve.log" 2>/dev/null && break; sleep 0.1; done
check "a node 10 minutes fast says its clock is out of step with etcd's" grep -q "the etcd member's clock is about 600 s behind" "$D/n8/serve.log"
fast="https://127.0.0.1:$(_vssm_cluster_port 8 api)"
rest "$fast" /REST/v1/ext/deletekey "{\"adminPassword\":\"$VSSM_ADMIN_PASSWORD\",\"keyName\":\"made-on-1\",\"keyType\":\"ASYMMETRIC\"}" > "$W/fast.out"
check "  ... it refuses to delete a key (503, saying why)" bash -c "[ \"\$(tail -1 '$W/fast.out')\" = 503 ] && grep -q 'clock is out of step' '$W/fast.out'"
out=$(rest "$fast" /REST/v1/ext/generatekey "{\"adminPassword\":\"$VSSM_ADMIN_PASSWORD\",\"keyName\":\"from-the-future\",\"keyType\":\"ASYMMETRIC\",\"keySpec\":\"EC\",\"keySize\":256}")
expect_eq "  ... and to create one" 503 "$(tail -1 <<< "$out")"
check "  ... made-on-1 is still there on the others" test "$(sign_status "${URLS[1]}" made-on-1)" = 200
expect_eq "  ... while it still signs with the cluster's keys" 200 "$(sign_status "$fast" made-on-1)"
rest_to "$fast" "$VSSM_CLIENT_CERT" "$VSSM_CLIENT_KEY" /metrics "" -X GET > "$W/fast.metrics"
check "  ... and /metrics says so (vssm_clock_out_of_step 1, offset about -600 s)" bash -c \
    "grep -q '^vssm_clock_out_of_step 1' '$W/fast.metrics' && grep -qE '^vssm_clock_offset_seconds -(59[0-9]|60[0-9])' '$W/fast.metrics'"
check "  ... the nodes on time are in step" bash -c "! grep -q 'clock is out of step' '$D/n2/serve.log'"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
t0=$(cpu_ticks "$n8node"); sleep 3; t1=$(cpu_ticks "$n8node")
echo "       the fast node ($n8node) idle for 3 s used $((t1 - t0)) CPU ticks ($(getconf CLK_TCK) a second)"
check "  ... idle, it does not spin under libfaketime (under 1 s of CPU in 3 s)" \
    bash -c "[ -n '$n8node' ] && [ $((t1 - t0)) -lt $(getconf CLK_TCK) ]"
kill "$n8node" "$n8" 2>/dev/null; wait "$n8" 2>/dev/null
for _ in $(seq 1 50); do kill -0 "$n8node" 2>/dev/null || break; sleep 0.1; done
check "  ... and it stops when told" bash -c "! kill -0 '$n8node' 2>/dev/null"
rm -rf "$D/n8"

# --- k of n shares bootstrap a node of the cluster; k-1 do not ---------------------------------------
mkdir -p "$W/shares"
"$VSSM_BIN" admin split-rpc-key --rpc-key "$D/rpc-key.pem" --config "$D/config.json" --threshold 2 --shares 3 --out "$W/shares" >/dev/null
mkdir -p "$D/n8"
vssm_serve_bg "$D/n8/serve.log" --config "$D/config.json" --state-dir "$D/n8" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --ports-file "$D/n8/ports.json"
n8=$VSSM_SERVE_PID
for _ in $(seq 1 100); do [ -s "$D/n8/ports.json" ] && break; sleep 0.1; done
n8api="https://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$D/n8/ports.json")"
n8health="http://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["health"])' "$D/n8/ports.json")"
"$VSSM_BIN" bootstrap --url "$n8api" --share "$W/shares/rpc-key-share-1-of-3.json" >/dev/null 2>&1
check "one share of 2: the node is still bootstrapping" test "$(curl -s "$n8health/REST/v1/healthcheck")" = bootstrapping
"$VSSM_BIN" bootstrap --url "$n8api" --share "$W/shares/rpc-key-share-3-of-3.json" >/dev/null 2>&1
check "the second share bootstraps it" test "$(curl -s "$n8health/REST/v1/healthcheck")" = running
check "... and it serves the cluster's keys (from etcd)" test "$(sign_status "$n8api" made-on-1)" = 200
kill "$n8" 2>/dev/null

# --- backups: cluster -> single file-store node -> cluster --------------------------------------------
check "backup of the cluster" "$VSSM_BIN" admin backup --url "${URLS[1]}" --out "$W/cluster-backup.json"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c.pop("etcd"); json.dump(c, open(sys.argv[2], "w"))' "$D/config.json" "$W/single.json"
mkdir -p "$W/single"
vssm_serve_bg "$W/single/serve.log" --config "$W/single.json" --state-dir "$W/single" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --bootstrap-key "$D/rpc-key.pem" --ports-file "$W/single/ports.json"
SINGLE_PID=$VSSM_SERVE_PID
for _ in $(seq 1 100); do [ -s "$W/single/ports.json" ] && break; sleep 0.1; done
sleep 0.5
single="https://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/single/ports.json")"
check "a single file-store node restores the cluster's backup" "$VSSM_BIN" admin restore --url "$single" "$W/cluster-backup.json"
check "... and signs with a key made in the cluster" test "$(sign_status "$single" made-on-1)" = 200
check "... the key deleted in the cluster stays deleted there (its tombstone came along)" test "$(sign_status "$single" doomed)" = 404
"$VSSM_BIN" admin generate-key made-on-single --url "$single" --type ASYMMETRIC --spec EC --size 256 >/dev/null
check "backup of the single node" "$VSSM_BIN" admin backup --url "$single" --out "$W/single-backup.json"
check "the cluster restores it" "$VSSM_BIN" admin restore --url "${URLS[0]}" "$W/single-backup.json"
ok=1; for u in "${URLS[@]}"; do s=$(sign_status "$u" made-on-single); [ "$s" = 200 ] || { ok=0; echo "       $u: $s"; }; done
check "the single node's key signs through every cluster node" test "$ok" = 1

finish
