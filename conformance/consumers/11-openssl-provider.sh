#!/usr/bin/env bash
# The OpenSSL 3 provider (pkcs11-provider, Debian bookworm-backports) with NO quirks configured
# (issue 22, item 3): every peer needs `pkcs11-module-quirks = no-operation-state`; this module
# hands out digest and signature states, so the provider duplicates contexts through
# C_GetOperationState / C_SetOperationState. Signatures, a CSR, a self-signed certificate and an
# `s_server` TLS key through pkcs11: URIs, each checked by OpenSSL without the provider; the
# provider's own log shows the state calls made and none refused. A C host saves a half-done
# SHA-256 digest and an ECDSA signature in one session and finishes them in another.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; vssm_dev_stop; }
trap cleanup EXIT
"$VSSM_BIN" admin generate-key prov-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key prov-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null

# The C host: state moved between sessions, results checked by OpenSSL and `cryptography`.
check "compile the C operation-state host" cc -Wall -Werror -I "$REPO_ROOT/include" -o "$W/opstate" \
    "$CONFORMANCE_DIR/module/opstate.c" -ldl -lcrypto
out=$("$W/opstate" "$MODULE" "$PIN" prov-ec "$W/msg.bin" "$W/sig.raw" 2>&1); rc=$?
echo "$out" | sed 's/^/       /'
expect_eq "C host: digest and signature states move between sessions" 0 "$rc"
check "  a SHA-256 digest finished in another session equals OpenSSL's single pass" \
    grep -q "equal to OpenSSL's single pass" <<< "$out"
pkcs11-tool --module "$MODULE" -r -y pubkey -a prov-ec -o "$W/ec.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/ec.der" -out "$W/ec.pem" 2>/dev/null
check "  the ECDSA signature finished in another session verifies (cryptography)" python3 - "$W/ec.pem" "$W/msg.bin" "$W/sig.raw" <<'EOF'
import sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
key = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
raw = open(sys.argv[3], "rb").read()
r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
key.verify(utils.encode_dss_signature(r, s), open(sys.argv[2], "rb").read(), ec.ECDSA(hashes.SHA256()))
EOF

PROV=$(ls /usr/lib/*/ossl-modules/pkcs11.so 2>/dev/null | head -1)
if [ -z "$PROV" ]; then
    fail "pkcs11-provider is not installed (scripts/install-deps.sh installs it from bookworm-backports)"
    finish
fi
# No `pkcs11-module-quirks` line: the provider's defaults, as for a token that implements it all.
cat > "$W/openssl-pkcs11.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
module = $PROV
pkcs11-module-path = $MODULE
pkcs11-module-token-pin = $PIN
activate = 1
EOF
LOG="$W/provider.log"
: > "$LOG"
withp() { OPENSSL_CONF="$W/openssl-pkcs11.cnf" PKCS11_PROVIDER_DEBUG="file:$LOG,level:1" "$@"; }
EC="pkcs11:object=prov-ec;type=private"
RSA="pkcs11:object=prov-rsa;type=private"
printf 'signed through the OpenSSL 3 provider' > "$W/m"

check "provider: the EC public key through a pkcs11: URI" withp openssl pkey -in "pkcs11:object=prov-ec;type=public" -pubin -pubout -out "$W/ec2.pem"
check "  ... equals the key pkcs11-tool exported" cmp "$W/ec.pem" "$W/ec2.pem"
check "provider: ECDSA-SHA256 signature (openssl dgst)" withp openssl dgst -sha256 -sign "$EC" -out "$W/m.ecsig" "$W/m"
check "  verified by OpenSSL without the provider" openssl dgst -sha256 -verify "$W/ec.pem" -signature "$W/m.ecsig" "$W/m"
pkcs11-tool --module "$MODULE" -r -y pubkey -a prov-rsa -o "$W/rsa.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/rsa.der" -out "$W/rsa.pem" 2>/dev/null
check "provider: RSA-PSS SHA-384 signature" withp openssl dgst -sha384 -sign "$RSA" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:48 -out "$W/m.psssig" "$W/m"
check "  verified by OpenSSL without the provider" openssl dgst -sha384 -verify "$W/rsa.pem" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:48 -signature "$W/m.psssig" "$W/m"
check "provider: a CSR signed by the EC key" withp openssl req -new -key "$EC" -subj "/CN=provider-csr" -out "$W/csr.pem"
check "  the CSR's signature verifies without the provider" openssl req -in "$W/csr.pem" -verify -noout
check "  ... and carries the key's public half" bash -c "openssl req -in '$W/csr.pem' -pubkey -noout | cmp - '$W/ec.pem'"
check "provider: a self-signed certificate (openssl req -x509)" withp openssl req -new -x509 -key "$EC" -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -days 2 -out "$W/tls.pem"
check "  verified without the provider" openssl verify -CAfile "$W/tls.pem" "$W/tls.pem"

# TLS: s_server's key lives in the service; s_client (no provider) trusts the certificate.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
withp openssl s_server -accept "127.0.0.1:$port" -key "$EC" -cert "$W/tls.pem" -www -naccept 4 >"$W/s_server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
for v in -tls1_3 -tls1_2; do
    out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$port" $v -CAfile "$W/tls.pem" \
        -verify_return_error -servername 127.0.0.1 2>&1)
    check "provider: s_server with the service's key: $v handshake verified by s_client" grep -q "Verify return code: 0 (ok)" <<< "$out"
done
kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""

# No quirks were needed: the provider moved states through the module and none was refused.
sets=$(grep -c "Calling C_SetOperationState" "$LOG")
gets=$(grep -c "Calling C_GetOperationState" "$LOG")
echo "       provider log: $gets C_GetOperationState, $sets C_SetOperationState calls"
check "the provider duplicated contexts through C_Get/SetOperationState" test "$sets" -gt 0
check "  ... and the module refused none of those calls" bash -c "! grep -q 'returned by C_[GS]etOperationState' '$LOG'"
check "  ... with no quirks configured" bash -c "! grep -qi 'quirks' '$W/openssl-pkcs11.cnf'"
finish
