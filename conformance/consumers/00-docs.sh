#!/usr/bin/env bash
# The docs/ pages say which scenario checks them; this keeps them honest: every page names an
# existing scenario, and every pkcs11: URI written on a page is used by one of its scenarios
# (so a URI in the docs is one that a real consumer accepted in CI).
set -u
source "$(dirname "$0")/../lib.sh"
DOCS="$REPO_ROOT/docs"
for page in "$DOCS"/*.md; do
    name=$(basename "$page")
    [ "$name" = README.md ] && continue
    scenarios=$(grep -oE 'conformance/(consumers|module)/[0-9][0-9]-[a-z0-9-]*\.sh' "$page" | sort -u)
    check "$name names its scenario" test -n "$scenarios"
    for s in $scenarios; do check "$name: $s exists" test -f "$REPO_ROOT/$s"; done
    # URIs without placeholders ("..." or $VAR) must appear verbatim in a scenario of the page.
    uris=$(grep -o 'pkcs11:[A-Za-z0-9=;%._-]*' "$page" | grep -v '\.\.\.' | grep -v '=$' | sort -u)
    for u in $uris; do
        found=no
        for s in $scenarios; do grep -qF "$u" "$REPO_ROOT/$s" && found=yes; done
        expect_eq "$name: $u is used by its scenario" yes "$found"
    done
done
for s in "$REPO_ROOT"/conformance/consumers/0[1-9]-*.sh; do
    rel="conformance/consumers/$(basename "$s")"
    check "$rel is documented in docs/" grep -rqF "$rel" "$DOCS"
done
finish
