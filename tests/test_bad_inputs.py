"""Each bad input, with the error it must give: one line that names the argument (or the file)
and says what is allowed, raised before any work is done."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import pytest
import torch

from maskdiff_tutor import cli, decoders, nelbo, zipf
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.experiments.result import Environment, ExperimentResult
from maskdiff_tutor.forward_process import sample_xt
from maskdiff_tutor.schedules import LinearSchedule
from maskdiff_tutor.train import TrainConfig, train

NAN, INF = float("nan"), float("inf")


def _tiny_model():
    return Denoiser(DenoiserConfig(vocab_size=9, max_seq_len=3, d_model=8, n_layers=1, n_heads=2))

BAD_CALLS = [
    # (what, call, the error it must give)
    ("TrainConfig lr = inf", lambda: TrainConfig(lr=INF), r"^lr must be a finite number > 0; got inf$"),
    ("TrainConfig lr = nan", lambda: TrainConfig(lr=NAN), r"^lr must be a finite number > 0; got nan$"),
    ("TrainConfig grad_clip = nan", lambda: TrainConfig(grad_clip=NAN),
     r"^grad_clip must be a finite number >= 0 \(0: no clipping\); got nan$"),
    ("TrainConfig weight_decay = inf", lambda: TrainConfig(weight_decay=INF),
     r"^weight_decay must be a finite number >= 0; got inf$"),
    ("zipf s = 0", lambda: zipf.harmonic(0, 10), r"^s must be a finite number > 0 \(the Zipf exponent\); got 0$"),
    ("zipf N = 1", lambda: zipf.bound_limit(1.1, 1), r"^N must be an int >= 2 \(the vocabulary size\); got 1$"),
    ("zipf sum beyond a float", lambda: zipf.harmonic(0.1, 10**400),
     r"^s = 0.1 and N = about 10\^400.00 give a Zipf sum .* beyond the largest float .*: take a larger s or a "
     r"smaller N$"),
    ("zipf pmf of 10^400 tokens", lambda: zipf.zipf_pmf(1.05, 10**400),
     r"^N must be at most 100,000,000 for zipf_pmf, which builds an array of N probabilities .*; got about "
     r"10\^400.00$"),
    ("max_parallel_samples beyond k_max", lambda: zipf.max_parallel_samples(
        1 / zipf.bound_limit(1.1, 1000) * (1 - 1e-9), 1.1, 1000, k_max=50),
     r"^k_max = 50 is below the answer: .*; pass a larger k_max$"),
    ("perplexity of NaN", lambda: zipf.perplexity([0.5, NAN], 2),
     r"^joint_probability must be probabilities in \[0, 1\] \(0 gives perplexity inf\); got nan at "
     r"joint_probability\[1\]$"),
    ("perplexity of a negative probability", lambda: zipf.perplexity(-0.5, 2),
     r"^joint_probability must be probabilities in \[0, 1\] \(0 gives perplexity inf\); got -0.5$"),
    ("metric of 1.5", lambda: zipf.metric_2([0.5, 1.5]),
     r"^p must be probabilities in \[0, 1\] of shape \(..., n\) with n >= 1; got 1.5 at p\[1\]$"),
    ("largest_within_budget NaN", lambda: zipf.largest_within_budget([1.5, NAN], 2.0),
     r"^ppl must be an increasing column \(K,\) of perplexities >= 1; got nan at ppl\[1\]$"),
    ("NELBO NaN logits", lambda: nelbo.continuous_nelbo(lambda x: torch.full((*x.shape, 4), NAN),
                                                        torch.tensor([[1, 2, 1]] * 4), LinearSchedule(), 3),
     r"^the denoiser's logits give no distribution \(NaN, \+inf, or -inf for every token but the mask\) at batch "
     r"row \d+, position \d+ of its input x_t"),
    ("NELBO +inf logits, exact", lambda: nelbo.exact_nelbo(lambda x: torch.full((*x.shape, 4), INF),
                                                           torch.tensor([[1, 2]]), 3),
     r"at batch row 1 \(mask pattern 1 of x0 row 0\), position 1 of its input x_t"),
    ("count_nelbo on no sequence", lambda: nelbo.count_nelbo(lambda x: torch.zeros(*x.shape, 4),
                                                             torch.zeros(0, 3, dtype=torch.long), 3),
     r"^x0 must have shape \(B, L\) with B >= 1 and L >= 1; got \(0, 3\)$"),
    ("exact NELBO of empty sequences", lambda: nelbo.exact_nelbo(lambda x: torch.zeros(*x.shape, 4),
                                                                 torch.zeros(2, 0, dtype=torch.long), 3),
     r"^x0 must have shape \(B, L\) with B >= 1 and L >= 1; got \(2, 0\)$"),
    ("generate threshold = 0", lambda: decoders.generate(lambda x: torch.zeros(*x.shape, 4), torch.tensor([[1]]), 2, 3,
                                                         threshold=0.0),
     r"^threshold must be a finite number in \(0, 1\] \(a score to reach\); got 0.0$"),
    ("generate temperature = -1", lambda: decoders.generate(lambda x: torch.zeros(*x.shape, 4), torch.tensor([[1]]), 2,
                                                            3, temperature=-1.0),
     r"^temperature must be a finite number >= 0 \(0: the argmax\); got -1.0$"),
    ("decoder mask_id = -1", lambda: decoders.sample_left_to_right(lambda x: torch.zeros(*x.shape, 4),
                                                                   torch.tensor([[1, 3]]), -1),
     r"^mask_id must be a non-negative int \(the mask token's id\); got -1$"),
    ("decoder ids outside the model's vocabulary", lambda: decoders.sample_left_to_right(
        lambda x: torch.zeros(*x.shape, 4), torch.tensor([[7, 3]]), 3),
     r"^x holds ids outside \[0, 3\] \(vocab_size = 4\)$"),
    ("random init mask_id outside vocab_size", lambda: decoders.sample_partial_random_init(
        lambda x: torch.zeros(*x.shape, 4), torch.tensor([[1, 3]]), 3, 3, 0.5),
     r"^mask_id must be an int in \[0, 2\] \(vocab_size = 3\); got 3$"),
    ("remasking eta = 1", lambda: decoders.sample_with_remasking(
        lambda x: torch.zeros(*x.shape, 4), torch.tensor([[1, 3]]), 3, 1, 1.0),
     r"^eta must be a finite number in \[0, 1\) \(the probability of remasking a decoded token per step\); got 1.0$"),
    ("int32 token ids to sample_xt", lambda: sample_xt(torch.zeros(1, 3, dtype=torch.int32), 0.5, LinearSchedule(), 5),
     r"^x0 must be a torch.long \(int64\) tensor of token ids; got Tensor of dtype torch.int32 \(convert it with "
     r"\.long\(\)\)$"),
    ("negative mask_id to sample_xt", lambda: sample_xt(torch.zeros(1, 3, dtype=torch.long), 0.5, LinearSchedule(), -1),
     r"^mask_id must be a non-negative int \(the mask token's id\); got -1$"),
    ("uint8 data to train", lambda: train(_tiny_model(), torch.zeros(4, 3, dtype=torch.uint8), 8, TrainConfig(steps=1),
                                          progress=False),
     r"^data must be a torch.long \(int64\) tensor of token ids"),
    ("mask_id outside the model's vocabulary to train",
     lambda: train(_tiny_model(), torch.zeros(4, 3, dtype=torch.long), 9, TrainConfig(steps=1), progress=False),
     r"^mask_id must be an int in \[0, 8\] \(vocab_size = 9\); got 9$"),
    ("decoder NaN logits", lambda: decoders.sample_left_to_right(lambda x: torch.full((*x.shape, 4), NAN),
                                                                 torch.tensor([[1, 3]]), 3),
     r"row 0, position 1"),
    ("decoder int64 logits", lambda: decoders.generate(lambda x: torch.zeros(*x.shape, 4, dtype=torch.long),
                                                       torch.tensor([[1]]), 2, 3),
     r"^the denoiser must return floating-point logits \(float16, bfloat16, float32 or float64\); "
     r"got dtype torch.int64$"),
    ("decoder logits on another device", lambda: decoders.generate(lambda x: torch.zeros(*x.shape, 4, device="meta"),
                                                                   torch.tensor([[1]]), 2, 3),
     r"^the denoiser returned logits on meta for tokens on cpu; it must return them on its input's device "
     r"\(move them with \.to\(x\.device\)\)$"),
    ("beam search position twice", lambda: decoders.beam_search(lambda x: torch.zeros(*x.shape, 4),
                                                                 torch.tensor([[3, 3, 1]]), 3, positions=[1, 1]),
     r"^positions must name each masked position of x once; got \[1, 1\], which repeats \[1\]$"),
    ("Gibbs vocab_size above the model's", lambda: decoders.sample_gibbs_from_random_start(
        lambda x: torch.zeros(*x.shape, 4), torch.tensor([[3, 3]]), 3, 9, 2),
     r"^vocab_size \(9\) must equal the size of the denoiser's vocabulary, the last dimension of its logits \(4\)$"),
]


@pytest.mark.parametrize("what, call, error", BAD_CALLS, ids=[case[0] for case in BAD_CALLS])
def test_bad_call_gives_its_error(what, call, error):
    with pytest.raises(ValueError, match=error):
        call()


# --- result files --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DemoMetrics:
    ppl: list[float]
    nested: dict[str, float]


@dataclasses.dataclass(frozen=True)
class DemoResult(ExperimentResult):  # a typed result, as every experiment returns
    EXPERIMENT = "bad_inputs_demo"
    config: dict[str, int]
    metrics: DemoMetrics
    curves: None


def _result(ppl=(1.0,), nested=None):
    return DemoResult("ci", 0, {"k": 1}, DemoMetrics(list(ppl), nested or {}), None,
                      Environment.now(torch.device("cpu"), time.time()))


def test_results_are_strict_json_and_non_finite_values_are_named(tmp_path):
    path = _result(ppl=[1.5, NAN, INF], nested={"x": -INF}).save(tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    stored = json.loads(text)
    assert stored["metrics"] == {"ppl": [1.5, None, None], "nested": {"x": None}}
    loaded = DemoResult.load(path)
    assert loaded.environment.non_finite_values == ("metrics.ppl[1]: nan", "metrics.ppl[2]: inf",
                                                    "metrics.nested.x: -inf")
    assert loaded.metrics.ppl[0] == 1.5 and math.isnan(loaded.metrics.ppl[1]) and loaded.metrics.ppl[2] == INF
    assert loaded.metrics.nested == {"x": -INF}


def test_a_failed_write_keeps_the_earlier_result(tmp_path, monkeypatch):
    path = _result(ppl=[1.0]).save(tmp_path / "r.json")
    before = path.read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", lambda fd: broken_dump())
    with pytest.raises(OSError, match="disk full"):
        _result(ppl=[2.0]).save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


# --- the command line checks where it writes before any work ----------------------------------------

def _cli(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_out_that_is_a_folder_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("maskdiff_tutor.experiments.joint_vs_marginal.run",
                        lambda **kwargs: pytest.fail("the run started"))
    code, err = _cli(capsys, "joint-vs-marginal", "--out", str(tmp_path))
    assert code == 2 and err == [f"maskdiff-tutor: error: --out {tmp_path} is a folder; give the path of a JSON file"]


def test_out_below_a_file_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("maskdiff_tutor.experiments.joint_vs_marginal.run",
                        lambda **kwargs: pytest.fail("the run started"))
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "r.json"
    code, err = _cli(capsys, "joint-vs-marginal", "--out", str(out))
    assert code == 2 and err == [f"maskdiff-tutor: error: --out {out}: {tmp_path / 'file'} is a file, so the folder "
                                 f"{tmp_path / 'file'} cannot be created"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("maskdiff_tutor.experiments.joint_vs_marginal.run",
                        lambda **kwargs: pytest.fail("the run started"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = _cli(capsys, "joint-vs-marginal", "--out", str(locked / "r.json"))
    finally:
        locked.chmod(0o700)
    assert code == 2
    assert err == [f"maskdiff-tutor: error: --out {locked / 'r.json'}: the folder {locked} is not writable"]


def test_save_models_that_is_a_file_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    def never(scale="ci", device=None, seed=0, progress=False, save_models=None, models=None):
        pytest.fail("the run started")
    monkeypatch.setattr("maskdiff_tutor.experiments.ground_truth.run", never)
    (tmp_path / "models").write_text("")
    code, err = _cli(capsys, "ground-truth", "--out", str(tmp_path / "r.json"),
                     "--save-models", str(tmp_path / "models"))
    assert code == 2 and err == [f"maskdiff-tutor: error: --save-models {tmp_path / 'models'} is a file; give a folder"]


def test_a_good_out_lets_the_run_start_and_is_written(tmp_path, capsys, monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class CliDemo(ExperimentResult):  # a typed result, as every experiment returns
        EXPERIMENT = "cli_demo"

    result = CliDemo("ci", 0, {"k": 1}, {"value": math.pi}, {}, Environment.now(torch.device("cpu"), time.time()))
    monkeypatch.setattr("maskdiff_tutor.experiments.joint_vs_marginal.run", lambda **kwargs: result)
    out = tmp_path / "new" / "folder" / "r.json"
    code = cli.main(["joint-vs-marginal", "--out", str(out)])
    assert code == 0 and f"saved {out} (" in capsys.readouterr().out
    assert CliDemo.load(out).metrics == {"value": math.pi}


# --- files the package reads name themselves in their errors ----------------------------------------

def test_files_that_cannot_be_read_are_named(tmp_path):
    from maskdiff_tutor import corpus
    from maskdiff_tutor.denoiser import load_denoiser, save_denoiser

    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^path '{latin}' is not readable as UTF-8 text"):
        corpus.load_text(latin)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{broken")
    with pytest.raises(ValueError, match=rf"^{broken}: not readable as a tokenizer saved by maskdiff_tutor"):
        corpus.load_tokenizer(broken)
    broken.write_text('{"kind": "char"}')
    with pytest.raises(ValueError, match=rf"^{broken}: a char tokenizer record that cannot be read"):
        corpus.load_tokenizer(broken)
    folder = save_denoiser(_tiny_model(), tmp_path / "model")
    (folder / "config.json").write_text('{"vocab_size": 9, "max_seq_len": 3, "d_model": 8, "n_layers": 1, '
                                        '"n_heads": 3}')
    with pytest.raises(ValueError, match=rf"^{folder / 'config.json'}: "):
        load_denoiser(folder)
    (folder / "config.json").write_text("[1]")
    with pytest.raises(ValueError, match=rf"^{folder / 'config.json'}: a model config is a JSON object"):
        load_denoiser(folder)
    save_denoiser(_tiny_model(), folder)
    (folder / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(ValueError, match=rf"^{folder / 'model.safetensors'}: not a readable safetensors file"):
        load_denoiser(folder)
