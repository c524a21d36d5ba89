"""The page check's pieces that need no browser: the CDN addresses of MathJax it answers from the
local npm copy, the version it installs (the one the pages load) and what it counts as a failure."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("check_pages", ROOT / "scripts" / "check_pages.py")
check_pages = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_pages)

MODULES = pathlib.Path("/cache/node_modules")


@pytest.mark.parametrize(("url", "local"), [
    ("https://cdn.jsdelivr.net/npm/mathjax@4.1.3/tex-mml-chtml.js", "mathjax/tex-mml-chtml.js"),
    ("https://cdn.jsdelivr.net/npm/mathjax@4/input/tex/extensions/ams.js?v=1", "mathjax/input/tex/extensions/ams.js"),
    ("https://cdn.jsdelivr.net/npm/@mathjax/mathjax-newcm-font@4.1.3/chtml/woff2/mjx-ncm-n.woff2",
     "@mathjax/mathjax-newcm-font/chtml/woff2/mjx-ncm-n.woff2"),
    ("https://cdn.jsdelivr.net/npm/@mathjax/mathjax-newcm-font/chtml.js", "@mathjax/mathjax-newcm-font/chtml.js"),
])
def test_a_cdn_address_maps_to_its_file_in_the_local_copy(url, local):
    assert check_pages.local_package_file(url, MODULES) == MODULES / local


@pytest.mark.parametrize("url", [
    "https://example.com/mathjax/tex-mml-chtml.js",  # not an npm CDN address
    "https://cdn.jsdelivr.net/npm/mathjax@4",  # a package with no file
    "https://cdn.jsdelivr.net/npm/@mathjax/mathjax-newcm-font@4",  # a scoped package with no file
    "https://cdn.jsdelivr.net/npm/mathjax@4/../../etc/passwd",  # a path out of the copy
])
def test_other_addresses_map_to_nothing(url):
    assert check_pages.local_package_file(url, MODULES) is None


def test_the_installed_version_is_the_one_the_pages_load(tmp_path):
    config = (ROOT / "_config.yml").read_text()
    loaded = re.search(r"mathjax_path: https://cdn\.jsdelivr\.net/npm/mathjax@([0-9.]+)/tex-mml-chtml\.js", config)
    assert loaded, "_config.yml loads MathJax from the npm CDN with a pinned version"
    assert loaded.group(1).split(".")[0] == check_pages.MATHJAX_VERSION
    # the install script reads that same version (run with npm replaced by one that prints its arguments)
    fake = tmp_path / "npm"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    script = (ROOT / "scripts" / "install-mathjax.sh").read_text().replace('cd "$(dirname "$0")/.."', f'cd "{ROOT}"')
    script = script.replace(".cache/mathjax/node_modules", str(tmp_path / "none"))
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=True)
    assert f"mathjax@{loaded.group(1)}" in run.stdout.split()


def page(**changes) -> dict:
    clean = {"cut_code": [], "cut_output": [], "raw_tex": [], "glance_bottom": None, "math_errors": [],
             "wide_equations": [], "cut_equations": [], "page_overflow": 0}
    return {**clean, **changes}


@pytest.mark.parametrize(("width", "changes"), [
    (1280, {"wide_equations": [{"width": 700, "column": 690}]}),
    (390, {"wide_equations": [{"width": 320, "column": 300}]}),  # at a phone's width too, scroll box or not
    (390, {"page_overflow": 12}),
    (1280, {"page_overflow": 3}),
    (390, {"math_errors": ["Undefined control sequence \\foo"]}),
    (1280, {"cut_code": ["a line too long"]}),
])
def test_each_failure_counts_at_its_width(width, changes):
    report = {1280: {"nelbo": page()}, 390: {"nelbo": page()}}
    assert check_pages.failures(report, [1280, 390], "all") == 0
    report[width]["nelbo"] = page(**changes)
    assert check_pages.failures(report, [1280, 390], "all") == 1
