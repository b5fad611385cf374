#!/usr/bin/env bash
# Validates docs/mall-openapi.yaml (the mall connector contract) as an OpenAPI 3.1 document
# with openapi-spec-validator. Exits non-zero if it is not valid.
#
#   bash infra/check-openapi.sh
#
# That traffic between the client and the simulator conforms to the document is checked by
# the Rust test `cargo test --test mall conformance` (JSON Schema validation of every
# recorded request, answer and webhook against the document's schemas).
#
# The validator lives in the venv infra/.local/venv (created if missing; other scripts install
# more into it). Its version is pinned; bump it deliberately.
set -euo pipefail

OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/infra/.local/venv"
doc="$repo/docs/mall-openapi.yaml"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
fi
py="$venv/bin/python"

have="$("$py" -m pip show openapi-spec-validator 2>/dev/null | sed -n 's/^Version: //p')"
if [[ "$have" != "$OPENAPI_SPEC_VALIDATOR_VERSION" ]]; then
    echo "installing openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION into $venv"
    "$py" -m pip install --quiet --disable-pip-version-check \
        "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
fi

echo "== openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION: docs/mall-openapi.yaml"
# The document must be 3.1 (webhooks and JSON Schema 2020-12 need it): a 3.0 document would
# be validated by other rules, so the version is checked first.
"$py" - "$doc" <<'PY'
import sys

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from openapi_spec_validator.readers import read_from_filename

spec, base_uri = read_from_filename(sys.argv[1])
if not str(spec.get("openapi", "")).startswith("3.1."):
    sys.exit(f"expected an OpenAPI 3.1 document, got openapi: {spec.get('openapi')!r}")
try:
    validate(spec, base_uri=base_uri)
except OpenAPIValidationError as e:
    sys.exit(f"invalid: {e}")
print("   valid OpenAPI 3.1")
PY
