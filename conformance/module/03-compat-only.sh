#!/usr/bin/env bash
# Against the original API only (--compat-only): the module offers what the base API can do, and it
# works; what the original cannot keep (CKA_ID, stored objects) fails clearly instead of being lost.
# Then a node that also answers errors the Go way (--go-errors: HTTP 500 + Go's message): the module
# still gives CKR_PIN_INCORRECT for a wrong PIN and CKR_ENCRYPTED_DATA_INVALID for bad ciphertext.
set -u
source "$(dirname "$0")/../lib.sh"
VSSM_DEV_OPTS=--compat-only source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
P11="pkcs11-tool --module $MODULE"
"$VSSM_BIN" admin generate-key base-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key base-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
out=$($P11 -M 2>&1)
check "compat: PSS is not listed" bash -c "! grep -q 'RSA-PKCS-PSS' <<< '$out'"
check "compat: ECDSA-SHA384 is listed (hash computed locally)" grep -q "ECDSA-SHA384" <<< "$out"
# The original lists keys only with the admin password: log in (user PIN = admin password here).
objects=$($P11 -O --login --pin "$PIN" 2>&1)
expect_eq "compat: keys visible after login" 2 "$(grep -c '^Private Key Object' <<< "$objects")"
printf 'compat' > "$W/msg"
$P11 -r -y pubkey -a base-ec -o "$W/ec.der" --login --pin "$PIN" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/ec.der" -out "$W/ec.pem" 2>/dev/null
$P11 -s -m ECDSA-SHA384 -a base-ec -i "$W/msg" -o "$W/sig" --signature-format openssl --login --pin "$PIN" >/dev/null 2>&1
check "compat: ECDSA-SHA384 through the base API verifies" openssl dgst -sha384 -verify "$W/ec.pem" -signature "$W/sig" "$W/msg"
# libp11 (the OpenSSL engine) lists before C_Login, gets nothing, logs in and lists again: the key
# the login made visible must be found (issue 22: it was "object not found" until refreshSeconds).
engine_conf "$W/openssl.cnf"
check "compat: the libp11 engine finds and signs with a key listed only after login" env OPENSSL_CONF="$W/openssl.cnf" \
    openssl pkeyutl -engine pkcs11 -keyform engine -inkey "pkcs11:object=base-ec;type=private;pin-value=$PIN" \
    -sign -in "$W/msg" -out "$W/engine.sig"
out=$($P11 --test --login --pin "$PIN" 2>&1)
check "compat: pkcs11-tool --test --login: No errors" grep -q "No errors" <<< "$out"
check "compat: ... its RSA signature tests ran" grep -q "all 4 signature functions seem to work" <<< "$out"
out=$($P11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label g-id --id a1 2>&1)
check "compat: --keypairgen --id fails (the original cannot keep a CKA_ID) ..." grep -q "CKR_TEMPLATE_INCONSISTENT" <<< "$out"
check "  ... and creates nothing" bash -c "! '$VSSM_BIN' admin list-keys | grep -q g-id"
out=$($P11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label g-derive 2>&1)
check "compat: pkcs11-tool's default CKA_DERIVE=TRUE for EC cannot be kept: CKR_TEMPLATE_INCONSISTENT" grep -q "CKR_TEMPLATE_INCONSISTENT" <<< "$out"
check "compat: --keypairgen --usage-sign (no CKA_ID) works" $P11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --usage-sign --label g-noid
check "  ... the key is in the service" bash -c "'$VSSM_BIN' admin list-keys | grep -q g-noid"
printf 'data' > "$W/data.bin"
out=$($P11 --login --pin "$PIN" --write-object "$W/data.bin" --type data --label d1 2>&1)
check "compat: storing a data object is CKR_TEMPLATE_INCONSISTENT (not a device error)" grep -q "CKR_TEMPLATE_INCONSISTENT" <<< "$out"
objects=$($P11 -O --login --pin "$PIN" 2>&1)
check "compat: CKA_ALLOWED_MECHANISMS lists only what this node does (no PSS)" bash -c "grep -q 'Allowed mechanisms: .*SHA256-RSA-PKCS' <<< '$objects' && ! grep -q 'PSS' <<< '$objects'"
vssm_dev_stop

VSSM_DEV_OPTS="--compat-only --go-errors" source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
"$VSSM_BIN" admin generate-key go-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
out=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$VSSM_CA" --cert "$VSSM_CLIENT_CERT" --key "$VSSM_CLIENT_KEY" \
    -d '{"adminPassword":"wrong","keyName":"x","keyType":"SYMMETRIC","keySize":16}' \
    --connect-to "VSSM:443:${VSSM_URL#https://}" https://VSSM:443/REST/v1/admin/generatekey 2>/dev/null)
expect_eq "go-errors: a wrong admin password is HTTP 500, as the original answers" "500" "$out"
out=$($P11 -O --login --pin wrong 2>&1)
check "go-errors: a wrong PIN is still CKR_PIN_INCORRECT" grep -q "CKR_PIN_INCORRECT" <<< "$out"
head -c 256 /dev/urandom > "$W/garbage"
out=$($P11 --login --pin "$PIN" --decrypt -m RSA-PKCS -a go-rsa -i "$W/garbage" 2>&1)
check "go-errors: a bad RSA ciphertext is CKR_ENCRYPTED_DATA_INVALID (not a device error)" grep -q "CKR_ENCRYPTED_DATA_INVALID" <<< "$out"
finish
