"""The real-model experiment (``experiments.real_model``) on small local models: its prompt sets,
its measurements against direct computations, and the run end to end through ``hub.load``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from hub_models import REMOTE, native_model, offline, remote_folder  # noqa: E402,F401 (offline: autouse)

from maskdiff_tutor import hub, zipf  # noqa: E402
from maskdiff_tutor.clean_distribution import clean_log_probs, clean_probs  # noqa: E402
from maskdiff_tutor.experiments import real_model  # noqa: E402
from maskdiff_tutor.experiments.result import ExperimentResult  # noqa: E402


@pytest.fixture
def bert(tmp_path):
    return hub.load(native_model(tmp_path, "bert"), dtype=torch.float64)


def test_four_prompt_sets_of_100_distinct_prompts():
    sets = real_model.prompt_sets()
    assert list(sets) == ["simple questions", "mathematics", "nonsensical questions", "humanities and arts"]
    for prompts in sets.values():
        assert len(prompts) == 100 == len(set(prompts)) and all(p.strip() for p in prompts)


def test_observations_of_a_known_curve():
    curve = torch.tensor([0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3,
                          0.4, 0.5], dtype=torch.float64)
    got = real_model.observations(curve)
    assert got.top_at_1 == 0.9 and got.fall_first_15 == pytest.approx(0.8)
    assert got.floor == pytest.approx(0.1) and got.floor_at_n == 6
    assert got.last_5_above_floor == pytest.approx(0.3 - 0.1)
    assert (got.peak_after_floor, got.peak_after_floor_at_n, got.top_at_end) == (0.5, 20, 0.5)
    ending_low = real_model.observations(torch.tensor([0.9, 0.5, 0.7, 0.1], dtype=torch.float64))
    assert ending_low.floor_at_n == 4 and ending_low.peak_after_floor is None
    assert ending_low.peak_after_floor_at_n is None and ending_low.top_at_end == pytest.approx(0.1)


def _prompt_set(name, curve):
    order = real_model.GreedyOrder(1.0, 0.0, 1.0, prompts=1)
    seen = real_model.observations(torch.tensor(curve, dtype=torch.float64))
    return real_model.PromptSet(name, 1, tuple(curve), seen, 0.5,
                                real_model.FirstPrompt("p", ("a",) * len(curve)), order,
                                {1: real_model.CostOfK(own_ppl=2.0, entropy=1.0, nfe=len(curve))})


def test_where_every_curve_stays_below_eq17_and_the_fall_over_the_last_5_masks():
    bound = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
    first = _prompt_set("a", [1.0, 0.5, 0.9, 0.5, 0.45, 0.3])  # below from n = 4 on
    second = _prompt_set("b", [0.5, 0.5, 0.5, 0.5, 0.3, 0.2])  # below everywhere
    assert real_model.Metrics(bound, (first, second)).below_bound_from() == 4
    assert real_model.Metrics(bound, (second,)).below_bound_from() == 1
    ends_on_it = _prompt_set("c", [0.1, 0.1, 0.1, 0.1, 0.1, 0.4])  # equal at the last mask: never strictly below
    assert real_model.Metrics(bound, (second, ends_on_it)).below_bound_from() is None
    assert first.last_5_fall == pytest.approx(0.5 - 0.3)
    metrics = real_model.Metrics(bound, (first, second))
    assert metrics.prompt_set("b") is second
    with pytest.raises(ValueError, match=r"name must be one of \['a', 'b'\]; got 'c'"):
        metrics.prompt_set("c")


def test_all_at_once_groups_prompts_by_length_and_matches_one_prompt_at_a_time(bert):
    ids = [torch.tensor([[12, 3, 4]]), torch.tensor([[12, 5]]), torch.tensor([[12, 1, 2]]), torch.tensor([[12, 7]])]
    tops, argmaxes = real_model.all_at_once(bert, ids, 6, batch_size=8)
    for i, prompt in enumerate(ids):
        x = torch.cat([prompt, torch.full((1, 6), bert.mask_id)], dim=1)
        probs = clean_probs(bert(x)[0, prompt.shape[1]:], bert.mask_id)
        torch.testing.assert_close(tops[i], probs.max(-1).values)
        assert torch.equal(argmaxes[i], probs.argmax(-1))


def test_own_nll_is_the_left_to_right_score_computed_one_token_at_a_time(bert):
    tokens = torch.tensor([[12, 3, 4, 5, 6], [12, 1, 1, 2, 9]])
    got = real_model.own_nll(bert, tokens, start=2, batch_size=1)
    for row in range(2):
        nll = 0.0
        for i in range(2, 5):
            x = tokens[row: row + 1].clone()
            x[0, i:] = bert.mask_id
            nll -= float(clean_log_probs(bert(x)[0, i], bert.mask_id)[tokens[row, i]])
        assert float(got[row]) == pytest.approx(nll / 3, rel=1e-12)


def test_the_experiment_end_to_end_on_a_local_masked_lm(tmp_path):
    folder = native_model(tmp_path, "modernbert", positions=128)
    result = real_model.run("ci", model=str(folder), seed=0)
    cfg = real_model.SCALES["ci"]
    recorded = dataclasses.replace(cfg, model="maskdiff_tutor/book_models/small_masked_lm (stored with the package)")
    assert result.config.family == "masked-lm" and result.config.dtype == "float64"
    assert result.config.scale == recorded  # the scale's default model named without a machine's path
    assert result.config.model == str(folder) and result.config.transformers == transformers.__version__
    assert result.metrics.eq17_paper_parameters == pytest.approx(
        zipf.top_probability_bound(list(range(1, cfg.masks + 1)), 2.31, 130_000).tolist())
    assert [s.name for s in result.metrics.sets] == list(real_model.prompt_sets())
    for entry in result.metrics.sets:
        measured = tuple(real_model.prompt_sets()[entry.name][: cfg.prompts_per_set])
        assert result.config.prompt_sets[entry.name] == measured
        assert len(entry.mean_top_by_n) == cfg.masks and entry.prompts == cfg.prompts_per_set
        assert all(0 < p <= 1 for p in entry.mean_top_by_n)
        curve = torch.tensor(entry.mean_top_by_n, dtype=torch.float64)
        assert entry.observations == real_model.observations(curve)
        assert 0 <= entry.homogenised_share_far <= 1
        assert entry.table_1.prompt == result.config.prompt_sets[entry.name][0]
        assert len(entry.table_1.argmax_tokens) == cfg.masks
        assert 0 <= entry.generation_order.leftmost_share <= 1 and entry.generation_order.prompts == cfg.order_prompts
        assert list(entry.cost_of_k) == list(cfg.tokens_per_step)
        assert all(entry.cost_of_k[k].own_ppl >= 1 for k in cfg.tokens_per_step)
        assert [entry.cost_of_k[k].nfe for k in cfg.tokens_per_step] == [cfg.masks // k for k in cfg.tokens_per_step]
    path = result.save(tmp_path / "real.json")
    assert real_model.RealModelResult.load(path) == result
    assert ExperimentResult.load(path) == result
    again = real_model.run("ci", model=str(folder), seed=0)
    assert again.metrics == result.metrics  # seeded: the same numbers
    check_summary(result)


def check_summary(result):
    """The comparison's summary of a result: each number the mean over the prompt sets, by hand."""
    from maskdiff_tutor.experiments import real_model_comparison as comparison

    summary = comparison.summarise("tiny", result, 123, 4.5)
    sets = result.metrics.sets
    mean_curve = [sum(values) / len(sets) for values in zip(*(s.mean_top_by_n for s in sets))]
    assert summary.top_at_1 == pytest.approx(mean_curve[0]) and summary.lowest == pytest.approx(min(mean_curve))
    assert summary.lowest_at_n == 1 + mean_curve.index(min(mean_curve)) and summary.top_at_end == pytest.approx(
        mean_curve[-1])
    assert summary.leftmost == pytest.approx(sum(s.generation_order.leftmost_share for s in sets) / len(sets))
    assert summary.own_ppl[2] == pytest.approx(sum(s.cost_of_k[2].own_ppl for s in sets) / len(sets))
    table = repr(comparison.comparison_table([summary, summary], 32))
    assert "held-out NELBO (nats per token)" in table and "4.500" in table and "123" in table
    with pytest.raises(ValueError, match="at least one ModelSummary"):
        comparison.comparison_table([], 32)


def test_a_saved_result_of_another_experiment_or_schema_is_refused(tmp_path):
    from maskdiff_tutor.experiments import generation_order

    record = {"experiment": "generation_order", "schema": generation_order.GenerationOrderResult.SCHEMA}
    (tmp_path / "order.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="experiment 'generation_order', not of 'real_model'"):
        real_model.RealModelResult.load(tmp_path / "order.json")
    (tmp_path / "old.json").write_text(json.dumps({"experiment": "real_model", "scale": "ci", "seed": 0}))
    with pytest.raises(ValueError, match="'real_model' written under schema 1 .*reads schema 2 of 'real_model'"):
        real_model.RealModelResult.load(tmp_path / "old.json")


def test_a_model_that_decodes_left_to_right_by_construction(tmp_path):
    # the tiny LLaDA-interface model is equally sure of every mask, so greedy confidence decoding
    # breaks the ties leftmost: a perfectly left-to-right order
    extra, specials = REMOTE["llada"]
    extra = {**extra, "max_sequence_length": 64}
    lm = hub.load(remote_folder(tmp_path, "llada", extra, specials), trust_remote_code=True)
    order = real_model.greedy_order(lm, [torch.tensor([[3]]), torch.tensor([[5]])], 8)
    assert order.leftmost_share == 1.0 and order.spearman_position_vs_step == pytest.approx(1.0)
    assert order.prompts == 2


def test_unknown_scale_and_bad_block_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"scale must be one of \['ci', 'colab', 'gpu'\]; got 'huge'"):
        real_model.run("huge")
    monkeypatch.setitem(real_model.SCALES, "ci", real_model.Scale(**{**real_model.SCALES["ci"].__dict__,
                                                                     "block_length": 5}))
    with pytest.raises(ValueError, match=r"block_length 5 must divide masks 32"):
        real_model.run("ci", model=str(native_model(tmp_path, "bert")))


def test_the_command_line_runs_it_on_a_folder(tmp_path, capsys):
    from maskdiff_tutor import cli

    folder = native_model(tmp_path, "bert", positions=128)
    assert cli.main(["real-model", "--model", str(folder), "--dtype", "fp32", "--out", str(tmp_path / "r.json"),
                     "--no-progress"]) == 0
    result = ExperimentResult.load(tmp_path / "r.json")
    assert isinstance(result, real_model.RealModelResult) and result.config.dtype == "float32"
    assert result.config.transformers == transformers.__version__ and result.environment.device == "cpu"
    assert cli.main(["real-model", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("maskdiff-tutor: error: ") and "nowhere is " in error and error.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_a_small_masked_lm_trains_on_a_text_file_and_loads_through_the_hub(tmp_path):
    from maskdiff_tutor.experiments import small_masked_lm

    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 40)
    settings = small_masked_lm.Settings(vocab_size=300, seq_len=16, hidden_size=16, layers=1, heads=2, steps=30,
                                        batch_size=8, lr=1e-2, held_out=4)
    record = small_masked_lm.make(text, tmp_path / "model", settings, device="cpu")
    assert record.history.loss[-1] < record.history.loss[0]  # it learned something
    assert record.settings == settings and record.text.characters == len(text.read_text())
    assert record.text.sha256 == hashlib.sha256(text.read_bytes()).hexdigest()
    assert record.environment.device == "cpu" and record.transformers == transformers.__version__
    assert small_masked_lm.Training.load(tmp_path / "model") == record
    lm = hub.load(tmp_path / "model")
    assert lm.family == "masked-lm" and lm.tokenizer.mask_token == "[MASK]" and lm.vocab_size == 300
    assert record.parameters == sum(p.numel() for p in lm.model.parameters())
    x = torch.cat([lm.prompt_ids("To be, or"), torch.full((1, 4), lm.mask_id)], dim=1)
    assert lm(x).shape == (1, x.shape[1], 300)
    # the held-out sequences: the text's last 4, stored beside the weights; their NELBO measured again agrees
    from safetensors.torch import load_file

    held = load_file(str(tmp_path / "model" / small_masked_lm.HELD_OUT))["ids"]
    ids = lm.tokenizer(text.read_text(), add_special_tokens=False)["input_ids"]
    whole = len(ids) // 15 * 15
    assert held.shape == (4, 16) and held[:, 1:].flatten().tolist() == ids[whole - 60: whole]
    assert record.held_out_nelbo == small_masked_lm.held_out_nelbo(tmp_path / "model") > 0
    with pytest.raises(ValueError, match=r"held_out must be from 1 to \d+, fewer than the text's \d+ sequences"):
        small_masked_lm.make(text, tmp_path / "other", dataclasses.replace(settings, held_out=10_000), device="cpu")


def test_a_small_masked_lm_record_keeps_a_diverged_loss_and_refuses_a_file_that_does_not_fit(tmp_path):
    from maskdiff_tutor.experiments import small_masked_lm
    from maskdiff_tutor.experiments.result import Environment
    from maskdiff_tutor.train import History

    environment = Environment.now(torch.device("cpu"), 0.0)
    record = small_masked_lm.Training(small_masked_lm.Settings(), small_masked_lm.Text(10, 5, 1, "0" * 64), 7,
                                      History([1, 2], [3.0, float("nan")], [1e-3, 1e-3], [1.0, 1.0], [8, 16]),
                                      5.5, "4.0", environment)
    record.save(tmp_path)
    loaded = small_masked_lm.Training.load(tmp_path)
    assert math.isnan(loaded.history.loss[1]) and loaded.history.loss[0] == 3.0 and loaded.settings == record.settings
    stored = json.loads((tmp_path / "training.json").read_text())
    assert stored["history"]["loss"] == [3.0, None]
    (tmp_path / "training.json").write_text(json.dumps({**stored, "parameters": "many"}))
    with pytest.raises(ValueError, match=r"training.json: parameters: expected an integer; got 'many'"):
        small_masked_lm.Training.load(tmp_path)


def test_the_command_line_reports_the_small_masked_lm_record(tmp_path, monkeypatch, capsys):
    from maskdiff_tutor import cli
    from maskdiff_tutor.experiments import small_masked_lm
    from maskdiff_tutor.experiments.result import Environment
    from maskdiff_tutor.train import History

    environment = dataclasses.replace(Environment.now(torch.device("cpu"), 0.0), wall_seconds=12.5)
    record = small_masked_lm.Training(small_masked_lm.Settings(), small_masked_lm.Text(10, 5, 1, "0" * 64), 7,
                                      History([1, 2], [3.0, 2.25], [1e-3, 1e-3], [1.0, 1.0], [8, 16]), 5.5,
                                      "4.0", environment)
    monkeypatch.setattr(small_masked_lm, "make", lambda *args, **kwargs: record)
    text = tmp_path / "text.txt"
    text.write_text("some text\n")
    assert cli.main(["small-masked-lm", "--text", str(text), "--out", str(tmp_path / "model"), "--no-progress"]) == 0
    assert capsys.readouterr().out == (f"saved {tmp_path / 'model'} (7 parameters, final loss 2.250, held-out NELBO "
                                       "5.500 nats per token, 12.5 s)\n")


@pytest.mark.parametrize("preset, folder", [("small", "BOOK_FOLDER"), ("1m", "LARGER_FOLDER")])
def test_each_stored_text_model_was_trained_with_todays_settings(preset, folder):
    from maskdiff_tutor.experiments import small_masked_lm

    record = small_masked_lm.Training.load(getattr(small_masked_lm, folder))
    assert record.settings == small_masked_lm.PRESETS[preset]


def test_the_small_text_model_records_the_held_out_nelbo_it_has():
    """The larger model's (about 35 s) is measured again by ``book-models --check`` in CI instead."""
    from maskdiff_tutor.experiments import small_masked_lm

    record = small_masked_lm.Training.load(small_masked_lm.BOOK_FOLDER)
    assert small_masked_lm.held_out_nelbo(small_masked_lm.BOOK_FOLDER) == pytest.approx(record.held_out_nelbo,
                                                                                        rel=1e-9)


def test_the_larger_text_model_is_the_better_denoiser():
    from maskdiff_tutor.experiments import small_masked_lm

    small, larger = (small_masked_lm.Training.load(f) for f in (small_masked_lm.BOOK_FOLDER,
                                                                 small_masked_lm.LARGER_FOLDER))
    assert larger.parameters > 1_000_000 > small.parameters
    assert larger.held_out_nelbo < small.held_out_nelbo


def test_the_stored_larger_text_model_result_is_the_book_scale_measurement():
    from maskdiff_tutor.experiments import book, real_model

    stored = real_model.RealModelResult.load(book.RESULTS_FOLDER / book.TEXT_RESULT)
    assert stored.scale == book.SCALE and stored.seed == book.SEED
    assert stored.config.model == "maskdiff_tutor/book_models/text_masked_lm_1m (stored with the package)"
    assert stored.config.dtype == "float64"  # the same digits on every CPU


def test_the_larger_text_model_check_compares_a_new_measurement_with_the_stored_one(monkeypatch):
    from maskdiff_tutor.experiments import book, real_model, real_model_comparison, small_masked_lm

    stored = real_model.RealModelResult.load(book.RESULTS_FOLDER / book.TEXT_RESULT)
    monkeypatch.setattr(book, "measure_larger_text_model", lambda device=None: stored)
    nelbo = small_masked_lm.Training.load(small_masked_lm.LARGER_FOLDER).held_out_nelbo
    monkeypatch.setattr(small_masked_lm, "held_out_nelbo", lambda folder: nelbo)  # its 35 s measurement, as stored
    report = book.check_larger_text_model()
    assert report.passed and len(report.rows) == len(real_model_comparison.headline(stored)) + 1
    assert report.rows[-1].name == "held-out NELBO" and report.rows[-1].stored == nelbo
    # a stored result is measured again, not retrained, and its report says so
    assert report.how == "measured again"
    assert book.format_check(report).startswith("real_model_text_1m: measured again in ")
    assert "retrained" not in book.format_check(report)
    moved = stored.metrics.sets[0]
    moved = dataclasses.replace(moved, homogenised_share_far=moved.homogenised_share_far + 0.01)
    changed = dataclasses.replace(stored, metrics=dataclasses.replace(stored.metrics,
                                                                      sets=(moved, *stored.metrics.sets[1:])))
    monkeypatch.setattr(book, "measure_larger_text_model", lambda device=None: changed)
    report = book.check_larger_text_model()
    assert not report.passed
    assert [row.name for row in report.rows if not row.within] == ["far masks homogenised"]
    monkeypatch.setattr(book, "measure_larger_text_model", lambda device=None: stored)
    monkeypatch.setattr(small_masked_lm, "held_out_nelbo", lambda folder: nelbo * (1 + 1e-6))
    report = book.check_larger_text_model()
    assert [row.name for row in report.rows if not row.within] == ["held-out NELBO"]
