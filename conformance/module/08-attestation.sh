#!/usr/bin/env bash
# Key attestation (issue 22, item 2): a key generated in the service gets a statement (an X.509
# certificate for its public key, signed by the attestation key, claims in an extension) that plain
# `openssl verify` and `vssm verify-attestation` check against the attestation CA `vssm init`
# made; an imported key gets none; with "attestationObjects" the module shows each statement as a
# certificate object with the key's CKA_ID (pkcs11-tool reads it, openssl verifies it).
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
CA="$VSSM_DEV_DIR/attestation-ca.pem"
check "vssm init made the attestation CA" openssl x509 -in "$CA" -noout
"$VSSM_BIN" admin generate-key att-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key att-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
for k in att-ec att-rsa; do
    out=$("$VSSM_BIN" admin attest "$k" --out "$W/$k.pem" 2>&1)
    check "vssm admin attest $k: claims generated, sensitive, never extractable" \
        grep -q '"generatedInService":true,"sensitive":true,"neverExtractable":true' <<< "$out"
    check "  openssl verify: the statement chains to the attestation CA" \
        openssl verify -CAfile "$CA" -untrusted "$W/$k.pem" "$W/$k.pem"
    check "  vssm verify-attestation accepts it" "$VSSM_BIN" verify-attestation "$W/$k.pem" --ca "$CA"
done
# The statement certifies the key itself: its public key is the one pkcs11-tool reads.
pkcs11-tool --module "$MODULE" -r -y pubkey -a att-ec -o "$W/att-ec.pub.der" >/dev/null 2>&1
check "the statement's public key is the key's" bash -c \
    "cmp <(openssl x509 -in '$W/att-ec.pem' -pubkey -noout | openssl pkey -pubin -outform DER) '$W/att-ec.pub.der'"
# A statement edited after signing, and another deployment's CA, are refused.
sed '2s/A/B/' "$W/att-ec.pem" > "$W/tampered.pem"
check "a tampered statement is refused (vssm verify-attestation)" bash -c "! '$VSSM_BIN' verify-attestation '$W/tampered.pem' --ca '$CA' 2>/dev/null"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/other.key" -subj /CN=other -days 1 -out "$W/other-ca.pem" 2>/dev/null
check "another CA does not accept it (openssl verify)" bash -c "! openssl verify -CAfile '$W/other-ca.pem' -untrusted '$W/att-ec.pem' '$W/att-ec.pem' 2>/dev/null"
# An imported key is never attested as generated here.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/imported.pem" 2>/dev/null
"$VSSM_BIN" admin inject-key att-imported --type ASYMMETRIC --file "$W/imported.pem" >/dev/null 2>&1
out=$("$VSSM_BIN" admin attest att-imported --out "$W/imported-att.pem" 2>&1); rc=$?
check "an imported key is refused: $(head -1 <<< "$out")" bash -c "[ $rc -ne 0 ] && grep -q 'not generated in this service' <<< '$out'"

# The module: statements as certificate objects, only when the slot asks for them.
pkcs11-tool --module "$MODULE" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label att-p11 --id 5a5a >/dev/null 2>&1
check "without attestationObjects no certificate objects are listed" bash -c \
    "! pkcs11-tool --module '$MODULE' -O --type cert 2>/dev/null | grep -q 'attestation:'"
jq '.slots[0].attestationObjects = true' "$VSSM_PKCS11_CONFIG" > "$W/pkcs11-attest.json"
export VSSM_PKCS11_CONFIG="$W/pkcs11-attest.json"
objs=$(pkcs11-tool --module "$MODULE" -O --type cert 2>&1)
check "with attestationObjects each generated key's statement is a certificate object" \
    bash -c "grep -q 'label: *attestation:att-ec' <<< '$objs' && grep -q 'label: *attestation:att-p11' <<< '$objs'"
check "  ... but not the imported key's" bash -c "! grep -q 'attestation:att-imported' <<< '$objs'"
check "  ... with the key's CKA_ID (a key made through PKCS#11: 5a5a)" \
    bash -c "grep -A4 'label: *attestation:att-p11' <<< '$objs' | grep -q 'ID: *5a5a'"
pkcs11-tool --module "$MODULE" -r -y cert --label attestation:att-p11 -o "$W/p11.der" >/dev/null 2>&1
openssl x509 -inform DER -in "$W/p11.der" -out "$W/p11.pem" 2>/dev/null
# The attestation key's certificate is the second certificate vssm admin attest wrote.
awk 'n==1{print} /END CERTIFICATE/{n++}' "$W/att-ec.pem" > "$W/attestation-key.pem"
check "  openssl verifies the statement read through PKCS#11" openssl verify -CAfile "$CA" -untrusted "$W/attestation-key.pem" "$W/p11.pem"
check "  ... which names the key" bash -c "openssl x509 -in '$W/p11.pem' -noout -subject | grep -q 'CN *= *att-p11'"
finish
