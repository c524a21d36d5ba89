#!/usr/bin/env bash
# Run the chapters (nbval over book/) under the CPU kernel paths of other x86-64 machines, as this
# machine can emulate them, and require the stored outputs from each:
#   avx2            torch's AVX2 kernels, MKL, oneDNN and numpy held to AVX2: a CPU without AVX-512
#   default         torch's generic kernels, MKL and oneDNN held to AVX2, numpy to SSE4.2
#   mkl-compatible  MKL's conditional-numerical-reproducibility path (MKL_CBWR=COMPATIBLE), which
#                   changes MKL's results as moving between Intel and AMD CPUs does
# Trained models differ between these paths in their last bits; the chapters measure stored
# models in float64, so their printed numbers must not. Run after scripts/test.sh (it uses .venv).
# Usage: bash scripts/check-cpu-paths.sh [avx2] [default] [mkl-compatible]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv: run bash scripts/test.sh first" >&2; exit 2; }
# numpy's dispatch targets, by the names of numpy 2.x and 1.x (unknown names are ignored)
numpy_avx512="X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL"
numpy_avx2="X86_V3 AVX2 FMA3"
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(avx2 default mkl-compatible)
for path in "${paths[@]}"; do
    case "$path" in
        avx2) settings="ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
              numpy="$numpy_avx512" ;;
        default) settings="ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
                 numpy="$numpy_avx512 $numpy_avx2" ;;
        mkl-compatible) settings="MKL_CBWR=COMPATIBLE" numpy="" ;;
        *) echo "unknown CPU path '$path'; choose among avx2, default, mkl-compatible" >&2; exit 2 ;;
    esac
    echo "== $path: $settings NPY_DISABLE_CPU_FEATURES=\"$numpy\""
    env $settings NPY_DISABLE_CPU_FEATURES="$numpy" .venv/bin/python -m pytest book --nbval --nbval-current-env \
        --nbval-sanitize-with book/sanitize.cfg --nbval-cell-timeout 600 -q -p no:cacheprovider
done
