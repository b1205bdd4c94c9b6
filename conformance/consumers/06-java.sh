#!/usr/bin/env bash
# Java (issue 4): SunPKCS11 sees the service's keys as PrivateKeyEntry when a certificate object
# shares the key's CKA_ID (Java ignores keys without one); `keytool -list` shows them, and a small
# Java program signs SHA256withRSA, RSASSA-PSS and SHA256withECDSA through the PKCS11 KeyStore.
# Java's software providers and openssl verify with the certificates' public keys. Then, as CA
# software does (issue 8): `keytool -genkeypair` RSA-2048 and EC P-256 on the token (SunPKCS11 logs
# in because the token says CKF_LOGIN_REQUIRED, generates session keys and copies them to the
# token), `-certreq` verified by `openssl req -verify`, a signature through the keystore verified by
# openssl, and `-delete` leaves no object behind.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
command -v java >/dev/null || { fail "java is not installed (apt-get install default-jdk-headless; make check installs it)"; finish; exit 1; }
engine_conf "$W/openssl.cnf"
make_key() { # label key-type id private-key-URI
    check "key $1 generated through PKCS#11 (CKA_ID $3)" pkcs11-tool --module "$MODULE" --login --pin "$PIN" \
        --keypairgen --key-type "$2" --label "$1" --id "$3"
    env OPENSSL_CONF="$W/openssl.cnf" openssl req -new -x509 -engine pkcs11 -keyform engine -key "$4" \
        -subj "/CN=$1" -days 2 -sha256 -outform DER -out "$W/$1.der" 2>/dev/null
    check "  ... its certificate stored with the same CKA_ID" pkcs11-tool --module "$MODULE" --login --pin "$PIN" \
        --write-object "$W/$1.der" --type cert --id "$3" --label "$1"
}
make_key java-rsa rsa:2048 a1 "pkcs11:id=%a1;type=private;pin-value=$PIN"
make_key java-ec EC:prime256v1 a2 "pkcs11:id=%a2;type=private;pin-value=$PIN"
# A key without a certificate: Java does not list it (documented behaviour of SunPKCS11).
"$VSSM_BIN" admin generate-key java-nocert --type ASYMMETRIC --spec EC --size 256 >/dev/null

cat > "$W/sunpkcs11.cfg" <<CFG
name = vssm
library = $MODULE
slotListIndex = 0
CFG
out=$(keytool -list -keystore NONE -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 \
    -providerArg "$W/sunpkcs11.cfg" -storepass "$PIN" 2>&1)
echo "$out" | grep -E "entries|Entry" | sed 's/^/       /'
check "keytool -list: java-rsa is a PrivateKeyEntry" grep -q "^java-rsa, PrivateKeyEntry" <<< "$out"
check "keytool -list: java-ec is a PrivateKeyEntry" grep -q "^java-ec, PrivateKeyEntry" <<< "$out"
check "keytool -list: the key without a certificate is not listed" bash -c "! grep -q java-nocert <<< '$out'"
fp=$(openssl x509 -inform DER -in "$W/java-ec.der" -noout -fingerprint -sha256 | cut -d= -f2)
check "keytool -list shows java-ec's certificate fingerprint" grep -q "$fp" <<< "$out"

out=$(java "$CONFORMANCE_DIR/consumers/java/Pkcs11Sign.java" "$W/sunpkcs11.cfg" "$PIN" "$W" \
    java-rsa:SHA256withRSA java-rsa:RSASSA-PSS java-ec:SHA256withECDSA 2>&1); rc=$?
echo "$out" | sed 's/^/       /'
expect_eq "the Java program exits 0" "0" "$rc"
check "SHA256withRSA through SunPKCS11 verified by SunRsaSign" grep -q "^verified java-rsa SHA256withRSA with SunRsaSign" <<< "$out"
check "RSASSA-PSS through SunPKCS11 verified by SunRsaSign" grep -q "^verified java-rsa RSASSA-PSS with SunRsaSign" <<< "$out"
check "SHA256withECDSA through SunPKCS11 verified by SunEC" grep -q "^verified java-ec SHA256withECDSA with SunEC" <<< "$out"
openssl x509 -inform DER -in "$W/java-ec.der" -pubkey -noout > "$W/java-ec.pub"
check "openssl verifies the Java ECDSA signature" openssl dgst -sha256 -verify "$W/java-ec.pub" -signature "$W/java-java-ec.sig" "$W/java-data"
# the RSA file holds the last RSA signature written (PSS)
openssl x509 -inform DER -in "$W/java-rsa.der" -pubkey -noout > "$W/java-rsa.pub"
check "openssl verifies the Java RSA-PSS signature" openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
    -verify "$W/java-rsa.pub" -signature "$W/java-java-rsa.sig" "$W/java-data"

# --- keys generated on the token by keytool ---------------------------------------------------------
KT=(-keystore NONE -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg "$W/sunpkcs11.cfg" -storepass "$PIN")
check "token info says CKF_LOGIN_REQUIRED (so SunPKCS11 and NSS log in)" bash -c \
    "pkcs11-tool --module '$MODULE' -T | grep -q 'login required'"
check "keytool -genkeypair RSA-2048 on the token" keytool -genkeypair -alias kt-rsa -keyalg RSA -keysize 2048 \
    -sigalg SHA256withRSA -dname CN=kt-rsa "${KT[@]}"
check "keytool -genkeypair EC P-256 on the token" keytool -genkeypair -alias kt-ec -keyalg EC -groupname secp256r1 \
    -sigalg SHA256withECDSA -dname CN=kt-ec "${KT[@]}"
out=$(keytool -list "${KT[@]}" 2>&1)
check "keytool -list: kt-rsa is a PrivateKeyEntry" grep -q "^kt-rsa, PrivateKeyEntry" <<< "$out"
check "keytool -list: kt-ec is a PrivateKeyEntry" grep -q "^kt-ec, PrivateKeyEntry" <<< "$out"
out=$(pkcs11-tool --module "$MODULE" --login --pin "$PIN" -O 2>&1)
check "the generated private keys are token objects that say CKA_LOCAL (made in the service)" \
    test "$(grep -A6 '^Private Key Object' <<< "$out" | grep -c 'never extractable, local')" -ge 2
# SunPKCS11 asks CKA_PRIVATE=TRUE for the RSA private key: hidden before C_Login, listed after.
ids() { pkcs11-tool --module "$MODULE" "$@" -O --type privkey 2>/dev/null | awk '$1=="ID:" {print $2}'; }
hex_rsa=$(printf kt-rsa | xxd -p)
check "the CKA_PRIVATE=TRUE RSA private key is hidden before C_Login" bash -c "! grep -qx '$hex_rsa' <<< '$(ids)'"
check "  ... and listed after C_Login" grep -qx "$hex_rsa" <<< "$(ids --login --pin "$PIN")"
for a in kt-rsa kt-ec; do
    check "keytool -certreq $a" keytool -certreq -alias "$a" -file "$W/$a.csr" "${KT[@]}"
    check "  ... openssl req -verify accepts its self-signature" bash -c "openssl req -in '$W/$a.csr' -noout -verify 2>&1 | grep -q 'verify OK'"
    check "  ... the request is for CN=$a" bash -c "openssl req -in '$W/$a.csr' -noout -subject | grep -q 'CN *= *$a'"
    keytool -exportcert -alias "$a" -file "$W/$a.der" "${KT[@]}" >/dev/null 2>&1
done
out=$(java "$CONFORMANCE_DIR/consumers/java/Pkcs11Sign.java" "$W/sunpkcs11.cfg" "$PIN" "$W" \
    kt-rsa:SHA256withRSA kt-ec:SHA256withECDSA 2>&1); rc=$?
echo "$out" | sed 's/^/       /'
expect_eq "the Java program signs with the keytool keys (exit 0)" "0" "$rc"
for a in kt-rsa kt-ec; do
    openssl x509 -inform DER -in "$W/$a.der" -pubkey -noout > "$W/$a.pub"
    check "openssl verifies the $a signature made through the keystore" \
        openssl dgst -sha256 -verify "$W/$a.pub" -signature "$W/java-$a.sig" "$W/java-data"
done
for a in kt-rsa kt-ec; do
    check "keytool -delete $a" keytool -delete -alias "$a" "${KT[@]}"
    left=$(pkcs11-tool --module "$MODULE" --login --pin "$PIN" -O 2>/dev/null | grep -c "^ *ID: *$(printf %s "$a" | xxd -p)$")
    expect_eq "  ... no object with CKA_ID '$a' is left" "0" "$left"
done
out=$(keytool -list "${KT[@]}" 2>&1)
check "keytool -list no longer shows kt-rsa or kt-ec" bash -c "! grep -qE '^kt-(rsa|ec),' <<< '$out'"

# --- a second tenant (issue 11): team B's officer generates on its own token with its own PIN ------
KTB=(-keystore NONE -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg "$W/sunpkcs11.cfg" -storepass "$PIN_B")
check "team B: keytool -genkeypair EC P-256 on token team-b with team B's PIN (CKU_USER, role officer)" \
    env VSSM_PKCS11_CONFIG="$VSSM_PKCS11_CONFIG_B" keytool -genkeypair -alias kt-b -keyalg EC -groupname secp256r1 \
    -sigalg SHA256withECDSA -dname CN=kt-b "${KTB[@]}"
out=$(VSSM_PKCS11_CONFIG="$VSSM_PKCS11_CONFIG_B" keytool -list "${KTB[@]}" 2>&1)
check "team B: keytool -list shows kt-b and none of team A's keys" bash -c "grep -q '^kt-b, PrivateKeyEntry' <<< '$out' && ! grep -q '^java-' <<< '$out'"
out=$(keytool -list "${KT[@]}" 2>&1)
check "team A: keytool -list does not show kt-b" bash -c "grep -q '^java-ec, PrivateKeyEntry' <<< '$out' && ! grep -q '^kt-b' <<< '$out'"

finish
