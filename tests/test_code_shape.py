"""The shape of the code, measured: no function a reader cannot hold in mind, and chapters that read
typed results by attribute.

- radon's cyclomatic complexity of every function and method of the package is at most 15;
- no function body (docstring excluded) is longer than 60 lines;
- no notebook code cell indexes anything by a string key (``x["name"]``, ``x[f"..."]``): results
  are typed records read by attribute, and lookups live in the package.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = sorted((ROOT / "maskdiff_tutor").rglob("*.py"))
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
MOST_COMPLEX, LONGEST = 15, 60
STRING_KEY = re.compile(r"\[\s*f?['\"][^'\"\]]+['\"]\s*\]")  # x["name"], x['name'], x[f"..."]


def _functions(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _body_lines(node) -> int:
    body = node.body[1:] if ast.get_docstring(node) else node.body
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_function_is_more_complex_than_a_reader_can_hold():
    radon = pytest.importorskip("radon.complexity")
    too_complex = [f"{path.relative_to(ROOT)}:{block.fullname} ({block.complexity})"
                   for path in PACKAGE for block in radon.cc_visit(path.read_text())
                   if block.complexity > MOST_COMPLEX]
    assert too_complex == [], f"functions above complexity {MOST_COMPLEX}: {too_complex}"


def test_no_function_body_is_longer_than_a_screen():
    too_long = [f"{path.relative_to(ROOT)}:{node.name} ({_body_lines(node)} lines)"
                for path in PACKAGE for node in _functions(path) if _body_lines(node) > LONGEST]
    assert too_long == [], f"function bodies over {LONGEST} lines: {too_long}"


def _code(chapter: pathlib.Path) -> list[str]:
    cells = json.loads(chapter.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_a_chapter_reads_results_by_attribute_not_by_string_key(chapter):
    found = [match for source in _code(chapter) for match in STRING_KEY.findall(source)]
    assert found == [], f"{chapter.name} indexes by string key {len(found)} times: {found[:10]}"


def test_the_string_key_pattern_finds_what_it_should():
    assert STRING_KEY.findall('a["x"] + b[\'y\'] + c[f"z{k}"] + d[ "w" ]') == ['["x"]', "['y']", '[f"z{k}"]',
                                                                              '[ "w" ]']
    assert STRING_KEY.findall("a[0] + b[k] + c[1:2] + d.attribute") == []
