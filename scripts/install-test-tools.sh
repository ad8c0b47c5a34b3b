#!/usr/bin/env bash
# Install the Debian packages the test suite drives, when missing (idempotent):
#   chromium   /usr/bin/chromium      the UI end-to-end tests (Playwright drives it through
#                                     executable_path; `playwright install` downloads browsers
#                                     from the internet, which cannot work here)
#   qemu-user  /usr/bin/qemu-x86_64   tests/integration/test_emulated_isa.py: int8 candidates on
#                                     an emulated AVX2 CPU (x86_64 hosts only)
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "$(uname -m)" = x86_64 ] && [ ! -x /usr/bin/qemu-x86_64 ]; then missing+=(qemu-user); fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "test tools present: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)$([ -x /usr/bin/qemu-x86_64 ] && echo '; qemu-user')"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-tools.sh: ${missing[*]} missing and installing needs root (apt-get install ${missing[*]})" >&2
  exit 1
fi
log=$(mktemp)
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "install-test-tools.sh: apt-get install ${missing[*]} failed (whole log: $log)" >&2
  exit 1
fi
rm -f "$log"
echo "installed: ${missing[*]}"
