#!/usr/bin/env bash
# Install Debian's Chromium and chromedriver for the browser test, with CJK and emoji fonts (the
# glossary is bilingual), when missing and possible (root with apt-get). Never downloads a browser
# build of its own; where Chromium is missing and cannot be installed, the browser test skips
# with a message.
have_browser() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have_fonts() { fc-list 2>/dev/null | grep -qi "WenQuanYi"; }
if have_browser && have_fonts; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: installing chromium, chromium-driver and fonts with apt-get (once)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
    fonts-wqy-zenhei fonts-noto-color-emoji) >/dev/null 2>&1 \
    || echo "ensure_chromium: apt-get failed; the browser test may be skipped"
elif ! have_browser; then
  echo "ensure_chromium: Chromium not found and cannot install it here; the browser test will be skipped"
fi
exit 0
