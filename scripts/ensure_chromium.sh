#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
set -u
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null || { echo "error: apt-get install chromium failed" >&2; exit 1; }
else
  echo "error: the browser tests need Chromium at $CHROMIUM." >&2
  echo "  Install it: sudo apt-get install chromium   (or set CHROMIUM_PATH to a Chromium binary)" >&2
  exit 1
fi
