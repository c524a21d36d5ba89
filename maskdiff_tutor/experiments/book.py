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

import dataclasses
import importlib
import pathlib
import tempfile
import time
from dataclasses import dataclass

from . import trained_models

EXPERIMENTS = ("joint_vs_marginal", "ground_truth", "blocks", "ladder")  # the experiments whose models the book stores
SCALE, SEED = "ci", 0  # the scale and seed of the stored models the chapters measure
RESULTS_FOLDER = pathlib.Path(__file__).resolve().parents[2] / "book" / "results"  # in a clone of the repository
SEEDS = (0, 1, 2)  # every seed the book stores models of: trained numbers are read as their mean and range


def model_folder(experiment: str, seed: int = SEED, root: str | pathlib.Path | None = None) -> pathlib.Path:
    """Where the models of ``experiment`` trained with ``seed`` are stored: ``root / experiment``
    for the book's seed, ``root / f"{experiment}_seed_{seed}"`` beside it for the others
    (``root``: the book's folder, ``trained_models.BOOK_MODELS``)."""
    _module(experiment)
    if seed not in SEEDS:
        raise ValueError(f"seed must be one of the book's seeds {SEEDS}; got {seed!r}")
    root = trained_models.BOOK_MODELS if root is None else pathlib.Path(root)
    return root / (experiment if seed == SEED else f"{experiment}_seed_{seed}")


def _stored(experiment: str, seed: int) -> bool:
    """Whether the book stores the models of ``experiment`` trained with ``seed``."""
    return (model_folder(experiment, seed) / trained_models.RECORD).is_file()


def seed_file(name: str, seed: int) -> str:
    """The file in book/results/ of a result measured on the models of ``seed``: ``name`` itself
    for the book's seed, ``name`` with ``_seed{seed}`` before its extension for the others."""
    if seed == SEED:
        return name
    stem, dot, extension = name.rpartition(".")
    return f"{stem}_seed{seed}{dot}{extension}"


def _module(experiment: str):
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {EXPERIMENTS}; got {experiment!r}")
    return importlib.import_module(f"{__package__}.{experiment}")


def make(experiment: str, folder: str | pathlib.Path | None = None, device=None, progress: bool = False,
         seed: int = SEED):
    """Train ``experiment``'s models at the book's scale with ``seed`` and save them in ``folder``
    (default: the book's folder for that seed, ``model_folder``). Returns the result of the run
    that trained them."""
    folder = model_folder(experiment, seed) if folder is None else pathlib.Path(folder)
    return _module(experiment).run(scale=SCALE, seed=seed, device=device, progress=progress, save_models=folder)


# The results the claims read (claims.SOURCES): file name in book/results/ -> (module, how it runs).
RESULTS = {
    "joint_vs_marginal_ci.json": ("joint_vs_marginal", "stored models"),
    "ground_truth_ci.json": ("ground_truth", "stored models"),
    "blocks_ci.json": ("blocks", "stored models"),
    "ladder_ci.json": ("ladder", "stored models"),  # claims 6, 8 and 12 against denoiser quality
    "generation_order_ci.json": ("generation_order", "ci scale"),  # the exact denoiser: nothing trained
    "nelbo_checks_exact.json": ("nelbo_checks", "exact"),
    "distance_bound_exact.json": ("distance_bound", "exact"),
    # the larger masked LM of Tiny Shakespeare, measured as the real-models chapter measures the small one
    "real_model_text_1m_ci.json": ("real_model", "larger text model"),
}


def save_results(folder: str | pathlib.Path, device=None, report=print, only: tuple[str, ...] | None = None
                 ) -> list[pathlib.Path]:
    """Write the book's results into ``folder`` (``book/results``), one file per entry of ``RESULTS``
    (only those of the experiments ``only``, where given), each the result of its run at the book's
    scale and seed; a run on stored models also once for each other seed of ``SEEDS``
    (``seed_file``). ``report`` is told of each file."""
    known = sorted({e for e, _ in RESULTS.values()})
    if only is not None and (not only or set(only) - set(known)):
        raise ValueError(f"only must name experiments of the book's results {known}; got {only}")
    runs = [(name, e, how) for name, (e, how) in RESULTS.items() if only is None or e in only]
    written = []
    for name, experiment, how in runs:
        for seed in SEEDS if how == "stored models" else (SEED,):
            started = time.time()
            if how == "stored models":
                result = measure(experiment, device=device, seed=seed)
            elif how == "larger text model":
                result = measure_larger_text_model(device)
            else:
                module = importlib.import_module(f"{__package__}.{experiment}")
                result = module.run(scale=SCALE if how == "ci scale" else "exact", seed=SEED, device=device)
            written.append(result.save(pathlib.Path(folder) / seed_file(name, seed)))
            report(f"{written[-1]} ({experiment}, {how}, seed {seed}; {time.time() - started:.0f} s)")
    return written


def measure(experiment: str, folder: str | pathlib.Path | None = None, device=None, seed: int = SEED):
    """The result of ``experiment`` on stored models of ``seed`` (default: the book's)."""
    if folder is None:
        folder = model_folder(experiment, seed)
        if not _stored(experiment, seed):
            raise ValueError(f"the book stores no models of {experiment!r} trained with seed {seed} (at {folder}); "
                             f"make them with `maskdiff-tutor book-models --experiment {experiment.replace('_', '-')} "
                             f"--seed {seed}`")
    return _module(experiment).run(scale=SCALE, seed=seed, device=device, models=folder)


TEXT_RESULT = "real_model_text_1m_ci.json"  # the stored result of measure_larger_text_model


def measure_larger_text_model(device=None):
    """The real-models measurements (``real_model.run`` at the book's scale) of the book's larger masked
    LM of Tiny Shakespeare (``small_masked_lm.LARGER_FOLDER``), in float64 like every stored model."""
    from . import real_model, small_masked_lm

    return real_model.run(SCALE, model=str(small_masked_lm.LARGER_FOLDER), seed=SEED, device=device)


def larger_text_model_nelbo() -> tuple[float, float]:
    """The larger text model's held-out NELBO as its training record stores it, and measured again
    (``small_masked_lm.held_out_nelbo``, float64)."""
    from . import small_masked_lm

    stored = small_masked_lm.Training.load(small_masked_lm.LARGER_FOLDER).held_out_nelbo
    return stored, small_masked_lm.held_out_nelbo(small_masked_lm.LARGER_FOLDER)


def check_larger_text_model(device=None, results: pathlib.Path = RESULTS_FOLDER) -> Check:
    """Measure the larger text model again and compare its numbers (``real_model_comparison.headline``)
    with its stored result, and its held-out NELBO with its training record: measured in float64,
    they must agree to 1e-9 of their size on every CPU."""
    from .real_model import RealModelResult
    from .real_model_comparison import headline

    started = time.time()
    nelbo_stored, nelbo_again = larger_text_model_nelbo()
    stored = headline(RealModelResult.load(results / TEXT_RESULT)) | {"held-out NELBO": (nelbo_stored, 0.0)}
    again = headline(measure_larger_text_model(device)) | {"held-out NELBO": (nelbo_again, 0.0)}
    exact = {key: (value, 1e-9 * max(1.0, abs(value))) for key, (value, _) in stored.items()}
    rows = trained_models.compare(exact, again)
    return Check("real_model_text_1m", rows, all(row.within for row in rows), round(time.time() - started, 1),
                 how="measured again")


@dataclass(frozen=True)
class Check:
    """``check``'s report: the stored models' headline numbers beside those of models trained again."""
    experiment: str  # the experiment's module name
    rows: list[trained_models.Comparison]  # one per headline number
    passed: bool  # every number within its tolerance
    retrain_seconds: float  # wall time of the retraining run (of the measuring run, for a stored result), in seconds
    how: str = "retrained"  # what made the new numbers: "retrained", or "measured again" for a stored result


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
    (one row per number, ``trained_models.compare``); then measure the stored models of the other
    seeds and compare with their stored results (rows named "seed N stored result: ...")."""
    module = _module(experiment)
    stored = measure(experiment, device=device)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.time()
        retrained = make(experiment, pathlib.Path(scratch) / experiment, device=device, progress=progress)
        seconds = round(time.time() - started, 1)
    rows = trained_models.compare(module.headline(stored), module.headline(retrained)) + _stored_seed_rows(experiment,
                                                                                                           device)
    return Check(experiment, rows, all(row.within for row in rows), seconds)


def _stored_seed_rows(experiment: str, device, results: pathlib.Path = RESULTS_FOLDER) -> list:
    """The headline numbers of the stored results of the book's other seeds (``seed_file`` in
    ``results``) beside those measured again on the stored models of those seeds (each seed whose
    models are stored): float64 measurement gives the same numbers on every CPU, so each must
    agree to 1e-9 of its size."""
    from .result import ExperimentResult

    module, rows = _module(experiment), []
    name = next(file for file, (e, how) in RESULTS.items() if e == experiment and how == "stored models")
    for seed in [s for s in SEEDS[1:] if _stored(experiment, s)]:
        stored = module.headline(ExperimentResult.load(results / seed_file(name, seed)))
        again = module.headline(measure(experiment, device=device, seed=seed))
        exact = {key: (value, 1e-9 * max(1.0, abs(value))) for key, (value, _) in stored.items()}
        rows += [dataclasses.replace(row, name=f"seed {seed} stored result: {row.name}")
                 for row in trained_models.compare(exact, again)]
    return rows


def spread(experiment: str, seeds: tuple = (1, 2), device=None, progress: bool = False) -> Spread:
    """How far each headline number of ``experiment`` moves between seed 0 (the stored models) and
    the other ``seeds``: the measurement the stated tolerances come from (each about 1.5 times the
    spread). A seed whose models the book stores (``model_folder``) is measured on them; any other
    is trained first."""
    module = _module(experiment)
    stored = module.headline(measure(experiment, device=device))
    others = [module.headline(_stored_or_trained(experiment, seed, device, progress)) for seed in seeds]
    rows = []
    for name, (value, tolerance) in stored.items():
        values = [value] + [other[name][0] for other in others]
        width = max(values) - min(values)
        rows.append(SeedSpread(name, values, width, tolerance, bool(width <= tolerance)))
    return Spread(experiment, [SEED, *seeds], rows)


def _stored_or_trained(experiment: str, seed: int, device, progress: bool):
    """The run of ``experiment`` with ``seed``: on the stored models of that seed where the book has them."""
    if seed in SEEDS and _stored(experiment, seed):
        return measure(experiment, device=device, seed=seed)
    return _module(experiment).run(scale=SCALE, seed=seed, device=device, progress=progress)


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
    lines = [f"{report.experiment}: {report.how} in {report.retrain_seconds} s; "
             + ("every number within its tolerance" if report.passed else "SOME NUMBERS OUTSIDE THEIR TOLERANCE")]
    width = max(len(row.name) for row in report.rows)
    again = "retrained" if report.how == "retrained" else "again"
    lines.append(f"  {'number':{width}s}  {'stored':>9s}  {again:>9s}  {'difference':>10s}  {'tolerance':>9s}")
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
