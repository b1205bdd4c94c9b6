#!/usr/bin/env bash
# Operator mistakes get messages a person can act on (issue 19): each row of the issue's table is
# made here, and the message it now gives is asserted (the member, the file and line and column,
# the cause, the next step). The node runs as the service user, the module in real hosts.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap 'vssm_dev_stop; for p in ${PIDS:-}; do kill "$p" 2>/dev/null; done' EXIT
D="$VSSM_DEV_DIR"; W="$D/mistakes"; mkdir -p "$W"
PIDS=""
say() { echo "       -> $(head -c 400 <<< "$1" | tr '\n' ' ')"; }
# serve_fails CONFIG: runs `vssm serve` (as the service user) on a config that must be refused; prints its output.
serve_fails() {
    vssm_service_owns "$D"
    # shellcheck disable=SC2086
    timeout 20 $VSSM_AS "$VSSM_BIN" serve --config "$1" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
        --bootstrap-slave 127.0.0.1:0 "${@:2}" 2>&1
}
edit() { python3 -c "import json,sys; c=json.load(open(sys.argv[1])); exec(sys.argv[3]); json.dump(c, open(sys.argv[2],'w'), indent=2)" "$@"; }

echo "-- config.json"
edit "$D/config.json" "$W/statedir.json" 'c["statedir"] = c.pop("stateDir")'
out=$(serve_fails "$W/statedir.json"); rc=$?; say "$out"
check "\"statedir\" for \"stateDir\": refused at start, naming the member, its line and the right name" \
    test "$rc" -ne 0 -a -n "$(grep -E "statedir.json:[0-9]+:3: unknown member \"statedir\" \(did you mean \"stateDir\"\?\)" <<< "$out")"
edit "$D/config.json" "$W/nostate.json" 'c.pop("stateDir")'
out=$(serve_fails "$W/nostate.json"); rc=$?; say "$out"
check "no stateDir: refused, saying keys would be lost and what to do" \
    test "$rc" -ne 0 -a -n "$(grep 'has no "stateDir": keys made on this node would be lost at its next restart' <<< "$out")"
mkdir -p "$W/mem"
vssm_serve_bg "$W/mem/serve.log" --config "$W/nostate.json" --memory-only --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --ports-file "$W/mem/ports.json"
PIDS="$PIDS $VSSM_SERVE_PID"
for _ in $(seq 1 100); do grep -q 'memory-only' "$W/mem/serve.log" 2>/dev/null && break; sleep 0.1; done
check "... --memory-only starts it, with a warning at every start" grep -q 'keys are kept in memory only' "$W/mem/serve.log"
kill "$VSSM_SERVE_PID" 2>/dev/null
edit "$D/config.json" "$W/limits.json" 'c["limits"] = {"maxBodyBytes": "lots"}'
out=$(serve_fails "$W/limits.json"); say "$out"
check "a limit of the wrong type names it with its line and column" grep -Eq 'limits.json:[0-9]+:5: limits.maxBodyBytes: must be an integer from 1024 to 268435456, not the string "lots"' <<< "$out"
edit "$D/config.json" "$W/bool.json" 'c["compatOnly"] = "true"'
out=$(serve_fails "$W/bool.json"); say "$out"
check "\"true\" as a string is refused" grep -Eq 'bool.json:[0-9]+:3: compatOnly: must be true or false \(without quotes\), not the string "true"' <<< "$out"
sed 's/"rootPassword"/, "rootPassword"/' "$D/config.json" > "$W/typo.json"
out=$(serve_fails "$W/typo.json"); say "$out"
check "a JSON typo: line and column, no Swift text" bash -c "grep -Eq 'typo.json: not valid JSON: line [0-9]+, column [0-9]+: invalid character' <<< '$out' && ! grep -Eq 'badRequest|functionFailed|\\\\\\\\' <<< '$out'"

echo "-- vssm init over a deployment"
out=$("$VSSM_BIN" init "$D" --admin-password x 2>&1); rc=$?; say "$out"
check "vssm init into a directory that holds a deployment is refused, naming the files" \
    test "$rc" -ne 0 -a -n "$(grep "already holds a deployment (.*rpc-key.pem.*$D/state); vssm init does not replace" <<< "$out")"
check "... and rpc-key.pem is untouched" cmp -s "$D/rpc-key.pem" <(cat "$D/rpc-key.pem")
C="$(mktemp -d /tmp/vssm-mistakes.XXXXXX)"; trap 'vssm_dev_stop; for p in ${PIDS:-}; do kill "$p" 2>/dev/null; done; rm -rf "$C"' EXIT
cp "$D"/*.pem "$D/config.json" "$C/"
before=$(sha256sum "$C/rpc-key.pem" | cut -d' ' -f1)
out=$("$VSSM_BIN" init "$C" --admin-password x --new-pki 2>&1 >/dev/null); say "$out"
aside=$(ls -d "$C"/replaced-* 2>/dev/null | head -1)
check "... unless --new-pki: the old files are moved aside (the old RPC key kept there)" \
    test -n "$aside" -a "$(sha256sum "$aside/rpc-key.pem" 2>/dev/null | cut -d' ' -f1)" = "$before" -a -s "$C/rpc-key.pem"
check "... and the new deployment has a new RPC key" test "$(sha256sum "$C/rpc-key.pem" | cut -d' ' -f1)" != "$before"

echo "-- the module's configuration"
# p11 CONFIG: pkcs11-tool -L with that module configuration; prints what the module logged.
p11() { VSSM_PKCS11_CONFIG="$1" pkcs11-tool --module "$MODULE" -L 2>&1; }
edit "$VSSM_PKCS11_CONFIG" "$W/m-typo.json" 's=c["slots"][0]; s["userPinIsAdminpassword"]=s.pop("userPinIsAdminPassword")'
out=$(p11 "$W/m-typo.json"); say "$out"
check "module: userPinIsAdminpassword names the member, line, column and the right name" \
    grep -Eq 'm-typo.json:[0-9]+:[0-9]+: unknown member "userPinIsAdminpassword" in slots\[0\] \(did you mean "userPinIsAdminPassword"\?\)' <<< "$out"
edit "$VSSM_PKCS11_CONFIG" "$W/m-str.json" 'c["slots"][0]["userPinIsAdminPassword"]="true"'
out=$(p11 "$W/m-str.json"); say "$out"
check "module: \"true\" as a string is refused" grep -q 'slots\[0\].userPinIsAdminPassword: must be true or false (without quotes), not the string "true"' <<< "$out"
edit "$VSSM_PKCS11_CONFIG" "$W/m-ms.json" 'c["slots"][0]["requestTimeoutMS"]=5000'
out=$(p11 "$W/m-ms.json"); say "$out"
check "module: requestTimeoutMS -> requestTimeoutMs" grep -q 'unknown member "requestTimeoutMS" in slots\[0\] (did you mean "requestTimeoutMs"?)' <<< "$out"
edit "$VSSM_PKCS11_CONFIG" "$W/m-log.json" 'c["logLevel"]="debug"'
out=$(p11 "$W/m-log.json"); say "$out"
check "module: a top-level logLevel is refused (the member is \"log\")" grep -q 'unknown member "logLevel"' <<< "$out"
printf '{"slots": [{"label": "x",,}]}' > "$W/m-json.json"
out=$(p11 "$W/m-json.json"); say "$out"
check "module: a JSON typo says line and column, no Swift text" bash -c "grep -q 'm-json.json: not valid JSON: line 1, column 26: invalid character' <<< '$out' && ! grep -q 'functionFailed' <<< '$out'"
finish
