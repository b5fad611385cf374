#!/usr/bin/env bash
# The console's browser tests: `tagsync serve --demo` on loopback, driven in Debian's headless
# chromium by playwright-core (tests/browser), once with the browser in Chinese (zh-CN) and once
# in English (en-US); before them, the check of the message table against the code
# (i18n.test.mjs). Screenshots go to target/browser-screenshots/{zh-CN,en-US}/.
#
#   bash infra/browser-test.sh        (infra/test.sh runs it after cargo test)
#
# 1. Installs Debian's `chromium` (and CJK fonts: the console and the demo's tags are Chinese) with apt-get
#    when /usr/bin/chromium is missing: Playwright's own browser downloads are not possible here.
# 2. `npm ci` in tests/browser (playwright-core and acorn, pinned in package-lock.json).
# 3. Builds the debug `tagsync` binary and runs the tests; whatever happens, the server they
#    started is stopped on exit (the test kills it itself; this is the backstop).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_install() {
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install $*" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (apt-get)"
    apt_install "${missing[@]}"
fi
command -v node >/dev/null || { echo "node (>= 20) is needed for the browser tests" >&2; exit 1; }

(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
# --all-targets: the same features as `cargo test --all-targets` just built, so after it this
# is a no-op instead of a second build of the dependencies.
cargo build --locked --all-targets

shots=target/browser-screenshots
mkdir -p "$shots"
# Screenshots of earlier layouts (before one folder per locale) would pass for fresh ones.
find "$shots" -maxdepth 1 -name '*.png' -delete
stop_server() {
    if [[ -f $shots/serve.pid ]]; then
        kill "$(cat "$shots/serve.pid")" 2>/dev/null || true
        rm -f "$shots/serve.pid"
    fi
}
trap stop_server EXIT
(cd tests/browser && CHROMIUM=/usr/bin/chromium TAGSYNC_BIN="$PWD/../../target/debug/tagsync" \
    node --test --test-concurrency=1 --test-reporter=spec i18n.test.mjs console.test.mjs)
echo "screenshots: $PWD/$shots"
