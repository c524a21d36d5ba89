"""The book's promises that nbval does not check: one repository address, a Colab install cell
first in every chapter, stored outputs for every code cell, every chapter in the table of contents."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def repository_url() -> str:
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    assert match, "_config.yml must hold repository.url"
    return match.group(1)


def code_cells(path: pathlib.Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_there_are_chapters():
    assert {p.stem for p in CHAPTERS} >= {"intro", "nelbo", "distance_bound"}


def test_every_mention_of_the_repository_matches_config():
    url = repository_url()
    assert url.startswith("https://github.com/")
    places = [ROOT / "README.md", ROOT / "pyproject.toml", *CHAPTERS]
    for place in places:
        for mention in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", place.read_text()):
            assert mention.rstrip(".") == url, f"{place.name} names {mention}, _config.yml names {url}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_first_code_cell_installs_the_package_only_in_colab(chapter):
    first = "".join(code_cells(chapter)[0]["source"])
    assert 'if "google.colab" in sys.modules' in first
    assert f"git+{repository_url()}" in first


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_code_cell_has_stored_outputs(chapter):
    unrun = [i for i, c in enumerate(code_cells(chapter)) if c.get("execution_count") is None]
    assert not unrun, f"{chapter.name}: code cells {unrun} were never executed; the book shows stored outputs"
    errors = [o for c in code_cells(chapter) for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{chapter.name} stores an error output"


def test_every_chapter_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for chapter in CHAPTERS:
        assert f"book/{chapter.stem}" in toc, f"{chapter.name} is missing from _toc.yml"
