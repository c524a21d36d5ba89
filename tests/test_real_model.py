"""The real-model experiment (``experiments.real_model``) on small local models: its prompt sets,
its measurements against direct computations, and the run end to end through ``hub.load``."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from maskdiff_tutor import zipf  # noqa: E402
from maskdiff_tutor.clean_distribution import clean_log_probs, clean_probs  # noqa: E402
from maskdiff_tutor.experiments import real_model  # noqa: E402
from maskdiff_tutor.experiments.result import ExperimentResult  # noqa: E402
from maskdiff_tutor import hub  # noqa: E402

from hub_models import REMOTE, native_model, remote_folder  # noqa: E402
from hub_models import offline  # noqa: E402,F401 (an autouse fixture)


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
    assert got["top_at_1"] == 0.9 and got["fall_first_15"] == pytest.approx(0.8)
    assert got["floor"] == pytest.approx(0.1) and got["floor_at_n"] == 6
    assert got["last_5_above_floor"] == pytest.approx(0.3 - 0.1)
    assert (got["peak_after_floor"], got["peak_after_floor_at_n"], got["top_at_end"]) == (0.5, 20, 0.5)
    ending_low = real_model.observations(torch.tensor([0.9, 0.5, 0.7, 0.1], dtype=torch.float64))
    assert ending_low["floor_at_n"] == 4 and ending_low["peak_after_floor"] is None
    assert ending_low["peak_after_floor_at_n"] is None and ending_low["top_at_end"] == pytest.approx(0.1)


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
    assert result.config["family"] == "masked-lm" and result.config["dtype"] == "float64"
    assert result.metrics["eq17_paper_parameters"] == pytest.approx(
        zipf.top_probability_bound(list(range(1, cfg.masks + 1)), 2.31, 130_000).tolist())
    for kind, entry in result.metrics["sets"].items():
        assert len(entry["mean_top_by_n"]) == cfg.masks and entry["prompts"] == cfg.prompts_per_set
        assert all(0 < p <= 1 for p in entry["mean_top_by_n"])
        assert 0 <= entry["homogenised_share_far"] <= 1
        assert len(entry["table_1_first_prompt"]["argmax_tokens"]) == cfg.masks
        order = result.metrics["generation_order"][kind]
        assert 0 <= order["leftmost_share"] <= 1 and order["prompts"] == cfg.order_prompts
        cost = result.metrics["cost_of_k"][kind]
        assert cost["k"] == list(cfg.tokens_per_step) and all(p >= 1 for p in cost["own_ppl"])
        assert cost["nfe"] == [cfg.masks // k for k in cfg.tokens_per_step]
    path = result.save(tmp_path / "real.json")
    assert ExperimentResult.load(path).metrics == result.metrics
    again = real_model.run("ci", model=str(folder), seed=0)
    assert again.metrics == result.metrics  # seeded: the same numbers


def test_a_model_that_decodes_left_to_right_by_construction(tmp_path):
    # the tiny LLaDA-interface model is equally sure of every mask, so greedy confidence decoding
    # breaks the ties leftmost: a perfectly left-to-right order
    extra, specials = REMOTE["llada"]
    extra = {**extra, "max_sequence_length": 64}
    lm = hub.load(remote_folder(tmp_path, "llada", extra, specials), trust_remote_code=True)
    order = real_model.greedy_order(lm, [torch.tensor([[3]]), torch.tensor([[5]])], 8)
    assert order["leftmost_share"] == 1.0 and order["spearman_position_vs_step"] == pytest.approx(1.0)


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
    assert result.experiment == "real_model" and result.config["dtype"] == "float32"
    assert "transformers" in result.environment
    assert cli.main(["real-model", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("maskdiff-tutor: error: ") and "nowhere is " in error and error.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_a_small_masked_lm_trains_on_a_text_file_and_loads_through_the_hub(tmp_path):
    from maskdiff_tutor.experiments import small_masked_lm

    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 40)
    settings = small_masked_lm.Settings(vocab_size=300, seq_len=16, hidden_size=16, layers=1, heads=2, steps=30,
                                        batch_size=8, lr=1e-2)
    record = small_masked_lm.make(text, tmp_path / "model", settings, device="cpu")
    assert record["history"]["loss"][-1] < record["history"]["loss"][0]  # it learned something
    lm = hub.load(tmp_path / "model")
    assert lm.family == "masked-lm" and lm.tokenizer.mask_token == "[MASK]" and lm.vocab_size == 300
    x = torch.cat([lm.prompt_ids("To be, or"), torch.full((1, 4), lm.mask_id)], dim=1)
    assert lm(x).shape == (1, x.shape[1], 300)
