"""The blocks experiment (Section 3.4.2) on a small scale: equal compute across objectives, the
decodings each model gets, the exact references, real text through a fixture file, the typed
result (its lookups against a brute-force read of its JSON, saved and loaded back equal) and the
command line (the chapter runs the CI scale under nbval)."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest
from helpers import ci_scale

from maskdiff_tutor import cli, corpus
from maskdiff_tutor.denoiser import load_denoiser
from maskdiff_tutor.experiments import blocks
from maskdiff_tutor.experiments.blocks_results import (
    EXACT_DENOISER,
    LEFT_TO_RIGHT,
    RANDOM,
    BlocksResult,
    Model,
    TextLanguage,
    blockwise,
    literal,
)
from maskdiff_tutor.experiments.result import ExperimentResult
from maskdiff_tutor.train import forward_tokens_per_sequence

SMALL = dataclasses.replace(blocks.SCALES["ci"], seq_len=16, vocab_size=16, train_sequences=2000,
                            valid_sequences=64, random_steps=40, batch_size=16, trained_blocks=(4,),
                            literal_blocks=(4,), decode_blocks=(1, 4, 16), tokens_per_step=(1, 4), samples=96,
                            bound_repeats=2)
MODELS = {RANDOM, blockwise(4), literal(4), LEFT_TO_RIGHT}


@pytest.fixture(scope="module")
def result():
    with ci_scale(blocks, SMALL):
        return blocks.run(scale="ci", device="cpu", seed=0)


@pytest.fixture(scope="module")
def text_result(tmp_path_factory):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "the", "dog", "ran", "to", "the", "park", "while", "birds",
             "sang"]
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("text") / "fixture.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(900)), encoding="utf-8")
    with ci_scale(blocks, dataclasses.replace(SMALL, samples=8, valid_sequences=16, random_steps=10)):
        return blocks.run(scale="ci", device="cpu", seed=0, text=path)


def test_every_objective_gets_the_same_forward_tokens(result):
    budget = result.config.forward_token_budget
    assert budget == SMALL.random_steps * SMALL.batch_size * SMALL.seq_len
    assert {run.model for run in result.curves.training} == MODELS
    for model in MODELS:
        steps = result.metrics.steps(model)
        per_step = SMALL.batch_size * forward_tokens_per_sequence(model.objective, SMALL.seq_len, model.block_length)
        assert abs(steps * per_step - budget) <= per_step / 2, model
        assert result.curves.history(model).step[-1] == steps
    assert result.metrics.steps(EXACT_DENOISER) == 0 and result.curves.judge is None


def test_each_model_is_decoded_the_ways_it_can_be(result):
    metrics = result.metrics
    assert [row.model for row in metrics.models] == [RANDOM, blockwise(4), literal(4), LEFT_TO_RIGHT, EXACT_DENOISER]
    settings = {(d.block_length, d.tokens_per_step, d.order) for d in metrics.decodings_of(RANDOM)}
    assert settings == {(1, 1, "confidence"), (4, 1, "confidence"), (4, 1, "random"), (4, 4, "confidence"),
                        (16, 1, "confidence"), (16, 1, "random"), (16, 4, "confidence"), (16, 4, "random")}
    assert {d.block_length for d in metrics.decodings_of(blockwise(4))} == {4}
    assert [(d.block_length, d.tokens_per_step) for d in metrics.decodings_of(LEFT_TO_RIGHT)] == [(1, 1)]
    for d in metrics.decodings:
        assert d.calls == SMALL.seq_len // d.tokens_per_step  # from nothing, every block fully masked
        assert 0 < d.entropy <= math.log(SMALL.vocab_size) + 1e-9
        assert d.ppl == pytest.approx(math.exp(d.nll)) and d.examples == ()  # no text to show on the chain


def test_exact_denoiser_samples_the_chain_in_random_order_and_left_to_right(result):
    reference = result.metrics.reference
    assert not reference.by_judge
    assert reference.valid_nll == pytest.approx(reference.exact_nll, abs=0.1)  # held-out data from the chain
    for b, order in [(1, "confidence"), (16, "random")]:  # ancestral sampling: exact samples of the chain
        assert result.metrics.decoding(EXACT_DENOISER, b, 1, order).nll == pytest.approx(reference.exact_nll,
                                                                                        abs=0.15), (b, order)
    # sampled confidence order with the whole sequence as one block is mode-seeking: too low an NLL
    assert result.metrics.decoding(EXACT_DENOISER, 16, 1).nll < reference.exact_nll - 0.2


def test_bounds(result):
    random_model = result.metrics.measured(RANDOM)
    assert list(random_model.bound_by_block) == [1, 4, 16]
    assert random_model.bound == random_model.bound_by_block[16]
    for model in MODELS:  # every bound lies above the chain's entropy (up to Monte Carlo noise)
        assert result.metrics.bound(model) > result.metrics.reference.exact_nll - 0.05, model
        assert model == RANDOM or result.metrics.measured(model).bound_by_block == {}
    assert result.metrics.bound(EXACT_DENOISER) is None


def test_real_text_through_a_fixture(text_result):
    language = text_result.config.language
    assert isinstance(language, TextLanguage) and language.kind == "character-level text"
    assert language.vocab_size == len(set("the cat sat on a mat and the dog ran to the park while birds sang"))
    assert text_result.curves.judge is not None and text_result.curves.judge.step
    assert EXACT_DENOISER not in [row.model for row in text_result.metrics.models]
    for d in text_result.metrics.decodings:
        assert len(d.examples) == 2 and all(len(e) == SMALL.seq_len for e in d.examples)
    assert text_result.metrics.reference.by_judge and text_result.metrics.reference.valid_nll > 0
    assert text_result.metrics.reference.exact_nll is None


def test_too_short_a_text_is_refused(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("only a few characters here", encoding="utf-8")
    with ci_scale(blocks, SMALL), pytest.raises(ValueError, match="held-out sequences"):
        blocks.run(scale="ci", device="cpu", text=path)


def test_unknown_scale_raises():
    with pytest.raises(ValueError, match=r"scale must be one of \['ci', 'cpu', 'gpu'\]"):
        blocks.run(scale="huge")


def test_cli_offers_text_only_where_the_experiment_takes_it(capsys):
    for name, expected in (("blocks", True), ("joint-vs-marginal", False)):
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        assert ("--text" in capsys.readouterr().out) == expected


def test_order_statistics_with_one_token_per_step(result):
    for d in result.metrics.decodings:
        assert (d.leftmost_share is not None) == (d.spearman_position_vs_step is not None) == (d.tokens_per_step == 1)
        if d.block_length == 1:  # blocks of one token: left to right by construction
            assert d.leftmost_share == 1.0 and d.spearman_position_vs_step == pytest.approx(1.0)


def test_saved_models_and_tokenizer_load_back(tmp_path):
    text = tmp_path / "fixture.txt"
    rng = random.Random(1)
    text.write_text(" ".join(rng.choice(["a", "bb", "ccc", "dd"]) for _ in range(1200)), encoding="utf-8")
    small = dataclasses.replace(SMALL, samples=4, valid_sequences=16, random_steps=2, decode_blocks=(16,),
                                tokens_per_step=(16,), trained_blocks=(), literal_blocks=())
    with ci_scale(blocks, small):
        assert cli.main(["blocks", "--device", "cpu", "--no-progress", "--text", str(text), "--save-models",
                         str(tmp_path / "models"), "--out", str(tmp_path / "r.json")]) == 0
    tokenizer = corpus.load_tokenizer(tmp_path / "models" / "tokenizer.json")
    assert tokenizer.decode(tokenizer.encode("a bb")) == "a bb"
    for name in ("random", "left_to_right", "judge"):
        model = load_denoiser(tmp_path / "models" / name)
        assert model.config.vocab_size == tokenizer.mask_id + 1 and model.config.max_seq_len == SMALL.seq_len
    # measuring the saved models (the judge among them) gives what the training run measured
    with ci_scale(blocks, small):
        assert cli.main(["blocks", "--device", "cpu", "--text", str(text), "--models", str(tmp_path / "models"),
                         "--out", str(tmp_path / "again.json")]) == 0
        other = tmp_path / "other.txt"
        other.write_text(text.read_text(encoding="utf-8") + " a", encoding="utf-8")
        with pytest.raises(ValueError, match=r"settings\.language\.characters"):
            blocks.run(scale="ci", device="cpu", text=other, models=tmp_path / "models")
    first, again = (json.loads((tmp_path / name).read_text()) for name in ("r.json", "again.json"))
    assert again["metrics"] == first["metrics"] and again["curves"] == first["curves"]


def test_greedy_confidence_after_a_prompt(result):
    # with the exact denoiser of a chain meeting Assumptions 3-4 it is exactly left to right (a theorem)
    exact = result.metrics.greedy_after_prompt(EXACT_DENOISER)
    assert exact.prompts == SMALL.valid_sequences
    assert exact.leftmost_share == 1.0 and exact.spearman_position_vs_step == pytest.approx(1.0)
    trained = result.metrics.greedy_after_prompt(RANDOM)
    assert 0 <= trained.leftmost_share <= 1 and trained.ppl > 1
    assert [g.model for g in result.metrics.greedy] == [RANDOM, EXACT_DENOISER]
    # the top probability of each mask before the first step, by distance from the prompt
    for greedy in (exact, trained):
        assert len(greedy.top_by_distance) == SMALL.seq_len - 1 and all(0 < p <= 1 for p in greedy.top_by_distance)
    assert exact.top_by_distance[-1] < exact.top_by_distance[0]  # the exact curve decays (Eq. 17)


def _raw_rows(result) -> list[dict]:
    """The decodings as plain JSON, read by brute force: the reference for the typed lookups."""
    return result.to_json()["metrics"]["decodings"]


def _raw_model(model) -> dict:
    return {"objective": model.objective, "block_length": model.block_length}


def test_lookups_agree_with_a_brute_force_read_and_name_what_exists(result):
    measured, raw = result.metrics, result.to_json()["metrics"]
    for record in _raw_rows(result):
        model = Model(**record["model"])
        found = measured.decoding(model, record["block_length"], record["tokens_per_step"], record["order"])
        assert (found.ppl, found.calls, found.leftmost_share) == (record["ppl"], record["calls"],
                                                                   record["leftmost_share"])
    assert measured.decoding(RANDOM, 4, 4).leftmost_share is None  # measured for k = 1 only
    rows = {json.dumps(row["model"]): row for row in raw["models"]}
    assert measured.bound(blockwise(4)) == rows[json.dumps(_raw_model(blockwise(4)))]["bound"]
    assert measured.bound_by_block(4) == rows[json.dumps(_raw_model(RANDOM))]["bound_by_block"]["4"]
    assert measured.reference.exact_nll == raw["reference"]["exact_nll"]
    greedy = next(g for g in raw["greedy"] if g["model"] == _raw_model(EXACT_DENOISER))
    assert list(measured.greedy_after_prompt(EXACT_DENOISER).top_by_distance) == greedy["top_by_distance"]
    with pytest.raises(ValueError, match=r"model must be one of \['random', 'blockwise B=4'"):
        measured.bound(blockwise(8))
    with pytest.raises(TypeError, match="model must be a blocks_results.Model"):
        measured.bound("random")
    with pytest.raises(ValueError, match=r"was not decoded with block_length=3.*\(1, 1, 'confidence'\)"):
        measured.decoding(RANDOM, 3, 1)
    with pytest.raises(ValueError, match=r"block_length must be one of \[1, 4, 16\]; got 2"):
        measured.bound_by_block(2)
    with pytest.raises(ValueError, match=r"'blockwise B=4' was not decoded greedily after a prompt; only "
                                         r"\['random', 'exact denoiser'\] were"):
        measured.greedy_after_prompt(blockwise(4))
    with pytest.raises(ValueError, match=r"model must be one of \['random', 'blockwise B=4'.*got 'blockwise B=8'"):
        result.curves.history(blockwise(8))


def test_curves_and_tables_hold_every_matching_decoding(result):
    measured, raw = result.metrics, [d for d in _raw_rows(result) if d["model"] == _raw_model(RANDOM)]
    for k, order in ((1, "random"), (4, "random"), (4, "confidence")):  # brute force over the raw records
        expected = sorted((d["block_length"], d["ppl"]) for d in raw if d["tokens_per_step"] == k
                          and (d["order"] == order or d["block_length"] == k))
        assert measured.curve(RANDOM, k, order) == ([b for b, _ in expected], [p for _, p in expected])
    assert measured.curve(RANDOM, 4, "random")[0] == [4, 16]  # B = 4 = k: the confidence run serves
    bounds = measured.bounds_table()
    assert [row[0] for row in bounds.rows] == ["random", "blockwise B=4", "blockwise_literal B=4", "left_to_right",
                                               "random, decoded in blocks of 1", "random, decoded in blocks of 4",
                                               "random, decoded in blocks of 16"]
    table = measured.decodings_table([RANDOM, LEFT_TO_RIGHT], tokens_per_step=(4,))
    assert len(table.rows) == sum(d["tokens_per_step"] == 4 for d in raw)  # left to right decodes with k = 1 only
    assert "true perplexity" in table.caption and table.columns[-2:] == ["leftmost", "rho"]
    everything = measured.decodings_table(tokens_per_step=(1, 4))  # every model
    assert len(everything.rows) == len(_raw_rows(result))  # the scale's k are 1 and 4
    chosen = measured.table_of([(RANDOM, 4, 1, "random"), (LEFT_TO_RIGHT, 1, 1, "confidence")], caption="two")
    assert [row[:4] for row in chosen.rows] == [["random", 4, 1, "random"], ["left_to_right", 1, 1, "confidence"]]
    assert chosen.caption.startswith("two: true perplexity")
    assert chosen.rows[0][5] == measured.decoding(RANDOM, 4, 1, "random").ppl
    greedy = measured.greedy_table()
    assert [row[0] for row in greedy.rows] == ["random", "exact denoiser"]  # the models decoded greedily
    assert "the chain's own NLL is the floor" in bounds.caption


def test_real_text_tables_name_the_judge_as_the_reference(text_result):
    measured = text_result.metrics
    assert "the judge's NLL of held-out text is the reference" in measured.bounds_table().caption
    assert "judge's perplexity" in measured.decodings_table([RANDOM]).caption
    assert measured.greedy_table().columns[3] == "judge's PPL"


def test_a_run_saves_and_loads_back_typed_and_equal(result, text_result, tmp_path):
    for run in (result, text_result):
        path = run.save(tmp_path / "blocks.json")
        assert BlocksResult.load(path) == run and ExperimentResult.load(path) == run
        stored = json.loads(path.read_text())
        assert (stored["experiment"], stored["schema"]) == ("blocks", BlocksResult.SCHEMA)

