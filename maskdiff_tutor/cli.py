"""Command line: ``maskdiff-tutor <experiment> [--scale ci|cpu|gpu] [--device D] [--seed N] --out PATH``.

Runs one experiment of ``maskdiff_tutor.experiments`` and saves its result (the numbers with the
settings, library versions and hardware that produced them) as JSON.
``maskdiff-tutor book-models [--check]`` trains the models the book's chapters measure (or
retrains them and compares; ``experiments.book``); ``maskdiff-tutor book-results`` writes the
results of the book's runs that the Verdict chapter reads.

Under ``torchrun --nproc-per-node N -m maskdiff_tutor.cli ...`` training is shared by N processes
(``train()``, DistributedDataParallel); the measurements run in every process alike, and only
rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys

from . import distributed
from .experiments import book
from .files import check_output, check_output_folder, write_atomically
from .records import to_json

# command name -> (module, one-line description); each module has run(scale, device, seed, progress)
EXPERIMENTS = {
    "joint-vs-marginal": ("maskdiff_tutor.experiments.joint_vs_marginal",
                          "train denoisers on the paper's toy data; marginals, parallel argmax, beam search, TV "
                          "distances of sequential and all-at-once sampling (Section 3.2.2)"),
    "ground-truth": ("maskdiff_tutor.experiments.ground_truth",
                     "a Zipf Markov language with exact answers: top probability against distance (exact, trained, "
                     "Eq. 17), homogenisation, end-of-text, and the true perplexity of k tokens per step "
                     "(Sections 3.2.3-3.3)"),
    "generation-order": ("maskdiff_tutor.experiments.generation_order",
                         "with the exact denoiser of a Zipf Markov language (and an end-of-text variant): how "
                         "left-to-right confidence, margin, entropy and random orders are, and what they cost "
                         "(Section 3.4.1)"),
    "blocks": ("maskdiff_tutor.experiments.blocks",
               "random masking, blockwise (block-causal and the paper's literal scheme) and left-to-right training "
               "at equal compute, decoded in semi-AR blocks of every size with k tokens per step; on the Zipf "
               "language, or on a text file with --text (Section 3.4.2)"),
    "real-model": ("maskdiff_tutor.experiments.real_model",
                   "the paper's LLaDA measurements on a real model from the Hugging Face hub (--model): top "
                   "probability against distance (Figure 3), homogenisation (Table 1), generation order and the "
                   "cost of k tokens per step (Sections 3.2.4, 3.4.1)"),
}
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# the largest --seed: torch seeds take 64 bits, and the experiments seed further generators with seed + 1, ..., + 4
MAX_SEED = 2**63 - 1


def build_parser() -> argparse.ArgumentParser:
    """The ``maskdiff-tutor`` command line: one sub-command per experiment, ``book-models``, ``book-results``
    and ``small-masked-lm``."""
    parser = argparse.ArgumentParser(prog="maskdiff-tutor",
                                     description="Run one of the book's experiments and save its result as JSON.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="experiment", required=True, metavar="experiment")
    for name, (module_name, description) in EXPERIMENTS.items():
        sub = commands.add_parser(name, help=description, description=description,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        _add_experiment_options(sub, importlib.import_module(module_name))
    _add_book_models(commands)
    results = commands.add_parser("book-results", help=BOOK_RESULTS_HELP, description=BOOK_RESULTS_HELP,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    results.add_argument("--out", default="book/results", help="the folder to write the results in")
    results.add_argument("--experiment", dest="only", action="append", default=None,
                         choices=sorted({e.replace("_", "-") for e, _ in book.RESULTS.values()}),
                         help="only this experiment's results (repeat for several); default: all of them")
    results.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps; default: the best available")
    small = commands.add_parser("small-masked-lm", help=SMALL_HELP, description=SMALL_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    small.add_argument("--text", required=True, help="a UTF-8 text file to train the tokenizer and the model on")
    small.add_argument("--out", required=True, help="the folder to save the model and tokenizer in (save_pretrained)")
    small.add_argument("--preset", default="small", choices=("small", "1m"),
                       help="small: about 0.15M parameters (the book's small model); 1m: about 1.1M, trained twice as "
                            "long (the book's larger one)")
    small.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps; default: the best available")
    small.add_argument("--no-progress", action="store_true", help="hide the training progress bar")
    return parser


def _add_experiment_options(sub: argparse.ArgumentParser, module) -> None:
    """An experiment's options: the common ones, and those its ``run`` takes (text, stored models, a hub model)."""
    takes = inspect.signature(module.run).parameters
    sub.add_argument("--scale", choices=tuple(module.SCALES), default="ci",
                     help="ci: small, minutes on a CPU (what the book runs); cpu (where offered): larger, "
                          "still for a CPU; gpu: the full experiment")
    if "text" in takes:
        sub.add_argument("--text", default=None,
                         help="a UTF-8 text file: run on this real text (character-level) instead of the "
                              "ground-truth language")
    if "save_models" in takes:
        sub.add_argument("--save-models", default=None,
                         help="a folder to save the trained models in, with their settings and training histories")
        sub.add_argument("--models", default=None,
                         help="a folder written by --save-models: measure these models instead of training "
                              "(their settings must match this run's)")
    if "model" in takes:
        _add_hub_model_options(sub)
    sub.add_argument("--device", default=None,
                     help="cpu, cuda, cuda:N or mps; default: the best available (cuda, then mps, then cpu)")
    sub.add_argument("--seed", type=_seed, default=0,
                     help=f"seeds initialisation, training and sampling: an integer from 0 to {MAX_SEED}")
    sub.add_argument("--out", required=True, help="path of the JSON file to write the result to")
    sub.add_argument("--no-progress", action="store_true", help="hide the training progress bars")


def _seed(text: str) -> int:
    """``--seed``'s value: an integer from 0 to ``MAX_SEED`` (argparse names the flag in its error)."""
    try:
        seed = int(text)
    except ValueError:  # not an integer, or longer than Python reads from text
        seed = None
    if seed is None or not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1 = {MAX_SEED}; got {text!r:.40}")
    return seed


def _add_hub_model_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--model", default=None,
                     help="a hub id (e.g. GSAI-ML/LLaDA-8B-Instruct) or a folder written by save_pretrained; "
                          "default: the scale's model")
    sub.add_argument("--revision", default=None, help="a branch, tag or commit of the hub repository")
    sub.add_argument("--trust-remote-code", action="store_true",
                     help="let the model's own code run (LLaDA, Dream, MDLM and BD3-LM need it)")
    sub.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                     help="default: bf16 on GPUs that support it, fp16 on others, fp32 on the CPU")


def _add_book_models(commands) -> None:
    book_models = commands.add_parser("book-models", help=BOOK_MODELS_HELP, description=BOOK_MODELS_HELP,
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    book_models.add_argument("--experiment", dest="only", action="append", default=None,
                             choices=[n.replace("_", "-") for n in book.EXPERIMENTS],
                             help="only this experiment (repeat for several); default: all of them")
    mode = book_models.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="do not replace the stored models: retrain them in a temporary folder and compare the "
                           "chapters' numbers with the stored models' (exit code 1 if any moves more than its "
                           "tolerance)")
    mode.add_argument("--spread", action="store_true",
                      help="do not replace the stored models: measure seeds 1 and 2 (on their stored models, else "
                           "trained here) and show how far each number the chapters rest on moves between seeds, "
                           "beside its stated tolerance")
    book_models.add_argument("--out", default=None,
                             help="with --check or --spread: a JSON file for the report; without: a folder to save "
                                  "the models in instead of the book's (one sub-folder per experiment)")
    book_models.add_argument("--seed", type=int, default=book.SEED, choices=book.SEEDS,
                             help="without --check or --spread: the seed to train with; the book's chapters measure "
                                  "seed 0 and read the others' numbers for their spread")
    book_models.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps; default: the best available")
    book_models.add_argument("--no-progress", action="store_true", help="hide the training progress bars")


SMALL_HELP = ("train a small ModernBERT masked LM and its BPE tokenizer on a text file and save them in the hub's "
              "format (the model the 'Real models' chapter measures; real-model --model FOLDER loads it)")


BOOK_RESULTS_HELP = ("measure the book's stored models (and run the exact chapters' computations) at the book's "
                     "scale and seed, and write the results the Verdict chapter renders the claims from")


BOOK_MODELS_HELP = ("train the models the book's chapters measure (ci scale, seed 0) and store them with the "
                    "package, or with --check retrain them and compare")


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        distributed.start()
    except (ValueError, RuntimeError) as error:
        print(f"maskdiff-tutor: error: {error}", file=sys.stderr)
        return 2
    try:
        if args.experiment == "book-models":
            return _book_models(args)
        if args.experiment == "small-masked-lm":
            return _small_masked_lm(args)
        if args.experiment == "book-results":
            return _book_results(args)
        return _experiment(args)
    finally:
        distributed.stop()


def _experiment(args) -> int:
    module = importlib.import_module(EXPERIMENTS[args.experiment][0])
    try:
        # the places the run writes to are checked before any work, not after it
        check_output(args.out, "--out", kind="JSON file")
        if getattr(args, "save_models", None) is not None:
            check_output_folder(args.save_models, "--save-models")
        result = module.run(scale=args.scale, device=args.device, seed=args.seed,
                            progress=not args.no_progress and distributed.is_main(), **_run_options(args))
        if not distributed.is_main():
            return 0
        path = result.save(args.out)
    except (ValueError, OSError, ImportError, MemoryError) as error:
        print(f"maskdiff-tutor: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # training has said where its checkpoint is, if it had one
        return 130
    processes = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    print(f"saved {path} ({result.environment.wall_seconds} s on {result.environment.device}{processes})")
    return 0


def _run_options(args) -> dict:
    """The keyword arguments of an experiment's ``run`` beyond scale, device, seed and progress."""
    options = {name: getattr(args, name) for name in ("text", "save_models", "models", "model", "revision")
               if getattr(args, name, None) is not None}
    if getattr(args, "trust_remote_code", False):
        options["trust_remote_code"] = True
    if getattr(args, "dtype", None) is not None:
        import torch

        options["dtype"] = getattr(torch, DTYPES[args.dtype])
    return options


def _small_masked_lm(args) -> int:
    from .experiments import small_masked_lm

    try:
        check_output_folder(args.out, "--out")
        record = small_masked_lm.make(args.text, args.out, small_masked_lm.PRESETS[args.preset], device=args.device,
                                      progress=not args.no_progress)
    except (ValueError, OSError, ImportError) as error:
        print(f"maskdiff-tutor: error: {error}", file=sys.stderr)
        return 2
    print(f"saved {args.out} ({record.parameters} parameters, final loss {record.history.loss[-1]:.3f}, "
          f"held-out NELBO {record.held_out_nelbo:.3f} nats per token, {record.environment.wall_seconds} s)")
    return 0


def _book_results(args) -> int:
    try:
        check_output_folder(args.out, "--out")
        only = None if args.only is None else tuple(n.replace("-", "_") for n in args.only)
        book.save_results(args.out, device=args.device, report=lambda line: print(f"saved {line}", flush=True),
                          only=only)
    except (ValueError, OSError) as error:
        print(f"maskdiff-tutor: error: {error}", file=sys.stderr)
        return 2
    return 0


def _book_models(args) -> int:
    if distributed.world_size() > 1:
        print("maskdiff-tutor: error: book-models trains the book's small models in one process; run it "
              "without torchrun", file=sys.stderr)
        return 2
    experiments = [n.replace("-", "_") for n in args.only] if args.only else list(book.EXPERIMENTS)
    try:
        if (args.check or args.spread) and args.seed != book.SEED:
            raise ValueError(f"--seed trains one seed's models; --check retrains seed {book.SEED} and --spread "
                             f"measures every stored seed, so give --seed without them")
        if args.out is not None:
            if args.check or args.spread:
                check_output(args.out, "--out", kind="JSON file")
            else:
                check_output_folder(args.out, "--out")
        if args.check or args.spread:
            return _book_models_report(args, experiments)
        _make_book_models(args, experiments)
    except (ValueError, OSError) as error:
        print(f"maskdiff-tutor: error: {error}", file=sys.stderr)
        return 2
    return 0


def _make_book_models(args, experiments: list[str]) -> None:
    """Train and store each experiment's models (in the book's folder, or under ``--out``)."""
    for name in experiments:
        folder = book.model_folder(name, args.seed, args.out)
        result = book.make(name, folder, device=args.device, progress=not args.no_progress, seed=args.seed)
        training = result.environment.training or result.environment  # None: trained in this run
        print(f"{name} (seed {args.seed}): saved {folder} "
              f"({training.wall_seconds} s of training on {result.environment.device})")


def _book_models_report(args, experiments: list[str]) -> int:
    """``--check`` or ``--spread``: one report per experiment, printed as it comes and written to
    ``--out`` as JSON; exit status 1 if a check finds a number outside its tolerance."""
    reports = []
    for name in experiments:
        if args.check:
            reports.append(book.check(name, device=args.device, progress=not args.no_progress))
            print(book.format_check(reports[-1]), flush=True)
        else:
            reports.append(book.spread(name, device=args.device, progress=not args.no_progress))
            print(book.format_spread(reports[-1]), flush=True)
    if args.check and not args.only:  # the stored measurements of the larger text model, measured again
        reports.append(book.check_larger_text_model(device=args.device))
        print(book.format_check(reports[-1]), flush=True)
    if args.out is not None:
        write_atomically(args.out, json.dumps(to_json(reports), indent=1, allow_nan=False) + "\n")
    return 1 if args.check and not all(report.passed for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
