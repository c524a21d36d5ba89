"""Tests of the maskdiff-tutor command line (maskdiff_tutor.cli): help texts, the installed
console script, argument errors, and a run of the experiment at a tiny monkeypatched scale."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

from maskdiff_tutor import cli
from maskdiff_tutor.experiments import book, joint_vs_marginal
from maskdiff_tutor.experiments.joint_vs_marginal import Scale
from maskdiff_tutor.experiments.trained_models import Comparison
from maskdiff_tutor.records import from_json

OPTIONS = ("--scale", "--device", "--seed", "--out")


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "maskdiff-tutor" in out and "joint-vs-marginal" in out


def test_experiment_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["joint-vs-marginal", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in OPTIONS + ("--no-progress",):
        assert option in out, option
    assert "{ci,gpu}" in out


@pytest.mark.skipif(shutil.which("maskdiff-tutor") is None,
                    reason="the maskdiff-tutor console script is not installed on PATH (pip install -e .)")
def test_installed_console_script_help():
    done = subprocess.run([shutil.which("maskdiff-tutor"), "joint-vs-marginal", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for option in OPTIONS:
        assert option in done.stdout, option


def test_no_experiment_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "experiment" in capsys.readouterr().err


def test_bogus_scale_exits_with_code_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["joint-vs-marginal", "--scale", "bogus", "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--scale" in err and "'bogus'" in err


def test_missing_out_exits_with_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["joint-vs-marginal"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_invalid_device_returns_2_before_training(capsys, monkeypatch, tmp_path):
    def no_training(*args, **kwargs):
        pytest.fail("training started before the device was checked")

    monkeypatch.setattr(joint_vs_marginal, "train", no_training)
    out = tmp_path / "r.json"
    assert cli.main(["joint-vs-marginal", "--device", "banana", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskdiff-tutor: error:") and "'banana'" in err
    assert not out.exists()


def test_tiny_run_writes_the_result(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(joint_vs_marginal.SCALES, "ci", Scale(preset="toy", steps=5, batch_size=8, lr=3e-3, samples=50))
    out = tmp_path / "sub" / "r.json"
    assert cli.main(["joint-vs-marginal", "--out", str(out), "--no-progress", "--seed", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert f"saved {out}" in printed.out and "on cpu" in printed.out
    assert "training" not in printed.err  # --no-progress: no progress bars
    stored = json.loads(out.read_text())
    assert {"config", "metrics", "environment"} <= set(stored)
    assert stored["experiment"] == "joint_vs_marginal" and stored["scale"] == "ci" and stored["seed"] == 2
    assert stored["config"]["scale"]["steps"] == 5 and stored["config"]["scale"]["samples"] == 50
    assert {"weighted", "unweighted", "oracle", "toy"} <= set(stored["metrics"])
    assert stored["environment"]["device"] == "cpu"
    assert stored["curves"]["weighted"]["step"] == [1, 2, 3, 4, 5]


def test_book_models_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["book-models", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--check", "--experiment", "--out", "--device", "joint-vs-marginal", "ground-truth", "blocks"):
        assert option in out, option


def test_book_models_refuses_an_unknown_experiment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["book-models", "--experiment", "bogus"])
    assert exit_info.value.code == 2
    assert "'bogus'" in capsys.readouterr().err


def test_book_models_make_measure_and_check_at_a_tiny_scale(capsys, monkeypatch, tmp_path):
    from maskdiff_tutor.experiments import trained_models

    monkeypatch.setitem(joint_vs_marginal.SCALES, "ci", Scale(preset="toy", steps=4, batch_size=8, lr=3e-3, samples=40))
    folder = tmp_path / "models"
    assert cli.main(["book-models", "--experiment", "joint-vs-marginal", "--out", str(folder), "--no-progress",
                     "--device", "cpu"]) == 0
    assert "joint_vs_marginal (seed 0): saved" in capsys.readouterr().out
    assert (folder / "joint_vs_marginal" / "training.json").is_file()
    # another seed is stored beside it; --seed makes no sense with --check
    others = tmp_path / "others"  # not beside the set the check below reads: it has no stored results
    assert cli.main(["book-models", "--experiment", "joint-vs-marginal", "--seed", "1", "--out", str(others),
                     "--no-progress", "--device", "cpu"]) == 0
    assert "joint_vs_marginal (seed 1): saved" in capsys.readouterr().out
    assert json.loads((others / "joint_vs_marginal_seed_1" / "training.json").read_text())["settings"]["seed"] == 1
    assert cli.main(["book-models", "--check", "--seed", "1", "--no-progress"]) == 2
    assert "give --seed without them" in capsys.readouterr().err
    # an experiment measures the saved models instead of training
    out = tmp_path / "r.json"
    assert cli.main(["joint-vs-marginal", "--models", str(folder / "joint_vs_marginal"), "--out", str(out),
                     "--no-progress", "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["curves"]["weighted"]["step"] == [1, 2, 3, 4]
    # models trained with other settings are refused in one line
    assert cli.main(["joint-vs-marginal", "--seed", "1", "--models", str(folder / "joint_vs_marginal"),
                     "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskdiff-tutor: error:") and "settings.seed: stored 0, now 1" in err
    # the check retrains and compares with the stored set (exact on the same machine)
    monkeypatch.setattr(trained_models, "BOOK_MODELS", folder)
    report = tmp_path / "check.json"
    assert cli.main(["book-models", "--check", "--experiment", "joint-vs-marginal", "--out", str(report),
                     "--no-progress", "--device", "cpu"]) == 0
    assert "every number within its tolerance" in capsys.readouterr().out
    stored = json.loads(report.read_text())
    assert stored[0]["experiment"] == "joint_vs_marginal" and stored[0]["passed"]
    # the report is the typed record as JSON: it reads back into book.Check
    check = from_json(book.Check, stored[0], "report")
    assert check.rows and all(isinstance(row, Comparison) and row.within for row in check.rows)


# --- every --out refuses a special file before any work ------------------------------------------------

def _never(*args, save_models=None, models=None, **kwargs):  # an experiment's run that offers --save-models
    pytest.fail("the work started")


def _error(capsys, *argv) -> list[str]:
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err.strip().splitlines()


def test_out_dev_null_is_refused_before_the_run(capsys, monkeypatch):
    monkeypatch.setattr(joint_vs_marginal, "run", _never)
    assert _error(capsys, "joint-vs-marginal", "--out", "/dev/null") == [
        "maskdiff-tutor: error: --out /dev/null is a character device, not a regular file; give the path of a "
        "JSON file"]


def test_a_fifo_at_any_output_is_refused_before_the_work(capsys, monkeypatch, tmp_path):
    from maskdiff_tutor.experiments import ground_truth, small_masked_lm

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for module, name in ((ground_truth, "run"), (book, "save_results"), (book, "check"), (book, "make"),
                         (small_masked_lm, "make")):
        monkeypatch.setattr(module, name, _never)
    assert _error(capsys, "ground-truth", "--out", str(fifo)) == [
        f"maskdiff-tutor: error: --out {fifo} is a FIFO, not a regular file; give the path of a JSON file"]
    assert _error(capsys, "ground-truth", "--out", str(tmp_path / "r.json"), "--save-models", str(fifo)) == [
        f"maskdiff-tutor: error: --save-models {fifo} is a FIFO; give a folder"]
    assert _error(capsys, "book-results", "--out", str(fifo)) == [
        f"maskdiff-tutor: error: --out {fifo} is a FIFO; give a folder"]
    assert _error(capsys, "book-models", "--out", str(fifo)) == [
        f"maskdiff-tutor: error: --out {fifo} is a FIFO; give a folder"]
    assert _error(capsys, "book-models", "--check", "--out", "/dev/null") == [
        "maskdiff-tutor: error: --out /dev/null is a character device, not a regular file; give the path of a "
        "JSON file"]
    (tmp_path / "text.txt").write_text("some text")
    assert _error(capsys, "small-masked-lm", "--text", str(tmp_path / "text.txt"), "--out", str(fifo)) == [
        f"maskdiff-tutor: error: --out {fifo} is a FIFO; give a folder"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# --- bad values named at once -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["18446744073709551616", "9223372036854775808", "-1", "-99999999999999999999",
                                  "1.5", "abc", "", "0x10", "9" * 5000])
def test_a_seed_outside_0_to_2_to_the_63_is_refused_by_the_parser(capsys, monkeypatch, tmp_path, seed):
    monkeypatch.setattr(joint_vs_marginal, "run", _never)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["joint-vs-marginal", "--seed", seed, "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"maskdiff-tutor joint-vs-marginal: error: argument --seed: must be an integer from 0 to 2**63 - 1 = "
        f"9223372036854775807; got {seed!r:.40}")


def test_the_largest_seed_is_accepted(monkeypatch, tmp_path):
    taken = []

    def run(seed=0, **kwargs):
        taken.append(seed)
        raise ValueError("stop here")

    monkeypatch.setattr(joint_vs_marginal, "run", run)
    assert cli.main(["joint-vs-marginal", "--seed", str(2**63 - 1), "--out", str(tmp_path / "r.json")]) == 2
    assert taken == [2**63 - 1]


def test_an_out_with_a_nul_byte_is_named_in_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(joint_vs_marginal, "run", _never)
    assert _error(capsys, "joint-vs-marginal", "--out", "a\0b") == [
        r"maskdiff-tutor: error: --out 'a\x00b' holds a NUL byte, which no file name can; give a path without one"]
    monkeypatch.setattr(book, "save_results", _never)
    assert _error(capsys, "book-results", "--out", "a\0b") == [
        r"maskdiff-tutor: error: --out 'a\x00b' holds a NUL byte, which no file name can; give a path without one"]
