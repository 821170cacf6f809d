#!/usr/bin/env bash
# Install Debian's Chromium and chromedriver for the browser test when missing and possible
# (root with apt-get). Never downloads a browser build of its own; on other systems the browser
# test skips with a message.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: installing chromium and chromium-driver with apt-get (once)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "ensure_chromium: apt-get failed; the browser test will be skipped"
else
  echo "ensure_chromium: Chromium not found and cannot install it here; the browser test will be skipped"
fi
exit 0
