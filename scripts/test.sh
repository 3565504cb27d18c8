#!/usr/bin/env bash
# Runs the whole suite. Lab tests need root; in CI (CI=true) they must run, never skip.
#
# With no arguments it runs three streams at once:
# - the `serial` tests one at a time (the lab, then the unit tests that measure time or memory and the end-to-end
#   runs; see tests/conftest.py), at normal priority: the lab waits on timeouts most of the time;
# - the `wallclock` tests one at a time (unit tests that assert a wall-clock bound), at normal priority;
# - at lower priority (nice 10), in the CPU the others leave idle: the rest side by side (pytest-xdist, two processes
#   per core, at most four), then the browser tests one at a time (they bound no time, and the lab was still running
#   when the parallel pass ended: after the lab, they had the run's last 3 minutes to themselves), then the
#   end-to-end runs one at a time (tests/e2e: a collector under load and killed, the Dask engine; they use no lab and
#   bound no time but generous ones: after the lab, in the serial pass, they added a minute to a run of 20).
# One after the other, the passes took 26 minutes in CI. The background streams' output is printed at the end.
# With arguments (`make test TEST_ARGS=...`) it runs one plain pytest with them.
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
  logs=$(mktemp -d "${TMPDIR:-/tmp}/tamperscope-test.XXXXXX")
  start=$SECONDS
  groups=()
  # beside NICE NAME COMMAND... [-- NAME COMMAND...]...: commands one after the other in the background, each
  # writing $logs/NAME and its exit code to $logs/NAME.rc, in a session of their own (so that an interrupted run
  # takes it whole). A session is also a scheduling group of its own (autogroup): `nice` only orders the processes
  # within it, and a plain `nice` pass shared the CPU half and half with the serial one (whose collector load test
  # went from 15 s to 52). So the group is niced too.
  beside() {
    local niceness=$1
    shift
    setsid bash -c '
      n=$1 logs=$2
      shift 2
      echo "$n" >/proc/self/autogroup 2>/dev/null
      while [ $# -gt 0 ]; do
        name=$1 cmd=()
        shift
        while [ $# -gt 0 ] && [ "$1" != -- ]; do cmd+=("$1"); shift; done
        [ $# -gt 0 ] && shift
        nice -n "$n" "${cmd[@]}" >"$logs/$name" 2>&1
        echo $? >"$logs/$name.rc"
      done' beside "$niceness" "$logs" "$@" &
    groups+=("$!")
  }
  beside 10 parallel "${PYTEST[@]}" -n "$workers" -m "not serial and not wallclock" \
    -- browser "${PYTEST[@]}" -m serial --durations=10 tests/browser \
    -- e2e "${PYTEST[@]}" -m serial --durations=10 tests/e2e
  beside 0 wallclock "${PYTEST[@]}" -m "wallclock and not serial"
  # interrupted: the background streams go too, and their logs (nothing left behind in $TMPDIR)
  trap 'for g in "${groups[@]}"; do kill -- -"$g" 2>/dev/null; done; rm -rf "$logs"' EXIT
  echo "test: beside this pass: the parallel tests (-m 'not serial and not wallclock', $workers processes, nice 10)" \
    "then the browser tests and the end-to-end runs (nice 10), and the wallclock ones (-m wallclock); their output follows"
  # The lab first: it waits on timeouts most of the time, while the background tests run; the unit tests that
  # measure time, which keep the CPU busy, after it. (tests/browser and tests/e2e are the background's.)
  dirs=(tests/lab tests/unit)
  for d in tests/*/; do d=${d%/}; case " ${dirs[*]} tests/browser tests/e2e " in *" $d "*) ;; *) dirs+=("$d") ;; esac; done
  run -m serial --durations=30 "${dirs[@]}"  # the slowest, so the run's time (under 20 minutes in CI) can be kept
  rc=$?
  wait "${groups[@]}"
  trap - EXIT
  echo "test: the three streams took $((SECONDS - start)) s"
  for name in parallel browser e2e wallclock; do
    echo
    echo "==== $name ===="
    cat "$logs/$name"
    code=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
    if [ "$code" -eq 5 ]; then echo "test: pytest collected no tests ($name); that is a failure" >&2; fi
    [ "$rc" -eq 0 ] && rc=$code
  done
  rm -rf "$logs"
fi
.venv/bin/tamperscope lab down >/dev/null 2>&1 || true
exit $rc
