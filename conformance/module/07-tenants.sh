#!/usr/bin/env bash
# Tenants (issue 11): principals with roles and namespaces, through the module and real consumers
# (pkcs11-tool, p11tool), the REST API and the CLI. dev-env registers team-a (officer, namespace
# default: VSSM_PKCS11_CONFIG/PIN) and team-b (officer, namespace team-b: VSSM_PKCS11_CONFIG_B/PIN_B).
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap 'vssm_dev_stop; [ -n "${FRESH_PID:-}" ] && kill "$FRESH_PID" 2>/dev/null' EXIT
D="$VSSM_DEV_DIR"
W="$D/work"; mkdir -p "$W"
P11="pkcs11-tool --module $MODULE"
A() { VSSM_PKCS11_CONFIG="$D/pkcs11.json" "$@"; }
B() { VSSM_PKCS11_CONFIG="$VSSM_PKCS11_CONFIG_B" "$@"; }
printf 'tenant data' > "$W/msg"
# REST as a given certificate: rest CERT KEY PATH JSON [extra curl args] (prints body, then status)
rest() { rest_to "$VSSM_URL" "$@"; }
PORT=${VSSM_URL##*:}
status_of() { tail -1 <<< "$1"; }

# --- each team makes keys with its own PIN; neither sees nor uses the other's ----------------------
check "team A (officer, default) generates a key with its PIN" A $P11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label a-key --id a1
check "team B (officer, team-b) generates a key with its own PIN (C_Login as CKU_USER)" \
    B $P11 --login --pin "$PIN_B" --keypairgen --key-type EC:prime256v1 --label b-key --id b1
out=$(B $P11 --login --pin "$PIN" -O 2>&1)
check "team A's PIN (the admin password is not B's PIN) still logs B in: the root credential" grep -q "b-key" <<< "$out"
out=$(B $P11 --login --pin "not-the-pin" -O 2>&1)
check "a wrong PIN for team B is CKR_PIN_INCORRECT" grep -q CKR_PIN_INCORRECT <<< "$out"
out=$(B $P11 -L 2>&1)
check "team B's token is labelled with its namespace" grep -q "token label *: team-b" <<< "$out"
a_objects=$(A $P11 --login --pin "$PIN" -O 2>&1)
b_objects=$(B $P11 --login --pin "$PIN_B" -O 2>&1)
check "pkcs11-tool -O: team A sees a-key" grep -q "label: *a-key" <<< "$a_objects"
check "pkcs11-tool -O: team A does not see b-key" bash -c "! grep -q b-key <<< '$a_objects'"
check "pkcs11-tool -O: team B sees b-key" grep -q "label: *b-key" <<< "$b_objects"
check "pkcs11-tool -O: team B does not see a-key" bash -c "! grep -q a-key <<< '$b_objects'"
export GNUTLS_PIN="$PIN_B"
out=$(B p11tool --provider "$MODULE" --login --list-all "pkcs11:token=team-b" 2>&1)
check "p11tool --list-all on token team-b lists b-key" grep -q "Label: b-key" <<< "$out"
check "p11tool --list-all on token team-b does not list a-key" bash -c "! grep -q a-key <<< '$out'"
export GNUTLS_PIN="$PIN"
out=$(A p11tool --provider "$MODULE" --login --list-all "pkcs11:token=vssm-dev" 2>&1)
check "p11tool --list-all on team A's token does not list b-key" bash -c "grep -q 'Label: a-key' <<< '$out' && ! grep -q b-key <<< '$out'"

B $P11 -r -y pubkey -d b1 -o "$W/b.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$W/b.der" -out "$W/b.pem" 2>/dev/null
B $P11 --login --pin "$PIN_B" -s -m ECDSA-SHA256 -d b1 -i "$W/msg" -o "$W/b.sig" --signature-format openssl >/dev/null 2>&1
check "team B signs with b-key, openssl verifies" openssl dgst -sha256 -verify "$W/b.pem" -signature "$W/b.sig" "$W/msg"
SIGN='{"keyName":"b-key","algorithm":"SHA256withECDSA","input":"dGVuYW50"}'
out=$(rest "$VSSM_CLIENT_CERT" "$VSSM_CLIENT_KEY" /REST/v1/asymmetric/sign "$SIGN")
expect_eq "team A cannot use b-key by name through the REST API (404)" 404 "$(status_of "$out")"
out=$(rest "$VSSM_CLIENT_CERT" "$VSSM_CLIENT_KEY" /REST/v1/asymmetric/sign '{"keyName":"@team-b/b-key","algorithm":"SHA256withECDSA","input":"dGVuYW50"}')
expect_eq "... nor by its stored name @team-b/b-key (404)" 404 "$(status_of "$out")"
out=$(rest "$VSSM_CLIENT_CERT" "$VSSM_CLIENT_KEY" /REST/v1/ext/listkeys '{}' -H "X-VSSM-Namespace: team-b")
expect_eq "... nor by asking for namespace team-b (403)" 403 "$(status_of "$out")"
out=$(rest "$VSSM_CLIENT_CERT_B" "$VSSM_CLIENT_KEY_B" /REST/v1/asymmetric/sign "$SIGN")
expect_eq "team B's certificate signs b-key through the base API (200)" 200 "$(status_of "$out")"

# --- usage set at creation is the service's rule too --------------------------------------------------
# (attributes: one record, CKA_SIGN (0x108) = FALSE: 8-byte little-endian type, 1-byte value)
NOSIGN=$(printf '\x08\x01\x00\x00\x00\x00\x00\x00\x00' | base64)
out=$(rest "$VSSM_CLIENT_CERT_B" "$VSSM_CLIENT_KEY_B" /REST/v1/ext/generatekey \
    "{\"adminPassword\":\"$PIN_B\",\"keyName\":\"b-nosign\",\"keyType\":\"ASYMMETRIC\",\"keySpec\":\"EC\",\"keySize\":256,\"attributes\":\"$NOSIGN\"}")
expect_eq "team B makes a key with CKA_SIGN=FALSE (its PIN through the REST API)" 200 "$(status_of "$out")"
out=$(rest "$VSSM_CLIENT_CERT_B" "$VSSM_CLIENT_KEY_B" /REST/v1/asymmetric/sign '{"keyName":"b-nosign","algorithm":"SHA256withECDSA","input":"dGVuYW50"}')
check "the service itself refuses to sign with it (403, CKA_SIGN is FALSE), whoever asks" \
    bash -c "[ '$(status_of "$out")' = 403 ] && grep -q 'CKA_SIGN is FALSE' <<< '$out'"
out=$(B $P11 --login --pin "$PIN_B" -O 2>&1)
check "the module shows that key without 'sign' in its usage" python3 -c '
import sys; t = sys.stdin.read(); b = t[t.index("b-nosign"):]; u = b[b.index("Usage:"):].splitlines()[0]
assert "sign" not in u.replace("verify", ""), u' <<< "$out"

# --- a user signs but cannot manage; an auditor reads its namespace only --------------------------
"$VSSM_BIN" issue-client "$D" --name b-user --out "$W/b-user" >/dev/null
"$VSSM_BIN" issue-client "$D" --name b-auditor --out "$W/b-auditor" >/dev/null
"$VSSM_BIN" issue-client "$D" --name stranger --out "$W/stranger" >/dev/null
printf 'user-pin-42\n' > "$W/user.pin"; printf 'audit-pin-42\n' > "$W/audit.pin"
check "vssm admin principal add: a user of team-b" "$VSSM_BIN" admin principal add b-user --certificate "$W/b-user-cert.pem" --role user --namespace team-b --pin-file "$W/user.pin"
check "vssm admin principal add: an auditor of team-b" "$VSSM_BIN" admin principal add b-auditor --certificate "$W/b-auditor-cert.pem" --role auditor --namespace team-b --pin-file "$W/audit.pin"
sed -e "s#$D/team-b-cert.pem#$W/b-user-cert.pem#" -e "s#$D/team-b-key.pem#$W/b-user-key.pem#" "$VSSM_PKCS11_CONFIG_B" > "$W/user.json"
U() { VSSM_PKCS11_CONFIG="$W/user.json" "$@"; }
U $P11 --login --pin user-pin-42 -s -m ECDSA-SHA256 -d b1 -i "$W/msg" -o "$W/u.sig" --signature-format openssl >/dev/null 2>&1
check "the user signs with b-key (its PIN), openssl verifies" openssl dgst -sha256 -verify "$W/b.pem" -signature "$W/u.sig" "$W/msg"
out=$(U $P11 --login --pin user-pin-42 --keypairgen --key-type EC:prime256v1 --label user-key 2>&1)
# (this pkcs11-tool prints CKR_ACTION_PROHIBITED as "unknown PKCS11 error (0x1b)")
PROHIBITED='CKR_ACTION_PROHIBITED|\(0x1b\)'
check "the user cannot generate a key: CKR_ACTION_PROHIBITED" grep -qE "$PROHIBITED" <<< "$out"
out=$(U $P11 --login --pin user-pin-42 --delete-object --type privkey --id b1 2>&1)
check "the user cannot delete b-key: CKR_ACTION_PROHIBITED" grep -qE "$PROHIBITED" <<< "$out"
out=$(U $P11 --login --pin user-pin-42 --set-id b2 --type privkey --id b1 2>&1)
check "the user cannot set attributes: CKR_ACTION_PROHIBITED" grep -qE "$PROHIBITED" <<< "$out"
out=$(U $P11 --keypairgen --key-type EC:prime256v1 --label user-key 2>&1)
check "... and without a login: CKR_USER_NOT_LOGGED_IN" grep -q CKR_USER_NOT_LOGGED_IN <<< "$out"
out=$(rest "$W/b-user-cert.pem" "$W/b-user-key.pem" /REST/v1/ext/deletekey '{"adminPassword":"user-pin-42","keyName":"b-key","keyType":"ASYMMETRIC"}')
expect_eq "the service answers the user's delete with 403" 403 "$(status_of "$out")"
out=$(B $P11 -O 2>&1)
check "b-key is still there" grep -q "label: *b-key" <<< "$out"
out=$(rest "$W/b-auditor-cert.pem" "$W/b-auditor-key.pem" /REST/v1/asymmetric/sign "$SIGN")
expect_eq "the auditor cannot sign (403)" 403 "$(status_of "$out")"
out=$("$VSSM_BIN" admin logs --audit --cert "$W/b-auditor-cert.pem" --key "$W/b-auditor-key.pem" --password audit-pin-42 --limit 100000 2>&1)
check "the auditor reads team-b's records (its PIN)" grep -q 'principal="b-user".*route=/REST/v1/asymmetric/sign key="b-key".*namespace=team-b status=200' <<< "$out"
check "... and no record of another namespace" bash -c "! grep -v 'namespace=team-b' <<< '$out' | grep -q seq="
check "... team A's own signature is not among them" bash -c "! grep -q 'principal=\"team-a\"' <<< '$out'"

# --- one slot per namespace of the principal ("namespaces": "auto") ---------------------------------
"$VSSM_BIN" issue-client "$D" --name multi --out "$W/multi" >/dev/null
"$VSSM_BIN" admin principal add multi --certificate "$W/multi-cert.pem" --role officer --namespace team-b --namespace team-c >/dev/null
python3 - "$VSSM_PKCS11_CONFIG_B" "$W/multi.json" "$W/multi-cert.pem" "$W/multi-key.pem" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); s = c["slots"][0]
s["clientCert"], s["clientKey"], s["namespaces"] = sys.argv[3], sys.argv[4], "auto"
del s["label"]
json.dump(c, open(sys.argv[2], "w"))
PY
M() { VSSM_PKCS11_CONFIG="$W/multi.json" "$@"; }
out=$(M $P11 -L 2>&1)
check "\"namespaces\": \"auto\" gives one slot per namespace, labelled team-b and team-c" \
    bash -c "grep -q 'token label *: team-b' <<< '$out' && grep -q 'token label *: team-c' <<< '$out' && [ \$(grep -c 'token label' <<< '$out') = 2 ]"
check "an officer of both generates a key on token team-c" M $P11 --token-label team-c --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label c-key
out=$(M $P11 --token-label team-b -O 2>&1)
check "token team-b shows b-key and not c-key" bash -c "grep -q 'label: *b-key' <<< '$out' && ! grep -q c-key <<< '$out'"
out=$(M $P11 --token-label team-c -O 2>&1)
check "token team-c shows c-key and not b-key" bash -c "grep -q 'label: *c-key' <<< '$out' && ! grep -q b-key <<< '$out'"

# --- the audit trail names the principal of every operation; an edit is found ----------------------
out=$("$VSSM_BIN" admin logs --audit --limit 100000 2>&1)
check "every record of a key operation names a registered principal" python3 -c '
import re, sys
keyed = [l for l in sys.stdin.read().splitlines() if " key=\"" in l and "key=\"\"" not in l]
assert keyed, "no records"
bad = [l for l in keyed if not re.search(r"principal=\"(team-a|team-b|b-user|b-auditor|multi|stranger)\"", l) and "principal=\"CN=stranger\"" not in l]
assert not bad, bad[:3]' <<< "$out"
check "the audit trail verifies" "$VSSM_BIN" admin logs --verify
python3 - "$D/state/audit.jsonl" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines(True)
for i, l in enumerate(lines):
    if '"principal":"b-user"' in l:
        lines[i] = l.replace('"principal":"b-user"', '"principal":"team-a"', 1)
        break
with open(p, "r+") as f:
    f.write("".join(lines)); f.truncate()
PY
out=$("$VSSM_BIN" admin logs --verify 2>&1); rc=$?
check "an edited principal makes --verify fail (exit 1, names the record)" bash -c "[ $rc -eq 1 ] && grep -q BROKEN <<< '$out'"

# --- unregistered certificates; backup and restore keep principals and namespaces ----------------
out=$(rest "$W/stranger-cert.pem" "$W/stranger-key.pem" /REST/v1/admin/listkeys "{\"adminPassword\":\"$PIN\"}")
expect_eq "a trusted but unregistered certificate is refused (403)" 403 "$(status_of "$out")"
check "... with a message that says it is not registered" grep -q "not registered as a principal" <<< "$out"
check "vssm admin backup (root: the admin password)" "$VSSM_BIN" admin backup --out "$W/backup.json"
mkdir -p "$W/fresh"
vssm_serve_bg "$W/fresh/serve.log" --config "$D/config.json" --state-dir "$W/fresh" --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 \
    --bootstrap-slave 127.0.0.1:0 --bootstrap-key "$D/rpc-key.pem" --ports-file "$W/fresh/ports.json"
FRESH_PID=$VSSM_SERVE_PID
for _ in $(seq 1 100); do [ -s "$W/fresh/ports.json" ] && break; sleep 0.1; done
FPORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$W/fresh/ports.json")
FURL="https://127.0.0.1:$FPORT"
check "a fresh node (no principals yet) restores the backup" "$VSSM_BIN" admin restore --url "$FURL" "$W/backup.json"
out=$("$VSSM_BIN" admin principal list --url "$FURL" 2>&1)
check "... principals are back (team-b, b-user, b-auditor)" bash -c "grep -q '^team-b ' <<< '$out' && grep -q '^b-user ' <<< '$out' && grep -q '^b-auditor ' <<< '$out'"
sed "s#127.0.0.1:$PORT#127.0.0.1:$FPORT#" "$VSSM_PKCS11_CONFIG_B" > "$W/fresh-b.json"
VSSM_PKCS11_CONFIG="$W/fresh-b.json" $P11 --login --pin "$PIN_B" -s -m ECDSA-SHA256 -d b1 -i "$W/msg" -o "$W/f.sig" --signature-format openssl >/dev/null 2>&1
check "... team B signs with b-key on the restored node (its PIN restored too), openssl verifies" openssl dgst -sha256 -verify "$W/b.pem" -signature "$W/f.sig" "$W/msg"
sed "s#127.0.0.1:$PORT#127.0.0.1:$FPORT#" "$D/pkcs11.json" > "$W/fresh-a.json"
out=$(VSSM_PKCS11_CONFIG="$W/fresh-a.json" $P11 --login --pin "$PIN" -O 2>&1)
check "... and team A still does not see it there" bash -c "grep -q a-key <<< '$out' && ! grep -q b-key <<< '$out'"

# --- with no principal registered the original model is back ---------------------------------------
for p in team-a team-b b-user b-auditor multi; do "$VSSM_BIN" admin principal remove "$p" >/dev/null; done
out=$(rest "$W/stranger-cert.pem" "$W/stranger-key.pem" /REST/v1/admin/listkeys "{\"adminPassword\":\"$PIN\"}")
expect_eq "with every principal removed, any trusted client uses the original API again (200)" 200 "$(status_of "$out")"
check "... and sees every key, namespaced ones by their stored names" grep -q '@team-b/b-key' <<< "$out"

finish
