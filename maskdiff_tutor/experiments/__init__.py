"""Experiments as a package feature: one module per experiment, each with
``run(scale="ci" | "gpu", device=None, seed=0) -> ExperimentResult`` (``blocks`` also offers
``scale="cpu"`` and ``text=`` for a real text file; ``ladder``, denoisers of increasing quality on
the ground-truth chain, has only ``scale="ci"``).

``scale="ci"`` trains in a minute or two on a CPU; the book's chapters measure models trained
at that scale once and stored with the package (``trained_models``, ``book``), passed as
``run(..., models=folder)``. ``scale="gpu"`` is the larger run for a GPU; ``scripts/gpu-run.sh``
runs all four with the GPU benchmarks, sized for under ten minutes on one H100-class GPU.
Results save to JSON with their configuration, library versions and hardware. The command line runs them:
``maskdiff-tutor <experiment> --help``; ``maskdiff-tutor book-models [--check]`` makes (or
retrains and checks) the book's models.
"""
