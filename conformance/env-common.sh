# shellcheck shell=bash
# Shared by dev-env.sh and cluster-env.sh (sourced by them; defines functions only).

# _vssm_env_setup NAME [DIR]: sets `dir` (DIR, or a new /tmp/vssm-NAME.XXXXXX; absolute), `bin`
# (VSSM_BIN or the debug vssm) and `module` (MODULE or the debug module), building what is missing.
# The caller declares them local.
_vssm_env_setup() {
    local name="$1" root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    dir="${2:-}"
    if [ -z "$dir" ]; then dir="$(mktemp -d "/tmp/vssm-$name.XXXXXX")" || return 1; fi
    mkdir -p "$dir" || return 1
    dir="$(cd "$dir" && pwd)"
    bin="${VSSM_BIN:-$root/.build/debug/vssm}"
    if [ ! -x "$bin" ]; then
        echo "$name-env: building vssm (first build takes a few minutes)..." >&2
        (cd "$root" && swift build --product vssm >&2) || { echo "$name-env: build failed" >&2; return 1; }
    fi
    module="${MODULE:-$root/.build/debug/libvssm-pkcs11.so}"
    if [ ! -f "$module" ]; then
        echo "$name-env: building the PKCS#11 module..." >&2
        (cd "$root" && swift build --product vssm-pkcs11 >&2) || { echo "$name-env: module build failed" >&2; return 1; }
    fi
}

# The service runs as an unprivileged user, as the Debian package's unit runs it (User=vssm):
# VSSM_SERVE_USER (default: the `vssm` system user made by scripts/install-deps.sh) when this shell
# is root; as this shell's own user otherwise. Use `$VSSM_AS "$VSSM_BIN" serve ...` (setpriv execs,
# so `$!` is the node's PID) after `vssm_service_owns DIR...` (the node reads its keys and writes
# its state, ports file and audit trail there).
if [ "$(id -u)" -eq 0 ] && getent passwd "${VSSM_SERVE_USER:-vssm}" >/dev/null; then
    VSSM_AS="setpriv --reuid=${VSSM_SERVE_USER:-vssm} --regid=$(id -g "${VSSM_SERVE_USER:-vssm}") --clear-groups --inh-caps=-all --"
elif [ "$(id -u)" -eq 0 ]; then
    echo "env: no user ${VSSM_SERVE_USER:-vssm} (scripts/install-deps.sh adds it): vssm serve runs as root" >&2
    VSSM_AS=""
else
    VSSM_AS=""
fi
export VSSM_AS

# vssm_service_owns DIR...: the service user owns these directories and what is in them.
vssm_service_owns() {
    [ -n "$VSSM_AS" ] || return 0
    chown -R "${VSSM_SERVE_USER:-vssm}:" "$@"
}

# vssm_serve_bg LOG ARGS...: starts `vssm serve ARGS` as the service user in the background,
# output appended to LOG; sets VSSM_SERVE_PID. The dev or cluster directory is given to the
# service user first (configs, keys, state directories and ports files the scenario made).
# VSSM_SERVE_WRAP: a command the node runs under (e.g. faketime), after the user switch.
vssm_serve_bg() {
    local log="$1"; shift
    # shellcheck disable=SC2086
    vssm_service_owns ${VSSM_DEV_DIR:-} ${VSSM_CLUSTER_DIR:-}
    # shellcheck disable=SC2086
    $VSSM_AS ${VSSM_SERVE_WRAP:-} "$VSSM_BIN" serve "$@" >>"$log" 2>&1 &
    VSSM_SERVE_PID=$!
}
