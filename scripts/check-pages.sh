#!/usr/bin/env bash
# Read the built book as a reader does: every page in a headless Chromium at 1280 px and at 390 px,
# with the maths typeset by MathJax 3 from a local copy (scripts/check_pages.py). Exit 1 if a code or
# output line or a table is cut off at the right, raw TeX shows, MathJax reports an error, a display
# equation is wider than the text column at 1280 px (or at 390 px without a scroll box of its own),
# or a page scrolls sideways at 390 px; the per-page numbers go to _build/check_pages.json. Run it
# after scripts/build-book.sh. It installs the `pages` extra (Playwright) into .venv, MathJax 3 from
# the npm registry into .cache/mathjax, and uses the system's Chromium; as root it installs the
# Debian packages chromium and npm where they are missing.
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
if [ ! -f .cache/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js ]; then
    npm install --prefix .cache/mathjax --no-audit --no-fund --silent mathjax@3
fi
python scripts/check_pages.py --json _build/check_pages.json "$@"
