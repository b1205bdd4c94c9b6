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
# module_mistake NAME EDIT PATTERN DESCRIPTION: the module's configuration with EDIT (python on c)
# applied, loaded by pkcs11-tool -L; what the module says must match PATTERN (grep -E).
module_mistake() {
    edit "$VSSM_PKCS11_CONFIG" "$W/$1.json" "$2"
    local o; o=$(p11 "$W/$1.json"); say "$o"
    check "$4" grep -Eq "$3" <<< "$o"
}
module_mistake m-typo 's=c["slots"][0]; s["userPinIsAdminpassword"]=s.pop("userPinIsAdminPassword")' \
    'm-typo.json:[0-9]+:[0-9]+: unknown member "userPinIsAdminpassword" in slots\[0\] \(did you mean "userPinIsAdminPassword"\?\)' \
    "module: userPinIsAdminpassword names the member, line, column and the right name"
module_mistake m-str 'c["slots"][0]["userPinIsAdminPassword"]="true"' \
    'slots\[0\].userPinIsAdminPassword: must be true or false \(without quotes\), not the string "true"' "module: \"true\" as a string is refused"
module_mistake m-ms 'c["slots"][0]["requestTimeoutMS"]=5000' \
    'unknown member "requestTimeoutMS" in slots\[0\] \(did you mean "requestTimeoutMs"\?\)' "module: requestTimeoutMS -> requestTimeoutMs"
module_mistake m-log 'c["logLevel"]="debug"' 'unknown member "logLevel"' "module: a top-level logLevel is refused (the member is \"log\")"
printf '{"slots": [{"label": "x",,}]}' > "$W/m-json.json"
out=$(p11 "$W/m-json.json"); say "$out"
check "module: a JSON typo says line and column, no Swift text" bash -c "grep -q 'm-json.json: not valid JSON: line 1, column 26: invalid character' <<< '$out' && ! grep -q 'functionFailed' <<< '$out'"

echo "-- TLS: the client's certificate, the CA, the name, a node waiting for bootstrap"
python3 - "$D" "$W" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d, w = sys.argv[1], sys.argv[2]
ca = x509.load_pem_x509_certificate(open(d + "/client-ca.pem", "rb").read())
cakey = serialization.load_pem_private_key(open(d + "/client-ca-key.pem", "rb").read(), None)
key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired-client")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=40)).not_valid_after(now - datetime.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(cakey, hashes.SHA256()))
open(w + "/expired-cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(w + "/expired-key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
PY
# objs CONFIG: pkcs11-tool -O (a listing: the first call that reaches the service); module log and tool output.
objs() { VSSM_PKCS11_CONFIG="$1" timeout 60 pkcs11-tool --module "$MODULE" -O 2>&1; }
edit "$VSSM_PKCS11_CONFIG" "$W/t-expired.json" "s=c['slots'][0]; s['clientCert']='$W/expired-cert.pem'; s['clientKey']='$W/expired-key.pem'"
out=$(objs "$W/t-expired.json"); say "$out"
check "expired client certificate: the module warns at C_Initialize" grep -q "warning: slot vssm-dev: the client certificate $W/expired-cert.pem (CN=expired-client) expired 2 day(s) ago" <<< "$out"
check "... and says the service refused it because it expired" \
    grep -q "the service refused this client's certificate: it has expired (TLS alert \"certificate expired\")" <<< "$out"
check "... (not 'SSL error 1')" test -z "$(grep 'SSL error' <<< "$out")"
for _ in $(seq 1 30); do grep -q 'TLS handshake with .* refused' "$D/serve.log" && break; sleep 0.1; done
check "... the service logs the refused handshake with its reason (stderr)" \
    grep -q "api listener: TLS handshake with 127.0.0.1:[0-9]* refused: the client's certificate did not verify against clientTrustStore" "$D/serve.log"
"$VSSM_BIN" init "$C/other" --admin-password x >/dev/null 2>&1
edit "$VSSM_PKCS11_CONFIG" "$W/t-foreign.json" "s=c['slots'][0]; s['clientCert']='$C/other/client-cert.pem'; s['clientKey']='$C/other/client-key.pem'"
out=$(objs "$W/t-foreign.json"); say "$out"
check "another deployment's client certificate: refused, 'not issued by a CA in the service's clientTrustStore'" \
    grep -q "refused this client's certificate (TLS alert \"[a-z ]*\"): it is not issued by a CA in the service's clientTrustStore" <<< "$out"
edit "$VSSM_PKCS11_CONFIG" "$W/t-ca.json" "c['slots'][0]['ca']='$C/other/ca.pem'"
out=$(objs "$W/t-ca.json"); say "$out"
check "wrong CA file: names the CA file and what the server presented" \
    grep -q "the server certificate (subject CN=VSSM; names DNS:VSSM) does not verify against the CA file $C/other/ca.pem" <<< "$out"
edit "$VSSM_PKCS11_CONFIG" "$W/t-name.json" "c['slots'][0]['serverName']='vssm.example.net'"
out=$(objs "$W/t-name.json"); say "$out"
check "wrong serverName: expected and presented names" \
    grep -q 'the server certificate does not carry the name "vssm.example.net" (serverName) but subject CN=VSSM; names DNS:VSSM' <<< "$out"
mkdir -p "$W/boot"
vssm_serve_bg "$W/boot/serve.log" --config "$W/nostate.json" --memory-only --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --ports-file "$W/boot/ports.json"
PIDS="$PIDS $VSSM_SERVE_PID"
for _ in $(seq 1 100); do [ -s "$W/boot/ports.json" ] && break; sleep 0.1; done
bport=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/boot/ports.json")
edit "$VSSM_PKCS11_CONFIG" "$W/t-boot.json" "c['slots'][0]['endpoints']=['https://127.0.0.1:$bport']"
out=$(objs "$W/t-boot.json"); say "$out"
check "a node still waiting for bootstrap: says so (not 'self-signed certificate')" \
    grep -q 'the node is waiting for `vssm bootstrap`' <<< "$out"

echo "-- PINs, backups, ports, logs, faults"
for i in 1 2 3 4; do out=$(pkcs11-tool --module "$MODULE" --login --pin "wrong-$i" -O 2>&1); done; say "$out"
check "the 4th wrong PIN: CKR_PIN_LOCKED with the reason at the default log level" \
    grep -q "C_Login failed with CKR_PIN_LOCKED (0xa4): Too many wrong passwords or PINs from this client certificate; try again in [0-9]* s" <<< "$out"
sleep 2
"$VSSM_BIN" admin backup --out "$W/backup.json" >/dev/null
oapi=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p "$C/other/state"; vssm_service_owns "$C"; chmod 755 "$C"
vssm_serve_bg "$W/other.log" --config "$C/other/config.json" --api "127.0.0.1:$oapi" --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --bootstrap-key "$C/other/rpc-key.pem"
PIDS="$PIDS $VSSM_SERVE_PID"
for _ in $(seq 1 100); do grep -q 'Bootstrap' "$W/other.log" 2>/dev/null && curl -sk "https://127.0.0.1:$oapi" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
out=$(VSSM_URL="https://127.0.0.1:$oapi" "$VSSM_BIN" admin restore --dir "$C/other" --password x "$W/backup.json" 2>&1); say "$out"
mine=$(openssl x509 -in "$D/rpc-cert.pem" -outform DER | sha256sum | cut -c1-4 | tr a-f A-F)
check "a backup restored into another deployment: 'encrypted to another deployment's RPC key' with both fingerprints" \
    grep -q "This backup is encrypted to another deployment's RPC key (RPC certificate SHA256:${mine:0:2}:${mine:2:2}:.*; this node's is SHA256:" <<< "$out"
out=$(serve_fails "$D/config.json" --state-dir "$W/port-state" --api "127.0.0.1:${VSSM_URL##*:}"); say "$out"
check "port in use: the listener, the address and what to change" \
    grep -q "cannot listen on 127.0.0.1:${VSSM_URL##*:} (api listener): the address is in use (another vssm, or another program, has this port); change listen.api in the configuration or pass --api HOST:PORT" <<< "$out"
out=$(VSSM_PKCS11_LOG=verbose pkcs11-tool --module "$MODULE" -L 2>&1); say "$out"
check "VSSM_PKCS11_LOG=verbose: a warning, not silence" grep -q 'warning: VSSM_PKCS11_LOG=verbose: "verbose" is not error, warn, info or debug; using error' <<< "$out"
out=$(VSSM_PKCS11_LOG=warn:/proc/nope/log pkcs11-tool --module "$MODULE" -L 2>&1); say "$out"
check "an unwritable log file: a warning naming it" grep -q 'warning: cannot open the log file /proc/nope/log: .*; logging to standard error' <<< "$out"
edit "$VSSM_PKCS11_CONFIG" "$W/m-logfile.json" "c['log']={'level': 'info', 'file': '$W/module.log'}"
VSSM_PKCS11_CONFIG="$W/m-logfile.json" pkcs11-tool --module "$MODULE" -L >/dev/null 2>&1
check "the module's \"log\" member: level and file, lines with timestamps" \
    grep -Eq '^20[0-9-]+T[0-9:]+Z vssm-pkcs11\[[0-9]+\] info: initialized' "$W/module.log"
# A fault of the service: its state directory taken away from the service user; the key is refused
# with 500 and the cause is logged on standard error.
state=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stateDir"])' "$D/config.json")
chmod 0500 "$state"
: > "$W/stderr-mark"; lines=$(wc -l < "$D/serve.log")
out=$("$VSSM_BIN" admin generate-key fault-key --type ASYMMETRIC --spec EC --size 256 2>&1); say "$out"
chmod 0700 "$state"
check "an HTTP 500 is logged with its cause (the state file could not be written)" \
    bash -c "tail -n +$((lines + 1)) '$D/serve.log' | grep -q 'answered 500 to .*: .*Permission denied'"

echo "-- vssm doctor"
out=$("$VSSM_BIN" doctor --config "$VSSM_PKCS11_CONFIG" 2>&1); rc=$?
echo "$out" | sed 's/^/       doctor: /'
check "vssm doctor on the right configuration: every line OK or INFO, exit 0" \
    test "$rc" = 0 -a -z "$(grep -vE '^(OK|INFO) |^all checks passed$' <<< "$out")"
# doctor_names CONFIG PATTERN: doctor fails on CONFIG and its FAIL line matches PATTERN.
doctor_names() {
    local o; o=$("$VSSM_BIN" doctor --config "$1" 2>&1); local r=$?
    [ "$r" = 1 ] && grep -A1 '^FAIL' <<< "$o" | grep -q "$2" || { echo "$o"; return 1; }
}
check "doctor: an expired client certificate" doctor_names "$W/t-expired.json" "expired 2 day(s) ago"
check "doctor: another deployment's client certificate" doctor_names "$W/t-foreign.json" "not issued by a CA in the service's clientTrustStore"
check "doctor: the wrong CA file" doctor_names "$W/t-ca.json" "does not verify against the CA file $C/other/ca.pem"
check "doctor: the wrong serverName" doctor_names "$W/t-name.json" 'set "serverName" to a name the certificate carries'
check "doctor: a node waiting for bootstrap" doctor_names "$W/t-boot.json" "bootstrap the node: vssm bootstrap"
check "doctor: a misspelled member" doctor_names "$W/m-typo.json" 'did you mean "userPinIsAdminPassword"'
edit "$VSSM_PKCS11_CONFIG" "$W/d-key.json" "c['slots'][0]['clientKey']='$C/other/client-key.pem'"
check "doctor: a key that is not the certificate's" doctor_names "$W/d-key.json" "is not the key of"
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
edit "$VSSM_PKCS11_CONFIG" "$W/d-port.json" "c['slots'][0]['endpoints']=['https://127.0.0.1:$closed']"
check "doctor: nothing listening at the endpoint" doctor_names "$W/d-port.json" "TCP connection failed: Connection refused"
edit "$VSSM_PKCS11_CONFIG" "$W/d-dns.json" "c['slots'][0]['endpoints']=['https://vssm-node.invalid:8080']"
check "doctor: a name that does not resolve" doctor_names "$W/d-dns.json" "cannot resolve vssm-node.invalid"

echo "-- vssm serve --log-format json"
mkdir -p "$W/json"
cp "$W/nostate.json" "$W/json/config.json"
vssm_service_owns "$D"
# shellcheck disable=SC2086
$VSSM_AS "$VSSM_BIN" serve --config "$W/json/config.json" --memory-only --log-format json --bootstrap-key "$D/rpc-key.pem" \
    --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 --ports-file "$W/json/ports.json" \
    >"$W/json/out.log" 2>"$W/json/err.log" &
PIDS="$PIDS $!"
for _ in $(seq 1 100); do [ -s "$W/json/ports.json" ] && break; sleep 0.1; done
jport=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/json/ports.json")
VSSM_URL="https://127.0.0.1:$jport" "$VSSM_BIN" admin list-keys >/dev/null 2>&1
VSSM_URL="https://127.0.0.1:$jport" "$VSSM_BIN" admin list-keys --password wrong >/dev/null 2>&1
printf 'GET / HTTP/1.1\r\n\r\n' | timeout 2 bash -c "cat > /dev/tcp/127.0.0.1/$jport" 2>/dev/null
sleep 0.5
check "every line of standard output and error is a JSON object (jq)" bash -c "cat '$W/json/out.log' '$W/json/err.log' | jq -e -s 'length > 3 and all(.[]; type == \"object\" and has(\"time\") and has(\"level\") and has(\"message\"))' >/dev/null"
check "... a request's line carries listener, peer, principal, route, status and duration" bash -c \
    "jq -e -s 'any(.[]; .route == \"/REST/v1/admin/listkeys\" and .listener == \"api\" and (.status | type) == \"number\" and (.duration_ms | type) == \"number\" and (.peer | startswith(\"127.0.0.1:\")) and (.principal | length) > 0)' '$W/json/out.log' >/dev/null"
check "... errors are on standard error (the refused handshake)" bash -c "jq -e -s 'any(.[]; .level == \"error\" and (.message | contains(\"TLS handshake\")))' '$W/json/err.log' >/dev/null"
finish
