#!/usr/bin/env bash
# Install the browser the UI end-to-end test drives (tests/e2e/test_ui_approval.py): Debian's
# chromium at /usr/bin/chromium, used by Playwright through executable_path. Idempotent: does
# nothing when it is already there. Debian packages only; `playwright install` is not used
# because it downloads browsers from the internet.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser.sh: /usr/bin/chromium is missing and installing it needs root (apt-get)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
