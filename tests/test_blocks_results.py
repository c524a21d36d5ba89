"""The blocks experiment's typed result without running it: models as typed records, the book's
stored cpu-scale results loaded as they are (no conversion), their lookups against a brute-force
read of the JSON, the derived numbers of the greedy curve, and the refusal of a file of another
experiment or of the old untyped layout."""

from __future__ import annotations

import json
import pathlib
import statistics

import pytest

from maskdiff_tutor.experiments import blocks, blocks_results
from maskdiff_tutor.experiments.blocks_results import (
    EXACT_DENOISER,
    LEFT_TO_RIGHT,
    RANDOM,
    BlocksResult,
    ChainLanguage,
    Model,
    TextLanguage,
)
from maskdiff_tutor.experiments.result import ExperimentResult

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "book" / "results"
STORED = {"chain": RESULTS / "blocks_chain_cpu.json", "text": RESULTS / "blocks_text_cpu.json"}


@pytest.mark.parametrize("model, name", [(blocks_results.RANDOM, "random"),
                                         (blocks_results.blockwise(4), "blockwise B=4"),
                                         (blocks_results.literal(8), "blockwise_literal B=8"),
                                         (blocks_results.LEFT_TO_RIGHT, "left_to_right"),
                                         (blocks_results.EXACT_DENOISER, "exact denoiser")])
def test_a_model_is_an_objective_and_a_block_length_shown_by_name(model, name):
    assert model.name == str(model) == name
    assert Model(model.objective, model.block_length) == model  # a value: equal records are the same model


def test_malformed_models_are_refused():
    with pytest.raises(ValueError, match=r"objective must be one of \['random', 'blockwise'"):
        Model("blocky")
    with pytest.raises(ValueError, match="block_length must be a positive int for objective 'blockwise'; got None"):
        Model("blockwise")
    with pytest.raises(ValueError, match="block_length must be a positive int .* got 0"):
        blocks_results.blockwise(0)
    with pytest.raises(ValueError, match="block_length must be None for objective 'random'"):
        Model("random", 4)


@pytest.fixture(scope="module", params=sorted(STORED))
def stored(request):
    """(typed result, the same file as plain JSON) of each stored cpu-scale run."""
    path = STORED[request.param]
    return BlocksResult.load(path), json.loads(path.read_text())


def test_the_stored_results_load_typed_as_they_are(stored):
    result, raw = stored
    assert (raw["experiment"], raw["schema"]) == ("blocks", BlocksResult.SCHEMA)
    assert result.scale == "cpu" and result.config.scale == blocks.SCALES["cpu"]
    text = isinstance(result.config.language, TextLanguage)
    assert text == result.metrics.reference.by_judge
    assert isinstance(result.config.language, TextLanguage if text else ChainLanguage)
    assert (EXACT_DENOISER in [row.model for row in result.metrics.models]) != text  # the chain only
    assert result.to_json() == raw  # nothing lost or added in reading


def test_stored_lookups_agree_with_a_brute_force_read(stored):
    result, raw = stored
    metrics = result.metrics
    for record in raw["metrics"]["decodings"]:  # every decoding, found by its setting
        found = metrics.decoding(Model(**record["model"]), record["block_length"], record["tokens_per_step"],
                                 record["order"])
        assert (found.ppl, found.nll, found.calls, found.entropy, found.leftmost_share) == (
            record["ppl"], record["nll"], record["calls"], record["entropy"], record["leftmost_share"])
    for record in raw["metrics"]["models"]:
        model = Model(**record["model"])
        assert (metrics.bound(model), metrics.steps(model)) == (record["bound"], record["steps"])
        if model == RANDOM:
            for b, bound in record["bound_by_block"].items():
                assert metrics.bound_by_block(int(b)) == bound
    for record in raw["metrics"]["greedy"]:
        greedy = metrics.greedy_after_prompt(Model(**record["model"]))
        assert (greedy.leftmost_share, list(greedy.top_by_distance)) == (record["leftmost_share"],
                                                                          record["top_by_distance"])
    for record in raw["curves"]["training"]:
        assert result.curves.history(Model(**record["model"])).loss == record["history"]["loss"]


def test_the_numbers_the_chapter_quotes_from_the_stored_runs():
    chain, text = (BlocksResult.load(STORED[name]).metrics for name in ("chain", "text"))
    # the printed values of the chapter's claims (rounded as the chapter rounds them)
    assert round(chain.decoding(EXACT_DENOISER, 4, 4).ppl, 1) == 52.5
    assert round(chain.decoding(EXACT_DENOISER, 64, 4).ppl, 2) == 3.58
    assert round(chain.bound(blocks_results.blockwise(4)), 3) == 2.614
    assert round(chain.bound_by_block(4), 3) == 2.942
    assert round(chain.decoding(RANDOM, 64, 1, "random").ppl, 2) == 34.97
    assert round(chain.reference.valid_nll, 3) == 2.405
    assert round(text.bound(blocks_results.blockwise(4)), 3) == 2.373
    assert round(text.greedy_after_prompt(RANDOM).leftmost_share, 2) == 0.23
    greedy = text.greedy_after_prompt(RANDOM)
    assert (round(greedy.top(1), 2), round(greedy.top(15), 2), round(greedy.floor(), 2)) == (0.28, 0.15, 0.15)
    assert greedy.fall_distance(0.9) == 3


def test_the_greedy_curve_s_derived_numbers_by_brute_force():
    greedy = BlocksResult.load(STORED["text"]).metrics.greedy_after_prompt(RANDOM)
    top = list(greedy.top_by_distance)  # n = 1 .. L - 1
    assert greedy.top(1) == top[0] and greedy.top(len(top)) == top[-1]
    far = top[len(top) // 2:]
    floor = sorted(far)[len(far) // 2] if len(far) % 2 else (sorted(far)[len(far) // 2 - 1]
                                                              + sorted(far)[len(far) // 2]) / 2
    assert greedy.floor() == floor == statistics.median(far) and greedy.far_half == len(top) // 2
    for fraction in (0.5, 0.9):  # the first n with top[n] - floor <= (1 - fraction) (top[1] - floor)
        expected = next(n for n in range(1, len(top) + 1)
                        if top[n - 1] - floor <= (1 - fraction) * (top[0] - floor))
        assert greedy.fall_distance(fraction) == expected
    with pytest.raises(ValueError, match=r"distance must lie in 1\.\.63; got 0"):
        greedy.top(0)


def test_headline_reads_the_typed_fields():
    result = BlocksResult.load(STORED["text"])  # has every model and decoding the headline names
    numbers = blocks.headline(result)
    assert numbers["left_to_right: held-out bound"] == (result.metrics.bound(LEFT_TO_RIGHT), 0.035)
    assert numbers["random, decoded in blocks of 4: held-out bound"] == (result.metrics.bound_by_block(4), 0.23)
    value = result.metrics.decoding(RANDOM, 64, 1, "random").ppl
    assert numbers["random: true PPL, B = 64, k = 1, random order"] == (value, 0.3 * value)
    assert numbers["random: greedy after a prompt, leftmost share"] == (
        result.metrics.greedy_after_prompt(RANDOM).leftmost_share, 0.4)
    assert len(numbers) == (len(blocks.BOUND_TOLERANCE) + len(blocks.BOUND_BY_BLOCK_TOLERANCE)
                            + len(blocks.PPL_RELATIVE_TOLERANCE) + 1)


def test_a_file_of_another_experiment_or_the_old_layout_is_refused(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"experiment": "ground_truth", "schema": 2, "scale": "ci", "seed": 0}))
    with pytest.raises(ValueError, match=r"other\.json holds a result of experiment 'ground_truth', not of 'blocks'"):
        BlocksResult.load(other)
    old = tmp_path / "old.json"  # the untyped layout had no schema: schema 1
    old.write_text(json.dumps({"experiment": "blocks", "scale": "cpu", "seed": 0, "config": {}, "metrics": {}}))
    with pytest.raises(ValueError, match=r"old\.json holds a result of 'blocks' written under schema 1"):
        BlocksResult.load(old)
    assert isinstance(ExperimentResult.load(STORED["chain"]), BlocksResult)  # dispatched on its experiment
