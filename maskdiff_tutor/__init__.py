r"""maskdiff_tutor: the mathematics and experiments behind the book on
"Why mask diffusion does not work" (arXiv 2510.03289).

Importing the package is cheap: it imports neither torch nor any plotting library.
Each submodule is loaded on first use, so ``maskdiff_tutor.zipf`` works after a plain
``import maskdiff_tutor``.

Modules (one concept of the paper each):

- ``schedules``        :math:`\alpha(t)`, :math:`\alpha'(t)` and the NELBO weight :math:`w(t)` (Section 2)
- ``forward_process``  :math:`q(x_t \mid x_0)`, :math:`q(x_t \mid x_s)`, the posterior, the reverse step, the KL
                       (Eq. 3-7)
- ``nelbo``            the T-step and continuous-time NELBO for any denoiser   (Eq. 10-13)
- ``oracle``           the exact denoiser of a finite dataset                  (Assumption 1)
- ``toy``              the paper's 100-sequence example                        (Section 3.2.2)
- ``zipf``             Zipf pmf, the distance bound, Metrics 1-3, Table 2      (Sections 3.2.3-3.3)
- ``markov``           Zipf Markov chains: exact marginals at distance n        (Section 3.2.3)
- ``repeats``          adjacent repeats under parallel decoding on a chain, exactly (Section 3.3)
- ``answer_length``    shorter answers on a chain with end-of-text, and where the top probability turns up
                       again, exactly (Section 3.2.4, Observation 2)
- ``assumptions``      Assumptions 3-4 with the full history: checks, Eq. 15-16, a counterexample (Section 3.2.3)
- ``denoiser``         the small bidirectional transformer, save and load
- ``objectives``       the weighted (NELBO) and unweighted training losses      (Eq. 13, Section 3.2.1)
- ``blockwise``        blockwise training: block-causal one-pass loss and its loop (Section 3.4.2)
- ``train``            one train() function
- ``checkpoints``      train()'s checkpoints: what a run was made with, a checksum, the checks on resume
- ``clean_distribution`` the denoiser's distribution over clean tokens (the mask's logit removed)
- ``attention_masks``  block-causal attention, shared by blockwise training and decoding (Section 3.4.2)
- ``scores``           what a step makes of the logits: the token drawn (Gumbel-max) and the scores that rank
                       positions (Sections 3.2.2-3.3)
- ``decoding``         the one unmasking loop and its selection of positions (Sections 3.2.2-3.4)
- ``decoders``         every decoder as a preset of that loop: all at once, one at a time, left to right,
                       LLaDA/Fast-dLLM/Dream generate, random initialisation, ReMDM remasking; and beam
                       search, Gibbs from a random start
- ``block_causal``     block-causal decoding with a KV cache, for a blockwise-trained model (Section 3.4.2)
- ``corpus``           real text: local files or Hugging Face datasets, char and BPE tokenizers
- ``device``           device choice and seeding, in one place
- ``claims``           the paper's 19 claims, one verdict and scope each, read from typed results (``claim_evidence``)
- ``verdict_glance``   the Verdict chapter's first screen: the counts and one line per claim
- ``records``          typed records as strict JSON: how results are saved and read back
- ``files``            the one atomic writer (results, checkpoints) and the JSON reader
- ``benchmark_results`` typed readers of the benchmarks' result files (the blocks chapter shows them)
- ``experiments``      one module per experiment: run(scale=..., device=..., seed=...)
- ``exercises``        autograded checks for the book's code exercises: check_<name>(student_function)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("schedules", "forward_process", "nelbo", "oracle", "toy", "zipf", "markov", "assumptions", "denoiser",
               "objectives", "clean_distribution", "attention_masks", "blockwise", "train", "checkpoints", "scores",
               "decoding", "decoders", "block_causal", "corpus", "device", "claims", "claim_registry", "experiments",
               "notebook", "records", "files", "benchmark_results", "repeats", "answer_length",
               "claim_evidence", "exercises", "verdict_glance")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    # PEP 562: load a submodule on first attribute access, keeping `import maskdiff_tutor` light.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
