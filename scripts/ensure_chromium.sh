#!/usr/bin/env bash
# Install Debian's Chromium and chromedriver for the browser test, with CJK and emoji fonts (the
# glossary is bilingual), when missing and possible (root, or passwordless sudo, with apt-get).
# Never downloads a browser build of its own. Where Chromium is missing and cannot be installed,
# the browser test skips with a message -- except under CI=true, where it fails if Chromium could
# have been installed (tests/browser/test_book_in_browser.py).
have_browser() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have_fonts() { fc-list 2>/dev/null | grep -qi "WenQuanYi"; }
if have_browser && have_fonts; then exit 0; fi
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
if [ "$SUDO" != "none" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: installing chromium, chromium-driver and fonts with apt-get (once)..."
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium \
    chromium-driver fonts-wqy-zenhei fonts-noto-color-emoji) >/dev/null 2>&1 \
    || echo "ensure_chromium: apt-get failed"
elif ! have_browser; then
  echo "ensure_chromium: Chromium not found and cannot install it here; the browser test will be skipped"
fi
exit 0
