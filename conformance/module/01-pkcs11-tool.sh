#!/usr/bin/env bash
# pkcs11-tool through libvssm-pkcs11.so against a real `vssm serve`; signatures verified by openssl.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
P11="pkcs11-tool --module $MODULE"

"$VSSM_BIN" admin generate-key ec256 --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key ec384 --type ASYMMETRIC --spec EC --size 384 >/dev/null
"$VSSM_BIN" admin generate-key rsa2048 --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
printf 'signed through PKCS#11' > "$W/msg"

out=$($P11 -I 2>&1)
check "-I shows the module" grep -q "Manufacturer     vssm-pkcs11" <<< "$out"
out=$($P11 -L 2>&1)
check "-L shows the token" grep -q "token label        : $TOKEN_LABEL" <<< "$out"
out=$($P11 -M 2>&1)
check "-M lists ECDSA-SHA256" grep -q "ECDSA-SHA256" <<< "$out"
check "-M lists SHA256-RSA-PKCS-PSS" grep -q "SHA256-RSA-PKCS-PSS" <<< "$out"
objects=$($P11 -O 2>&1)
expect_eq "-O shows 3 private keys" 3 "$(grep -c '^Private Key Object' <<< "$objects")"
expect_eq "-O shows 3 public keys" 3 "$(grep -c '^Public Key Object' <<< "$objects")"
check "-O prints no attribute errors" bash -c "! grep -qi 'error\|CKR_' <<< '$objects'"

id_of() { $P11 -O -y privkey 2>/dev/null | awk -v l="$1" '$1=="label:" && $2==l {f=1} f && $1=="ID:" {print $2; exit}'; }
for key in ec256 rsa2048; do
    check "export $key public key" $P11 -r -y pubkey -a "$key" -o "$W/$key.der"
    openssl pkey -pubin -inform DER -in "$W/$key.der" -out "$W/$key.pem" 2>/dev/null
done
# pkcs11-tool 0.23 cannot rebuild P-384 public keys (it fails the same way on SoftHSM): use the engine.
engine_conf "$W/openssl.cnf"
check "export ec384 public key (engine)" env OPENSSL_CONF="$W/openssl.cnf" openssl pkey -engine pkcs11 -pubin -inform engine \
    -in "pkcs11:object=ec384;type=public" -out "$W/ec384.pem"
for spec in ec256:ECDSA-SHA256:sha256 ec384:ECDSA-SHA384:sha384 ec384:ECDSA-SHA512:sha512; do
    IFS=: read -r key mech md <<< "$spec"
    $P11 --login --pin "$PIN" -s -m "$mech" -d "$(id_of "$key")" -i "$W/msg" -o "$W/sig" --signature-format openssl >/dev/null 2>&1
    check "$mech with $key verifies with openssl" openssl dgst "-$md" -verify "$W/$key.pem" -signature "$W/sig" "$W/msg"
done
openssl dgst -sha256 -binary "$W/msg" > "$W/msg.sha256"
$P11 --login --pin "$PIN" -s -m ECDSA -d "$(id_of ec256)" -i "$W/msg.sha256" -o "$W/sig" --signature-format openssl >/dev/null 2>&1
check "raw ECDSA over an openssl digest verifies" openssl dgst -sha256 -verify "$W/ec256.pem" -signature "$W/sig" "$W/msg"
RSA_ID=$(id_of rsa2048)
for spec in SHA256-RSA-PKCS:sha256 SHA384-RSA-PKCS:sha384 SHA512-RSA-PKCS:sha512 SHA1-RSA-PKCS:sha1; do
    IFS=: read -r mech md <<< "$spec"
    $P11 --login --pin "$PIN" -s -m "$mech" -d "$RSA_ID" -i "$W/msg" -o "$W/sig" >/dev/null 2>&1
    check "$mech verifies with openssl" openssl dgst "-$md" -verify "$W/rsa2048.pem" -signature "$W/sig" "$W/msg"
done
for spec in SHA256-RSA-PKCS-PSS:sha256 SHA384-RSA-PKCS-PSS:sha384 SHA512-RSA-PKCS-PSS:sha512; do
    IFS=: read -r mech md <<< "$spec"
    $P11 --login --pin "$PIN" -s -m "$mech" -d "$RSA_ID" -i "$W/msg" -o "$W/sig" >/dev/null 2>&1
    check "$mech verifies with openssl" openssl dgst "-$md" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 \
        -verify "$W/rsa2048.pem" -signature "$W/sig" "$W/msg"
done
$P11 --login --pin "$PIN" -s -m SHA256-RSA-PKCS -d "$RSA_ID" -i "$W/msg" -o "$W/sig" >/dev/null 2>&1
check "the module verifies its own RSA signature (locally)" $P11 --verify -m SHA256-RSA-PKCS -d "$RSA_ID" -i "$W/msg" --signature-file "$W/sig"
out=$($P11 --generate-random 32 2>/dev/null | wc -c)
expect_eq "32 random bytes" 32 "$out"
out=$($P11 --test 2>&1)
check "--test: digests work" grep -q "all 4 digest functions seem to work" <<< "$out"
check "--test: RSA verify works" grep -q "RSA-PKCS: OK" <<< "$out"
finish
