#!/usr/bin/env bash
# make install / make uninstall (issue 4) into staging directories (DESTDIR): the static release
# module in the multiarch pkcs11 directory, the p11-kit module file pointing at it, the vssm
# binary, the example config and systemd unit, the docs. The installed module signs (openssl
# verifies) and the installed vssm runs without the Swift toolchain. Uninstall removes exactly
# those files and keeps a real pkcs11.json.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; S="$W/stage"; mkdir -p "$W"
MA=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
echo "-- make install PREFIX=/usr DESTDIR=$S (builds the release artifacts if needed)"
check "make install PREFIX=/usr DESTDIR=..." make -s -C "$REPO_ROOT" install PREFIX=/usr DESTDIR="$S"
SO="$S/usr/lib/$MA/pkcs11/libvssm-pkcs11.so"
for f in "$SO" "$S/usr/bin/vssm" "$S/usr/share/p11-kit/modules/vssm-pkcs11.module" "$S/etc/vssm/pkcs11.json.example" \
    "$S/usr/lib/systemd/system/vssm.service" "$S/usr/share/doc/vssm-pkcs11/README.md" "$S/usr/share/doc/vssm-pkcs11/docs/nginx.md"; do
    check "installed ${f#"$S"}" test -s "$f"
done
expect_eq "p11-kit module file points at the installed module" "module: /usr/lib/$MA/pkcs11/libvssm-pkcs11.so" \
    "$(grep '^module:' "$S/usr/share/p11-kit/modules/vssm-pkcs11.module")"
expect_eq "systemd unit runs the installed vssm" "ExecStart=/usr/bin/vssm serve --config /etc/vssm/node/config.json --state-dir /var/lib/vssm/state" \
    "$(grep '^ExecStart=' "$S/usr/lib/systemd/system/vssm.service")"
check "example module config is valid JSON with a slot" python3 -c \
    'import json,sys; d=json.load(open(sys.argv[1])); assert d["slots"][0]["endpoints"]' "$S/etc/vssm/pkcs11.json.example"
check "installed module and binary need no Swift runtime" bash -c "! readelf -d '$SO' '$S/usr/bin/vssm' | grep -q libswift"
check "installed module exports only C_* functions" bash -c "! nm -D --defined-only '$SO' | awk '\$2 ~ /[TDBR]/ {print \$3}' | grep -vq '^C_'"

# The installed artifacts work against the dev node, with the toolchain off PATH.
"$VSSM_BIN" admin generate-key inst-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
check "installed vssm runs without /opt/swift (health)" env -i PATH=/usr/bin:/bin "$S/usr/bin/vssm" health --url "$VSSM_HEALTH_URL"
printf 'installed module' > "$W/msg"
pkcs11-tool --module "$SO" -r -y pubkey -a inst-ec -o "$W/k.der" >/dev/null 2>&1
check "installed module signs" env -i PATH=/usr/bin:/bin VSSM_PKCS11_CONFIG="$VSSM_PKCS11_CONFIG" \
    pkcs11-tool --module "$SO" --login --pin "$PIN" -s -m ECDSA-SHA256 -a inst-ec -i "$W/msg" -o "$W/sig" --signature-format openssl
check "  ... and openssl verifies the signature" openssl dgst -sha256 -verify "$W/k.der" -keyform DER -signature "$W/sig" "$W/msg"

echo "-- make uninstall"
echo '{"slots": []}' > "$S/etc/vssm/pkcs11.json"   # the admin's real config
check "make uninstall PREFIX=/usr DESTDIR=..." make -s -C "$REPO_ROOT" uninstall PREFIX=/usr DESTDIR="$S"
left=$(cd "$S" && find . -type f | sort | tr '\n' ' ')
expect_eq "only the admin's pkcs11.json is left" "./etc/vssm/pkcs11.json " "$left"

echo "-- make install PREFIX=/opt/vssm"
check "make install PREFIX=/opt/vssm DESTDIR=..." make -s -C "$REPO_ROOT" install PREFIX=/opt/vssm DESTDIR="$W/stage2"
check "  ... module under the prefix's multiarch pkcs11 dir" test -s "$W/stage2/opt/vssm/lib/$MA/pkcs11/libvssm-pkcs11.so"
check "  ... binary in the prefix's bin" test -x "$W/stage2/opt/vssm/bin/vssm"
check "  ... p11-kit file still in /etc/pkcs11/modules, pointing into the prefix" \
    grep -q "^module: /opt/vssm/lib/$MA/pkcs11/libvssm-pkcs11.so$" "$W/stage2/etc/pkcs11/modules/vssm-pkcs11.module"
check "make uninstall PREFIX=/opt/vssm leaves no file" bash -c \
    "make -s -C '$REPO_ROOT' uninstall PREFIX=/opt/vssm DESTDIR='$W/stage2' >/dev/null && test -z \"\$(find '$W/stage2' -type f)\""
finish
