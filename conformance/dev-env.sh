# shellcheck shell=bash
# Usage: source conformance/dev-env.sh [DIR]
#
# Builds what is missing, creates a fresh dev PKI and config in DIR (a new temp dir by default),
# starts `vssm serve` on free 127.0.0.1 ports, bootstraps it over the wire, writes the module
# config and exports:
#   VSSM_DEV_DIR VSSM_URL VSSM_HEALTH_URL VSSM_INTERNAL_URL VSSM_CA VSSM_CLIENT_CERT VSSM_CLIENT_KEY
#   VSSM_ADMIN_PASSWORD VSSM_PID VSSM_BIN
#   MODULE VSSM_PKCS11_CONFIG PIN SO_PIN TOKEN_LABEL (the token's user PIN also manages keys)
# and a second tenant (principals: the client above is officer "team-a" of namespace `default`,
# whose PIN stays the admin password; "team-b" is officer of namespace `team-b` with its own PIN):
#   VSSM_PKCS11_CONFIG_B PIN_B TOKEN_LABEL_B VSSM_CLIENT_CERT_B VSSM_CLIENT_KEY_B
# and defines vssm_dev_stop (stops what this started, by PID).
# VSSM_DEV_TENANTS=0 registers no principals (every client uses every key, as the original);
# so does --compat-only (no extension API).
# VSSM_DEV_OPTS passes extra `vssm serve` options (e.g. --compat-only).
# Does not change the caller's shell options; returns non-zero on failure.

source "$(dirname "${BASH_SOURCE[0]}")/env-common.sh"

_vssm_dev_main() {
    local dir bin module
    _vssm_env_setup dev "${1:-}" || return 1

    local password
    # VSSM_DEV_ADMIN_PASSWORD picks it (test suites that hard-code a PIN); random otherwise.
    password="${VSSM_DEV_ADMIN_PASSWORD:-dev-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
    "$bin" init "$dir" --admin-password "$password" --new-pki \
        --api 127.0.0.1:0 --health 127.0.0.1:0 --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 >/dev/null \
        || { echo "dev-env: vssm init failed" >&2; return 1; }
    # VSSM_DEV_LIMITS: a JSON object merged into config.json's "limits" (e.g. {"minStoredRSABits": 1024}).
    if [ -n "${VSSM_DEV_LIMITS:-}" ]; then
        python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c.setdefault("limits", {}).update(json.loads(sys.argv[2])); json.dump(c, open(p, "w"), indent=1)' \
            "$dir/config.json" "$VSSM_DEV_LIMITS" || { echo "dev-env: bad VSSM_DEV_LIMITS" >&2; return 1; }
    fi

    rm -f "$dir/ports.json"
    vssm_service_owns "$dir"
    # shellcheck disable=SC2086
    $VSSM_AS "$bin" serve --config "$dir/config.json" --ports-file "$dir/ports.json" ${VSSM_DEV_OPTS:-} >"$dir/serve.log" 2>&1 &
    local pid=$!
    local i
    for i in $(seq 1 100); do
        [ -s "$dir/ports.json" ] && break
        kill -0 "$pid" 2>/dev/null || { echo "dev-env: vssm serve exited:" >&2; tail -5 "$dir/serve.log" >&2; return 1; }
        sleep 0.1
    done
    [ -s "$dir/ports.json" ] || { echo "dev-env: vssm serve did not start" >&2; kill "$pid"; return 1; }
    local api health internal
    api=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$dir/ports.json")
    health=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["health"])' "$dir/ports.json")
    internal=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["internal"])' "$dir/ports.json")

    "$bin" bootstrap --url "https://127.0.0.1:$api" --key "$dir/rpc-key.pem" >/dev/null \
        || { echo "dev-env: bootstrap failed" >&2; kill "$pid"; return 1; }

    export VSSM_BIN="$bin"
    export VSSM_DEV_DIR="$dir"
    export VSSM_URL="https://127.0.0.1:$api"
    export VSSM_HEALTH_URL="http://127.0.0.1:$health"
    export VSSM_INTERNAL_URL="https://127.0.0.1:$internal"
    export VSSM_CA="$dir/ca.pem"
    export VSSM_CLIENT_CERT="$dir/client-cert.pem"
    export VSSM_CLIENT_KEY="$dir/client-key.pem"
    export VSSM_ADMIN_PASSWORD="$password"
    export VSSM_PID="$pid"
    cat > "$dir/pkcs11.json" <<JSON
{
  "slots": [{
    "label": "vssm-dev",
    "endpoints": ["https://127.0.0.1:$api"],
    "serverName": "VSSM",
    "ca": "$dir/ca.pem",
    "clientCert": "$dir/client-cert.pem",
    "clientKey": "$dir/client-key.pem",
    "userPinIsAdminPassword": true,
    "refreshSeconds": 30
  }]
}
JSON
    export MODULE="$module"
    export VSSM_PKCS11_CONFIG="$dir/pkcs11.json"
    export PIN="$password"
    export SO_PIN="$password"
    export TOKEN_LABEL="vssm-dev"
    unset VSSM_PKCS11_CONFIG_B PIN_B TOKEN_LABEL_B VSSM_CLIENT_CERT_B VSSM_CLIENT_KEY_B
    if [ "${VSSM_DEV_TENANTS:-1}" = 1 ] && [[ "${VSSM_DEV_OPTS:-}" != *--compat-only* ]]; then
        local pin_b
        pin_b="b-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        "$bin" issue-client "$dir" --name team-b --out "$dir/team-b" >/dev/null \
            && "$bin" admin principal add team-a --certificate "$dir/client-cert.pem" --role officer --namespace default >/dev/null \
            && printf '%s\n' "$pin_b" > "$dir/team-b.pin" \
            && "$bin" admin principal add team-b --certificate "$dir/team-b-cert.pem" --role officer --namespace team-b --pin-file "$dir/team-b.pin" >/dev/null \
            || { echo "dev-env: registering the tenants failed" >&2; kill "$pid"; return 1; }
        cat > "$dir/pkcs11-b.json" <<JSON
{
  "slots": [{
    "label": "team-b",
    "endpoints": ["https://127.0.0.1:$api"],
    "serverName": "VSSM",
    "ca": "$dir/ca.pem",
    "clientCert": "$dir/team-b-cert.pem",
    "clientKey": "$dir/team-b-key.pem",
    "userPinIsAdminPassword": true,
    "refreshSeconds": 30
  }]
}
JSON
        export VSSM_PKCS11_CONFIG_B="$dir/pkcs11-b.json"
        export PIN_B="$pin_b"
        export TOKEN_LABEL_B="team-b"
        export VSSM_CLIENT_CERT_B="$dir/team-b-cert.pem"
        export VSSM_CLIENT_KEY_B="$dir/team-b-key.pem"
    fi
    "$bin" health --url "$VSSM_HEALTH_URL" >/dev/null || { echo "dev-env: node is not running" >&2; return 1; }
    echo "dev-env: vssm serve (pid $pid) at $VSSM_URL, files in $dir" >&2
}

vssm_dev_stop() {
    if [ -n "${VSSM_PID:-}" ]; then
        kill "$VSSM_PID" 2>/dev/null || true
        wait "$VSSM_PID" 2>/dev/null || true
        unset VSSM_PID
    fi
}

_vssm_dev_main "$@"
