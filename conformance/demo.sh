#!/usr/bin/env bash
# The main job, end to end: start a local key service, create a key in it through PKCS#11, sign
# with pkcs11-tool and with openssl through the module, verify both signatures with plain openssl.
set -eu
source "$(dirname "$0")/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/demo"; mkdir -p "$W"
P11="pkcs11-tool --module $MODULE"
echo
echo "1. Key service: $VSSM_URL ($("$VSSM_BIN" health)); module: $MODULE"
echo "   config: $VSSM_PKCS11_CONFIG"
echo
echo "2. pkcs11-tool --keypairgen --key-type EC:prime256v1 --label demo-ec (the key is generated inside the service)"
$P11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label demo-ec --id de40 2>/dev/null | sed 's/^/     /'
echo "   the service's own listing:"
"$VSSM_BIN" admin list-keys | sed 's/^/     /'
printf 'hello from vssm-pkcs11' > "$W/msg"
$P11 -r -y pubkey -d de40 -o "$W/demo-ec.der" 2>/dev/null
openssl pkey -pubin -inform DER -in "$W/demo-ec.der" -out "$W/demo-ec.pub.pem"
echo
echo "3. pkcs11-tool --login --sign -m ECDSA-SHA256 (pkcs11-tool made the key CKA_PRIVATE), verified by openssl:"
$P11 --login --pin "$PIN" -s -m ECDSA-SHA256 -d de40 -i "$W/msg" -o "$W/p11.sig" --signature-format openssl 2>/dev/null
printf '     '; openssl dgst -sha256 -verify "$W/demo-ec.pub.pem" -signature "$W/p11.sig" "$W/msg"
echo
echo "4. openssl through the module (libp11 engine, key URI pkcs11:object=demo-ec), verified by plain openssl:"
engine_cnf="$W/openssl.cnf"
engine=$(ls /usr/lib/*/engines-3/pkcs11.so | head -1)
printf 'openssl_conf = init\n[init]\nengines = e\n[e]\npkcs11 = p\n[p]\nengine_id = pkcs11\ndynamic_path = %s\nMODULE_PATH = %s\ninit = 0\n' "$engine" "$MODULE" > "$engine_cnf"
OPENSSL_CONF="$engine_cnf" openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "pkcs11:object=demo-ec;type=private;pin-value=$PIN" \
    -out "$W/engine.sig" "$W/msg" 2>/dev/null
printf '     '; openssl dgst -sha256 -verify "$W/demo-ec.pub.pem" -signature "$W/engine.sig" "$W/msg"
echo
echo "The private key never left the service: pkcs11-tool shows it as"
$P11 --login --pin "$PIN" -O -y privkey -d de40 2>/dev/null | sed 's/^/     /'
