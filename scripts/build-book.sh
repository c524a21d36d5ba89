#!/usr/bin/env bash
# Set up a virtual environment in .venv (if absent), install the package with the book's
# extras, and build the book into _build/html with warnings as errors. Needs no network beyond
# the package index, and no notebook execution: the book shows the outputs stored in book/*.ipynb.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m pip install -q -e ".[book]"
rm -rf _build
jupyter-book build . -W -n --keep-going
echo "The book is in _build/html/index.html"
