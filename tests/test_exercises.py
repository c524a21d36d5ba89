"""Every exercise check passes a right answer and fails planted wrong ones with a message that says
where: the package's reference (adapted to the student's signature) and a plain solution pass; a
typical mistake fails on the input it gets wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskdiff_tutor import exercises, markov, zipf
from maskdiff_tutor.exercises import grading


def _weight(schedule, t):
    return float(-schedule.dalpha(t) / (1 - schedule.alpha(t)))


def _reveal(alpha_s, alpha_t):
    return (alpha_s - alpha_t) / (1 - alpha_t)


def _posterior(x_t, x0, alpha_s, alpha_t, vocab_size, mask_id):
    out = np.zeros(vocab_size)
    if x_t != mask_id:
        out[x_t] = 1.0
    else:
        out[x0] = _reveal(alpha_s, alpha_t)
        out[mask_id] = 1 - out[x0]
    return out


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _marginals(counts):
    n = sum(counts.values())
    a = (counts["AB"] + counts["AB'"]) / n
    b = (counts["AB"] + counts["A'B"]) / n
    return (a, 1 - a), (b, 1 - b)


def _pick(counts):
    (a, a_), (b, b_) = _marginals(counts)
    pair = ("A" if a >= a_ else "A'") + ("B" if b >= b_ else "B'")
    return counts[pair] / sum(counts.values())


def _exact(data, x_t, mask_id, vocab_size):
    seen = x_t != mask_id
    rows = data[(data[:, seen] == x_t[seen]).all(-1)]
    return torch.nn.functional.one_hot(rows, vocab_size).double().mean(0)


def _omegas(s, N):
    h = sum(r ** -s for r in range(1, N + 1))
    return 1 / h, 2 ** -s / h


def _limit(s, N):
    w1, w2 = _omegas(s, N)
    return w2 / (1 - (w1 - w2))


def _bound(n, s, N):
    w1, w2 = _omegas(s, N)
    p = _limit(s, N)
    return p + (w1 - w2) ** n * (1 - p)


def _confidence_step(probs, x, mask_id, k):
    top, token = probs.max(-1)
    order = sorted((i for i in range(len(x)) if x[i] == mask_id), key=lambda i: (-float(top[i]), i))
    out = x.clone()
    for i in order[:k]:
        out[i] = token[i]
    return out


def _transfer(masks, steps):
    return [masks // steps + (i < masks % steps) for i in range(steps)]


def _block_mask(seq_len, block_length):
    block = torch.arange(seq_len) // block_length
    return block.unsqueeze(0) <= block.unsqueeze(1)


def _training_mask(seq_len, block_length):
    block = torch.arange(seq_len) // block_length
    same, earlier = block.unsqueeze(1) == block.unsqueeze(0), block.unsqueeze(0) < block.unsqueeze(1)
    top = torch.cat([same, earlier], 1)  # noisy queries: noisy keys of their block, clean keys before
    bottom = torch.cat([torch.zeros_like(same), same | earlier], 1)  # clean queries: clean keys up to their block
    return torch.cat([top, bottom], 0)


RIGHT = {
    "check_nelbo_weight": _weight,
    "check_reveal_probability": _reveal,
    "check_posterior": _posterior,
    "check_categorical_kl": _kl,
    "check_toy_marginals": _marginals,
    "check_parallel_pick": _pick,
    "check_exact_marginals": _exact,
    "check_zipf_pmf": lambda s, N: np.arange(1, N + 1) ** -s / sum(r ** -s for r in range(1, N + 1)),
    "check_omegas": _omegas,
    "check_bound_limit": _limit,
    "check_distance_bound": _bound,
    "check_distance_marginal": lambda P, start, n: torch.linalg.matrix_power(P, n)[start],
    "check_metric_1": min,
    "check_metric_2": math.prod,
    "check_metric_3": lambda p: max(0.0, sum(p) - (len(p) - 1)),
    "check_perplexity": lambda p, n: math.inf if p == 0 else p ** (-1 / n),
    "check_confidence_step": _confidence_step,
    "check_transfer_counts": _transfer,
    "check_block_causal_mask": _block_mask,
    "check_blockwise_training_mask": _training_mask,
}

# A typical mistake for each check, and the start of the message it must get.
WRONG = {
    "check_nelbo_weight": (
        lambda schedule, t: 1 / t,
        "wrong on input t=0.6551, CosineSchedule(): got 1.52648, expected 2.77869"),
    "check_reveal_probability": (
        lambda a_s, a_t: a_s - a_t,
        "wrong on input alpha_s=0.6306, alpha_t=0.2671: got 0.3635, expected 0.495975"),
    "check_posterior": (
        lambda x_t, x0, a_s, a_t, V, m: np.eye(V)[x0],
        "wrong on input x_t=1, x0=0, alpha_s=0.6306, alpha_t=0.2671, vocab_size=2, mask_id=1: "
        "at index (0,) got 1, expected 0.495975"),
    "check_categorical_kl": (
        lambda p, q: _kl(q, p),
        "wrong on input p=[0.400071, 0.599929], q=[0.897204, 0.102796]: got 0.54328, expected 0.7352"),
    "check_toy_marginals": (
        lambda c: _marginals(c)[::-1],
        "wrong on input counts={'AB': 34, \"AB'\": 21, \"A'B\": 35, \"A'B'\": 10}: answer[0][0]: "
        "got 0.69, expected 0.55"),
    "check_parallel_pick": (
        lambda c: max(c.values()) / sum(c.values()),
        "wrong on input counts={'AB': 34, \"AB'\": 21, \"A'B\": 35, \"A'B'\": 10}: got 0.35, expected 0.34"),
    "check_exact_marginals": (
        lambda d, x, m, V: torch.nn.functional.one_hot(d, V).double().mean(0),
        "wrong on input data of 6 sequences (6, 3), x_t=[2, 3, 3], mask_id=3, vocab_size=4: "
        "at index (0, 0) got 0.333333, expected 0"),
    "check_zipf_pmf": (
        lambda s, N: np.arange(1, N + 1) ** -s,
        "wrong on input s=1, N=10: at index (0,) got 1, expected 0.341417"),
    "check_omegas": (
        lambda s, N: _omegas(s, N)[::-1],
        "wrong on input s=1, N=10: answer[0]: got 0.170709, expected 0.341417"),
    "check_bound_limit": (
        lambda s, N: _omegas(s, N)[1],
        "wrong on input s=1, N=10: got 0.170709, expected 0.205849"),
    "check_distance_bound": (
        lambda n, s, N: _bound(n + 1, s, N),
        "wrong on input n=0, s=1, N=10: got 0.341417, expected 1"),
    "check_distance_marginal": (
        lambda P, start, n: torch.linalg.matrix_power(P, n)[:, start],
        "wrong on input a Zipf chain of V=4, s=1.5, start=0, n=1: at index (3,) got 0.211581, expected 0.11517"),
    "check_metric_1": (
        max,
        "wrong on input p=[0.2698, 0.041]: got 0.2698, expected 0.041"),
    "check_metric_2": (
        min,
        "wrong on input p=[0.2698, 0.041]: got 0.041, expected 0.0110618"),
    "check_metric_3": (
        lambda p: sum(p) - (len(p) - 1),
        "wrong on input p=[0.2698, 0.041]: got -0.6892, expected 0"),
    "check_perplexity": (
        lambda p, n: p ** (-n),
        "wrong on input joint_probability=0.5, n=2: got 4, expected 1.41421"),
    "check_confidence_step": (
        lambda probs, x, m, k: _confidence_step(probs, x, m, 1),
        "wrong on input x=[2, 3, 3, 3, 3, 2], k=2, random probs of shape (6, 4): at index (4,) got 3, expected 2"),
    "check_transfer_counts": (
        lambda masks, steps: [masks // steps] * steps,
        "wrong on input masks=10, steps=3: at index (0,) got 3, expected 4"),
    "check_block_causal_mask": (
        lambda L, B: torch.ones(L, L, dtype=torch.bool),
        "wrong on input seq_len=8, block_length=4: at index (0, 4) got True, expected False"),
    "check_blockwise_training_mask": (
        lambda L, B: _block_mask(2 * L, B),
        "wrong on input seq_len=8, block_length=4: at index (4, 0) got True, expected False"),
}


def test_every_check_has_a_right_and_a_wrong_answer():
    names = {check.__name__ for check in exercises.CHECKS}
    assert names == set(RIGHT) == set(WRONG)
    assert len(names) >= 12


@pytest.mark.parametrize("check", exercises.CHECKS, ids=lambda c: c.__name__)
def test_a_right_answer_passes(check):
    result = check(RIGHT[check.__name__])
    assert result.passed, str(result)
    assert str(result) == f"PASS {check.__name__}: right on all {result.inputs} inputs"


@pytest.mark.parametrize("check", exercises.CHECKS, ids=lambda c: c.__name__)
def test_a_planted_mistake_fails_where_it_is_wrong(check):
    wrong, message = WRONG[check.__name__]
    result = check(wrong)
    assert not result
    assert str(result).startswith(f"FAIL {check.__name__}: {message}"), str(result)


@pytest.mark.parametrize("check", exercises.CHECKS, ids=lambda c: c.__name__)
def test_an_error_is_reported_with_its_input(check):
    def broken(*args):
        raise NotImplementedError("write this function")
    result = check(broken)
    assert not result
    assert str(result).startswith(f"FAIL {check.__name__}: raised NotImplementedError: write this function on input ")


def test_a_check_refuses_what_is_not_a_function():
    with pytest.raises(TypeError, match="check_metric_2 takes the function to check"):
        exercises.check_metric_2(0.5)


def test_an_answer_of_the_wrong_shape_or_kind_says_so():
    assert "expected shape (10,)" in str(exercises.check_zipf_pmf(lambda s, N: np.ones(3)))
    assert "which is not a number" in str(exercises.check_metric_2(lambda p: "0.5"))
    assert "expected a tuple of 2 values" in str(exercises.check_omegas(lambda s, N: 0.5))


def test_a_student_function_cannot_change_the_reference_input():
    def sorts_in_place(p):
        p.sort()
        return min(p)
    assert exercises.check_metric_1(sorts_in_place)


def test_the_references_are_the_package_functions():
    # the checks compare with the package: its own functions pass their checks
    assert exercises.check_metric_2(lambda p: float(zipf.metric_2(p)))
    assert exercises.check_distance_marginal(
        lambda P, start, n: markov.distance_marginals(P, torch.eye(len(P), dtype=torch.float64)[start], n)[-1]
        if n else torch.eye(len(P), dtype=torch.float64)[start])


def test_tolerance_reads_relative_and_absolute():
    assert grading.difference(1.0 + 1e-8, 1.0) is None
    assert grading.difference(1e-10, 0.0) is None
    assert grading.difference(1.001, 1.0) == "got 1.001, expected 1"
    assert grading.difference([True, False], np.array([True, True])) == "at index (1,) got False, expected True"
