# shellcheck shell=bash
# Shared helpers for conformance scenarios: assertions, counters, curl against the dev node.
CONFORMANCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CONFORMANCE_DIR/.." && pwd)"
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }

# check "description" command...: passes when the command exits 0.
check() {
    local what="$1"; shift
    local out
    if out=$("$@" 2>&1); then pass "$what"; else fail "$what"; echo "$out" | tail -5 | sed 's/^/       /'; fi
}

# expect_eq "description" expected actual
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# api PATH JSON: POST to the dev node over mTLS, prints the body; `last_status` prints the HTTP
# status afterwards (api usually runs in a command substitution, a subshell).
api() {
    local port="${VSSM_URL##*:}"
    local out
    out=$(curl -sS --max-time 120 --resolve "VSSM:$port:127.0.0.1" --cacert "$VSSM_CA" \
        --cert "$VSSM_CLIENT_CERT" --key "$VSSM_CLIENT_KEY" -w '\n%{http_code}' \
        "https://VSSM:$port$1" -d "$2")
    printf '%s' "${out##*$'\n'}" > "${VSSM_DEV_DIR:-/tmp}/.last_status"
    printf '%s' "${out%$'\n'*}"
}

# rest_to URL CERT KEY PATH JSON [curl options...]: POST as the given client certificate to a node
# (URL https://127.0.0.1:PORT); prints the body, then the HTTP status on a line of its own.
rest_to() {
    local port="${1##*:}"
    curl -s --max-time 120 --cacert "$VSSM_CA" --resolve "VSSM:$port:127.0.0.1" --cert "$2" --key "$3" "${@:6}" \
        "https://VSSM:$port$4" -d "$5" -w '\n%{http_code}'
}

last_status() { cat "${VSSM_DEV_DIR:-/tmp}/.last_status" 2>/dev/null; }

json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }

finish() {
    echo "$(basename "$0"): $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# engine_conf FILE: an OpenSSL config that loads the libp11 engine on $MODULE.
engine_conf() {
    local engine
    engine=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -1)
    cat > "$1" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $MODULE
init = 0
CNF
}
