#!/usr/bin/env bash
# The whole book as one PDF, _build/html/maskdiff-tutor.pdf, which every page links to: the
# single-page HTML build printed by the headless Chromium of scripts/check-pages.sh, with the maths
# typeset by the same local MathJax 4. Run it after scripts/build-book.sh (it adds the PDF to the
# HTML build) and scripts/check-pages.sh (which installs Playwright, Chromium and MathJax).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
rm -rf _build/singlehtml
jupyter-book build . --builder singlehtml -W -n --keep-going > /dev/null
python scripts/build_pdf.py --out _build/html/maskdiff-tutor.pdf
