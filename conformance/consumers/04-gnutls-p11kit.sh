#!/usr/bin/env bash
# GnuTLS and p11-kit (issue 4): the module registered with p11-kit through the module file that
# `make install` installs (packaging/vssm-pkcs11.module.in) is listed by `p11-kit list-modules`,
# signs through p11-kit-proxy.so, and GnuTLS finds it without being told the module path:
# p11tool lists keys and certificates with their types and IDs, certtool signs certificates
# with a pkcs11: key URL (RFC 7512). openssl checks every signature.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
# p11-kit reads user module files only for non-root users; root reads /etc/pkcs11/modules.
if [ "$(id -u)" -eq 0 ]; then
    MODDIR=/etc/pkcs11/modules; P11HOME="$HOME"
else
    P11HOME="$W/home"; MODDIR="$P11HOME/.config/pkcs11/modules"
fi
MODFILE="$MODDIR/vssm-conformance-$$.module"
cleanup() { rm -f "$MODFILE"; vssm_dev_stop; }
trap cleanup EXIT
mkdir -p "$MODDIR"
sed -e "s|@PKCS11DIR@|$(dirname "$(readlink -f "$MODULE")")|" -e "s|@SYSCONFDIR@|/etc|g" \
    "$REPO_ROOT/packaging/vssm-pkcs11.module.in" > "$MODFILE"
p11() { HOME="$P11HOME" "$@"; }
PROXY=$(ls /usr/lib/*/p11-kit-proxy.so 2>/dev/null | head -1)
export GNUTLS_PIN="$PIN"

"$VSSM_BIN" admin generate-key gt-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
"$VSSM_BIN" admin generate-key gt-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null

out=$(p11 p11-kit list-modules 2>&1)
check "p11-kit list-modules shows the module" grep -q "^vssm-conformance-$$: .*libvssm-pkcs11.so" <<< "$out"
check "  ... with the token vssm-dev" bash -c "grep -A30 '^vssm-conformance-$$:' <<< '$out' | grep -q 'token: vssm-dev'"

# pkcs11-tool through p11-kit-proxy.so: find the EC key's ID, sign, verify with openssl.
objs=$(p11 pkcs11-tool --module "$PROXY" --token-label vssm-dev -O --type pubkey 2>&1)
ec_id=$(grep -A6 "label: *gt-ec$" <<< "$objs" | awk '/ID:/{print $2; exit}')
rsa_id=$(grep -A6 "label: *gt-rsa$" <<< "$objs" | awk '/ID:/{print $2; exit}')
check "p11-kit-proxy.so lists the service's public keys" test -n "$ec_id" -a -n "$rsa_id"
printf 'signed through p11-kit-proxy' > "$W/msg"
check "p11-kit-proxy.so signs with the EC key" p11 pkcs11-tool --module "$PROXY" --token-label vssm-dev --login --pin "$PIN" --sign --id "$ec_id" \
    -m ECDSA-SHA256 --signature-format openssl -i "$W/msg" -o "$W/proxy.sig"
p11 pkcs11-tool --module "$PROXY" --token-label vssm-dev --read-object --type pubkey --id "$ec_id" -o "$W/ec.pub.der" 2>/dev/null
check "openssl verifies the proxy's ECDSA signature" openssl dgst -sha256 -verify "$W/ec.pub.der" -keyform DER \
    -signature "$W/proxy.sig" "$W/msg"

# GnuTLS through p11-kit (no --provider): keys first.
out=$(p11 p11tool --login --list-all "pkcs11:token=vssm-dev" 2>&1)
colon() { sed 's/../&:/g; s/:$//' <<< "$1"; }
check "p11tool lists the RSA private key as 'Private key (RSA-2048)'" \
    bash -c "grep -B1 -A3 'object=gt-rsa;type=private' <<< '$out' | grep -q 'Type: Private key (RSA-2048)'"
check "p11tool lists the EC public key as 'Public key (EC/ECDSA-SECP256R1)'" \
    bash -c "grep -A3 'object=gt-ec;type=public' <<< '$out' | grep -q 'Type: Public key (EC/ECDSA-SECP256R1)'"
check "p11tool shows the same CKA_ID as pkcs11-tool for both keys" \
    bash -c "grep -q 'ID: $(colon "$rsa_id")$' <<< '$out' && grep -q 'ID: $(colon "$ec_id")$' <<< '$out'"
check "p11tool marks the private keys sensitive and never extractable" \
    bash -c "grep -A4 'object=gt-ec;type=private' <<< '$out' | grep -q 'CKA_NEVER_EXTRACTABLE; CKA_SENSITIVE'"

# certtool: a self-signed CA with the RSA key, leaves signed with RSA-PSS and with the EC key.
cat > "$W/ca.tmpl" <<EOF
cn = "GnuTLS CA in VSSM"
ca
cert_signing_key
crl_signing_key
expiration_days = 30
EOF
RSA_URL="pkcs11:token=vssm-dev;object=gt-rsa;type=private"
EC_URL="pkcs11:token=vssm-dev;id=%$(sed 's/../&%/g; s/%$//' <<< "$ec_id");type=private"
check "certtool --generate-self-signed with $RSA_URL" p11 certtool --generate-self-signed --load-privkey "$RSA_URL" \
    --template "$W/ca.tmpl" --outfile "$W/ca.pem"
check "openssl verifies the self-signed CA" openssl verify -CAfile "$W/ca.pem" "$W/ca.pem"
check "  ... and its public key is the service's key" \
    bash -c "diff <(openssl x509 -in '$W/ca.pem' -noout -modulus) <(HOME='$P11HOME' pkcs11-tool --module '$PROXY' --token-label vssm-dev --read-object --type pubkey --id $rsa_id 2>/dev/null | openssl rsa -pubin -inform DER -noout -modulus)"
certtool --generate-privkey --key-type ecdsa --outfile "$W/leaf.key" 2>/dev/null
printf 'cn = "leaf.example"\ntls_www_server\ndns_name = "leaf.example"\nexpiration_days = 10\n' > "$W/leaf.tmpl"
certtool --generate-request --load-privkey "$W/leaf.key" --template "$W/leaf.tmpl" --outfile "$W/leaf.csr" 2>/dev/null
check "certtool signs a leaf with the CA key (RSA-PSS)" p11 certtool --generate-certificate --load-request "$W/leaf.csr" \
    --load-ca-certificate "$W/ca.pem" --load-ca-privkey "$RSA_URL" --sign-params RSA-PSS --template "$W/leaf.tmpl" --outfile "$W/leaf.pem"
check "  ... the leaf's signature is rsassaPss" bash -c "openssl x509 -in '$W/leaf.pem' -noout -text | grep -q 'Signature Algorithm: rsassaPss'"
check "  ... openssl verify accepts the leaf" openssl verify -CAfile "$W/ca.pem" "$W/leaf.pem"
check "certtool self-signs with the EC key by id URL ($EC_URL)" p11 certtool --generate-self-signed --load-privkey "$EC_URL" \
    --hash SHA384 --template "$W/ca.tmpl" --outfile "$W/ec-ca.pem"
check "  ... openssl verifies the ECDSA-SHA384 certificate" bash -c "openssl verify -CAfile '$W/ec-ca.pem' '$W/ec-ca.pem' && openssl x509 -in '$W/ec-ca.pem' -noout -text | grep -q ecdsa-with-SHA384"

# Certificates stored next to their keys (same CKA_ID) are listed as certificates.
check "p11tool --write stores the CA certificate with the RSA key's ID" p11 p11tool --login --write "pkcs11:token=vssm-dev" \
    --load-certificate "$W/ca.pem" --label gt-rsa --id "$rsa_id"
out=$(p11 p11tool --list-all-certs "pkcs11:token=vssm-dev" 2>&1)
check "p11tool --list-all-certs shows it as an X.509 certificate with the key's ID" \
    bash -c "grep -A4 'object=gt-rsa;type=cert' <<< '$out' | grep -q 'Type: X.509 Certificate' && grep -A6 'object=gt-rsa;type=cert' <<< '$out' | grep -q 'ID: $(colon "$rsa_id")$'"
check "p11tool --export returns the same certificate" bash -c \
    "diff <(HOME='$P11HOME' p11tool --export 'pkcs11:token=vssm-dev;object=gt-rsa;type=cert' | openssl x509 -outform DER | sha256sum) <(openssl x509 -in '$W/ca.pem' -outform DER | sha256sum)"
finish
