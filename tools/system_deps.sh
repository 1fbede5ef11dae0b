#!/usr/bin/env bash
# Debian packages the set-up uses, installed best effort (root, or sudo without a password; otherwise it says
# what to run): libjpeg-turbo's headers for the optional JPEG window extension, Chromium + its driver for the web
# app's real-browser test (tests/test_app_browser.py). Called by `make install` (so by `make demo`/`make test`)
# and by .ci/run. Nothing here is required to train, infer or edit.
set -uo pipefail
have_jpeg_headers() { printf '#include <stdio.h>\n#include <jpeglib.h>\n' | cpp -o /dev/null >/dev/null 2>&1; }
have_chromium() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }
wanted=()
have_jpeg_headers || wanted+=(libjpeg-dev)
have_chromium || wanted+=(chromium chromium-driver)
[ ${#wanted[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "note: no apt-get here; install ${wanted[*]} (or their equivalents) for the JPEG extension / browser test"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else
    echo "note: run \`sudo apt-get install ${wanted[*]}\` for the JPEG extension / browser test"
    exit 0
fi
{ "${sudo[@]}" apt-get install -y -qq "${wanted[@]}" \
    || { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${wanted[@]}"; }; } >/dev/null 2>&1 \
    || echo "note: apt-get could not install ${wanted[*]}: the JPEG extension is skipped / the browser test fails in CI"
exit 0
