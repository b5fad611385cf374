#!/usr/bin/env bash
# Lints template.yaml offline. Exits non-zero on any finding.
#
#   bash infra/check-template.sh
#
# 1. cfn-lint on template.yaml as written (SAM schemas, informational rules included).
# 2. cfn-lint on the template after the SAM transform. cfn-lint 1.x no longer runs the
#    transform itself and, on the SAM template, misses whole classes of mistakes: a
#    misspelt !Ref inside a policy template or Globals, a wrong event Type when a property
#    holds an intrinsic, an out-of-range BatchSize, a misspelt FunctionResponseTypes value.
#    After aws-sam-translator has expanded the template into plain CloudFormation, cfn-lint
#    catches them all.
# 3. `sam validate --lint`, only when a `sam` executable is on PATH or in the venv (this
#    script does not install the SAM CLI: it is large).
#
# Tools live in the venv infra/.local/venv (created if missing; other scripts may install
# more into it, e.g. moto). Versions are pinned; bump them deliberately.
set -euo pipefail

CFN_LINT_VERSION=1.58.0
SAM_TRANSLATOR_VERSION=1.115.0

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/infra/.local/venv"
template="$repo/template.yaml"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
fi
py="$venv/bin/python"

installed_version() {
    "$py" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'
}
ensure() {
    local name=$1 version=$2
    if [[ "$(installed_version "$name")" != "$version" ]]; then
        echo "installing $name==$version into $venv"
        "$py" -m pip install --quiet --disable-pip-version-check "$name==$version"
    fi
}
ensure cfn-lint "$CFN_LINT_VERSION"
ensure aws-sam-translator "$SAM_TRANSLATOR_VERSION"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0

echo "== cfn-lint $CFN_LINT_VERSION: template.yaml"
if "$venv/bin/cfn-lint" --include-checks I -- "$template"; then
    echo "   clean"
else
    status=1
fi

echo "== cfn-lint $CFN_LINT_VERSION: template.yaml after the SAM transform ($SAM_TRANSLATOR_VERSION)"
translated="$work/translated.json"
# CodeUri is a local folder (sam build/package replace it); the translator wants an S3 URI,
# so it gets a placeholder. The translator needs a region and partition, not credentials.
if "$py" - "$template" "$translated" <<'PY'; then
import json
import sys

import boto3
from cfnlint.decode import decode
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

source, target = sys.argv[1], sys.argv[2]
template, problems = decode(source)
if problems:
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1)
template = json.loads(json.dumps(template))
for resource in template.get("Resources", {}).values():
    if resource.get("Type") == "AWS::Serverless::Function":
        props = resource.setdefault("Properties", {})
        if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = "s3://placeholder-bucket/code.zip"
translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
try:
    out = translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: {})
except InvalidDocumentException as e:
    for cause in e.causes:
        print(f"SAM transform: {cause.message}", file=sys.stderr)
    sys.exit(1)
with open(target, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
PY
    if "$venv/bin/cfn-lint" --include-checks I -- "$translated"; then
        echo "   clean"
    else
        echo "   (line numbers above refer to the translated JSON)"
        status=1
    fi
else
    status=1
fi

sam_bin="$(command -v sam || true)"
if [[ -z "$sam_bin" && -x "$venv/bin/sam" ]]; then
    sam_bin="$venv/bin/sam"
fi
if [[ -n "$sam_bin" ]]; then
    echo "== sam validate --lint ($("$sam_bin" --version))"
    # Offline and without credentials; SAM only needs a region to be named.
    if (cd "$repo" && AWS_REGION="${AWS_REGION:-us-east-1}" SAM_CLI_TELEMETRY=0 \
        "$sam_bin" validate --lint --template-file "$template"); then
        echo "   clean"
    else
        status=1
    fi
else
    echo "== sam validate --lint: skipped (no sam on PATH or in $venv)"
fi

if [[ $status -ne 0 ]]; then
    echo "template check FAILED"
else
    echo "template check passed"
fi
exit $status
