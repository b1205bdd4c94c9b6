# shellcheck shell=bash
# Usage: source conformance/cluster-env.sh [DIR]
#
# A cluster on this machine: a 3-member etcd cluster (TLS between members and to clients, client
# certificates required) and 3 `vssm serve` nodes keeping their state in it, on free 127.0.0.1
# ports. Node 1 is bootstrapped with the RPC key; nodes 2 and 3 join from it with join credentials
# (`vssm admin node add`). Exports, like dev-env.sh:
#   MODULE VSSM_PKCS11_CONFIG (all three endpoints, round-robin) PIN SO_PIN TOKEN_LABEL
#   VSSM_BIN VSSM_URL (node 1) VSSM_CA VSSM_CLIENT_CERT VSSM_CLIENT_KEY VSSM_ADMIN_PASSWORD
#   VSSM_CLUSTER_DIR VSSM_NODE_PIDS VSSM_NODE_URLS ETCD_PIDS ETCD_ENDPOINTS (space-separated, in start order)
# and defines vssm_cluster_stop, vssm_cluster_add_node (starts and joins one more node; its PID
# and URL are appended) and vssm_cluster_start_node N (starts node N again after it was killed:
# it joins again with a new credential, as a credential works once). Returns non-zero on failure.

_vssm_cluster_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts node N (directory $VSSM_CLUSTER_DIR/nN); extra `vssm serve` options follow.
_vssm_cluster_serve() {
    local n="$1"; shift
    local d="$VSSM_CLUSTER_DIR/n$n"
    mkdir -p "$d"
    rm -f "$d/ports.json"
    vssm_serve_bg "$d/serve.log" --config "$VSSM_CLUSTER_DIR/config.json" --state-dir "$d" --api 127.0.0.1:0 --health 127.0.0.1:0 \
        --internal 127.0.0.1:0 --bootstrap-slave 127.0.0.1:0 --ports-file "$d/ports.json" "$@"
    local pid=$VSSM_SERVE_PID
    echo "$pid" > "$d/pid"
    local i
    for i in $(seq 1 300); do
        if [ -s "$d/ports.json" ]; then
            local health
            health=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["health"])' "$d/ports.json")
            [ "$(curl -s "http://127.0.0.1:$health/REST/v1/healthcheck")" = running ] && return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "cluster-env: node $n exited:" >&2; tail -5 "$d/serve.log" >&2; return 1; }
        sleep 0.1
    done
    echo "cluster-env: node $n did not come up" >&2
    return 1
}

_vssm_cluster_port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$VSSM_CLUSTER_DIR/n$1/ports.json" "$2"; }

vssm_cluster_start_node() {
    local n="$1" join="" i
    for i in $(seq 1 9); do
        [ "$i" = "$n" ] || [ ! -s "$VSSM_CLUSTER_DIR/n$i/ports.json" ] || ! kill -0 "$(cat "$VSSM_CLUSTER_DIR/n$i/pid")" 2>/dev/null \
            || join="$join --join https://127.0.0.1:$(_vssm_cluster_port "$i" bootstrapSlave)"
    done
    [ -n "$join" ] || { echo "cluster-env: no running node to join" >&2; return 1; }
    # A join credential works once: a node that joined before gets a new one to join again.
    if [ -s "$VSSM_CLUSTER_DIR/n$n/ports.json" ] || [ "${_vssm_cluster_reissue:-}" = 1 ]; then
        VSSM_URL="${VSSM_NODE_URLS// /,}" "$VSSM_BIN" admin node remove "n$n" >/dev/null 2>&1
        VSSM_URL="${VSSM_NODE_URLS// /,}" "$VSSM_BIN" admin node add "n$n" --out "$VSSM_CLUSTER_DIR/n$n.credential" >/dev/null || return 1
    fi
    # shellcheck disable=SC2086
    _vssm_cluster_serve "$n" $join --join-credential "$VSSM_CLUSTER_DIR/n$n.credential" || return 1
    _vssm_cluster_export
}

vssm_cluster_add_node() {
    local n=1
    while [ -d "$VSSM_CLUSTER_DIR/n$n" ]; do n=$((n + 1)); done
    # Any running node can issue it (node 1 may be down): admin takes every node's URL.
    VSSM_URL="${VSSM_NODE_URLS// /,}" "$VSSM_BIN" admin node add "n$n" --out "$VSSM_CLUSTER_DIR/n$n.credential" >/dev/null || return 1
    vssm_cluster_start_node "$n"
}

# VSSM_NODE_PIDS / VSSM_NODE_URLS from the node directories, in start order;
# VSSM_URL: the first node that runs (admin commands go there).
_vssm_cluster_export() {
    local pids="" urls="" n=1 first=""
    while [ -d "$VSSM_CLUSTER_DIR/n$n" ]; do
        pids="$pids $(cat "$VSSM_CLUSTER_DIR/n$n/pid")"
        urls="$urls https://127.0.0.1:$(_vssm_cluster_port "$n" api)"
        if [ -z "$first" ] && kill -0 "$(cat "$VSSM_CLUSTER_DIR/n$n/pid")" 2>/dev/null; then
            first="https://127.0.0.1:$(_vssm_cluster_port "$n" api)"
        fi
        n=$((n + 1))
    done
    export VSSM_NODE_PIDS="${pids# }" VSSM_NODE_URLS="${urls# }"
    [ -n "$first" ] && export VSSM_URL="$first"
}

vssm_cluster_stop() {
    local p
    for p in ${VSSM_NODE_PIDS:-} ${ETCD_PIDS:-}; do kill "$p" 2>/dev/null || true; done
    for p in ${VSSM_NODE_PIDS:-} ${ETCD_PIDS:-}; do wait "$p" 2>/dev/null || true; done
    unset VSSM_NODE_PIDS ETCD_PIDS
}

source "$(dirname "${BASH_SOURCE[0]}")/env-common.sh"

_vssm_cluster_main() {
    local dir bin module
    command -v etcd >/dev/null || { echo "cluster-env: etcd is not installed (apt-get install etcd-server etcd-client)" >&2; return 1; }
    _vssm_env_setup cluster "${1:-}" || return 1
    export VSSM_BIN="$bin" VSSM_CLUSTER_DIR="$dir"

    # --- etcd: a CA, one certificate for the members (server and peer), one client certificate ---
    local e="$dir/etcd-pki"
    mkdir -p "$e"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$e/ca-key.pem" -out "$e/ca.pem" \
        -days 30 -subj "/CN=vssm-cluster-etcd-ca" 2>/dev/null || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$e/member-key.pem" -out "$e/member.csr" -subj "/CN=etcd" 2>/dev/null
    printf 'subjectAltName=DNS:etcd,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$e/member.ext"
    openssl x509 -req -in "$e/member.csr" -CA "$e/ca.pem" -CAkey "$e/ca-key.pem" -CAcreateserial -days 30 \
        -extfile "$e/member.ext" -out "$e/member.pem" 2>/dev/null || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$e/client-key.pem" -out "$e/client.csr" -subj "/CN=vssm-node" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > "$e/client.ext"
    openssl x509 -req -in "$e/client.csr" -CA "$e/ca.pem" -CAkey "$e/ca-key.pem" -CAcreateserial -days 30 \
        -extfile "$e/client.ext" -out "$e/client.pem" 2>/dev/null || return 1

    local cports=() pports=() i cluster="" endpoints=""
    for i in 1 2 3; do
        cports[i]=$(_vssm_cluster_free_port); pports[i]=$(_vssm_cluster_free_port)
        cluster="$cluster,e$i=https://127.0.0.1:${pports[i]}"
        endpoints="$endpoints https://127.0.0.1:${cports[i]}"
    done
    cluster="${cluster#,}"; endpoints="${endpoints# }"
    local epids="" token="vssm-$$-$RANDOM"
    for i in 1 2 3; do
        etcd --name "e$i" --data-dir "$dir/etcd$i" \
            --listen-client-urls "https://127.0.0.1:${cports[i]}" --advertise-client-urls "https://127.0.0.1:${cports[i]}" \
            --listen-peer-urls "https://127.0.0.1:${pports[i]}" --initial-advertise-peer-urls "https://127.0.0.1:${pports[i]}" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
            --cert-file "$e/member.pem" --key-file "$e/member-key.pem" --trusted-ca-file "$e/ca.pem" --client-cert-auth \
            --peer-cert-file "$e/member.pem" --peer-key-file "$e/member-key.pem" --peer-trusted-ca-file "$e/ca.pem" --peer-client-cert-auth \
            >"$dir/etcd$i.log" 2>&1 &
        epids="$epids $!"
    done
    export ETCD_PIDS="${epids# }" ETCD_ENDPOINTS="$endpoints"
    local ok=""
    for i in $(seq 1 50); do
        if ETCDCTL_API=3 etcdctl --dial-timeout=1s --command-timeout=1s --endpoints "${endpoints// /,}" --cacert "$e/ca.pem" --cert "$e/client.pem" --key "$e/client-key.pem" \
            endpoint health >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || { echo "cluster-env: etcd did not become healthy" >&2; tail -3 "$dir/etcd1.log" >&2; vssm_cluster_stop; return 1; }

    # --- the key service: one config for every node, state in etcd -------------------------------
    local password="${VSSM_DEV_ADMIN_PASSWORD:-dev-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
    "$bin" init "$dir" --admin-password "$password" --new-pki >/dev/null || { vssm_cluster_stop; return 1; }
    python3 - "$dir/config.json" "$endpoints" "$e" <<'PY' || { vssm_cluster_stop; return 1; }
import json, sys
p, endpoints, e = sys.argv[1], sys.argv[2].split(), sys.argv[3]
c = json.load(open(p))
c["etcd"] = {"endpoints": endpoints, "ca": e + "/ca.pem", "cert": e + "/client.pem", "key": e + "/client-key.pem",
             "serverName": "etcd", "prefix": "/vssm/"}
json.dump(c, open(p, "w"), indent=1)
PY
    _vssm_cluster_serve 1 --bootstrap-key "$dir/rpc-key.pem" || { vssm_cluster_stop; return 1; }
    export VSSM_URL="https://127.0.0.1:$(_vssm_cluster_port 1 api)"
    export VSSM_CA="$dir/ca.pem" VSSM_CLIENT_CERT="$dir/client-cert.pem" VSSM_CLIENT_KEY="$dir/client-key.pem"
    export VSSM_ADMIN_PASSWORD="$password"
    _vssm_cluster_export
    # Every node gets a join credential (node 1 too: after a restart it joins like the others).
    for i in 1 2 3; do
        "$bin" admin node add "n$i" --out "$dir/n$i.credential" >/dev/null || { vssm_cluster_stop; return 1; }
    done
    for i in 2 3; do vssm_cluster_start_node "$i" || { vssm_cluster_stop; return 1; }; done
    local urls=""
    for u in $VSSM_NODE_URLS; do urls="$urls, \"$u\""; done
    cat > "$dir/pkcs11.json" <<JSON
{
  "slots": [{
    "label": "vssm-cluster",
    "endpoints": [${urls#, }],
    "endpointOrder": "round-robin",
    "serverName": "VSSM",
    "ca": "$dir/ca.pem",
    "clientCert": "$dir/client-cert.pem",
    "clientKey": "$dir/client-key.pem",
    "userPinIsAdminPassword": true,
    "refreshSeconds": 30,
    "connectTimeoutMs": 1000,
    "requestTimeoutMs": 5000
  }]
}
JSON
    export MODULE="$module" VSSM_PKCS11_CONFIG="$dir/pkcs11.json" PIN="$password" SO_PIN="$password" TOKEN_LABEL="vssm-cluster"
    echo "cluster-env: etcd ($ETCD_PIDS) and vssm nodes ($VSSM_NODE_PIDS) running, files in $dir" >&2
}

_vssm_cluster_main "$@"
