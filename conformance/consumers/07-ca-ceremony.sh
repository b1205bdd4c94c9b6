#!/usr/bin/env bash
# The offline root CA ceremony (issue 4), as docs/ca-ceremony.md tells it:
#   1. bring the service up, generate the root key in it through PKCS#11;
#   2. self-signed root (openssl req -x509 through the engine), sign an intermediate CSR and a
#      second certificate, publish CRL 1; store the root certificate next to its key;
#   3. encrypted backup written to two files (two USB sticks), stop the service;
#   4. months later, on a fresh node (same RPC key from the safe): restore from the second copy,
#      revoke the second certificate and publish CRL 2 with the same key;
#   5. openssl verify -crl_check accepts the intermediate and rejects the revoked certificate.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
D="$VSSM_DEV_DIR"; W="$D/work"; C="$W/ca"; mkdir -p "$C/newcerts" "$W/usb1" "$W/usb2"
FRESH_PID=""
cleanup() { [ -n "$FRESH_PID" ] && kill "$FRESH_PID" 2>/dev/null; vssm_dev_stop; }
trap cleanup EXIT
step() { echo "-- $*"; }
plain() { env -u OPENSSL_CONF openssl "$@"; }
: > "$C/index.txt"; echo 01 > "$C/serial"; echo 01 > "$C/crlnumber"
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
default_days = 365
default_crl_days = 90
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[intermediate]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[crl_ext]
authorityKeyIdentifier = keyid
CNF
export OPENSSL_CONF="$W/openssl.cnf"
KEY="pkcs11:token=vssm-dev;object=root-ca;type=private;pin-value=$PIN"

step "ceremony 1: root key, root certificate, intermediate, CRL 1"
check "root key (EC P-384) generated in the service" pkcs11-tool --module "$MODULE" --login --pin "$PIN" \
    --keypairgen --key-type EC:secp384r1 --label root-ca --id 0c0c
check "self-signed root certificate through the engine" openssl req -new -x509 -engine pkcs11 -keyform engine -key "$KEY" \
    -sha384 -subj "/O=Example/CN=Example Offline Root" -days 7300 -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -addext subjectKeyIdentifier=hash -out "$W/root.pem"
plain req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/int.key" -subj "/CN=Example Issuing CA" -out "$W/int.csr" 2>/dev/null
plain req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/old.key" -subj "/CN=Example Old Issuing CA" -out "$W/old.csr" 2>/dev/null
check "intermediate CSR signed (openssl ca)" openssl ca -batch -engine pkcs11 -keyform engine -keyfile "$KEY" \
    -extensions intermediate -in "$W/int.csr" -out "$W/int.pem"
check "second intermediate signed (to be revoked later)" openssl ca -batch -engine pkcs11 -keyform engine -keyfile "$KEY" \
    -extensions intermediate -in "$W/old.csr" -out "$W/old.pem"
check "CRL 1 published" openssl ca -gencrl -engine pkcs11 -keyform engine -keyfile "$KEY" -crlexts crl_ext -out "$W/crl1.pem"
check "CRL 1 verifies against the root" plain crl -in "$W/crl1.pem" -CAfile "$W/root.pem" -noout
plain x509 -in "$W/root.pem" -outform DER -out "$W/root.der"
check "root certificate stored next to its key (CKA_ID 0c0c)" pkcs11-tool --module "$MODULE" --login --pin "$PIN" \
    --write-object "$W/root.der" --type cert --id 0c0c --label root-ca
root_pub=$(plain x509 -in "$W/root.pem" -noout -pubkey)

step "backup to two files, stop the service"
check "vssm admin backup --out usb1 --out usb2" "$VSSM_BIN" admin backup --out "$W/usb1/vssm-backup.json" --out "$W/usb2/vssm-backup.json"
check "  ... both copies are identical" cmp "$W/usb1/vssm-backup.json" "$W/usb2/vssm-backup.json"
check "  ... no private key in clear in the backup" bash -c "! grep -q 'PRIVATE KEY' '$W/usb1/vssm-backup.json'"
vssm_dev_stop
check "the service is stopped" bash -c "! curl -s --max-time 2 '$VSSM_HEALTH_URL' >/dev/null"
rm -rf "$W/usb1"   # one stick is lost; the other is enough

step "ceremony 2: fresh node, restore, revoke, CRL 2"
mkdir -p "$W/fresh"
vssm_serve_bg "$W/fresh/serve.log" --config "$D/config.json" --state-dir "$W/fresh/state" --api 127.0.0.1:0 --health 127.0.0.1:0 \
    --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 --ports-file "$W/fresh/ports.json" \
    --bootstrap-key "$D/rpc-key.pem"
FRESH_PID=$VSSM_SERVE_PID
for _ in $(seq 1 100); do [ -s "$W/fresh/ports.json" ] && break; sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/fresh/ports.json")
export VSSM_URL="https://127.0.0.1:$port"
sed -i "s|\"endpoints\": \[[^]]*\]|\"endpoints\": [\"$VSSM_URL\"]|" "$VSSM_PKCS11_CONFIG"
out=$(pkcs11-tool --module "$MODULE" --login --pin "$PIN" -O 2>&1)
check "the fresh node starts without the root key" bash -c "! grep -q root-ca <<< '$out'"
check "vssm admin restore from the remaining copy" "$VSSM_BIN" admin restore "$W/usb2/vssm-backup.json"
out=$(pkcs11-tool --module "$MODULE" --login --pin "$PIN" -O 2>&1)
check "the root key is back with its CKA_ID" bash -c "grep -A8 'Private Key Object' <<< '$out' | grep -q 'ID:         0c0c'"
check "the root certificate object is back" bash -c "grep -A4 'Certificate Object' <<< '$out' | grep -q 'label:      root-ca'"
check "the restored key is the root certificate's key" bash -c \
    "diff <(openssl pkey -engine pkcs11 -pubin -inform engine -in 'pkcs11:object=root-ca;type=public' -pubout 2>/dev/null) <(echo '$root_pub')"
check "the old intermediate is revoked" openssl ca -engine pkcs11 -keyform engine -keyfile "$KEY" -revoke "$W/old.pem" -crl_reason superseded
check "CRL 2 published with the same key" openssl ca -gencrl -engine pkcs11 -keyform engine -keyfile "$KEY" -crlexts crl_ext -out "$W/crl2.pem"
check "CRL 2 verifies against the root made in ceremony 1" plain crl -in "$W/crl2.pem" -CAfile "$W/root.pem" -noout
expect_eq "CRL 2 has CRL number 02" "crlNumber=0x02" "$(plain crl -in "$W/crl2.pem" -noout -crlnumber)"
out=$(plain crl -in "$W/crl2.pem" -noout -text)
check "CRL 2 lists the revoked serial" grep -q "Serial Number: $(plain x509 -in "$W/old.pem" -noout -serial | cut -d= -f2)" <<< "$out"
out=$(plain verify -crl_check -CAfile "$W/root.pem" -CRLfile "$W/crl2.pem" "$W/int.pem" 2>&1)
check "openssl verify -crl_check accepts the intermediate" grep -q "int.pem: OK" <<< "$out"
out=$(plain verify -crl_check -CAfile "$W/root.pem" -CRLfile "$W/crl2.pem" "$W/old.pem" 2>&1)
check "openssl verify -crl_check rejects the revoked intermediate" grep -q "certificate revoked" <<< "$out"
out=$(plain verify -crl_check -CAfile "$W/root.pem" -CRLfile "$W/crl1.pem" "$W/old.pem" 2>&1)
check "  ... which CRL 1 still accepted" grep -q "old.pem: OK" <<< "$out"
kill "$FRESH_PID"; wait "$FRESH_PID" 2>/dev/null; FRESH_PID=""
finish
