#!/usr/bin/env bash
# The GPU results in one command: every GPU-scale experiment and the GPU benchmarks, with their
# JSON stored under book/results/ and benchmarks/results/ and a manifest of the run
# (benchmarks/results/gpu_run_cuda.json). Sized for under 10 minutes on one H100-class GPU.
#   scripts/gpu-run.sh                          # on a CUDA machine
#   scripts/gpu-run.sh --scale ci --device cpu  # the same stages at test sizes, on a CPU
#   scripts/gpu-run.sh --help
# Python: $PYTHON if set, else .venv/bin/python if present, else python3 (a machine's own CUDA
# build of torch); the package is used from this checkout, not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_run.py "$@"
