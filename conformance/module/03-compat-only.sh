#!/usr/bin/env bash
# Against the original API only (--compat-only): the module offers what the base API can do, and it works.
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
out=$($P11 --test --login --pin "$PIN" 2>&1)
check "compat: pkcs11-tool --test --login: No errors" grep -q "No errors" <<< "$out"
check "compat: ... its RSA signature tests ran" grep -q "all 4 signature functions seem to work" <<< "$out"
finish
