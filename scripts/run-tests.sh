#!/usr/bin/env bash
# Run the whole suite (extra arguments go to pytest). pytest's exit code 5 means "no tests
# collected". A filter (-k, -m, --deselect, --ignore, --ignore-glob) can legitimately select
# nothing: then say so loudly and exit 0. Without one the whole suite must collect tests, so exit 5
# stays a failure (a broken conftest or import, not "all green"). A path argument is no filter
# here: pytest is always given tests/ as well, so it still collects the whole suite.
set -u
cd "$(dirname "$0")/.."

selection=""
for arg in "$@"; do
  case "$arg" in
    -k* | -m* | --deselect* | --ignore*) selection="$arg" ;;
  esac
done

# Two workers (pytest-xdist): each file runs on one worker, files that share state as one group
# (tests/suite_schedule.py::SHARED_GROUPS), slowest groups first. QUANTGATE_TEST_WORKERS=0 runs in one
# process (for a debugger or -x).
workers="${QUANTGATE_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" != "0" ]; then
  # --no-loadscope-reorder: xdist otherwise hands out the files with the most tests first, which
  # puts the few-test slow files (the governing runs) last, on one worker, after everything else
  parallel=(-n "$workers" --dist loadscope --no-loadscope-reorder)
  # one torch/ONNX Runtime thread per worker (and per process a test starts): two workers with a
  # pool each per core would oversubscribe the cores, and idle pools spin (docs/benchmarks.md)
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi

.venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=25 "${parallel[@]}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  if [ -n "$selection" ]; then
    echo "pytest collected no tests (exit 5) for the selection: $*" >&2
    exit 0
  fi
  echo "pytest collected no tests (exit 5) for the whole suite${*:+ (arguments: $*)}: a failure, the suite must collect tests" >&2
  exit 5
fi
exit "$rc"
