"""The claims registry: one verdict per claim everywhere, and the numbers behind it traceable.

The chain checked here: nbval proves each chapter's stored rows are what its code computes today;
these tests prove the stored rows are exactly the rows rendered from the stored evidence, that
the Verdict chapter shows that evidence, and that no two chapters give a claim different verdicts.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from maskdiff_tutor import claims
from maskdiff_tutor.claim_registry import CHAPTER_TITLES, CLAIMS, VERDICTS, Claim, fields_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
MEASURING = sorted({chapter for c in CLAIMS.values() for chapter in c.evidence})
ROW = re.compile(r"^\|\s*(\d+)\s*\([^)]*\)\s*\|.*\|\s*([^|]*?)\s*\|$")


def cells(chapter: str) -> list[dict]:
    return json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]


def output_text(cell: dict) -> str:
    texts = []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        text = data.get("text/markdown", data.get("text/plain", out.get("text", "")))
        texts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(texts)


def report_cell(chapter: str) -> dict:
    found = [c for c in cells(chapter) if c["cell_type"] == "code" and "claims.report(" in "".join(c["source"])]
    assert len(found) == 1, f"{chapter} must render its verdict rows with one claims.report(...) cell"
    return found[0]


def test_the_registry_covers_claims_1_to_16_with_one_verdict_each():
    assert sorted(CLAIMS) == list(range(1, 17))
    for c in CLAIMS.values():
        assert c.verdict in VERDICTS
        assert c.statement and c.section and c.qualifier
        if c.verdict != "not tested here":
            assert c.evidence, f"claim {c.number} has a verdict but no evidence"
            assert c.deciding, f"claim {c.number} names no deciding number"


def test_a_claim_rejects_an_unknown_verdict_chapter_or_deciding_number():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim(1, "3", "s", "true", "q")
    with pytest.raises(ValueError, match="unknown chapters"):
        Claim(1, "3", "s", "holds", "q", {"appendix": "x"})
    with pytest.raises(ValueError, match="deciding number"):
        Claim(1, "3", "s", "holds", "q", {"nelbo": "{a}"}, deciding="nelbo:b")


def test_fields_and_their_format_specs():
    assert fields_of("PPL {ppl:.2f} against {ref} ({n:d} runs)") == {"ppl": ".2f", "ref": "", "n": "d"}
    with pytest.raises(ValueError, match="must be names"):
        fields_of("{0}")


def test_report_formats_the_numbers_its_sentences_ask_for(monkeypatch, tmp_path):
    monkeypatch.delenv(claims.RECORD_VARIABLE, raising=False)
    chapter = MEASURING[0]
    needed = claims.needed_fields(chapter)
    table = claims.report(chapter, {name: 0.5 for name in needed})
    for c in claims.claims_of(chapter):
        assert f"| {c.number} (" in table.text and c.verdict_text in table.text
    assert claims.report(chapter, {**{name: 0.5 for name in needed}, "surplus": 1}) == table
    with pytest.raises(ValueError, match="lack"):
        claims.report(chapter, {})
    with pytest.raises(ValueError, match="chapter must be one of"):
        claims.report("appendix", {})


def test_recording_stores_the_formatted_numbers_and_keeps_other_chapters(monkeypatch, tmp_path):
    path = tmp_path / "evidence.json"
    monkeypatch.setattr(claims, "EVIDENCE_FILE", path)
    monkeypatch.setenv(claims.RECORD_VARIABLE, "1")
    first, second = MEASURING[:2]
    claims.report(first, {name: 1 / 3 for name in claims.needed_fields(first)})
    claims.report(second, {name: 2 for name in claims.needed_fields(second)})
    stored = json.loads(path.read_text())
    assert set(stored) == {first, second}
    spec = claims.needed_fields(first)
    assert stored[first] == {name: format(1 / 3, s) for name, s in spec.items()}
    assert claims.stored_rows(first) == claims.chapter_rows(first, stored[first])
    with pytest.raises(ValueError, match="no stored evidence"):
        claims.stored_rows(MEASURING[2])


def test_every_measured_chapter_has_stored_evidence():
    stored = claims.load_evidence()
    for chapter in MEASURING:
        assert set(stored.get(chapter, {})) == set(claims.needed_fields(chapter)), chapter


@pytest.mark.parametrize("chapter", MEASURING)
def test_a_chapter_shows_exactly_the_rows_of_the_stored_evidence(chapter):
    shown = output_text(report_cell(chapter)).strip()
    assert shown == claims.stored_rows(chapter).text


@pytest.mark.parametrize("chapter", sorted(CHAPTER_TITLES))
def test_no_chapter_writes_its_verdicts_by_hand(chapter):
    for cell in cells(chapter):
        if cell["cell_type"] == "markdown":
            assert "| claim |" not in "".join(cell["source"]), f"{chapter}: a hand-written claims table"


def test_no_two_chapters_give_a_claim_different_verdicts():
    verdicts: dict[int, set[str]] = {}
    for chapter in [*CHAPTER_TITLES, "verdict"]:
        for cell in cells(chapter):
            text = "".join(cell["source"]) + "\n" + output_text(cell)
            for line in text.splitlines():
                match = ROW.match(line.strip())
                if match:
                    verdicts.setdefault(int(match.group(1)), set()).add(match.group(2).replace("**", ""))
    assert set(verdicts) == set(CLAIMS), "every claim appears in some table"
    for number, seen in verdicts.items():
        assert seen == {CLAIMS[number].verdict_text}, f"claim {number} is given the verdicts {seen}"


def test_the_verdict_chapter_renders_the_whole_table():
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/verdict" in toc
    shown = "\n".join(output_text(c) for c in cells("verdict"))
    assert claims.verdict_table().text in shown


def test_evidence_values_are_every_field_of_a_claims_evidence():
    for c in CLAIMS.values():
        values = claims.evidence_values(c.number)
        assert set(values) == {name for template in c.evidence.values() for name in fields_of(template)}
        for name, text in values.items():
            assert claims.evidence_value(c.number, name) == text


def test_deciding_values_are_stored():
    for c in CLAIMS.values():
        if c.deciding:
            assert claims.deciding_value(c.number)
