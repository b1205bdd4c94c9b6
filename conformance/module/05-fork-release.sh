#!/usr/bin/env bash
# Fork safety with live pooled connections (C host), and the static, stripped release .so.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
"$VSSM_BIN" admin generate-key fork-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
check "compile the C fork host" cc -Wall -Werror -I "$REPO_ROOT/include" -o "$W/fork-host" "$CONFORMANCE_DIR/module/fork-host.c" -ldl
out=$("$W/fork-host" "$MODULE" fork-ec 2>&1); rc=$?
echo "$out" | sed 's/^/       /'
expect_eq "fork host: parent, child and parent-after all sign" 0 "$rc"
check "  child saw CKR_CRYPTOKI_NOT_INITIALIZED before re-initializing" grep -q "child: before C_Initialize: 0x190" <<< "$out"
check "  child re-initialized with its environment cleared (parent's configuration reused)" grep -q "child: re-initialized without" <<< "$out"
out=$(pkcs11-tool --module "$MODULE" --test-fork 2>&1)
check "pkcs11-tool --test-fork" bash -c "! grep -qi 'error\|fail' <<< '$out'"

# The release artifact: Swift runtime linked statically, stripped (make module-release).
REL="$REPO_ROOT/dist/libvssm-pkcs11.so"
if [ ! -f "$REL" ]; then (cd "$REPO_ROOT" && make -s module-release >/dev/null 2>&1); fi
check "release .so exists" test -f "$REL"
check "release .so needs no Swift runtime" bash -c "! readelf -d '$REL' | grep -q libswift"
check "release .so exports only C_* symbols" bash -c "! nm -D --defined-only '$REL' | awk '\$2 ~ /[TDBR]/ {print \$3}' | grep -vq '^C_'"
out=$(pkcs11-tool --module "$REL" -I 2>&1)
check "release .so: pkcs11-tool -I" grep -q "vssm-pkcs11" <<< "$out"
printf 'release' > "$W/msg"
pkcs11-tool --module "$REL" -r -y pubkey -a fork-ec -o "$W/k.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/k.der" -out "$W/k.pem" 2>/dev/null
pkcs11-tool --module "$REL" --login --pin "$PIN" -s -m ECDSA-SHA256 -a fork-ec -i "$W/msg" -o "$W/sig" --signature-format openssl >/dev/null 2>&1
check "release .so: a signature openssl verifies" openssl dgst -sha256 -verify "$W/k.pem" -signature "$W/sig" "$W/msg"
check "release .so: the fork host passes too" "$W/fork-host" "$REL" fork-ec

# fork() while two host threads are inside the module: no child inherits a held lock (issue 20).
check "compile the threaded fork host" cc -Wall -Werror -I "$REPO_ROOT/include" -o "$W/fork-threads" "$CONFORMANCE_DIR/module/fork-threads.c" -ldl -lpthread
out=$(timeout 300 "$W/fork-threads" "$MODULE" 2>&1); echo "       $(tail -1 <<< "$out")"
check "20 forks while threads are inside the module: every child gets CKR_CRYPTOKI_NOT_INITIALIZED, then initializes" \
    grep -qx "children ok 20 of 20" <<< "$out"
finish
