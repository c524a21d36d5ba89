#!/usr/bin/env bash
# Set up a virtual environment in .venv (if absent), install the package with every extra, lint
# the code (ruff, with pyproject.toml's rules) and run the whole test suite: the unit tests in
# tests/ and nbval over every notebook in book/ (each stored output must be what the code
# produces today). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
python -m pip install -q -e ".[dev]"
python -m ruff check .   # lint first: pyproject.toml's [tool.ruff] rules
python -m pytest tests book --nbval --nbval-current-env --nbval-sanitize-with book/sanitize.cfg \
    --nbval-cell-timeout 600 "$@"
