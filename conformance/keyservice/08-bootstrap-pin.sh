#!/usr/bin/env bash
# Bootstrap over the network is verified (issue 18): `vssm bootstrap` sends the RPC private key (or
# a share) to a node that is not on this machine only when its bootstrap-phase certificate matches
# the fingerprint the node logged (`--fingerprint SHA256:...`), or when told --insecure-unverified.
# The refusal comes before any lookup or connection. The "other host" is a network namespace this
# scenario makes, with the documentation address 192.0.2.10 on its own loopback device: no traffic
# leaves the machine.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
NS="vssm-pin-$$"
trap 'vssm_dev_stop; [ -n "${NODE:-}" ] && kill "$NODE" 2>/dev/null; ip netns del "$NS" 2>/dev/null' EXIT
D="$VSSM_DEV_DIR"; W="$D/pin"; mkdir -p "$W"

# --- refused before any lookup or connection ---------------------------------------------------------
out=$("$VSSM_BIN" bootstrap --url https://vssm-node.invalid:8080 --key "$D/rpc-key.pem" 2>&1); rc=$?
expect_eq "a non-loopback URL without --fingerprint is refused" 1 "$rc"
check "... before the name is looked up, saying how to pin" grep -q "refusing to send the RPC private key to vssm-node.invalid:8080 without verifying it: pass --fingerprint" <<< "$out"
out=$("$VSSM_BIN" bootstrap --url https://192.0.2.77:8080 --share "$D/rpc-key.pem" 2>&1)
check "... and so is a share" grep -q "refusing to send the share to 192.0.2.77:8080" <<< "$out"
out=$("$VSSM_BIN" bootstrap --url https://127.0.0.1:9 --key "$D/rpc-key.pem" --fingerprint SHA256:12:34 2>&1)
check "a malformed fingerprint is refused" grep -q "fingerprint must be SHA256: and 64 hex digits" <<< "$out"

# --- a node on another "host": a namespace with its own address ---------------------------------------
ip netns add "$NS" && ip netns exec "$NS" ip link set lo up && ip netns exec "$NS" ip addr add 192.0.2.10/32 dev lo
check "network namespace with the non-loopback address 192.0.2.10" ip netns exec "$NS" ip -4 addr show dev lo
mkdir -p "$W/state"
vssm_service_owns "$D"
# shellcheck disable=SC2086
ip netns exec "$NS" $VSSM_AS "$VSSM_BIN" serve --config "$D/config.json" --state-dir "$W/state" --api 192.0.2.10:8080 \
    --health 192.0.2.10:8081 --internal 192.0.2.10:8082 --bootstrap-slave 192.0.2.10:8083 >"$W/serve.log" 2>&1 &
NODE=$!
fp=""
for _ in $(seq 1 100); do
    fp=$(sed -n 's/.*Bootstrap-phase certificate SHA-256 fingerprint: \(SHA256:[0-9A-F:]*\).*/\1/p' "$W/serve.log" | head -1)
    [ -n "$fp" ] && break; sleep 0.1
done
check "the node logs its bootstrap-phase fingerprint (SHA256:...)" test "${#fp}" = 102
check "... with the command that pins it" grep -q -- "--fingerprint $fp" "$W/serve.log"
in_ns() { ip netns exec "$NS" "$@"; }
out=$(in_ns "$VSSM_BIN" bootstrap --url https://192.0.2.10:8080 --key "$D/rpc-key.pem" 2>&1); rc=$?
check "to 192.0.2.10 without a pin: refused" test "$rc" = 1 -a -n "$(grep 'refusing to send' <<< "$out")"
wrong="SHA256:$(printf '00:%.0s' $(seq 1 31))00"
out=$(in_ns "$VSSM_BIN" bootstrap --url https://192.0.2.10:8080 --key "$D/rpc-key.pem" --fingerprint "$wrong" 2>&1); rc=$?
expect_eq "with a wrong pin: fails" 1 "$rc"
check "... naming both fingerprints" grep -q "the server's certificate has fingerprint $fp, not the pinned $wrong" <<< "$out"
check "... and the node is still waiting for its key" bash -c "[ \"\$(ip netns exec '$NS' curl -s http://192.0.2.10:8081/REST/v1/healthcheck)\" = bootstrapping ]"
check "with the right pin: bootstrapped" in_ns "$VSSM_BIN" bootstrap --url https://192.0.2.10:8080 --key "$D/rpc-key.pem" --fingerprint "$fp"
check "... the node runs" in_ns "$VSSM_BIN" health --url http://192.0.2.10:8081 --wait 10
check "... and serves mTLS under its RPC certificate" bash -c "ip netns exec '$NS' curl -sf --cacert '$D/ca.pem' --resolve VSSM:8080:192.0.2.10 \
    --cert '$D/client-cert.pem' --key '$D/client-key.pem' https://VSSM:8080/REST/v1/ext/capabilities -d '{}' | grep -q features"

kill "$NODE"; wait "$NODE" 2>/dev/null; NODE=""
finish
