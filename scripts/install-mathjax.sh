#!/usr/bin/env bash
# Install into .cache/mathjax, from the npm registry, the MathJax version that the pages load from
# the CDN (_config.yml's mathjax_path), so that scripts/check_pages.py and scripts/build_pdf.py
# typeset the maths with it and nothing is fetched at run time. Does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's|.*/npm/mathjax@\([0-9][0-9.]*\)/.*|\1|p' _config.yml)
if [ -z "$version" ]; then
    echo "install-mathjax: _config.yml's mathjax_path names no mathjax@VERSION" >&2
    exit 2
fi
if ! grep -q "\"version\": \"$version\"" .cache/mathjax/node_modules/mathjax/package.json 2> /dev/null; then
    npm install --prefix .cache/mathjax --no-audit --no-fund --silent "mathjax@$version"
fi
