#!/usr/bin/env bash
# The OpenSSL libp11 engine signs through the module; plain openssl verifies.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
engine_conf "$W/openssl.cnf"
export OPENSSL_CONF="$W/openssl.cnf"
"$VSSM_BIN" admin generate-key tls-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
"$VSSM_BIN" admin generate-key tls-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
printf 'engine data' > "$W/msg"
openssl dgst -sha256 -binary "$W/msg" > "$W/msg.sha256"
for key in tls-rsa tls-ec; do
    check "engine exports the $key public key" openssl pkey -engine pkcs11 -pubin -inform engine -in "pkcs11:object=$key;type=public" -out "$W/$key.pub.pem"
    check "engine signs with $key" openssl pkeyutl -engine pkcs11 -keyform engine -inkey "pkcs11:object=$key;type=private" \
        -sign -in "$W/msg.sha256" -pkeyopt digest:sha256 -out "$W/$key.sig"
    env -u OPENSSL_CONF openssl pkeyutl -verify -pubin -inkey "$W/$key.pub.pem" -in "$W/msg.sha256" -sigfile "$W/$key.sig" -pkeyopt digest:sha256 >/dev/null 2>&1
    check "plain openssl verifies the $key signature" env -u OPENSSL_CONF openssl pkeyutl -verify -pubin -inkey "$W/$key.pub.pem" \
        -in "$W/msg.sha256" -sigfile "$W/$key.sig" -pkeyopt digest:sha256
done
check "engine signs with RSA-PSS" openssl pkeyutl -engine pkcs11 -keyform engine -inkey "pkcs11:object=tls-rsa;type=private" \
    -sign -in "$W/msg.sha256" -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 -out "$W/pss.sig"
check "plain openssl verifies the PSS signature" env -u OPENSSL_CONF openssl pkeyutl -verify -pubin -inkey "$W/tls-rsa.pub.pem" \
    -in "$W/msg.sha256" -sigfile "$W/pss.sig" -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32
# A self-signed root CA through the engine (the offline-root ceremony's first step).
check "openssl req -x509 with the service's EC key" openssl req -new -x509 -engine pkcs11 -keyform engine \
    -key "pkcs11:object=tls-ec;type=private" -subj "/CN=VSSM Test Root" -days 30 -sha256 -out "$W/root.pem"
check "the root certificate verifies (self-signed)" env -u OPENSSL_CONF openssl verify -CAfile "$W/root.pem" "$W/root.pem"
check "  ... with an uncompressed EC point (Java rejects compressed ones)" bash -c \
    "env -u OPENSSL_CONF openssl x509 -in '$W/root.pem' -noout -text | grep -A1 'pub:' | tail -1 | grep -Eq '^ +04:'"
check "the root certificate carries the service's key" bash -c "diff <(env -u OPENSSL_CONF openssl x509 -in '$W/root.pem' -pubkey -noout) '$W/tls-ec.pub.pem'"
finish
