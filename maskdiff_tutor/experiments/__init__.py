"""Experiments as a package feature: one module per experiment, each with
``run(scale="ci" | "gpu", device=None, seed=0) -> ExperimentResult`` (``blocks`` also offers
``scale="cpu"`` and ``text=`` for a real text file).

``scale="ci"`` runs in seconds to minutes on a CPU (the book's chapters call it live);
``scale="gpu"`` is the full experiment. Results save to JSON with their configuration, library
versions and hardware. The command line runs them: ``maskdiff-tutor <experiment> --help``.
"""
