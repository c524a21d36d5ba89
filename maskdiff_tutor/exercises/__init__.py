"""Autograded checks for the book's code exercises: ``check_<name>(student_function)``.

Each check runs the student's function against the package's own computation of the same thing
on seeded random inputs and edge cases, and answers in one line (a ``Grade``, true when it passed)::

    from maskdiff_tutor.exercises import check_metric_2

    def metric_2(p):
        return math.prod(p)

    check_metric_2(metric_2)      # PASS check_metric_2: right on all 10 inputs

A wrong answer names the first input it gets wrong and how. Each check's docstring says what the
function must take and return; the exercise in the book says what it computes.

Checks by chapter:

- The NELBO: ``check_nelbo_weight``, ``check_reveal_probability``, ``check_posterior``,
  ``check_categorical_kl``
- Joint versus marginal: ``check_toy_marginals``, ``check_parallel_pick``, ``check_exact_marginals``
- The distance bound: ``check_zipf_pmf``, ``check_omegas``, ``check_bound_limit``,
  ``check_distance_bound``, ``check_distance_marginal``
- Parallel sampling: ``check_metric_1``, ``check_metric_2``, ``check_metric_3``, ``check_perplexity``
- Generation order: ``check_confidence_step``, ``check_transfer_counts``
- Blocks: ``check_block_causal_mask``, ``check_blockwise_training_mask``
"""

from __future__ import annotations

from .decoding_checks import (
                              check_block_causal_mask,
                              check_blockwise_training_mask,
                              check_confidence_step,
                              check_transfer_counts,
)
from .grading import Grade
from .nelbo_checks import check_categorical_kl, check_nelbo_weight, check_posterior, check_reveal_probability
from .toy_checks import check_exact_marginals, check_parallel_pick, check_toy_marginals
from .zipf_checks import (
                              check_bound_limit,
                              check_distance_bound,
                              check_distance_marginal,
                              check_metric_1,
                              check_metric_2,
                              check_metric_3,
                              check_omegas,
                              check_perplexity,
                              check_zipf_pmf,
)

CHECKS = (check_nelbo_weight, check_reveal_probability, check_posterior, check_categorical_kl, check_toy_marginals,
          check_parallel_pick, check_exact_marginals, check_zipf_pmf, check_omegas, check_bound_limit,
          check_distance_bound, check_distance_marginal, check_metric_1, check_metric_2, check_metric_3,
          check_perplexity, check_confidence_step, check_transfer_counts, check_block_causal_mask,
          check_blockwise_training_mask)

__all__ = ["Grade", "CHECKS", *(check.__name__ for check in CHECKS)]
