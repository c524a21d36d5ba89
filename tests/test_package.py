"""Tests of the package's import behaviour: ``import maskdiff_tutor`` is cheap and submodules load lazily."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "matplotlib", "transformers")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints on its last line."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_does_not_load_heavy_libraries():
    out = _run(f"""
        import json, sys
        import maskdiff_tutor
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules],
                          "submodules": [m for m in sys.modules if m.startswith("maskdiff_tutor.")],
                          "version": maskdiff_tutor.__version__}}))
    """)
    assert out["loaded"] == []
    assert out["submodules"] == []  # nothing is loaded until it is used
    assert out["version"] == "0.1.0"


def test_lazy_submodule_access():
    out = _run("""
        import json, sys
        import maskdiff_tutor
        zipf = maskdiff_tutor.zipf
        after_zipf = "torch" in sys.modules
        schedules = maskdiff_tutor.schedules
        ok = (zipf is sys.modules["maskdiff_tutor.zipf"] and schedules is sys.modules["maskdiff_tutor.schedules"]
              and abs(zipf.zipf_pmf(1.0, 10).sum() - 1) < 1e-12
              and float(schedules.LinearSchedule().alpha(0.25)) == 0.75)
        print(json.dumps({"ok": ok, "torch_after_zipf": after_zipf,
                          "torch_after_schedules": "torch" in sys.modules}))
    """)
    assert out["ok"]
    # the zipf module is pure numpy ("nothing here imports torch")
    assert out["torch_after_zipf"] is False
    assert out["torch_after_schedules"] is True


def test_every_submodule_is_reachable_as_an_attribute():
    import maskdiff_tutor

    names = [n for n in maskdiff_tutor.__all__ if n != "__version__"]
    assert {"schedules", "forward_process", "nelbo", "oracle", "toy", "zipf"} <= set(names)
    for name in names:
        module = getattr(maskdiff_tutor, name)
        assert module.__name__ == f"maskdiff_tutor.{name}"
        assert name in dir(maskdiff_tutor)
        assert name in maskdiff_tutor.__all__
    assert "__version__" in maskdiff_tutor.__all__


def test_unknown_attribute_raises_attribute_error():
    import maskdiff_tutor

    with pytest.raises(AttributeError, match="no attribute 'not_a_module'"):
        maskdiff_tutor.not_a_module  # noqa: B018
    assert not hasattr(maskdiff_tutor, "_checks_typo")


def test_every_stored_model_file_ships_in_the_package_data():
    # A chapter opened in Colab installs the package and reads the book's models from it: every
    # file under maskdiff_tutor/book_models must match a package-data pattern of pyproject.toml.
    import fnmatch
    import pathlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = pathlib.Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["maskdiff_tutor"]
    package = root / "maskdiff_tutor"
    files = [p.relative_to(package).as_posix() for p in (package / "book_models").rglob("*") if p.is_file()]
    assert files, "the book's models are stored"
    unshipped = [f for f in files if not any(fnmatch.fnmatchcase(f, pattern) and f.count("/") == pattern.count("/")
                                                for pattern in patterns)]
    assert not unshipped, f"not in the package data: {unshipped}"
