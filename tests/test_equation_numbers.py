"""The book's equation numbers as a reader sees them: build the book and read the HTML.

A label ``eq-N`` holds the paper's Eq. N and must render as (N), and every reference to it as
"Eq. N"; the book's own equations render as (B1), (B2), ...; no two equations share a number.
"""

from __future__ import annotations

import html
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import equation_numbers  # noqa: E402  (the book's Sphinx extension)

EQUATION = re.compile(r'id="equation-([\w-]+)">\s*<span class="eqno">\(([^)<]*)\)')
REFERENCE = re.compile(r'<a class="reference internal" href="([\w./-]*)#equation-([\w-]+)">([^<]*)</a>')
# The paper's equations the book derives: Section 2.2 (Eq. 3-13) and Section 3.2.3 (Eq. 14-18).
DERIVED = range(3, 19)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    """The built book's HTML pages, by file name (one build for the module, about 10 s)."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = pathlib.Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "-n", "--keep-going"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html_dir = out / "_build" / "html" / "book"
    return {p.name: p.read_text() for p in html_dir.glob("*.html")}


@pytest.fixture(scope="module")
def equations(pages) -> dict[str, tuple[str, str]]:
    """label -> (page, rendered number) for every labelled displayed equation."""
    found: dict[str, tuple[str, str]] = {}
    for page, text in pages.items():
        for label, number in EQUATION.findall(text):
            assert label not in found, f"{label} is defined on {found[label][0]} and on {page}"
            found[label] = (page, number)
    return found


def test_paper_label_numbers():
    assert equation_numbers.paper_number("eq-13") == 13
    assert equation_numbers.paper_number("eq-oracle") is None
    assert equation_numbers.paper_number("eq-13b") is None


def test_a_paper_equation_renders_with_the_paper_number(equations):
    paper = {label: number for label, (_page, number) in equations.items()
             if equation_numbers.paper_number(label) is not None}
    for label, number in paper.items():
        assert number == str(equation_numbers.paper_number(label)), f"{label} renders as ({number})"
    missing = [n for n in DERIVED if f"eq-{n}" not in paper]
    assert not missing, f"the book derives Eqs. 3-18 but does not display Eq. {missing}"


def test_book_equations_are_numbered_apart_from_the_paper(equations):
    book = [number for label, (_page, number) in equations.items() if equation_numbers.paper_number(label) is None]
    assert book, "the book has equations of its own"
    assert all(re.fullmatch(r"B\d+", n) for n in book), book
    assert sorted(book, key=lambda n: int(n[1:])) == [f"B{i}" for i in range(1, len(book) + 1)]


def test_no_two_equations_share_a_number(equations):
    numbers = [number for _page, number in equations.values()]
    repeated = {n for n in numbers if numbers.count(n) > 1}
    assert not repeated, f"numbers rendered twice: {sorted(repeated)}"


def test_every_reference_shows_the_number_of_its_equation(pages, equations):
    references = 0
    for page, text in pages.items():
        for target_page, label, shown in REFERENCE.findall(text):
            references += 1
            assert label in equations, f"{page}: a reference to {label}, which no page displays"
            assert (target_page or page) == equations[label][0], f"{page}: {label} links to the wrong page"
            assert html.unescape(shown) == f"Eq. {equations[label][1]}", f"{page}: {label} shown as {shown!r}"
    assert references > 20


def test_typed_equation_numbers_name_paper_equations():
    """Prose, captions and plot legends type "Eq. N" only for the paper's equations 1-18; a book
    equation is referred to by its label, never by a typed number that could change."""
    for chapter in sorted((ROOT / "book").glob("*.ipynb")):
        text = "".join("".join(cell["source"]) for cell in json.loads(chapter.read_text())["cells"])
        for typed in re.findall(r"\b(?:Eqs?\.|Equations?)\s*\(?([A-Z]?\d+)", text):
            assert typed.isdigit() and 1 <= int(typed) <= 18, f"{chapter.name} types 'Eq. {typed}'"
