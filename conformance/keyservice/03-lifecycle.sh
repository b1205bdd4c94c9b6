#!/usr/bin/env bash
# kill -9 + restart keeps every key; backup -> fresh node -> restore keeps keys usable;
# two nodes sync over the internal listener with the original protocol.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap 'vssm_dev_stop; [ -n "${PID2:-}" ] && kill "$PID2" 2>/dev/null; [ -n "${PID3:-}" ] && kill "$PID3" 2>/dev/null' EXIT
D="$VSSM_DEV_DIR"; W="$D/work"; mkdir -p "$W"

"$VSSM_BIN" admin generate-key life-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
"$VSSM_BIN" admin generate-key life-aes --type SYMMETRIC --size 32 >/dev/null
"$VSSM_BIN" admin generate-key life-mac --type MAC --size 32 >/dev/null
MSG=$(printf 'persist me' | base64 -w0)
sig_before=$(json_field "$(api /REST/v1/asymmetric/sign "{\"keyName\":\"life-rsa\",\"algorithm\":\"SHA256withRSA\",\"input\":\"$MSG\"}")" output)
ct=$(json_field "$(api /REST/v1/symmetric/encrypt "{\"keyName\":\"life-aes\",\"algorithm\":\"AES/GCM/NoPadding\",\"input\":\"$MSG\"}")" output)

# --- kill -9 and restart from the same state directory -------------------------------------------
kill -9 "$VSSM_PID"; wait "$VSSM_PID" 2>/dev/null; unset VSSM_PID
port="${VSSM_URL##*:}"
hport="${VSSM_HEALTH_URL##*:}"
vssm_serve_bg "$D/serve2.log" --config "$D/config.json" --api "127.0.0.1:$port" --health "127.0.0.1:$hport" --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0
VSSM_PID=$VSSM_SERVE_PID
for _ in $(seq 1 50); do curl -s "$VSSM_HEALTH_URL/REST/v1/healthcheck" >/dev/null 2>&1 && break; sleep 0.1; done
expect_eq "restarted node waits for bootstrap" bootstrapping "$(curl -s "$VSSM_HEALTH_URL/REST/v1/healthcheck")"
check "bootstrap after restart" "$VSSM_BIN" bootstrap --url "$VSSM_URL" --key "$D/rpc-key.pem"
expect_eq "node running" running "$(curl -s "$VSSM_HEALTH_URL/REST/v1/healthcheck")"
sig_after=$(json_field "$(api /REST/v1/asymmetric/sign "{\"keyName\":\"life-rsa\",\"algorithm\":\"SHA256withRSA\",\"input\":\"$MSG\"}")" output)
expect_eq "RSA key survived kill -9 (same deterministic signature)" "$sig_before" "$sig_after"
out=$(api /REST/v1/symmetric/decrypt "{\"keyName\":\"life-aes\",\"algorithm\":\"AES/GCM/NoPadding\",\"input\":\"$ct\"}")
expect_eq "AES key survived kill -9" "$MSG" "$(json_field "$out" output)"
check "state file holds no key names in clear" bash -c "! grep -q life-rsa '$D/state/keystore.sealed'"

# --- the audit trail: one chained record per request, across the kill -9; an edit is found ---------
out=$("$VSSM_BIN" admin logs --verify 2>&1)
check "audit trail verifies across the kill -9 restart" grep -q "audit trail verified" <<< "$out"
out=$("$VSSM_BIN" admin logs --key-name life-rsa 2>&1)
check "audit records name the principal (and its namespace) of every signature" grep -q 'principal="team-a".*route=/REST/v1/asymmetric/sign key="life-rsa" mechanism=SHA256withRSA namespace=default status=200' <<< "$out"
check "... before and after the restart (two signatures)" test "$(grep -c 'route=/REST/v1/asymmetric/sign' <<< "$out")" -ge 2
python3 - "$D/state/audit.jsonl" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:  # in place: the node keeps appending to the same file
    data = f.read()
    f.seek(0)
    f.write(data.replace(b'"key":"life-rsa"', b'"key":"life-rsX"', 1))
    f.truncate()
PY
out=$("$VSSM_BIN" admin logs --verify 2>&1); rc=$?
expect_eq "an edited audit record makes --verify fail" 1 "$rc"
check "... naming the record that was changed" grep -q "BROKEN: audit.jsonl line [0-9]* (seq [0-9]*): the record was changed" <<< "$out"

# --- a wrong RPC key cannot open the sealed state --------------------------------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/other-key.pem" 2>/dev/null
vssm_service_owns "$D"
out=$($VSSM_AS "$VSSM_BIN" serve --config "$D/config.json" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --bootstrap-key "$W/other-key.pem" 2>&1)
check "a foreign RPC key is refused at bootstrap" grep -q "does not match the RPC certificate" <<< "$out"
out=$(curl -sk "$VSSM_URL/REST/v1/admin/bootstrap" -d "{}" -o /dev/null -w '%{http_code}' 2>/dev/null || true)
check "bootstrap endpoint gone once running (mTLS required)" test "$out" != 200

# --- backup -> fresh node (same config, empty state) -> restore ------------------------------------
"$VSSM_BIN" admin backup --out "$W/backup.json" >/dev/null
mkdir -p "$W/fresh"
vssm_serve_bg "$W/fresh/serve.log" --config "$D/config.json" --state-dir "$W/fresh/state" --api 127.0.0.1:0 --health 127.0.0.1:0 \
    --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 --ports-file "$W/fresh/ports.json" --bootstrap-key "$D/rpc-key.pem"
PID2=$VSSM_SERVE_PID
for _ in $(seq 1 50); do [ -s "$W/fresh/ports.json" ] && break; sleep 0.1; done
FRESH_URL="https://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/fresh/ports.json")"
out=$("$VSSM_BIN" admin list-keys --url "$FRESH_URL" 2>&1)
check "fresh node starts empty" bash -c "! grep -q life-rsa <<< '$out'"
check "restore into the fresh node" "$VSSM_BIN" admin restore --url "$FRESH_URL" "$W/backup.json"
sig_fresh=$(VSSM_URL="$FRESH_URL" api /REST/v1/asymmetric/sign "{\"keyName\":\"life-rsa\",\"algorithm\":\"SHA256withRSA\",\"input\":\"$MSG\"}")
expect_eq "restored RSA key signs identically" "$sig_before" "$(json_field "$sig_fresh" output)"
out=$(VSSM_URL="$FRESH_URL" api /REST/v1/symmetric/decrypt "{\"keyName\":\"life-aes\",\"algorithm\":\"AES/GCM/NoPadding\",\"input\":\"$ct\"}")
expect_eq "restored AES key decrypts the old ciphertext" "$MSG" "$(json_field "$out" output)"

# --- sync: a node with the fresh node as peer pushes new keys to it ---------------------------------
FRESH_INTERNAL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["internal"])' "$W/fresh/ports.json")
mkdir -p "$W/n3"
vssm_serve_bg "$W/n3/serve.log" --config "$D/config.json" --state-dir "$W/n3/state" --api 127.0.0.1:0 --health 127.0.0.1:0 \
    --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 --ports-file "$W/n3/ports.json" --peer "127.0.0.1:$FRESH_INTERNAL" \
    --bootstrap-key "$D/rpc-key.pem"
PID3=$VSSM_SERVE_PID
for _ in $(seq 1 50); do [ -s "$W/n3/ports.json" ] && break; sleep 0.1; done
N3_URL="https://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/n3/ports.json")"
for _ in $(seq 1 50); do grep -q "life-rsa" "$W/n3/serve.log" && break; sleep 0.1; done
check "node 3 pulled the peer's keys at start" grep -q "New key added from synchronization message: life-rsa" "$W/n3/serve.log"
"$VSSM_BIN" admin generate-key synced-ec --url "$N3_URL" --type ASYMMETRIC --spec EC --size 256 >/dev/null
for _ in $(seq 1 50); do grep -q "synced-ec" "$W/fresh/serve.log" && break; sleep 0.1; done
out=$(VSSM_URL="$FRESH_URL" api /REST/v1/asymmetric/sign "{\"keyName\":\"synced-ec\",\"algorithm\":\"SHA256withECDSA\",\"input\":\"$MSG\"}")
expect_eq "key generated on node 3 was pushed to its peer" 200 "$(last_status)"

# --- internal listener: only the RPC certificate may call it -----------------------------------------
iport=$FRESH_INTERNAL
out=$(curl -s -o /dev/null -w '%{http_code}' --resolve "VSSM:$iport:127.0.0.1" --cacert "$VSSM_CA" \
    --cert "$D/rpc-cert.pem" --key "$D/rpc-key.pem" "https://VSSM:$iport/REST/v1/internal/synchronizestate" -d '{}')
expect_eq "synchronizestate with the RPC certificate" 200 "$out"
check "synchronizestate refuses a client-CA certificate" bash -c "! curl -s --resolve 'VSSM:$iport:127.0.0.1' --cacert '$VSSM_CA' \
    --cert '$VSSM_CLIENT_CERT' --key '$VSSM_CLIENT_KEY' 'https://VSSM:$iport/REST/v1/internal/synchronizestate' -d '{}'"
finish
