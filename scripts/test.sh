#!/usr/bin/env bash
# Runs the whole suite. Lab tests need root; in CI (CI=true) they must run, never skip.
set -uo pipefail
cd "$(dirname "$0")/.."
export TAMPERSCOPE_REQUIRE_LAB=${TAMPERSCOPE_REQUIRE_LAB:-$( [ "${CI:-}" = true ] && echo 1 || echo 0 )}
.venv/bin/tamperscope lab down >/dev/null 2>&1 || true
.venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
.venv/bin/tamperscope lab down >/dev/null 2>&1 || true
if [ $rc -eq 5 ]; then echo "test: pytest collected no tests; that is a failure" >&2; fi
exit $rc
