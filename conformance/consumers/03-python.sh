#!/usr/bin/env bash
# Python (issue 4): python-pkcs11 and PyKCS11 open the token, find keys, sign/verify and
# encrypt/decrypt (AES-GCM included); `cryptography` checks every result it can.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
"$VSSM_BIN" admin generate-key py-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
here="$(dirname "$0")"
for script in python_pkcs11_check.py pykcs11_check.py; do
    out=$(python3 "$here/$script" "$MODULE" "$TOKEN_LABEL" "$PIN" "$W" 2>&1); rc=$?
    echo "$out" | grep -E '^  (ok|FAIL) ' || true
    PASSED=$((PASSED + $(grep -c '^  ok ' <<< "$out")))
    FAILED=$((FAILED + $(grep -c '^  FAIL ' <<< "$out")))
    if [ $rc -ne 0 ] && ! grep -q '^  FAIL ' <<< "$out"; then
        fail "$script exited $rc"; echo "$out" | tail -8 | sed 's/^/       /'
    fi
done
finish
