#!/usr/bin/env bash
# An encrypted client key (the user PIN decrypts it: CKF_LOGIN_REQUIRED), and failover from a dead
# endpoint to a live one.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
"$VSSM_BIN" admin generate-key login-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$VSSM_CLIENT_KEY" -out "$W/client-key.enc.pem" -passout pass:key-passphrase
# A port nothing listens on, first: the module must fail over to the live node.
dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat > "$W/pkcs11.json" <<JSON
{"slots": [{"label": "locked", "endpoints": ["https://127.0.0.1:$dead", "$VSSM_URL"],
            "ca": "$VSSM_CA", "clientCert": "$VSSM_CLIENT_CERT", "clientKey": "$W/client-key.enc.pem",
            "connectTimeoutMs": 1000}]}
JSON
export VSSM_PKCS11_CONFIG="$W/pkcs11.json"
P11="pkcs11-tool --module $MODULE"
out=$($P11 -L 2>&1)
check "encrypted client key: token says login required" grep -q "login required" <<< "$out"
out=$($P11 -O --login --pin wrong 2>&1)
check "a wrong PIN cannot decrypt the client key: CKR_PIN_INCORRECT" grep -q "CKR_PIN_INCORRECT" <<< "$out"
out=$($P11 -O --login --pin key-passphrase 2>&1)
check "the right PIN unlocks the token" grep -q "label:      login-ec" <<< "$out"
printf 'locked' > "$W/msg"
$P11 --login --pin key-passphrase -r -y pubkey -a login-ec -o "$W/k.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/k.der" -out "$W/k.pem" 2>/dev/null
$P11 --login --pin key-passphrase -s -m ECDSA-SHA256 -a login-ec -i "$W/msg" -o "$W/sig" --signature-format openssl >/dev/null 2>&1
check "sign after login, with the first endpoint dead (failover), openssl verifies" openssl dgst -sha256 -verify "$W/k.pem" -signature "$W/sig" "$W/msg"
# A missing config is a clear error, not a crash.
out=$(VSSM_PKCS11_CONFIG=/nonexistent.json $P11 -L 2>&1); rc=$?
check "missing config: non-zero exit" test "$rc" -ne 0
check "  ... and the module says which file it looked for" grep -q "no configuration file (looked at /nonexistent.json" <<< "$out"
finish
