#!/usr/bin/env bash
# Wrapper: a fresh dev node for the Python checks.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
python3 "$CONFORMANCE_DIR/keyservice/02-crypto-python.py"
