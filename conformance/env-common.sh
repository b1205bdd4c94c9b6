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
