#!/usr/bin/env bash
# Runs the whole suite. Lab tests need root; in CI (CI=true) they must run, never skip.
#
# With no arguments it runs in two passes: the tests that may run side by side (pytest-xdist, two processes per
# core, at most four; most unit tests), then the `serial` ones alone (the lab, the browser, the end-to-end
# runs, and the unit tests that measure time or memory; see tests/conftest.py). With arguments
# (`make test TEST_ARGS=...`) it runs one plain pytest with them.
set -uo pipefail
cd "$(dirname "$0")/.."
export TAMPERSCOPE_REQUIRE_LAB=${TAMPERSCOPE_REQUIRE_LAB:-$( [ "${CI:-}" = true ] && echo 1 || echo 0 )}
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider)
.venv/bin/tamperscope lab down >/dev/null 2>&1 || true

# One pytest run; 5 (it collected no test) is a failure too: a pass that ran nothing proves nothing.
run() {
  "${PYTEST[@]}" "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "test: pytest collected no tests ($*); that is a failure" >&2; fi
  return $rc
}

if [ $# -gt 0 ]; then
  run "$@"
  rc=$?
else
  # two processes per core, at most 4: these tests wait on sockets and subprocesses much of the time (on 2 cores,
  # 4 processes took 188 s where 2 took 213)
  workers=$(( 2 * $(nproc) < 4 ? 2 * $(nproc) : 4 ))
  run -n "$workers" -m "not serial"
  rc=$?
  run -m serial --durations=15  # the slowest, so the run's time (under 20 minutes in CI) can be kept
  rc2=$?
  [ $rc -eq 0 ] && rc=$rc2
fi
.venv/bin/tamperscope lab down >/dev/null 2>&1 || true
exit $rc
