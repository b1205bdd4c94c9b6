#!/usr/bin/env bash
# The main job, end to end: start a local key service, create a key in it, sign with it over mTLS,
# verify the signature with plain openssl.
set -eu
source "$(dirname "$0")/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/demo"; mkdir -p "$W"
echo
echo "1. Key service running: $VSSM_URL (health: $("$VSSM_BIN" health))"
"$VSSM_BIN" admin generate-key demo-ec --type ASYMMETRIC --spec EC --size 256
"$VSSM_BIN" admin generate-key demo-rsa --type ASYMMETRIC --spec RSA --size 2048
echo "2. Keys in the service:"
"$VSSM_BIN" admin list-keys | sed 's/^/     /'
printf 'hello from vssm' > "$W/msg"
port="${VSSM_URL##*:}"
call() {
    curl -s --resolve "VSSM:$port:127.0.0.1" --cacert "$VSSM_CA" --cert "$VSSM_CLIENT_CERT" --key "$VSSM_CLIENT_KEY" \
        "https://VSSM:$port$1" -d "$2"
}
for k in demo-ec:SHA256withECDSA demo-rsa:SHA256withRSA; do
    name=${k%%:*}; alg=${k##*:}
    body=$(call /REST/v1/asymmetric/sign "{\"keyName\":\"$name\",\"algorithm\":\"$alg\",\"input\":\"$(base64 -w0 < "$W/msg")\"}")
    echo "3. curl $VSSM_URL/REST/v1/asymmetric/sign ($name, $alg) -> ${body:0:60}..."
    python3 -c 'import json,sys,base64; sys.stdout.buffer.write(base64.b64decode(json.loads(sys.argv[1])["output"]))' "$body" > "$W/$name.sig"
    call /REST/v1/ext/listkeys '{}' | python3 -c 'import json,sys,base64
d=json.load(sys.stdin); k=[k for k in d["keys"] if k["name"]==sys.argv[1]][0]; sys.stdout.buffer.write(base64.b64decode(k["publicKey"]))' "$name" > "$W/$name.spki"
    openssl pkey -pubin -inform DER -in "$W/$name.spki" -out "$W/$name.pub.pem"
    printf '4. openssl dgst -sha256 -verify %s.pub.pem: ' "$name"
    openssl dgst -sha256 -verify "$W/$name.pub.pem" -signature "$W/$name.sig" "$W/msg"
done
echo
echo "The private keys never left the service. (The PKCS#11 module that puts pkcs11-tool and openssl"
echo "directly on these keys is the next milestone: issue 3.)"
