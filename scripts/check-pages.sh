#!/usr/bin/env bash
# Read the built book as a reader does: every page in a headless Chromium at 1280 px and at 390 px,
# with the maths typeset by MathJax 4 from a local copy (scripts/check_pages.py). Exit 1 if a code or
# output line or a table is cut off at the right or raw TeX shows (1280 px), or, at either width,
# MathJax reports an error, a display equation is wider than the text column or a page scrolls
# sideways; the per-page numbers go to _build/check_pages.json. Run it after scripts/build-book.sh.
# It installs the `pages` extra (Playwright) into .venv and, from the npm registry into
# .cache/mathjax, the MathJax version that _config.yml's mathjax_path names; it uses the system's
# Chromium, and as root it installs the Debian packages chromium and npm where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m pip install -q -e ".[pages]"
need=()
command -v chromium > /dev/null || command -v chromium-browser > /dev/null || need+=(chromium)
command -v npm > /dev/null || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "check-pages: installing the Debian packages ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" > /dev/null
    else
        echo "check-pages: needs ${need[*]} on PATH (as root: apt-get install ${need[*]}); without them," \
             "run scripts/check_pages.py --browser PATH --mathjax DIR yourself" >&2
        exit 2
    fi
fi
bash scripts/install-mathjax.sh
python scripts/check_pages.py --json _build/check_pages.json "$@"
