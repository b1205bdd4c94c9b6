#!/usr/bin/env bash
# Signatures made by the key service verify with the openssl CLI; backups decrypt with openssl.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"

"$VSSM_BIN" admin generate-key rsa2048 --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
"$VSSM_BIN" admin generate-key ec256 --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key ec384 --type ASYMMETRIC --spec EC --size 384 >/dev/null
printf 'the quick brown fox' > "$W/msg"
MSG=$(base64 -w0 < "$W/msg")

for key in rsa2048 ec256 ec384; do
    body=$(api /REST/v1/admin/listkeys "{\"adminPassword\":\"$VSSM_ADMIN_PASSWORD\",\"keyName\":\"$key\",\"keyType\":\"ASYMMETRIC\"}")
    python3 -c 'import json,sys,base64; d=json.loads(sys.argv[1]); sys.stdout.buffer.write(base64.b64decode(d["asymmetricKey"][0]["publicKey"]))' "$body" > "$W/$key.spki"
    check "$key public key parses with openssl" openssl pkey -pubin -inform DER -in "$W/$key.spki" -out "$W/$key.pub.pem"
done

for alg in SHA1withRSA:sha1:rsa2048 SHA256withRSA:sha256:rsa2048 SHA384withRSA:sha384:rsa2048 SHA512withRSA:sha512:rsa2048 \
           SHA256withECDSA:sha256:ec256 SHA1withECDSA:sha1:ec384 SHA256withECDSA:sha256:ec384; do
    IFS=: read -r name md key <<< "$alg"
    out=$(api /REST/v1/asymmetric/sign "{\"keyName\":\"$key\",\"algorithm\":\"$name\",\"input\":\"$MSG\"}")
    json_field "$out" output | base64 -d > "$W/sig"
    check "$name on $key verifies with openssl dgst" openssl dgst "-$md" -verify "$W/$key.pub.pem" -signature "$W/sig" "$W/msg"
    # hashed mode: digest computed by openssl
    digest=$(openssl dgst "-$md" -binary "$W/msg" | base64 -w0)
    out=$(api /REST/v1/asymmetric/sign "{\"keyName\":\"$key\",\"algorithm\":\"$name\",\"hashed\":\"$digest\"}")
    json_field "$out" output | base64 -d > "$W/sig2"
    check "$name (hashed) on $key verifies with openssl" openssl dgst "-$md" -verify "$W/$key.pub.pem" -signature "$W/sig2" "$W/msg"
done

# Extension: RSA-PSS and ECDSA with SHA-384, verified by openssl.
out=$(api /REST/v1/ext/sign "{\"keyName\":\"rsa2048\",\"algorithm\":\"SHA256withRSA/PSS\",\"input\":\"$MSG\"}")
json_field "$out" output | base64 -d > "$W/pss"
check "ext RSA-PSS verifies with openssl (saltlen 32)" openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
    -verify "$W/rsa2048.pub.pem" -signature "$W/pss" "$W/msg"
out=$(api /REST/v1/ext/sign "{\"keyName\":\"ec384\",\"algorithm\":\"SHA384withECDSA\",\"input\":\"$MSG\"}")
json_field "$out" output | base64 -d > "$W/ec384sig"
check "ext SHA384withECDSA verifies with openssl" openssl dgst -sha384 -verify "$W/ec384.pub.pem" -signature "$W/ec384sig" "$W/msg"

# RSA encryption by openssl, decryption by the service (PKCS#1 v1.5 and OAEP-SHA256 with MGF1-SHA256).
openssl pkeyutl -encrypt -pubin -inkey "$W/rsa2048.pub.pem" -in "$W/msg" -out "$W/ct1"
out=$(api /REST/v1/asymmetric/decrypt "{\"keyName\":\"rsa2048\",\"algorithm\":\"RSA\",\"input\":\"$(base64 -w0 < "$W/ct1")\"}")
expect_eq "PKCS#1 v1.5 ciphertext from openssl decrypts" "$MSG" "$(json_field "$out" output)"
openssl pkeyutl -encrypt -pubin -inkey "$W/rsa2048.pub.pem" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
    -pkeyopt rsa_mgf1_md:sha256 -in "$W/msg" -out "$W/ct2"
out=$(api /REST/v1/asymmetric/decrypt "{\"keyName\":\"rsa2048\",\"algorithm\":\"RSA-OAEP/SHA256\",\"input\":\"$(base64 -w0 < "$W/ct2")\"}")
expect_eq "OAEP-SHA256 ciphertext from openssl decrypts" "$MSG" "$(json_field "$out" output)"

# Backup: the encryption key unwraps with the RPC private key using openssl (format check).
"$VSSM_BIN" admin backup --out "$W/backup.json" >/dev/null
python3 -c 'import json,sys,base64; d=json.load(open(sys.argv[1]))["backup"]; sys.stdout.buffer.write(base64.b64decode(d["encryptionKey"]))' "$W/backup.json" > "$W/ek"
check "backup encryptionKey is RSA-OAEP(SHA-256) to the RPC key" openssl pkeyutl -decrypt -inkey "$VSSM_DEV_DIR/rpc-key.pem" \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$W/ek" -out "$W/dk"
expect_eq "backup data key is 32 bytes" 32 "$(stat -c %s "$W/dk" 2>/dev/null)"

# Health answers as the original.
expect_eq "healthcheck body" running "$(curl -s "$VSSM_HEALTH_URL/REST/v1/healthcheck")"

# Run as users run it (issue 18): the node is an unprivileged user's process, and no accepted
# connection failed its setup (a socket option that needs a privilege reset every connection).
if [ "$(id -u)" -eq 0 ]; then
    check "the node runs as an unprivileged user ($(ps -o user= -p "$VSSM_PID"))" test "$(ps -o uid= -p "$VSSM_PID" | tr -d ' ')" -ne 0
    check "... without capabilities" bash -c "grep -q '^CapEff:[[:space:]]*0*\$' /proc/$VSSM_PID/status"
fi
check "no connection was closed while it was set up (serve.log)" bash -c "! grep -q 'closed while it was set up' '$VSSM_DEV_DIR/serve.log'"
finish
