#!/usr/bin/env bash
# Shows that the Lambda build carries no simulator code (issue 13): builds the `sync_worker`
# Lambda binary as template.yaml builds it — without default features, so without `sim` —
# and counts the symbols of `tagsync::sim` in it with `nm`; it must be 0. As a control that
# the count can see them, the same count on the default-feature `tagsync` binary (which has
# the simulators for `serve --demo`) must be above 0.
#
#   bash infra/check-lambda-symbols.sh
#
# A debug build in the usual target dir (the dev profile keeps symbols; the binary built
# without the feature has its own fingerprint, so the default build is not rebuilt, only
# re-copied). The release build that `sam build` makes is stripped, so it is checked here
# in debug: the code is the same, only the optimisation differs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v nm >/dev/null || { echo "nm (binutils) is needed" >&2; exit 2; }

# The executable cargo reports for a build (not target/debug/NAME: both builds copy there).
built() {
    cargo build --locked --message-format=json-render-diagnostics "$@" |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])' | tail -n 1
}

sim_symbols() {
    # `|| true`: grep -c exits 1 when it counts 0.
    nm -C "$1" 2>/dev/null | grep -c 'tagsync::sim::' || true
}

lambda="$(built --no-default-features --bin sync_worker)"
demo="$(built --bin tagsync)"
n_lambda="$(sim_symbols "$lambda")"
n_demo="$(sim_symbols "$demo")"
printf 'sync_worker (no default features): %s simulator symbols, %s bytes\n' \
    "$n_lambda" "$(stat -c %s "$lambda")"
printf 'tagsync (default features, control): %s simulator symbols, %s bytes\n' \
    "$n_demo" "$(stat -c %s "$demo")"
if [[ "$n_demo" -eq 0 ]]; then
    echo "the control binary shows no simulator symbols: the check cannot see them" >&2
    exit 1
fi
if [[ "$n_lambda" -ne 0 ]]; then
    echo "the Lambda build contains simulator code:" >&2
    nm -C "$lambda" | grep 'tagsync::sim::' | head -20 >&2
    exit 1
fi
echo "the Lambda build contains no simulator code"
