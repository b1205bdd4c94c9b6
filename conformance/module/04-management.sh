#!/usr/bin/env bash
# Key and object management through PKCS#11 (pkcs11-tool), every result checked with openssl.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
P11="pkcs11-tool --module $MODULE"
L="--login --pin $PIN"
printf 'managed through PKCS#11' > "$W/msg"

# --- key pairs generated from standard templates -------------------------------------------------
check "--keypairgen EC:prime256v1 (with --id)" $P11 $L --keypairgen --key-type EC:prime256v1 --label p11-ec --id c0ffee
check "--keypairgen EC:secp384r1" $P11 $L --keypairgen --key-type EC:secp384r1 --label p11-ec384
check "--keypairgen rsa:2048" $P11 $L --keypairgen --key-type rsa:2048 --label p11-rsa
check "the service lists the generated keys" bash -c "'$VSSM_BIN' admin list-keys | grep -q p11-rsa"
$P11 -r -y pubkey -d c0ffee -o "$W/ec.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/ec.der" -out "$W/ec.pem" 2>/dev/null
$P11 $L -s -m ECDSA-SHA256 -d c0ffee -i "$W/msg" -o "$W/sig" --signature-format openssl >/dev/null 2>&1
check "generated EC key (CKA_ID c0ffee) signs, openssl verifies" openssl dgst -sha256 -verify "$W/ec.pem" -signature "$W/sig" "$W/msg"
check "key generation without login is refused" bash -c "! $P11 --keypairgen --key-type EC:prime256v1 --label nope 2>/dev/null"
out=$($P11 --login --pin wrong-pin -O 2>&1)
check "a wrong PIN (the admin password here) is CKR_PIN_INCORRECT" grep -q "CKR_PIN_INCORRECT" <<< "$out"

# --- import: a private key made by openssl signs inside the service -------------------------------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/import.pem" 2>/dev/null
openssl pkey -in "$W/import.pem" -pubout -out "$W/import.pub.pem"
check "--write-object an EC private key" $P11 $L --write-object "$W/import.pem" --type privkey --label imported-ec --id 1e1e
$P11 $L -s -m ECDSA-SHA256 -d 1e1e -i "$W/msg" -o "$W/isig" --signature-format openssl >/dev/null 2>&1
check "imported EC key signs, openssl verifies with the original public key" openssl dgst -sha256 -verify "$W/import.pub.pem" -signature "$W/isig" "$W/msg"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/import-rsa.pem" 2>/dev/null
openssl pkey -in "$W/import-rsa.pem" -pubout -out "$W/import-rsa.pub.pem"
check "--write-object an RSA private key" $P11 $L --write-object "$W/import-rsa.pem" --type privkey --label imported-rsa --id 2e2e
$P11 $L -s -m SHA256-RSA-PKCS -d 2e2e -i "$W/msg" -o "$W/rsig" >/dev/null 2>&1
check "imported RSA key signs, openssl verifies" openssl dgst -sha256 -verify "$W/import-rsa.pub.pem" -signature "$W/rsig" "$W/msg"

# --- RSA decryption of openssl ciphertexts ---------------------------------------------------------
openssl pkeyutl -encrypt -pubin -inkey "$W/import-rsa.pub.pem" -in "$W/msg" -out "$W/ct.pkcs1"
$P11 $L --decrypt -m RSA-PKCS -d 2e2e -i "$W/ct.pkcs1" -o "$W/pt1" >/dev/null 2>&1
check "RSA-PKCS decrypt of an openssl ciphertext" cmp "$W/pt1" "$W/msg"
openssl pkeyutl -encrypt -pubin -inkey "$W/import-rsa.pub.pem" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
    -pkeyopt rsa_mgf1_md:sha256 -in "$W/msg" -out "$W/ct.oaep"
$P11 $L --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -d 2e2e -i "$W/ct.oaep" -o "$W/pt2" >/dev/null 2>&1
check "RSA-OAEP(SHA-256) decrypt of an openssl ciphertext" cmp "$W/pt2" "$W/msg"

# --- secret keys: AES results equal openssl enc -----------------------------------------------------
head -c 32 /dev/urandom > "$W/aes.key"
check "--write-object an AES key" $P11 $L --write-object "$W/aes.key" --type secrkey --key-type AES:32 --label imported-aes --id 3e3e
IV=000102030405060708090a0b0c0d0e0f
KEYHEX=$(od -An -tx1 "$W/aes.key" | tr -d ' \n')
$P11 $L --encrypt -m AES-CBC-PAD --iv "$IV" -d 3e3e -i "$W/msg" -o "$W/aes.ct" >/dev/null 2>&1
openssl enc -aes-256-cbc -K "$KEYHEX" -iv "$IV" -in "$W/msg" -out "$W/aes.ref"
check "AES-CBC-PAD encrypt equals openssl enc" cmp "$W/aes.ct" "$W/aes.ref"
$P11 $L --decrypt -m AES-CBC-PAD --iv "$IV" -d 3e3e -i "$W/aes.ref" -o "$W/aes.pt" >/dev/null 2>&1
check "AES-CBC-PAD decrypt of openssl ciphertext" cmp "$W/aes.pt" "$W/msg"
# Triple-DES: an imported key encrypts as openssl's DES-EDE3-CBC does; keys are generated too.
head -c 24 /dev/urandom > "$W/des.key"
check "--write-object a DES3 key" $P11 $L --write-object "$W/des.key" --type secrkey --key-type DES3:24 --label imported-des --id 4e4e
DESHEX=$(od -An -tx1 "$W/des.key" | tr -d ' \n')
openssl enc -des-ede3-cbc -K "$DESHEX" -iv 0001020304050607 -in "$W/msg" -out "$W/des.ref"
# (pkcs11-tool 0.23 does not encrypt with DES3 mechanisms: python-pkcs11 does it here.)
check "DES3-CBC-PAD encrypt equals openssl enc -des-ede3-cbc; decrypt gives the message back" python3 -c '
import sys, pkcs11
from pkcs11 import Mechanism, ObjectClass, Attribute
lib = pkcs11.lib(sys.argv[1]); tok = lib.get_token(token_label=sys.argv[2])
with tok.open(user_pin=sys.argv[3]) as s:
    key = s.get_key(object_class=ObjectClass.SECRET_KEY, id=bytes.fromhex("4e4e"))
    iv = bytes.fromhex("0001020304050607")
    msg = open(sys.argv[4], "rb").read(); ref = open(sys.argv[5], "rb").read()
    assert key.encrypt(msg, mechanism=Mechanism.DES3_CBC_PAD, mechanism_param=iv) == ref, "ciphertext differs from openssl"
    assert key.decrypt(ref, mechanism=Mechanism.DES3_CBC_PAD, mechanism_param=iv) == msg, "plaintext differs"
' "$MODULE" "$TOKEN_LABEL" "$PIN" "$W/msg" "$W/des.ref"
check "--keygen DES3:24" $P11 $L --keygen --key-type DES3:24 --label p11-des3
check "--keygen AES:32" $P11 $L --keygen --key-type AES:32 --label p11-aes
check "--keygen GENERIC:32 (HMAC key)" $P11 $L --keygen --key-type GENERIC:32 --label p11-mac

# --- certificate and data objects -------------------------------------------------------------------
openssl req -x509 -key "$W/import.pem" -subj /CN=imported -days 1 -outform DER -out "$W/cert.der" 2>/dev/null
check "--write-object a certificate with the key's CKA_ID" $P11 $L --write-object "$W/cert.der" --type cert --id 1e1e --label imported-ec
$P11 -r -y cert -d 1e1e -o "$W/cert.back" >/dev/null 2>&1
check "the certificate reads back byte for byte" cmp "$W/cert.der" "$W/cert.back"
printf 'some data' > "$W/data.bin"
check "--write-object a data object" $P11 $L --write-object "$W/data.bin" --type data --label my-data --application-label app
$P11 -r -y data -a my-data -o "$W/data.back" >/dev/null 2>&1
check "the data object reads back" cmp "$W/data.bin" "$W/data.back"
check "--delete-object the data object" $P11 $L -b -y data -a my-data
check "  ... it is gone" bash -c "! $P11 -O -y data 2>/dev/null | grep -q my-data"
check "--delete-object a private key removes the key" $P11 $L -b -y privkey -d c0ffee
check "  ... from the service" bash -c "! '$VSSM_BIN' admin list-keys | grep -q ' p11-ec$'"
# Ed25519 (an extension: EdDSA keys in the service), verified by Python `cryptography`.
check "--keypairgen EC:edwards25519" $P11 $L --keypairgen --key-type EC:edwards25519 --label p11-ed --id ed01
$P11 $L -s -m EDDSA -d ed01 -i "$W/msg" -o "$W/ed.sig" >/dev/null 2>&1
point=$($P11 -O -y pubkey 2>/dev/null | awk '/^Public Key Object; EC_EDWARDS/ {f=1} f && $1=="EC_POINT:" {print $2; exit}')
check "EdDSA signature verifies with cryptography's Ed25519 (public key from CKA_EC_POINT)" python3 -c '
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
der = bytes.fromhex(sys.argv[1]); assert der[0] == 4 and der[1] == 32
Ed25519PublicKey.from_public_bytes(der[2:]).verify(open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read())
' "$point" "$W/ed.sig" "$W/msg"
# DSA (an extension for applications that still need it): domain parameters made by the module,
# the key in the service, a DSA-SHA256 signature verified by Python `cryptography`.
check "DSA-SHA256 (2048-bit domain, session key) verifies with cryptography" python3 -c '
import sys, pkcs11
from pkcs11 import KeyType, Mechanism, Attribute
from cryptography.hazmat.primitives.asymmetric import dsa, utils
from cryptography.hazmat.primitives import hashes
i = lambda b: int.from_bytes(b, "big")
tok = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with tok.open(user_pin=sys.argv[3]) as s:
    params = s.generate_domain_parameters(KeyType.DSA, 2048)
    pub, priv = params.generate_keypair()
    sig = priv.sign(b"signed by the service", mechanism=Mechanism.DSA_SHA256)
    n = len(sig) // 2
    nums = dsa.DSAPublicNumbers(i(pub[Attribute.VALUE]), dsa.DSAParameterNumbers(i(pub[Attribute.PRIME]), i(pub[Attribute.SUBPRIME]), i(pub[Attribute.BASE])))
    nums.public_key().verify(utils.encode_dss_signature(i(sig[:n]), i(sig[n:])), b"signed by the service", hashes.SHA256())
' "$MODULE" "$TOKEN_LABEL" "$PIN"
out=$($P11 --test $L 2>&1)
check "pkcs11-tool --test --login: No errors" grep -q "No errors" <<< "$out"
check "  ... its signature tests ran (mechanisms say CKF_HW: done by the service)" grep -q "all 4 signature functions seem to work" <<< "$out"
check "  ... raw RSA (CKM_RSA_X_509) signs, verifies and decrypts" test "$(grep -c 'RSA-X-509: OK' <<< "$out")" -ge 3
finish
