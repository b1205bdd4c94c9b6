#!/usr/bin/env bash
# The Debian packages (issue 18), installed as an operator would: `make deb`, lintian, `apt-get
# install ./…deb`; the node started the way the systemd unit starts it (its User= and ExecStart=),
# bootstrapped with the pinned fingerprint; keys used by `pkcs11:` URIs without a module path
# (p11tool, the OpenSSL engine through p11-kit-proxy, ssh-keygen -D p11-kit-proxy.so). The
# registered module is harmless to a user without a configuration (p11-kit, NSS's modutil,
# p11tool run clean; what loading costs). The README's quick starts run literally as an
# unprivileged user. Then `apt-get remove` and `purge` leave what the packages promise.
set -u
source "$(dirname "$0")/../lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "10-packages.sh: needs root (apt-get install)"; echo "10-packages.sh: 0 passed, 1 failed"; exit 1; }
source "$CONFORMANCE_DIR/env-common.sh"
W="$(mktemp -d /tmp/vssm-packages.XXXXXX)"
DOCUSER=vssmdoc
MA=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
PROXY="/usr/lib/$MA/p11-kit-proxy.so"
cleanup() {
    [ -n "${NODE:-}" ] && kill "$NODE" 2>/dev/null
    pkill -u "$DOCUSER" 2>/dev/null; sleep 0.2; pkill -9 -u "$DOCUSER" 2>/dev/null
    userdel "$DOCUSER" 2>/dev/null
    dpkg -l vssm libvssm-pkcs11 2>/dev/null | grep -q '^[ri]' && apt-get purge -y -qq vssm libvssm-pkcs11 >/dev/null 2>&1
    rm -rf /etc/vssm/node /var/lib/vssm/state
    rmdir /etc/vssm /var/lib/vssm 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
# Leftovers of an earlier run.
dpkg -l vssm libvssm-pkcs11 2>/dev/null | grep -q '^[ri]' && apt-get purge -y -qq vssm libvssm-pkcs11 >/dev/null 2>&1

echo "-- make deb (release builds if needed), lintian"
check "make deb" make -s -C "$REPO_ROOT" deb
version=$(sed -n 's/.*static let string = "\([^"]*\)".*/\1/p' "$REPO_ROOT/Sources/VSSMWire/Version.swift")
arch=$(dpkg --print-architecture)
SRV="$REPO_ROOT/dist/vssm_${version}_${arch}.deb"; MOD="$REPO_ROOT/dist/libvssm-pkcs11_${version}_${arch}.deb"
check "dist/vssm_${version}_${arch}.deb and dist/libvssm-pkcs11_${version}_${arch}.deb" test -s "$SRV" -a -s "$MOD"
lintian --tag-display-limit 0 "$SRV" "$MOD" 2>&1 | grep -v "running with root privileges" > "$W/lintian.txt"
sed 's/^/       lintian: /' "$W/lintian.txt"
# Every tag lintian reports must be one listed, with its reason, in packaging/debian/lintian-expected.txt.
unexpected=$(grep '^[A-Z]: ' "$W/lintian.txt" | awk '{print $1, $2, $3}' | sort -u | while read -r line; do
    grep -qxF "$line" <(grep -v '^#' "$REPO_ROOT/packaging/debian/lintian-expected.txt" | sed 's/ *#.*//' | sed 's/ *$//') || echo "$line"; done)
expect_eq "lintian: no tag but those listed with their reasons in packaging/debian/lintian-expected.txt" "" "$unexpected"
check "lintian: no error" bash -c "! grep -q '^E: ' '$W/lintian.txt'"
for deb in "$SRV" "$MOD"; do echo "       $(basename "$deb"):"; dpkg-deb -c "$deb" | awk '{print "         " $1, $6}'; done
expect_eq "vssm --version is the packages' version" "$version" "$("$REPO_ROOT/dist/vssm" --version)"

echo "-- apt-get install ./…deb"
check "apt-get install both packages" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$SRV" "$MOD"
check "the vssm system user exists" bash -c "getent passwd vssm | grep -q ':/var/lib/vssm:'"
expect_eq "/var/lib/vssm belongs to vssm, mode 700" "vssm 700" "$(stat -c '%U %a' /var/lib/vssm)"
check "man vssm-bootstrap documents --fingerprint" bash -c "zcat /usr/share/man/man1/vssm-bootstrap.1.gz | grep -q 'fingerprint'"
check "man pages for every subcommand (vssm-admin-generate-key)" test -s /usr/share/man/man1/vssm-admin-generate-key.1.gz
UNIT=/lib/systemd/system/vssm.service
check "systemd-analyze verify $UNIT" systemd-analyze verify "$UNIT"
expect_eq "p11-kit module file of the package" "module: /usr/lib/$MA/pkcs11/libvssm-pkcs11.so" "$(grep '^module:' /usr/share/p11-kit/modules/vssm-pkcs11.module)"

echo "-- the registered module with no configuration: harmless"
useradd --create-home --home-dir "$W/home" --shell /bin/bash "$DOCUSER"
chmod 755 "$W"
as_doc() { runuser -u "$DOCUSER" -- env -i HOME="$W/home" PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"; }
out=$(as_doc p11-kit list-modules 2>"$W/err"); rc=$?
check "p11-kit list-modules: exit 0, nothing on stderr" test "$rc" = 0 -a ! -s "$W/err"
check "... lists vssm-pkcs11 (library manufacturer vssm-pkcs11, version ${version%.*})" bash -c "grep -A6 '^vssm-pkcs11:' <<< '$out' | grep -q 'library-version: ${version%.*}'"
check "... with no token" bash -c "! grep -A12 '^vssm-pkcs11:' <<< '$out' | grep -q 'token:'"
out=$(as_doc p11tool --list-tokens 2>"$W/err"); rc=$?
check "p11tool --list-tokens: exit 0, nothing on stderr, no VSSM token" test "$rc" = 0 -a ! -s "$W/err" -a -z "$(grep 'vssm-pkcs11' <<< "$out")"
as_doc mkdir -p "$W/home/nssdb"
as_doc certutil -N -d "sql:$W/home/nssdb" --empty-password
as_doc modutil -force -dbdir "sql:$W/home/nssdb" -add p11-kit-proxy -libfile "$PROXY" >/dev/null 2>&1
out=$(as_doc modutil -dbdir "sql:$W/home/nssdb" -list 2>"$W/err"); rc=$?
check "NSS (modutil -list with p11-kit-proxy on a fresh database): exit 0, nothing on stderr" test "$rc" = 0 -a ! -s "$W/err"
check "... p11-kit-proxy loaded, no VSSM slot" bash -c "grep -q 'p11-kit-proxy' <<< '$out' && ! grep -qi 'vssm' <<< '$out'"
# What the registration costs a process: p11-kit list-modules with and without the module file.
t() { local s e i; s=$(date +%s%N); for i in $(seq 1 20); do as_doc p11-kit list-modules >/dev/null 2>&1; done; e=$(date +%s%N); echo $(( (e - s) / 20000 )); }
with=$(t); mv /usr/share/p11-kit/modules/vssm-pkcs11.module "$W/"; without=$(t); mv "$W/vssm-pkcs11.module" /usr/share/p11-kit/modules/
rss_with=$(as_doc bash -c "p11-kit list-modules >/dev/null; grep VmHWM /proc/self/status" 2>/dev/null | awk '{print $2}')
echo "       p11-kit list-modules: ${with} µs per run with the module registered, ${without} µs without (20 runs each)"
check "loading the unconfigured module costs a process under 20 ms (measured $(( (with - without) )) µs)" test $(( with - without )) -lt 20000

echo "-- the node as the unit runs it"
api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p /etc/vssm/node
check "vssm init /etc/vssm/node" vssm init /etc/vssm/node --admin-password pkg-admin-pw --state-dir /var/lib/vssm/state \
    --api "127.0.0.1:$api" --health 127.0.0.1:0 --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0
mv /etc/vssm/node/rpc-key.pem "$W/rpc-key.pem"          # the bootstrap secret leaves the node
chown -R vssm: /etc/vssm/node
user=$(sed -n 's/^User=//p' "$UNIT"); exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
expect_eq "the unit runs as vssm" vssm "$user"
# shellcheck disable=SC2086
setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups --inh-caps=-all $exec_start > "$W/unit.log" 2>&1 &
NODE=$!
fp=""
for _ in $(seq 1 100); do fp=$(sed -n 's/.*fingerprint: \(SHA256:[0-9A-F:]*\).*/\1/p' "$W/unit.log" | head -1); [ -n "$fp" ] && break; sleep 0.1; done
expect_eq "the node runs as vssm" vssm "$(ps -o user= -p "$NODE")"
check "vssm bootstrap --fingerprint (as the unit's log says)" vssm bootstrap --url "https://127.0.0.1:$api" --key "$W/rpc-key.pem" --fingerprint "$fp"
check "the node writes its sealed state in /var/lib/vssm/state" bash -c "for i in \$(seq 50); do [ -n \"\$(ls /var/lib/vssm/state 2>/dev/null)\" ] && exit 0; sleep 0.1; done; exit 1"
export VSSM_URL="https://127.0.0.1:$api" VSSM_ADMIN_PASSWORD=pkg-admin-pw
check "vssm admin generate-key (through mTLS as vssm serves it)" vssm admin generate-key pkg-ec --dir /etc/vssm/node --type ASYMMETRIC --spec EC --size 256
check "vssm pkcs11-config for the node's client" vssm pkcs11-config --dir /etc/vssm/node --label pkgtoken --out "$W/pkcs11.json"
export VSSM_PKCS11_CONFIG="$W/pkcs11.json"
check "vssm pkcs11-config for a cluster and a headless client: valid JSON with both endpoints, no PIN" bash -c \
    "vssm pkcs11-config --dir /etc/vssm/node --url https://n1.example.net:8080 --url https://n2.example.net:8080 --login headless \
     | python3 -c 'import json,sys; s=json.load(sys.stdin)[\"slots\"][0]; assert s[\"endpoints\"]==[\"https://n1.example.net:8080\",\"https://n2.example.net:8080\"] and s[\"userPinIsAdminPassword\"] is False'"
out=$(vssm pkcs11-config --url https://n1:8080 2>&1)
check "... without files it says which option is missing" grep -q "no ca.pem: pass --dir" <<< "$out"

echo "-- pkcs11: URIs without a module path"
printf 'signed through the packages' > "$W/msg"; openssl dgst -sha256 -binary "$W/msg" > "$W/msg.sha256"
out=$(p11tool --list-token-urls 2>&1)
check "p11tool finds the token through p11-kit" grep -q 'token=pkgtoken' <<< "$out"
check "p11tool --test-sign with pkcs11:token=pkgtoken;object=pkg-ec" env GNUTLS_PIN=pkg-admin-pw p11tool --login --test-sign "pkcs11:token=pkgtoken;object=pkg-ec"
check "the OpenSSL engine (its default module: p11-kit-proxy) exports the public key" env -u OPENSSL_CONF openssl pkey -engine pkcs11 -pubin \
    -inform engine -in "pkcs11:token=pkgtoken;object=pkg-ec;type=public" -out "$W/pkg-ec.pub"
check "... and signs with pkcs11:token=pkgtoken;object=pkg-ec;type=private" env -u OPENSSL_CONF openssl pkeyutl -engine pkcs11 -keyform engine \
    -inkey "pkcs11:token=pkgtoken;object=pkg-ec;type=private" -sign -in "$W/msg.sha256" -out "$W/msg.sig"
check "plain openssl verifies it" openssl pkeyutl -verify -pubin -inkey "$W/pkg-ec.pub" -in "$W/msg.sha256" -sigfile "$W/msg.sig"
ssh_pub=$(ssh-keygen -D "$PROXY" 2>/dev/null | grep ecdsa-sha2-nistp256 | awk '{print $2}' | head -1)
want=$(ssh-keygen -i -m PKCS8 -f "$W/pkg-ec.pub" | awk '{print $2}')
check "ssh-keygen -D p11-kit-proxy.so shows the key" test -n "$want" -a "$ssh_pub" = "$want"

echo "-- README quick starts, literally, as an unprivileged user"
python3 - "$REPO_ROOT/README.md" > "$W/readme.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
out = ["set -ex"]
for sec in re.split(r"^## ", text, flags=re.M):
    if sec.startswith("Quick start"):
        out += re.findall(r"```sh\n(.*?)```", sec, flags=re.S)
print("\n".join(out))
PY
check "the README has two quick starts with shell blocks" test "$(grep -c . "$W/readme.sh")" -gt 10
mkdir -p "$W/home/qs"; chown -R "$DOCUSER:" "$W/home"
out=$(cd "$W/home/qs" && as_doc bash -c "cd '$W/home/qs' && bash '$W/readme.sh'" 2>&1); rc=$?
echo "$out" | grep -v '^+' | sed 's/^/       readme: /' | tail -25
expect_eq "every command of the README's quick starts succeeds" 0 "$rc"
check "... the node answered \"running\"" grep -qx running <<< "$out"
check "... curl got a signature" grep -q '{"output":"' <<< "$out"
check "... openssl verified the engine's signature" grep -q 'Signature Verified Successfully' <<< "$out"
check "... ssh-keygen -D listed the new key" grep -q 'ecdsa-sha2-nistp256 ' <<< "$out"
check "... the quick start's node ran as that user" test -n "$(pgrep -u "$DOCUSER" -f 'vssm serve')"
pkill -u "$DOCUSER" 2>/dev/null

echo "-- apt-get remove, then purge"
dpkg-query -L vssm libvssm-pkcs11 | sort -u > "$W/files"
check "apt-get remove" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq vssm libvssm-pkcs11
kill "$NODE" 2>/dev/null; wait "$NODE" 2>/dev/null; NODE=""
left=$(while read -r f; do [ -f "$f" ] && echo "$f"; done < "$W/files")
expect_eq "after remove no file of the packages is left" "" "$left"
check "... the key store is kept" test -n "$(ls /var/lib/vssm/state)"
expect_eq "... vssm waits for purge (rc: its postrm), libvssm-pkcs11 (no scripts, no conffiles) is gone" "rc" \
    "$(dpkg -l vssm libvssm-pkcs11 2>/dev/null | awk '/^[a-z][a-z] / {printf "%s%s", s, $1; s=" "}')"
out=$(env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq vssm 2>&1); rc=$?
expect_eq "apt-get purge vssm" 0 "$rc"
check "... dpkg no longer knows either package" bash -c "! dpkg -l vssm libvssm-pkcs11 2>/dev/null | grep -q '^[a-z][a-z] '"
check "... purge says it keeps the key store" grep -q 'vssm: kept /var/lib/vssm' <<< "$out"
check "... which is still there, with the node's configuration" test -n "$(ls /var/lib/vssm/state)" -a -s /etc/vssm/node/config.json
rm -rf /var/lib/vssm/state /etc/vssm/node
mkdir -p /var/lib/vssm; chown vssm: /var/lib/vssm
check "reinstall and purge with no state left: /var/lib/vssm and /etc/vssm go" bash -c \
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends '$SRV' >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq vssm >/dev/null 2>&1 && [ ! -e /var/lib/vssm ] && [ ! -e /etc/vssm ]"
check "... the vssm user stays (it may own files elsewhere; Debian leaves system users)" getent passwd vssm
finish
