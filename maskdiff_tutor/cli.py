"""Command line: ``maskdiff-tutor <experiment> [--scale ci|cpu|gpu] [--device D] [--seed N] --out PATH``.

Runs one experiment of ``maskdiff_tutor.experiments`` and saves its result (the numbers with the
settings, library versions and hardware that produced them) as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskdiff-tutor",
                                     description="Run one of the book's experiments and save its result as JSON.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="experiment", required=True, metavar="experiment")
    for name, (module_name, description) in EXPERIMENTS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=description, description=description,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument("--scale", choices=tuple(module.SCALES), default="ci",
                         help="ci: small, minutes on a CPU (what the book runs); cpu (where offered): larger, "
                              "still for a CPU; gpu: the full experiment")
        if "text" in inspect.signature(module.run).parameters:
            sub.add_argument("--text", default=None,
                             help="a UTF-8 text file: run on this real text (character-level) instead of the "
                                  "ground-truth language")
        if "save_models" in inspect.signature(module.run).parameters:
            sub.add_argument("--save-models", default=None,
                             help="a folder to save the trained models in (and the tokenizer, for --text)")
        sub.add_argument("--device", default=None,
                         help="cpu, cuda, cuda:N or mps; default: the best available (cuda, then mps, then cpu)")
        sub.add_argument("--seed", type=int, default=0, help="seeds initialisation, training and sampling")
        sub.add_argument("--out", required=True, help="path of the JSON file to write the result to")
        sub.add_argument("--no-progress", action="store_true", help="hide the training progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(EXPERIMENTS[args.experiment][0])
    try:
        extra = {name: getattr(args, name) for name in ("text", "save_models") if getattr(args, name, None) is not None}
        result = module.run(scale=args.scale, device=args.device, seed=args.seed, progress=not args.no_progress,
                            **extra)
    except ValueError as error:
        print(f"maskdiff-tutor: error: {error}", file=sys.stderr)
        return 2
    path = result.save(args.out)
    print(f"saved {path} ({result.environment.get('wall_seconds')} s on {result.environment.get('device')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
