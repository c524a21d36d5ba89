"""The book's trained models: make them, and check that retraining reproduces them.

The chapters "Joint versus marginal", "Ground truth" and "Semi-AR blocks" measure denoisers
trained at the ``ci`` scale with seed 0. ``make`` trains them and stores them in
``trained_models.BOOK_MODELS`` (the command ``maskdiff-tutor book-models``); ``check`` trains
them again in a temporary folder and compares, experiment by experiment, the numbers each chapter
rests on with those of the stored models, within the tolerance each experiment's ``headline(result)``
states beside each number (``maskdiff-tutor book-models --check``). A retrained model differs from
the stored one in its last bits wherever the CPU's kernels differ, and training amplifies that; the
tolerances say how far the chapter's numbers may move, and the check says whether they do.
``spread`` trains other seeds and measures how far the numbers move between seeds: the tolerances
are set from it (``maskdiff-tutor book-models --spread``). Both reports are typed records
(``Check``, ``Spread``), written as JSON by ``records.to_json``.

``save_results`` writes the book's results to ``book/results/`` (``maskdiff-tutor book-results``):
each experiment measured on the stored models at the book's scale and seed, and the exact
chapters' computations. The Verdict chapter renders every claim from them
(``claims.book_sources``), and a test checks that each chapter's verdict rows are exactly the
rows rendered from them.
"""

from __future__ import annotations

import importlib
import pathlib
import tempfile
import time
from dataclasses import dataclass

from . import trained_models

EXPERIMENTS = ("joint_vs_marginal", "ground_truth", "blocks", "ladder")  # the experiments whose models the book stores
SCALE, SEED = "ci", 0  # the scale and seed of the stored models


def _module(experiment: str):
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {EXPERIMENTS}; got {experiment!r}")
    return importlib.import_module(f"{__package__}.{experiment}")


def make(experiment: str, folder: str | pathlib.Path | None = None, device=None, progress: bool = False):
    """Train ``experiment``'s models at the book's scale and seed and save them in ``folder``
    (default: the book's folder, ``trained_models.BOOK_MODELS / experiment``). Returns the result
    of the run that trained them."""
    folder = trained_models.BOOK_MODELS / experiment if folder is None else pathlib.Path(folder)
    return _module(experiment).run(scale=SCALE, seed=SEED, device=device, progress=progress, save_models=folder)


# The results the claims read (claims.SOURCES): file name in book/results/ -> (module, how it runs).
RESULTS = {
    "joint_vs_marginal_ci.json": ("joint_vs_marginal", "stored models"),
    "ground_truth_ci.json": ("ground_truth", "stored models"),
    "blocks_ci.json": ("blocks", "stored models"),
    "ladder_ci.json": ("ladder", "stored models"),  # claims 6, 8 and 12 against denoiser quality
    "generation_order_ci.json": ("generation_order", "ci scale"),  # the exact denoiser: nothing trained
    "nelbo_checks_exact.json": ("nelbo_checks", "exact"),
    "distance_bound_exact.json": ("distance_bound", "exact"),
}


def save_results(folder: str | pathlib.Path, device=None, report=print) -> list[pathlib.Path]:
    """Write the book's results into ``folder`` (``book/results``), one file per entry of ``RESULTS``,
    each the result of its run at the book's scale and seed; ``report`` is told of each file."""
    written = []
    for name, (experiment, how) in RESULTS.items():
        started = time.time()
        if how == "stored models":
            result = measure(experiment, device=device)
        else:
            module = importlib.import_module(f"{__package__}.{experiment}")
            result = module.run(scale=SCALE if how == "ci scale" else "exact", seed=SEED, device=device)
        written.append(result.save(pathlib.Path(folder) / name))
        report(f"{written[-1]} ({experiment}, {how}; {time.time() - started:.0f} s)")
    return written


def measure(experiment: str, folder: str | pathlib.Path | None = None, device=None):
    """The result of ``experiment`` on stored models (default: the book's)."""
    folder = trained_models.book_folder(experiment) if folder is None else folder
    return _module(experiment).run(scale=SCALE, seed=SEED, device=device, models=folder)


@dataclass(frozen=True)
class Check:
    """``check``'s report: the stored models' headline numbers beside those of models trained again."""
    experiment: str  # the experiment's module name
    rows: list[trained_models.Comparison]  # one per headline number
    passed: bool  # every number within its tolerance
    retrain_seconds: float  # wall time of the retraining run, in seconds


@dataclass(frozen=True)
class SeedSpread:
    """One headline number across training seeds."""
    name: str  # the number, as the experiment's ``headline`` names it
    values: list[float]  # its value for each seed of ``Spread.seeds``
    spread: float  # largest value minus smallest
    tolerance: float  # how far retraining may move it (the experiment's ``headline``)
    within: bool  # spread <= tolerance


@dataclass(frozen=True)
class Spread:
    """``spread``'s report: how far each headline number moves between training seeds."""
    experiment: str  # the experiment's module name
    seeds: list[int]  # the book's seed (the stored models), then the others
    rows: list[SeedSpread]  # one per headline number


def check(experiment: str, device=None, progress: bool = False) -> Check:
    """Retrain ``experiment``'s models and compare their headline numbers with the stored models'
    (one row per number, ``trained_models.compare``)."""
    module = _module(experiment)
    stored = measure(experiment, device=device)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.time()
        retrained = make(experiment, pathlib.Path(scratch) / experiment, device=device, progress=progress)
        seconds = round(time.time() - started, 1)
    rows = trained_models.compare(module.headline(stored), module.headline(retrained))
    return Check(experiment, rows, all(row.within for row in rows), seconds)


def spread(experiment: str, seeds: tuple = (1, 2), device=None, progress: bool = False) -> Spread:
    """Train ``experiment``'s models with other ``seeds`` and measure how far each headline number
    lies from the stored models' (seed 0): the measurement the stated tolerances come from (each
    about 1.5 times the spread)."""
    module = _module(experiment)
    stored = module.headline(measure(experiment, device=device))
    others = [module.headline(module.run(scale=SCALE, seed=seed, device=device, progress=progress)) for seed in seeds]
    rows = []
    for name, (value, tolerance) in stored.items():
        values = [value] + [other[name][0] for other in others]
        width = max(values) - min(values)
        rows.append(SeedSpread(name, values, width, tolerance, bool(width <= tolerance)))
    return Spread(experiment, [SEED, *seeds], rows)


def format_spread(report: Spread) -> str:
    """A plain-text table of one ``spread`` report."""
    width = max(len(row.name) for row in report.rows)
    seeds = "".join(f"  {'seed ' + str(seed):>9s}" for seed in report.seeds)
    lines = [f"{report.experiment}: headline numbers by training seed (seed {SEED}: the stored models)",
             f"  {'number':{width}s}{seeds}  {'spread':>9s}  {'tolerance':>9s}"]
    for row in report.rows:
        values = "".join(f"  {value:9.4f}" for value in row.values)
        mark = "" if row.within else "  <- tolerance below the spread"
        lines.append(f"  {row.name:{width}s}{values}  {row.spread:9.4f}  {row.tolerance:9.4f}{mark}")
    return "\n".join(lines)


def format_check(report: Check) -> str:
    """A plain-text table of one ``check`` report."""
    lines = [f"{report.experiment}: retrained in {report.retrain_seconds} s; "
             + ("every number within its tolerance" if report.passed else "SOME NUMBERS OUTSIDE THEIR TOLERANCE")]
    width = max(len(row.name) for row in report.rows)
    lines.append(f"  {'number':{width}s}  {'stored':>9s}  {'retrained':>9s}  {'difference':>10s}  {'tolerance':>9s}")
    for row in report.rows:
        mark = "" if row.within else "  <- outside"
        lines.append(f"  {row.name:{width}s}  {row.stored:9.4f}  {row.retrained:9.4f}  "
                     f"{row.difference:10.4f}  {row.tolerance:9.4f}{mark}")
    return "\n".join(lines)


def headline_table(numbers: dict):
    """An experiment's ``headline(result)`` as a :class:`~maskdiff_tutor.notebook.Table`: each
    number with how far retraining may move it."""
    from ..notebook import Table

    if not isinstance(numbers, dict):
        raise TypeError(f"numbers must be an experiment's headline(result), a dict name -> (value, tolerance); got "
                        f"{type(numbers).__name__}")
    return Table(["number", "value", "retraining may move it by"],
                 [[name, value, tolerance] for name, (value, tolerance) in numbers.items()],
                 {"value": ".3f", "retraining may move it by": ".3f"})
