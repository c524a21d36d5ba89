"""The claims registry: one verdict per claim everywhere, and every number behind it read from typed results.

The chain checked here: nbval proves each chapter's stored rows are what its code computes today
from the results it has just computed; these tests prove that every claim's evidence resolves from
the book's stored results (naming the claim and the field where it does not), that each chapter's
stored rows are exactly the rows rendered from those results, that the Verdict chapter shows the
table rendered from them, that no two chapters give a claim different verdicts, and that rendering
verdicts writes nothing into the package.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from maskdiff_tutor import claims
from maskdiff_tutor.claim_registry import CHAPTER_TITLES, CLAIMS, VERDICTS, Claim, Evidence, fields_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
RESULTS = BOOK / "results"
MEASURING = sorted({e.chapter for c in CLAIMS.values() for e in c.evidence})
ROW = re.compile(r"^\|\s*(\d+)\s*\([^)]*\)\s*\|.*\|\s*([^|]*?)\s*\|$")


@pytest.fixture(scope="module")
def book():
    return claims.book_sources(RESULTS)


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


# --- the registry ----------------------------------------------------------------------------------

def test_the_registry_covers_claims_1_to_19_with_one_verdict_each():
    assert sorted(CLAIMS) == list(range(1, 20))
    for c in CLAIMS.values():
        assert c.verdict in VERDICTS
        assert c.scope and c.decided_by in c.scope
        assert c.statement and c.section and c.qualifier
        if c.verdict != "not tested here":
            assert c.evidence, f"claim {c.number} has a verdict but no evidence"
            assert c.deciding, f"claim {c.number} names no deciding number"


def _values(sources):
    return {"a": 1}


def test_a_claim_rejects_an_unknown_verdict_scope_chapter_or_deciding_number():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim(1, "3", "s", "true", "q", ("exact",), "exact")
    with pytest.raises(ValueError, match="scope must be one or more of"):
        Claim(1, "3", "s", "holds", "q", ("chain",), "chain")
    with pytest.raises(ValueError, match="scope must be one or more of"):
        Claim(1, "3", "s", "holds", "q", (), "exact")
    with pytest.raises(ValueError, match="decided_by must be one of its scope"):
        Claim(1, "3", "s", "holds", "q", ("exact",), "text")
    with pytest.raises(ValueError, match="unknown chapter 'appendix'"):
        Evidence("appendix", "x", _values)
    with pytest.raises(ValueError, match="deciding number 'b' is not a field of its evidence"):
        Claim(1, "3", "s", "holds", "q", ("exact",), "exact", (Evidence("nelbo", "{a}", _values),), deciding="b")
    with pytest.raises(ValueError, match="one evidence per chapter"):
        Claim(1, "3", "s", "holds", "q", ("exact",), "exact",
              (Evidence("nelbo", "{a}", _values), Evidence("nelbo", "{a}", _values)))


def test_a_verdict_names_its_scope_and_says_when_it_speaks_of_synthetic_languages_only():
    chain_only = Claim(1, "3", "s", "holds", "q", ("exact", "trained"), "exact")
    assert chain_only.verdict_text == "holds (synthetic languages only: exact denoiser + trained, synthetic; " \
                                      "decided by: exact denoiser): q"
    with_text = Claim(1, "3", "s", "holds loosely", "q", ("exact", "text"), "text")
    assert with_text.verdict_text == "holds loosely (exact denoiser + trained, text; decided by: trained, text): q"
    assert Claim(1, "3", "s", "holds", "q", ("text",), "text").verdict_text == "holds (trained, text): q"


def test_fields_and_their_format_specs():
    assert fields_of("PPL {ppl:.2f} against {ref} ({n:d} runs)") == {"ppl": ".2f", "ref": "", "n": "d"}
    with pytest.raises(ValueError, match="must be names"):
        fields_of("{0}")


# --- evidence read from typed results --------------------------------------------------------------

@pytest.mark.parametrize("number", sorted(CLAIMS))
def test_every_claims_evidence_resolves_from_the_books_results(book, number):
    c = CLAIMS[number]
    for e in c.evidence:
        formatted = claims.evidence(c, e.chapter, book)  # raises naming the claim and what is missing
        assert set(formatted) == set(fields_of(e.sentence))
        assert all(text and text != "None" for text in formatted.values()), (number, e.chapter, formatted)


def test_a_field_a_result_lacks_is_named_with_the_claim(book):
    c = Claim(99, "3.2.2", "s", "holds", "q", ("exact",), "exact",
              (Evidence("joint_vs_marginal", "{pair}", lambda s: {"pair": s.joint_vs_marginal.metrics.no_such_field}),))
    with pytest.raises(ValueError, match=r"^claim 99 \(joint_vs_marginal\): its evidence cannot be read: .*"
                                         r"'no_such_field'"):
        claims.evidence(c, "joint_vs_marginal", book)


def test_a_field_the_sentence_needs_and_the_evidence_lacks_is_named(book):
    c = Claim(98, "3.3", "s", "holds", "q", ("exact",), "exact",
              (Evidence("nelbo", "{gap} and {other}", lambda s: {"gap": 1.0}),))
    with pytest.raises(ValueError, match=r"^claim 98 \(nelbo\): its evidence gives no value for the field\(s\) "
                                         r"\['other'\]"):
        claims.evidence(c, "nelbo", book)


def test_a_result_not_given_is_named(book):
    only = claims.Sources(joint_vs_marginal=book.joint_vs_marginal)
    with pytest.raises(ValueError, match=r"^claim 5 \(parallel_sampling\): its evidence cannot be read: the result "
                                         r"'ground_truth' was not given \(sources given: \['joint_vs_marginal'\]\)"):
        claims.report("parallel_sampling", only)


def test_sources_refuse_an_unknown_name_or_a_result_of_another_kind(book):
    with pytest.raises(ValueError, match=r"sources must be named from \["):
        claims.Sources(appendix=book.blocks)
    with pytest.raises(ValueError, match="source 'ground_truth' must be a GroundTruthResult; got BlocksResult"):
        claims.Sources(ground_truth=book.blocks)


def test_the_books_results_name_the_command_that_writes_them_when_missing(tmp_path):
    with pytest.raises(ValueError, match=r"is not stored at .*; write the book's results with `maskdiff-tutor "
                                         r"book-results --out "):
        claims.book_sources(tmp_path)


def test_every_stored_result_is_a_file_the_book_results_command_writes():
    from maskdiff_tutor.experiments import book

    written = set(book.RESULTS)
    read = {source.file for source in claims.SOURCES.values()}
    assert read - written == {"blocks_chain_cpu.json", "blocks_text_cpu.json"}  # the larger cpu runs, made apart
    assert written - {book.TEXT_RESULT} <= read  # the larger text model's result: read by the real-models chapter


# --- the chapters and the Verdict chapter ----------------------------------------------------------

@pytest.mark.parametrize("chapter", MEASURING)
def test_a_chapter_shows_exactly_the_rows_rendered_from_the_books_results(book, chapter):
    shown = output_text(report_cell(chapter)).strip()
    assert shown == repr(claims.report(chapter, book)), (
        f"{chapter}: its verdict rows differ from the book's results; after changing a chapter's numbers, "
        "write them again with `maskdiff-tutor book-results` and re-execute the Verdict chapter")


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


def test_the_verdict_chapter_renders_the_whole_table(book):
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/verdict" in toc
    shown = "\n".join(output_text(c) for c in cells("verdict"))
    assert repr(claims.verdict_table(book)) in shown


def test_evidence_values_are_every_field_of_a_claims_evidence(book):
    for c in CLAIMS.values():
        values = claims.evidence_values(c.number, book)
        assert set(values) == {name for e in c.evidence for name in fields_of(e.sentence)}
        if c.deciding:
            assert claims.deciding_value(c.number, book) == values[c.deciding]


def test_rendering_verdicts_writes_nothing_into_the_package(book):
    package = ROOT / "maskdiff_tutor"

    def snapshot():
        return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in package.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}

    before = snapshot()
    for chapter in MEASURING:
        claims.report(chapter, book)
    claims.verdict_table(book)
    assert snapshot() == before
    assert not (package / "claims_evidence.json").exists()


def test_speed_is_read_as_the_fewest_calls_to_a_quality_with_ordinary_decoding_as_a_range():
    from maskdiff_tutor import claim_evidence
    from maskdiff_tutor.experiments.ground_truth import Remasking, RemaskingSetting

    ordinary = Remasking([RemaskingSetting(0.0, calls, ppl, 32 / calls, 3.0)
                          for calls, ppl in ((4, 40.0), (8, 20.0), (16, 5.0))])
    assert claim_evidence._ordinary_calls(ordinary, 50.0) == "4"
    assert claim_evidence._ordinary_calls(ordinary, 20.0) == "5 to 8"  # reached at 8, not at 4: in between
    assert claim_evidence._ordinary_calls(ordinary, 10.0) == "9 to 16"
    assert claim_evidence._ordinary_calls(ordinary, 1.0) == "none"
    assert claim_evidence._fewest_calls(ordinary.settings, 25.0) == "8"
    assert claim_evidence._fewest_calls(ordinary.settings, 4.0) == "none"


def test_claims_10_and_11_are_read_at_the_same_quality_targets(book):
    from maskdiff_tutor import claim_evidence

    remasking, random_init = claims.evidence_values(10, book), claims.evidence_values(11, book)
    for name in ("language_ppl", "x125_ordinary", "x2_ordinary", "x4_ordinary", "h_language"):
        assert remasking[name] == random_init[name]
    rows = claim_evidence.speed_at_targets(book.ground_truth.metrics)
    assert [r.multiple for r in rows] == list(claim_evidence.SPEED_TARGETS)
    assert [r.remasking for r in rows] == [remasking[f"x{n}_method"] for n in ("125", "2", "4")]
    assert [r.random_init for r in rows] == [random_init[f"x{n}_method"] for n in ("125", "2", "4")]


# --- several training seeds ------------------------------------------------------------------------

def test_the_book_reads_every_seeded_source_for_each_of_its_seeds(book):
    from maskdiff_tutor.experiments.book import SEEDS

    seeded = [name for name, source in claims.SOURCES.items() if len(source.seeds) > 1]
    assert "ground_truth" in seeded and "blocks_text_cpu" in seeded and "generation_order" not in seeded
    assert book.other_seeds() == tuple(s for s in SEEDS if s != 0)
    for seed in book.other_seeds():
        at = book.at_seed(seed)
        for name in seeded:
            assert getattr(at, name).seed == seed
        assert at.generation_order is book.generation_order  # one seed only (exact): seed 0's stays


def test_a_seeded_field_is_its_mean_and_range_over_the_seeds(book):
    from maskdiff_tutor.seed_values import SeedValues

    c = claims.claim(12)
    e = c.evidence_in("parallel_sampling")
    shown = claims.evidence(c, "parallel_sampling", book)["lad_left_weak"]
    values = SeedValues((0, *book.other_seeds()),
                        tuple(e.values(book.at_seed(seed))["lad_left_weak"] for seed in (0, *book.other_seeds())))
    assert shown == format(values, "")
    one_seed = claims.Sources(**{n: getattr(book, n) for n in ("ground_truth", "ladder")})
    assert claims.evidence(c, "parallel_sampling", one_seed)["lad_left_weak"] == format(values.values[0], "")


def test_seeds_are_refused_for_a_source_without_them_or_without_its_seed_0_result(book):
    with pytest.raises(ValueError, match=r"source 'generation_order' has results for seeds \[\] besides 0"):
        claims.Sources(generation_order=book.generation_order, seeds={"generation_order": {1: book.generation_order}})
    with pytest.raises(ValueError, match="seeds given for source 'ladder', but not its seed-0 result"):
        claims.Sources(ground_truth=book.ground_truth, seeds={"ladder": {1: book.ladder}})


def test_a_verdict_decided_by_trained_models_is_within_the_seed_spread_exactly_where_its_contrast_is(book):
    found = {c.claim: c for c in reversed(claims.contrasts(book))}  # each claim's first contrast
    decided = [c for c in CLAIMS.values() if c.decided_by in ("trained", "text")]
    assert decided and all(c.contrasts for c in decided), "a verdict decided by trained models names its contrast"
    for c in decided:
        within = found[c.number].within_spread
        assert (c.verdict == "within the seed spread") == within, (c.number, found[c.number].differences)
    table = repr(claims.contrast_table(book))
    assert "within the spread" in table and "bound, B = 8: paper's scheme - random" in table
