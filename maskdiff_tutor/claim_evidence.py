"""The functions that read each claim's evidence from typed results, for :mod:`maskdiff_tutor.claim_registry`.

Each function takes the :class:`maskdiff_tutor.claims.Sources` and returns the named fields of one
evidence sentence, rounded as the chapter prints them. A decoding that decides a verdict is given
with its true perplexity *and* the token entropy of what it generated, beside the language's own
(a decoding that collapses diversity can reach a low perplexity without being better).
"""

from __future__ import annotations

from dataclasses import dataclass

from maskdiff_tutor import zipf
from maskdiff_tutor.experiments.blocks_results import EXACT_DENOISER, LEFT_TO_RIGHT, RANDOM, blockwise, literal
from maskdiff_tutor.notebook import two_figures
from maskdiff_tutor.train import forward_tokens_per_sequence

# The quality targets at which claims 10 and 11 are read, as multiples of the language's own
# perplexity: a decoding speeds generation up at a target if it reaches it in fewer denoiser calls
# than ordinary left-to-right decoding does.
SPEED_TARGETS = (1.25, 2.0, 4.0)


# --- the NELBO and the toy (claims 1-3) -------------------------------------------------------------

def weights_exact(s):
    found = s.nelbo.weighting_minimisers
    return {"minimiser_nelbo": round(found.nelbo.minimiser, 2),
            "minimiser_unweighted": round(found.unweighted.minimiser, 2)}


def weights_trained(s):
    comparison = s.joint_vs_marginal.metrics.weighted_vs_unweighted
    return {"pred_diff": round(comparison.max_abs_difference, 3),
            "pred_diff_mean": round(comparison.mean_tv_at_masks, 4)}


def time_exact(s):
    return {"time_free_gap": s.nelbo.time_free_gap.within(1e-12)}


def time_trained(s):
    return {"err_all_weighted": round(s.joint_vs_marginal.metrics.weighted.max_error_over_inputs, 2)}


def marginals(s):
    result = s.joint_vs_marginal
    weighted = result.metrics.weighted
    return {"parallel_pair": weighted.decoding.parallel_pair, "beam_pair": weighted.decoding.beam_pair,
            "tv_once": round(weighted.sampling.tv_all_at_once_vs_joint, 2),
            "tv_exact": round(result.metrics.toy.tv_product_of_exact_marginals_vs_joint, 3),
            "tv_seq": weighted.sampling.tv_sequential_vs_joint, "n_samples": result.config.scale.samples,
            "tv_noise": round(result.sampling_noise(), 2)}


# --- the distance bound and its observations (claims 4-8) -------------------------------------------

def decay_bound(s):
    found = s.distance_bound
    return {"ce_pbar2": round(found.counterexample.last.full_history_bound, 4),
            "ce_eq17_n6": round(found.counterexample.last.eq17_bound, 4),
            "random_broken": found.random_languages.full_history.broken,
            "random_total": found.random_languages.full_history.total,
            "random_h_broken": found.random_languages.history_free.broken}


def end_of_text(s):
    eos, end = s.ground_truth.metrics.end_of_text, s.ground_truth.config.scale.seq_len - 1
    return {"eos_dip": round(eos.dip, 3), "eos_at_end": round(eos.top[end], 3), "eos_far": round(eos.far, 3),
            "eos_far_n": eos.far_n}


def _task_floor(falls, s: float, function_words: bool) -> float:
    return next(r.floor for r in falls.rows if r.s == s and bool(r.function_words) == function_words)


def fall_exact(s):
    falls = s.distance_bound.fall_by_task
    return {"task_n99_max_s231": falls.longest_fall(99, s_max=2.31),
            "task_n99_s3": falls.longest_fall(99, s_min=3.0, s_max=3.0),
            "task_floor_min": round(falls.lowest_floor(), 4), "task_floor_max": round(falls.highest_floor(), 4),
            "floor_fw_s15": round(_task_floor(falls, 1.5, True), 3),
            "floor_fw_s3": round(_task_floor(falls, 3.0, True), 3)}


def _ladder_ends(s):
    """The weakest and the best trained rung of the ladder of denoisers, and the exact one."""
    metrics = s.ladder.metrics
    return metrics.trained[0], metrics.trained[-1], metrics.exact


def upturn(s):
    found = s.ground_truth.metrics.upturn_by_length
    longest, shortest = found.rows[0], found.rows[-1]
    weakest, best, exact = _ladder_ends(s)
    return {"len_long": round(longest.mean_length, 1), "dip_long": longest.dip_n,
            "len_short": round(shortest.mean_length, 1), "dip_short": shortest.dip_n,
            "gap_weak": round(weakest.gap, 2), "fall_weak": weakest.fall_distance, "gap_best": round(best.gap, 2),
            "fall_best": best.fall_distance, "fall_exact": exact.fall_distance}


def fall_text(s):
    greedy = s.blocks_text_cpu.metrics.greedy_after_prompt(RANDOM)
    return {"text_top_n1": round(greedy.top(1), 2), "text_top_n15": round(greedy.top(15), 2),
            "text_n90": greedy.fall_distance(0.9), "text_floor": round(greedy.floor(), 2)}


def floor_exact(s):
    found = s.distance_bound
    counterexample = found.counterexample
    return {"max_pi": round(found.exact_chain.max_pi, 5), "p_star": round(found.bound_curve.p_star, 3),
            "top_n1": round(found.exact_chain.top[1], 3), "bound_n1": round(found.exact_chain.bound[1], 3),
            "top_n3": round(found.exact_chain.top[3], 3), "bound_n3": round(found.exact_chain.bound[3], 3),
            "ce_end": round(counterexample.last.exact_top, 3),
            "ce_p_star": round(zipf.bound_limit(counterexample.s, counterexample.N), 3)}


def floor_text(s):
    return {"text_floor_7": round(s.blocks_text_cpu.metrics.greedy_after_prompt(RANDOM).floor(), 2)}


def floor_chain(s):
    chain = s.ground_truth.metrics.chain
    return {"gt_limit": round(chain.max_stationary, 3), "gt_bound_limit": round(chain.bound_limit, 3)}


def homogenisation(s):
    decay, length = s.ground_truth.metrics.decay, s.ground_truth.config.scale.seq_len
    weakest, _, _ = _ladder_ends(s)
    return {"homog_exact_far": round(decay.exact_function_word_share(length - 1), 2),
            "homog_weak_far": round(weakest.far_function_word_share, 2), "homog_gap_weak": round(weakest.gap, 2),
            "homog_trained_far": round(decay.trained_function_word_share(length - 1), 2),
            "homog_exact_near": round(decay.exact_function_word_share(1), 2)}


# --- parallel sampling (claims 9-11, 18) ------------------------------------------------------------

def table_2(s):
    t2 = s.distance_bound.table_2
    return {"t2_ppl7": round(t2.row(7).ppl_metric_2, 2), "t2_ppl8": round(t2.row(8).ppl_metric_2, 2),
            "t2_k_ours": int(t2.allowed), "t2_k_printed": t2.allowed_printed, "t2_p_star": round(t2.p_star, 5)}


def cost_of_k(s):
    cost, length = s.ground_truth.metrics.cost_of_k, s.ground_truth.config.scale.seq_len
    entropies = [c.entropy.exact for c in cost.values()]
    return {"ppl_k1": round(cost[1].true_ppl.exact, 2), "ppl_k2": round(cost[2].true_ppl.exact, 2),
            "ppl_kall": round(cost[length - 1].true_ppl.exact, 1), "cost_h_min": round(min(entropies), 2),
            "cost_h_language": round(s.ground_truth.metrics.chain.stationary_entropy, 2)}


def _fewest_calls(settings, ppl: float) -> str:
    """The fewest denoiser calls among ``settings`` (records with .calls and .true_ppl) that reach
    a true perplexity of at most ``ppl``, in words; "none" where no setting does."""
    calls = [x.calls for x in settings if x.true_ppl <= ppl]
    return str(min(calls)) if calls else "none"


def _ordinary_calls(remasking, ppl: float) -> str:
    """The fewest calls of ordinary decoding reaching ``ppl``: a measured number, or the range
    "a to b" where it lies between two measured numbers of calls."""
    ordinary = remasking.ordinary_decoding()
    reached = [x.calls for x in ordinary if x.true_ppl <= ppl]
    if not reached:
        return "none"
    short = [x.calls for x in ordinary if x.calls < min(reached)]
    if short and max(short) + 1 < min(reached):
        return f"{max(short) + 1} to {min(reached)}"
    return str(min(reached))


@dataclass(frozen=True)
class SpeedAtTarget:
    """Claims 10 and 11 at one quality target: the fewest denoiser calls that reach it (in words:
    a number, a range between two measured numbers of calls, or "none")."""

    multiple: float  # the target as a multiple of the language's own perplexity
    true_ppl: float  # the target: the largest true perplexity that counts as reaching it
    ordinary: str  # ordinary left-to-right decoding
    remasking: str  # remasking, any remasking probability above 0
    random_init: str  # the paper's random initialisation, any share above 0


def speed_at_targets(metrics) -> list[SpeedAtTarget]:
    """Claims 10 and 11 by one standard, from a ground-truth result's metrics: at each quality
    target of ``SPEED_TARGETS``, the fewest calls of ordinary decoding, remasking and random
    initialisation (a method speeds decoding up at a target if it needs fewer calls than ordinary
    decoding)."""
    remasking = [x for x in metrics.remasking.settings if x.eta > 0]
    random_init = [x for x in metrics.partial_random_init.settings if x.share > 0]
    rows = []
    for multiple in SPEED_TARGETS:
        ppl = multiple * metrics.chain.perplexity
        rows.append(SpeedAtTarget(multiple, ppl, _ordinary_calls(metrics.remasking, ppl),
                                  _fewest_calls(remasking, ppl), _fewest_calls(random_init, ppl)))
    return rows


def _speed_fields(s, method: str):
    """The fields claims 10 and 11 share: the fewest calls at each target, and the entropy range."""
    metrics = s.ground_truth.metrics
    settings = metrics.remasking.settings if method == "remasking" else metrics.partial_random_init.settings
    entropies = [x.entropy for x in settings]
    fields = {"language_ppl": round(metrics.chain.perplexity, 2), "h_min": round(min(entropies), 2),
              "h_max": round(max(entropies), 2), "h_language": round(metrics.chain.stationary_entropy, 2)}
    for row in speed_at_targets(metrics):
        name = f"x{row.multiple:g}".replace(".", "")
        fields[f"{name}_method"] = getattr(row, method)
        fields[f"{name}_ordinary"] = row.ordinary
    return fields


def remasking(s):
    fields = _speed_fields(s, "remasking")
    eta = s.ground_truth.metrics.remasking.highest_eta
    setting = s.ground_truth.metrics.remasking.at(eta, calls=8)
    return {**fields, "rm_eta": eta, "rm_8": two_figures(setting.true_ppl),
            "base_8": two_figures(s.ground_truth.metrics.remasking.ordinary(8).true_ppl)}


def random_init(s):
    fields = _speed_fields(s, "random_init")
    partial = s.ground_truth.metrics.partial_random_init
    f50_k8 = partial.at(f=0.5, k=8)
    return {**fields, "pri_f50_k8": two_figures(f50_k8.true_ppl), "pri_f50_k8_calls": f50_k8.calls,
            "pri_floor": two_figures(partial.lowest_ppl(at_least_k=4))}


def repeats(s):
    found = s.ground_truth.metrics.repeats
    far = found[max(found)]  # every mask decoded at once
    return {"rep_language": round(far.language_share, 3), "rep_decoded": round(far.decoded_share, 3),
            "rep_log_p": round(far.decoded_repeat_log_prob, 2), "other_log_p": round(far.decoded_other_log_prob, 2),
            "rep_language_log_p": round(far.language_repeat_log_prob, 2),
            "rep_extra_share": round(far.repeat_share_of_extra_nll, 2)}


# --- generation order (claims 12-14, 17) ------------------------------------------------------------

def order_ladder(s):
    weakest, best, exact = _ladder_ends(s)
    middle = s.ladder.metrics.trained[len(s.ladder.metrics.trained) // 2]
    return {"lad_left_weak": round(weakest.leftmost_share, 2), "lad_gap_weak": round(weakest.gap, 2),
            "lad_left_mid": round(middle.leftmost_share, 2), "lad_gap_mid": round(middle.gap, 2),
            "lad_left_best": round(best.leftmost_share, 2), "lad_gap_best": round(best.gap, 2),
            "lad_left_exact": round(exact.leftmost_share, 2)}


def _order(s, language: str, decoding: str, k: int | None = 1):
    """One setting of the generation-order result at its longest length (k None: the largest k)."""
    metrics = s.generation_order.metrics
    return metrics.measured(language, max(metrics.lengths), decoding,
                            max(metrics.tokens_per_step) if k is None else k)


def order_exact(s):
    return {"rho_conf_chain": round(_order(s, "zipf chain", "confidence, greedy").spearman_position_vs_step, 2),
            "left_conf_sampled": round(_order(s, "zipf chain", "confidence, sampled").leftmost_share, 2)}


def reverse_order(s):
    return {"rho_conf_eos": round(_order(s, "with end-of-text", "confidence, greedy").spearman_position_vs_step, 2)}


def _random_and_margin(s):
    """Sampled decoding of the plain chain, k tokens per step (the largest k): random order and
    margin order (the masks next to the decoded text), with the lower of their token entropies and
    the language's own."""
    random, margin = (_order(s, "zipf chain", name, None) for name in ("random order, sampled", "margin, sampled"))
    return {"random": round(random.true_ppl, 2), "margin": round(margin.true_ppl, 1),
            "h": round(min(random.entropy, margin.entropy), 2),
            "h_language": round(s.generation_order.metrics.stationary_entropy, 2)}


def random_order(s):
    found = _random_and_margin(s)
    return {"ppl_chain_k1": round(_order(s, "zipf chain", "random order, sampled").true_ppl, 2),
            "ppl_random_k": found["random"], "ppl_margin_k": found["margin"], "order_h": found["h"],
            "order_h_language": found["h_language"]}


def adjacent_exact(s):
    found = _random_and_margin(s)
    return {"adj_margin_k": found["margin"], "adj_random_k": found["random"], "adj_order_h": found["h"],
            "adj_order_h_language": found["h_language"], "adj_k": max(s.generation_order.metrics.tokens_per_step)}


# --- blocks (claims 6, 12, 14-17, 19) ---------------------------------------------------------------

def _chain(s):
    """The chain's cpu-scale blocks run: its metrics and the length of a whole sequence."""
    return s.blocks_chain_cpu.metrics, s.blocks_chain_cpu.config.scale.seq_len


def _text(s):
    """The text's cpu-scale blocks run: its metrics and the length of a whole sequence."""
    return s.blocks_text_cpu.metrics, s.blocks_text_cpu.config.scale.seq_len


def order_trained(s):
    chain, whole = _chain(s)
    text = s.blocks_text_cpu.metrics.greedy_after_prompt(RANDOM)
    return {"bl_greedy_left": round(s.blocks.metrics.greedy_after_prompt(RANDOM).leftmost_share, 1),
            "text_greedy_left": round(text.leftmost_share, 2),
            "text_greedy_rho": round(text.spearman_position_vs_step, 2),
            "chain_random_left": round(chain.decoding(RANDOM, whole, 1).leftmost_share, 2)}


def random_order_text(s):
    text, whole = _text(s)
    by_k = {k: text.decoding(RANDOM, whole, k, "random") for k in (1, 4, 8)}
    return {"text_rand_k1": round(by_k[1].ppl, 1), "text_rand_k4": round(by_k[4].ppl, 1),
            "text_rand_k8": round(by_k[8].ppl, 1), "text_rand_h": round(min(d.entropy for d in by_k.values()), 2),
            "text_l2r_k1": round(text.decoding(RANDOM, 1, 1).ppl, 1), "text_h": round(text.reference.valid_entropy, 2)}


def _blocks_of_4_against_one_block(metrics, whole: int, model) -> dict[str, float]:
    """Four tokens per step: blocks of 4 (four adjacent masks at once) against one block decoded
    in a random order (four scattered masks at once), each with its true perplexity and entropy."""
    small, one = metrics.decoding(model, 4, 4), metrics.decoding(model, whole, 4, "random")
    return {"b4": small.ppl, "b4_h": small.entropy, "one": one.ppl, "one_h": one.entropy}


def small_blocks(s):
    chain, whole = _chain(s)
    text, _ = _text(s)
    exact = _blocks_of_4_against_one_block(chain, whole, EXACT_DENOISER)
    collapsed = chain.decoding(EXACT_DENOISER, whole, 4)
    return {"chain_exact_b4_k4": round(exact["b4"], 1),
            "chain_exact_b8_k4": round(chain.decoding(EXACT_DENOISER, 8, 4, "random").ppl, 1),
            "chain_exact_one_k4": round(exact["one"], 2),
            "chain_exact_h": round(min(exact["b4_h"], exact["one_h"]), 2),
            "chain_ppl": round(chain.reference.valid_ppl, 2), "chain_h": round(chain.reference.valid_entropy, 2),
            "chain_conf_one_k4": round(collapsed.ppl, 2), "chain_conf_one_h": round(collapsed.entropy, 2),
            "chain_random_b4_k4": round(chain.decoding(RANDOM, 4, 4).ppl, 1),
            "chain_random_one_k4": round(chain.decoding(RANDOM, whole, 4, "random").ppl, 1),
            "text_random_b4_k4": round(text.decoding(RANDOM, 4, 4).ppl, 1),
            "text_random_one_k4": round(text.decoding(RANDOM, whole, 4, "random").ppl, 1)}


def adjacent_blocks(s):
    chain, whole = _chain(s)
    text, _ = _text(s)
    exact = _blocks_of_4_against_one_block(chain, whole, EXACT_DENOISER)
    trained = _blocks_of_4_against_one_block(chain, whole, RANDOM)
    on_text = _blocks_of_4_against_one_block(text, whole, RANDOM)
    return {"adj_exact": round(exact["b4"], 1), "sc_exact": round(exact["one"], 2),
            "adj_h": round(min(exact["b4_h"], exact["one_h"]), 2), "chain_h": round(chain.reference.valid_entropy, 2),
            "adj_trained": round(trained["b4"], 1), "sc_trained": round(trained["one"], 1),
            "adj_text": round(on_text["b4"], 1), "sc_text": round(on_text["one"], 1),
            "text_min_h": round(min(on_text["b4_h"], on_text["one_h"]), 2),
            "text_h": round(text.reference.valid_entropy, 2)}


def blockwise_training(s):
    chain, whole = _chain(s)
    text, _ = _text(s)
    return {"lit8_chain": round(chain.bound(literal(8)), 3), "rand8_chain": round(chain.bound_by_block(8), 3),
            "lit8_text": round(text.bound(literal(8)), 3), "rand8_text": round(text.bound_by_block(8), 3),
            "lit8_tokens": forward_tokens_per_sequence("blockwise_literal", whole, 8),
            "rand_tokens": forward_tokens_per_sequence("random", whole), "seq_len": whole,
            "chain_bw4_bound": round(chain.bound(blockwise(4)), 3),
            "chain_random_b4_bound": round(chain.bound_by_block(4), 3),
            "text_bw4_bound": round(text.bound(blockwise(4)), 3),
            "text_random_b4_bound": round(text.bound_by_block(4), 3),
            "chain_valid_nll": round(chain.reference.valid_nll, 3)}


def redundancy(s):
    chain, _ = _chain(s)
    text, _ = _text(s)
    return {"chain_rand_l2r": round(chain.bound_by_block(1), 3), "chain_l2r": round(chain.bound(LEFT_TO_RIGHT), 3),
            "chain_own": round(chain.reference.valid_nll, 3),
            "text_rand_l2r": round(text.bound_by_block(1), 3), "text_l2r": round(text.bound(LEFT_TO_RIGHT), 3),
            "text_judge": round(text.reference.valid_nll, 3)}
