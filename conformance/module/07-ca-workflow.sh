#!/usr/bin/env bash
# A CA whose key lives in the service (through the OpenSSL libp11 engine): self-signed root,
# an intermediate signed with `openssl ca`, a revocation and a CRL; plain `openssl verify
# -crl_check` accepts the good chain and rejects the revoked certificate.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; C="$W/ca"; mkdir -p "$C/newcerts"
: > "$C/index.txt"; echo 1000 > "$C/serial"; echo 1000 > "$C/crlnumber"
check "root key generated in the service through PKCS#11" pkcs11-tool --module "$MODULE" --login --pin "$PIN" \
    --keypairgen --key-type EC:secp384r1 --label root-ca --id 0c0c
engine_conf "$W/openssl.cnf"
cat >> "$W/openssl.cnf" <<CNF
[ca]
default_ca = root
[root]
dir = $C
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
certificate = $W/root.pem
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha384
default_days = 30
default_crl_days = 7
policy = any
unique_subject = no
[any]
commonName = supplied
[intermediate]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
CNF
export OPENSSL_CONF="$W/openssl.cnf"
KEY="pkcs11:object=root-ca;type=private"
check "self-signed root with openssl req -x509" openssl req -new -x509 -engine pkcs11 -keyform engine -key "$KEY" -sha384 \
    -subj "/CN=VSSM Offline Root" -days 3650 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$W/root.pem"
plain() { env -u OPENSSL_CONF openssl "$@"; }
plain req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/int.key" -subj "/CN=VSSM Intermediate" -out "$W/int.csr" 2>/dev/null
plain req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/bad.key" -subj "/CN=to be revoked" -out "$W/bad.csr" 2>/dev/null
check "openssl ca signs the intermediate CSR" openssl ca -batch -engine pkcs11 -keyform engine -keyfile "$KEY" \
    -extensions intermediate -in "$W/int.csr" -out "$W/int.pem"
check "openssl ca signs a second certificate" openssl ca -batch -engine pkcs11 -keyform engine -keyfile "$KEY" \
    -extensions leaf -in "$W/bad.csr" -out "$W/bad.pem"
check "openssl ca -revoke" openssl ca -engine pkcs11 -keyform engine -keyfile "$KEY" -revoke "$W/bad.pem"
check "openssl ca -gencrl" openssl ca -gencrl -engine pkcs11 -keyform engine -keyfile "$KEY" -out "$W/crl.pem"
check "the CRL verifies against the root" plain crl -in "$W/crl.pem" -CAfile "$W/root.pem" -noout
out=$(plain verify -crl_check -CAfile "$W/root.pem" -CRLfile "$W/crl.pem" "$W/int.pem" 2>&1)
check "openssl verify -crl_check accepts the intermediate" grep -q ": OK" <<< "$out"
out=$(plain verify -crl_check -CAfile "$W/root.pem" -CRLfile "$W/crl.pem" "$W/bad.pem" 2>&1)
check "openssl verify -crl_check rejects the revoked certificate" grep -q "certificate revoked" <<< "$out"
# Store the root certificate next to its key (same CKA_ID), as Java and others expect.
plain x509 -in "$W/root.pem" -outform DER -out "$W/root.der"
check "root certificate stored with the key's CKA_ID" pkcs11-tool --module "$MODULE" --login --pin "$PIN" --write-object "$W/root.der" \
    --type cert --id 0c0c --label root-ca
out=$(pkcs11-tool --module "$MODULE" -O -y cert 2>&1)
check "  ... and listed as a certificate object" grep -q "ID:         0c0c" <<< "$out"
finish
