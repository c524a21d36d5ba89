#!/usr/bin/env bash
# Read the built book as a reader does: every page in a headless Chromium at 1280 px
# (scripts/check_pages.py). Exit 1 if a code or output line or a table is cut off at the right or
# raw TeX shows; the per-page numbers go to _build/check_pages.json. Run it after
# scripts/build-book.sh. It installs the `pages` extra (Playwright) into .venv and uses the system's
# Chromium, installing the Debian package with apt-get when none is on PATH and this is root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m pip install -q -e ".[pages]"
if ! command -v chromium > /dev/null && ! command -v chromium-browser > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "check-pages: no Chromium on PATH; installing the Debian package"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
    else
        echo "check-pages: needs a Chromium on PATH (as root: apt-get install chromium); without one," \
             "run scripts/check_pages.py --browser PATH yourself" >&2
        exit 2
    fi
fi
python scripts/check_pages.py --json _build/check_pages.json "$@"
