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

.venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=15 "$@"
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
