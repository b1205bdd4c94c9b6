#!/usr/bin/env bash
# k-of-n bootstrap: `vssm admin split-rpc-key` writes 5 shares of the RPC key, 3 needed; a fresh
# node takes them one `vssm bootstrap --share` at a time and runs at the third, not at the second;
# a repeated or damaged share is refused. The manual bootstrap with the key (dev-env) still works.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap 'vssm_dev_stop; [ -n "${PID2:-}" ] && kill "$PID2" 2>/dev/null' EXIT
D="$VSSM_DEV_DIR"; W="$D/split"; mkdir -p "$W/shares"

expect_eq "the dev node bootstrapped with the whole key (manual bootstrap)" running "$(curl -s "$VSSM_HEALTH_URL/REST/v1/healthcheck")"
check "split the RPC key 3 of 5" "$VSSM_BIN" admin split-rpc-key --rpc-key "$D/rpc-key.pem" --config "$D/config.json" \
    --threshold 3 --shares 5 --out "$W/shares" --label alice --label bob --label carol --label dave --label erin
expect_eq "five share files" 5 "$(ls "$W/shares" | grep -c '^rpc-key-share-[1-5]-of-5.json$')"
expect_eq "share files are private (0600)" 600 "$(stat -c %a "$W/shares/rpc-key-share-1-of-5.json")"
check "a share holds no PEM key" bash -c "! grep -q 'PRIVATE KEY' '$W/shares/rpc-key-share-1-of-5.json'"
check "... and is labelled" grep -q '"label":"alice"' "$W/shares/rpc-key-share-1-of-5.json"

# A fresh node with the same config (empty state), waiting for its bootstrap.
vssm_serve_bg "$W/serve.log" --config "$D/config.json" --state-dir "$W/state" --api 127.0.0.1:0 --health 127.0.0.1:0 \
    --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 --ports-file "$W/ports.json"
PID2=$VSSM_SERVE_PID
for _ in $(seq 1 50); do [ -s "$W/ports.json" ] && break; sleep 0.1; done
port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$W/ports.json" "$1"; }
URL2="https://127.0.0.1:$(port api)"; HEALTH2="http://127.0.0.1:$(port health)"
expect_eq "fresh node is bootstrapping" bootstrapping "$(curl -s "$HEALTH2/REST/v1/healthcheck")"

out=$("$VSSM_BIN" bootstrap --url "$URL2" --share "$W/shares/rpc-key-share-2-of-5.json" 2>&1)
check "share 2 (bob) accepted: 1 of 3" grep -q "accepted: 1 of 3 received" <<< "$out"
out=$("$VSSM_BIN" bootstrap --url "$URL2" --share "$W/shares/rpc-key-share-2-of-5.json" 2>&1); rc=$?
expect_eq "the same share again is refused" 1 "$rc"
check "... as already received" grep -q "already received" <<< "$out"
sed 's/"label":"carol"/"label":"mallory"/' "$W/shares/rpc-key-share-3-of-5.json" > "$W/damaged.json"
out=$("$VSSM_BIN" bootstrap --url "$URL2" --share "$W/damaged.json" 2>&1); rc=$?
expect_eq "a damaged share is refused" 1 "$rc"
check "... by its checksum" grep -q "damaged" <<< "$out"
out=$("$VSSM_BIN" bootstrap --url "$URL2" --share "$W/shares/rpc-key-share-5-of-5.json" 2>&1)
check "share 5 (erin) accepted: 2 of 3" grep -q "accepted: 2 of 3 received" <<< "$out"
expect_eq "two shares (K-1) do not bootstrap" bootstrapping "$(curl -s "$HEALTH2/REST/v1/healthcheck")"
out=$("$VSSM_BIN" bootstrap --url "$URL2" --share "$W/shares/rpc-key-share-4-of-5.json" 2>&1)
check "share 4 (dave) completes the threshold" grep -q "accepted: 3 of 3; bootstrapped" <<< "$out"
expect_eq "three shares (K) bootstrap the node" running "$(curl -s "$HEALTH2/REST/v1/healthcheck")"
check "the node's log names the shares" grep -q "Bootstrapped from 3 RPC key shares" "$W/serve.log"

check "the node serves: generate a key" "$VSSM_BIN" admin generate-key split-ec --url "$URL2" --type ASYMMETRIC --spec EC --size 256
MSG=$(printf 'split' | base64 -w0)
out=$(VSSM_URL="$URL2" api /REST/v1/asymmetric/sign "{\"keyName\":\"split-ec\",\"algorithm\":\"SHA256withECDSA\",\"input\":\"$MSG\"}")
expect_eq "... and sign with it" 200 "$(last_status)"
out=$("$VSSM_BIN" bootstrap --url "$URL2" --share "$W/shares/rpc-key-share-1-of-5.json" 2>&1); rc=$?
expect_eq "a running node takes no more shares" 1 "$rc"
finish
