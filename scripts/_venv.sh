# Sourced by build-book.sh and test.sh: create .venv if absent, activate it, install torch.
# torch comes first and pinned: a bare requirement would pull a multi-GB CUDA build on a CPU machine.
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
