#!/usr/bin/env bash
# TLS client authentication, inputs that crashed the original, size limits, audit, --compat-only.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
D="$VSSM_DEV_DIR"; W="$D/work"; mkdir -p "$W"
port="${VSSM_URL##*:}"

# --- mutual TLS -----------------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/stranger.key" -out "$W/stranger.pem" \
    -subj /CN=stranger -days 1 -addext extendedKeyUsage=clientAuth 2>/dev/null
check "unknown client certificate fails the TLS handshake" bash -c "! curl -s --resolve 'VSSM:$port:127.0.0.1' --cacert '$VSSM_CA' \
    --cert '$W/stranger.pem' --key '$W/stranger.key' 'https://VSSM:$port/REST/v1/admin/listkeys' -d '{}'"
check "no client certificate fails the TLS handshake" bash -c "! curl -s --resolve 'VSSM:$port:127.0.0.1' --cacert '$VSSM_CA' \
    'https://VSSM:$port/REST/v1/admin/listkeys' -d '{}'"
# A certificate from the trusted client CA but with EKU serverAuth only: Go refused it, so do we.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/srv.key" -subj /CN=server-only -out "$W/srv.csr" 2>/dev/null
printf 'extendedKeyUsage=serverAuth\n' > "$W/srv.ext"
openssl x509 -req -in "$W/srv.csr" -CA "$D/client-ca.pem" -CAkey "$D/client-ca-key.pem" -CAcreateserial -days 1 \
    -extfile "$W/srv.ext" -out "$W/srv.pem" 2>/dev/null
check "client-CA certificate without the clientAuth EKU fails the handshake" bash -c "! curl -s --resolve 'VSSM:$port:127.0.0.1' \
    --cacert '$VSSM_CA' --cert '$W/srv.pem' --key '$W/srv.key' 'https://VSSM:$port/REST/v1/ext/listkeys' -d '{}'"
check "  ... while the same CA's clientAuth certificate works" curl -sf --resolve "VSSM:$port:127.0.0.1" --cacert "$VSSM_CA" \
    --cert "$VSSM_CLIENT_CERT" --key "$VSSM_CLIENT_KEY" "https://VSSM:$port/REST/v1/ext/listkeys" -d '{}'
check "server certificate verifies as VSSM with the dev CA" openssl s_client -connect "127.0.0.1:$port" -servername VSSM \
    -verify_hostname VSSM -verify_return_error -CAfile "$VSSM_CA" -cert "$VSSM_CLIENT_CERT" -key "$VSSM_CLIENT_KEY" </dev/null

# --- the original's process-killing and panicking inputs -------------------------------------------
P="\"adminPassword\":\"$VSSM_ADMIN_PASSWORD\""
api /REST/v1/admin/generatekey "{$P,\"keyName\":\"huge\",\"keyType\":\"SYMMETRIC\",\"keySize\":\"1099511627776\"}" >/dev/null
expect_eq "2^40-byte key request (killed the original) is a 400" 400 "$(last_status)"
api /REST/v1/admin/generatekey "{$P,\"keyName\":\"huge\",\"keyType\":\"MAC\",\"keySize\":\"18446744073709551615\"}" >/dev/null
expect_eq "2^64-1 MAC size (panicked the original) is a 400" 400 "$(last_status)"
api /REST/v1/admin/restorebackup "{$P}" >/dev/null
expect_eq "restore without a backup (nil dereference in the original) is a 400" 400 "$(last_status)"
"$VSSM_BIN" admin generate-key aes --type SYMMETRIC --size 16 >/dev/null
out=$(api /REST/v1/symmetric/decrypt '{"keyName":"aes","algorithm":"AES/GCM/NoPadding","input":"AAAA"}')
expect_eq "short GCM input (panicked the original) is a 400 with a JSON error" 400 "$(last_status)"
check "  ... and says why" grep -q "too short" <<< "$out"
api /REST/v1/asymmetric/sign '' >/dev/null
expect_eq "empty body is a 400 (EOF)" 400 "$(last_status)"
api /REST/v1/asymmetric/sign '{bad json}' >/dev/null
expect_eq "malformed JSON is a 400" 400 "$(last_status)"
head -c $((17 * 1024 * 1024)) /dev/zero | tr '\0' 'A' > "$W/big.json"
status=$(curl -s -o /dev/null -w '%{http_code}' --resolve "VSSM:$port:127.0.0.1" --cacert "$VSSM_CA" --cert "$VSSM_CLIENT_CERT" \
    --key "$VSSM_CLIENT_KEY" "https://VSSM:$port/REST/v1/symmetric/encrypt" --data-binary "@$W/big.json")
expect_eq "17 MiB body is a 413" 413 "$status"
expect_eq "node still healthy after all of that" running "$(curl -s "$VSSM_HEALTH_URL/REST/v1/healthcheck")"
# Wire shapes of the original.
out=$(api /REST/v1/admin/listkeys "{$P,\"keyName\":\"aes\",\"keyType\":\"SYMMETRIC\"}")
check "listkeys entry: int64 as strings, keyLength in bytes" python3 -c '
import json,sys; d=json.loads(sys.argv[1]); k=d["symmetricKey"][0]
assert list(d)==["symmetricKey"] and k["keyLength"]=="16" and isinstance(k["createdAt"],str), d' "$out"

# --- audit -----------------------------------------------------------------------------------------
logs=$("$VSSM_BIN" admin logs)
check "audit line names principal, endpoint, key, namespace and outcome" grep -q 'client="team-a".*endpoint=/REST/v1/symmetric/decrypt key="aes" namespace=default status=400' <<< "$logs"
check "admin password never logged" bash -c "! grep -q '$VSSM_ADMIN_PASSWORD' '$D/serve.log'"
check "ext capabilities listed" bash -c "grep -q '\"features\"' <<< '$(api /REST/v1/ext/capabilities '{}')'"
vssm_dev_stop

# --- --compat-only: exactly the original API -------------------------------------------------------
VSSM_DEV_OPTS=--compat-only source "$CONFORMANCE_DIR/dev-env.sh" "$W/compat" || exit 1
api /REST/v1/ext/capabilities '{}' >/dev/null
expect_eq "compat-only: ext/capabilities is 404 (as on a Go node)" 404 "$(last_status)"
"$VSSM_BIN" admin generate-key ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
api /REST/v1/asymmetric/sign '{"keyName":"ec","algorithm":"SHA256withECDSA","input":"AAAA"}' >/dev/null
expect_eq "compat-only: base sign works" 200 "$(last_status)"
finish
